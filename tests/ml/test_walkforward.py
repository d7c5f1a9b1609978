"""Walk-forward orchestration: fold layout, no test rows in fit, OOS = union of folds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from ml_frames import synthetic_ml_frame
from perptrader.ml import models as ml_models
from perptrader.ml.base import CLASSES, MLFrame
from perptrader.ml.splits import WalkForwardSpec, walk_forward
from perptrader.ml.walkforward import final_window, history_records, run_walk_forward

SPEC = WalkForwardSpec.parse("train=30d,test=10d,folds=2")
TINY_LGBM = {"params": {"n_estimators": 12, "num_leaves": 7, "early_stopping_rounds": 5,
                        "num_threads": 2, "min_child_samples": 20}}


@pytest.fixture(scope="module")
def data() -> MLFrame:
    """The synthetic table with its first 30 features (keeps the logistic baseline quick)."""
    full = synthetic_ml_frame()
    return MLFrame(full.frame, full.features[:30], full.label, full.horizon, dict(full.meta))


class SpyClassifier:
    """Records the rows it is fitted on; predicts the training class frequencies, tilted
    by the sign of the first feature (so predictions are not constant)."""

    kind = "spy"
    calls: ClassVar[list[dict[str, np.ndarray]]] = []

    def __init__(self, constant: int | None = None, flat: bool = False) -> None:
        self.constant = constant
        self.flat = flat  # predict the prior everywhere (a model that learned nothing)
        self.prior = np.full(3, 1 / 3)

    def fit(self, data, train_rows, valid_rows, progress=None) -> dict[str, Any]:
        SpyClassifier.calls.append({"train": np.array(train_rows), "valid": np.array(valid_rows)})
        y = data.y[data.labelled(train_rows)]
        self.prior = np.bincount(y, minlength=3) / len(y)
        if progress is not None:
            progress("epoch", 1, 1, {"val_loss": 1.0})
        return {"curve": [{"epoch": 1, "val_loss": 1.0}]}

    def predict_proba(self, data, rows) -> np.ndarray:
        if self.constant is not None:
            p = np.full((len(rows), 3), 0.1)
            p[:, self.constant] = 0.8
            return p
        x = np.nan_to_num(data.x(rows)[:, 0])
        tilt = np.stack([-x, np.zeros_like(x), x], axis=1) * (0.0 if self.flat else 0.1)
        p = np.clip(self.prior + tilt, 0.01, None)
        return p / p.sum(axis=1, keepdims=True)

    def save(self, folder: Path) -> None:
        (Path(folder) / "config.json").write_text(json.dumps({"kind": "spy"}))

    @classmethod
    def load(cls, folder: Path) -> SpyClassifier:
        return cls()


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch):
    SpyClassifier.calls = []
    made: list[dict[str, Any]] = []

    def fake_make_model(kind: str, **kwargs: Any):
        made.append({"kind": kind, **kwargs})
        return SpyClassifier(**kwargs)

    monkeypatch.setattr(ml_models, "make_model", fake_make_model)
    return made


def test_fold_layout_oos_union_and_no_test_rows_in_fit(data: MLFrame, spy) -> None:
    events: list[tuple] = []
    res = run_walk_forward(data, "spy", SPEC, progress=lambda *a: events.append(a))
    folds = walk_forward(data.index, SPEC, data.horizon)
    s = res.summary
    assert len(s["folds"]) == len(folds) == 2
    for key in ("model", "symbol", "timeframe", "feature_hash", "folds", "oos", "baselines",
                "warnings"):
        assert key in s
    assert s["feature_hash"] == data.meta["feature_hash"]
    for f in s["folds"]:
        assert {"index", "train", "test", "metrics", "baselines"} <= set(f)
        assert len(f["train"]) == 2 and len(f["test"]) == 2 and f["train"][1] < f["test"][0]
        assert set(f["baselines"]) == {"majority", "persistence", "logistic"}
        assert 0.0 <= f["metrics"]["macro_f1"] <= 1.0
    assert set(s["baselines"]) == {"majority", "persistence", "logistic"}
    for key in ("accuracy", "macro_f1", "prediction_distribution", "log_loss", "ece"):
        assert key in s["oos"]
    # OOS rows == union of the folds' labelled test rows
    union = np.concatenate([data.labelled(f.test) for f in folds])
    assert s["oos"]["n"] == len(union) == len(res.oos_proba)
    assert res.oos_proba.index.equals(data.index[union])
    assert list(res.oos_proba.columns) == [*CLASSES, "fold"]
    assert res.oos_proba["fold"].tolist() == np.concatenate(
        [np.full(len(data.labelled(f.test)), f.index) for f in folds]).tolist()
    # the model never receives test rows in fit; train/valid end horizon bars before test
    fold_calls, final_call = SpyClassifier.calls[:-1], SpyClassifier.calls[-1]
    assert len(fold_calls) == 2
    for call, fold in zip(fold_calls, folds, strict=True):
        seen = np.concatenate([call["train"], call["valid"]])
        assert not np.intersect1d(seen, fold.test).size
        assert seen.max() + data.horizon < fold.test.min()
    # final refit: the most recent window, valid at its end, train purged before it
    assert final_call["valid"].max() == data.labelled(np.arange(len(data))).max()
    assert final_call["train"].max() + data.horizon < final_call["valid"].min()
    assert res.final_model is not None
    assert set(res.histories) == {f"spy fold {f.index}" for f in folds} | {"spy final"}
    stages = [e[0] for e in events]
    assert stages.count("fold") == 2 and stages.count("fold_done") == 2 and "final" in stages
    assert not any("barely move" in w for w in s["warnings"])
    assert any(e[0] == "epoch" and e[3]["fold"] == 1 for e in events)


def test_dominant_class_warning_lands_in_summary(data: MLFrame, spy) -> None:
    res = run_walk_forward(data, "spy", SPEC, model_kwargs={"constant": 1},
                           refit_final=False)
    assert res.final_model is None
    assert res.summary["oos"]["dominant_class_warning"]
    assert res.summary["warnings"][0].startswith("out-of-sample:")
    assert all(call == {"kind": "spy", "constant": 1} for call in spy)


def test_calibration_fits_a_temperature_per_fold(data: MLFrame, spy) -> None:
    plain = run_walk_forward(data, "spy", SPEC, refit_final=False)
    cal = run_walk_forward(data, "spy", SPEC, calibrate=True, refit_final=False)
    assert cal.summary["final_temperature"] is None  # no final model, no final T
    temps = [f["temperature"] for f in cal.summary["folds"]]
    assert all(t is not None and t > 0 for t in temps)
    # temperature scaling never changes the arg-max class
    assert (plain.oos_proba[list(CLASSES)].to_numpy().argmax(1)
            == cal.oos_proba[list(CLASSES)].to_numpy().argmax(1)).all()
    assert cal.summary["oos"]["macro_f1"] == plain.summary["oos"]["macro_f1"]


def test_final_window_expanding_uses_all_labelled_rows(data: MLFrame) -> None:
    spec = WalkForwardSpec(train="30d", test="10d", mode="expanding", valid=0.2)
    train, valid = final_window(data, spec)
    labelled = data.labelled(np.arange(len(data)))
    assert train[0] == labelled[0] and valid[-1] == labelled[-1]
    rolling_train, _ = final_window(data, WalkForwardSpec(train="30d", test="10d"))
    assert rolling_train[0] > train[0]


def test_history_records_shapes() -> None:
    assert history_records({"curve": [{"a": 1}], "best": 3}) == [{"a": 1}]
    assert history_records({"loss": [3.0, 2.0], "best": 1}) == [
        {"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.0, "best": 1}]
    assert history_records([{"epoch": 1}]) == [{"epoch": 1}]
    assert history_records(None) == []


def test_lightgbm_walk_forward(data: MLFrame) -> None:
    from perptrader.ml.gbdt import LightGBMModel

    res = run_walk_forward(data, "lightgbm", SPEC, model_kwargs=TINY_LGBM)
    assert isinstance(res.final_model, LightGBMModel)
    assert 0.0 <= res.summary["oos"]["macro_f1"] <= 1.0
    assert np.allclose(res.oos_proba[list(CLASSES)].sum(axis=1), 1.0)
    assert all(len(h) >= 1 and "val_loss" in h[0] for h in res.histories.values())
    json.dumps(res.summary)  # JSON-able as written into manifests and reports


@pytest.mark.integration
@pytest.mark.slow
def test_real_btc_1h_lightgbm_quick(real_btc_1h_ml: MLFrame, real_btc_1h) -> None:
    from perptrader.ml.trading import oos_backtest

    spec = WalkForwardSpec.parse("train=90d,test=30d,folds=2")
    kwargs = {"params": {"n_estimators": 25, "learning_rate": 0.15, "num_leaves": 15,
                         "early_stopping_rounds": 10, "num_threads": 2}}
    res = run_walk_forward(real_btc_1h_ml, "lightgbm", spec, model_kwargs=kwargs,
                           refit_final=False)
    s = res.summary
    assert len(s["folds"]) == 2 and s["oos"]["n"] > 1000
    assert 0.2 < s["oos"]["macro_f1"] < 0.7
    trading = oos_backtest(real_btc_1h_ml, real_btc_1h, res.oos_proba)
    assert trading["bars"] >= s["oos"]["n"]
    assert trading["model"]["fees_paid"] >= 0 and "sharpe" in trading["buy_and_hold"]


def test_a_final_refit_near_the_prior_is_warned_about(data: MLFrame, monkeypatch) -> None:
    """Fold models that lean, a final refit that predicts its prior everywhere (gradient
    boosting stopped after one round looks like this): the walk-forward's trading figures
    do not describe the registered model, and the summary says so."""
    made: list[SpyClassifier] = []

    def fake_make_model(kind: str, **kwargs: Any) -> SpyClassifier:
        made.append(SpyClassifier(flat=len(made) == 2))  # folds 0, 1 lean; the final not
        return made[-1]

    monkeypatch.setattr(ml_models, "make_model", fake_make_model)
    res = run_walk_forward(data, "spy", SPEC)
    assert len(made) == 3 and made[-1].flat
    [note] = [w for w in res.summary["warnings"] if "barely move" in w]
    assert "spread of P(BUY) - P(SELL) 0.000 on its validation slice" in note
