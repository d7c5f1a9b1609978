"""GBDTEnsemble (OOF stacking), Stack (validation stacking), make_model / load_model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ml_frames import planted_ml_frame
from perptrader.ml import stacking
from perptrader.ml.base import MLFrame
from perptrader.ml.gbdt import GBDT_CLASSES, LightGBMModel, XGBoostModel
from perptrader.ml.models import KINDS, load_model, make_model
from perptrader.ml.stacking import GBDTEnsemble, MetaLearner, Stack, log_features

FAST = {
    "lightgbm": {"n_estimators": 25, "early_stopping_rounds": 8, "num_threads": 1},
    "xgboost": {"n_estimators": 25, "early_stopping_rounds": 8, "nthread": 1,
                "max_depth": 4},
    "catboost": {"n_estimators": 25, "early_stopping_rounds": 8, "thread_count": 1,
                 "depth": 4},
}
HORIZON = 3


def planted_frame(n: int = 1800, seed: int = 0) -> MLFrame:
    """Label = tercile of ``sig`` + half as much noise; horizon 3 so purging is visible."""
    return planted_ml_frame(n, seed, signal=2 / 3, noise_columns=4, nan_share=0.0,
                            horizon=HORIZON, unknown_tail=HORIZON)


def split(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = np.arange(n, dtype=np.int64)
    a, b = int(0.6 * n), int(0.78 * n)
    return rows[:a - HORIZON], rows[a:b - HORIZON], rows[b:]


def accuracy(data: MLFrame, proba: np.ndarray, rows: np.ndarray) -> float:
    return float((proba.argmax(axis=1) == data.y[rows]).mean())


@pytest.fixture(scope="module")
def planted() -> MLFrame:
    return planted_frame()


def test_meta_learner_maps_absent_classes_and_round_trips() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6))
    y = np.where(x[:, 0] > 0, 2, 1)  # no SELL at all
    meta = MetaLearner().fit(x, y)
    proba = meta.predict_proba(x)
    assert proba.shape == (300, 3) and np.all(proba[:, 0] == 0.0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    again = MetaLearner.from_dict(json.loads(json.dumps(meta.to_dict())))
    np.testing.assert_array_equal(again.predict_proba(x), proba)
    with pytest.raises(ValueError, match="fewer than 2 classes"):
        MetaLearner().fit(x, np.ones(300, dtype=np.int64))


def test_gbdt_ensemble_oof_is_honest_and_matches_members(planted: MLFrame,
                                                         monkeypatch, tmp_path) -> None:
    """No member predicts a block it (or its purge zone) was fit on; the meta-learner
    sees exactly the OOF probabilities; the stack is at least as good as its weakest."""
    calls: list[tuple[str, np.ndarray, np.ndarray]] = []  # (kind, fit rows, predicted)
    for cls in GBDT_CLASSES.values():
        fit, predict = cls.fit, cls.predict_proba

        def spy_fit(self, data, train_rows, valid_rows, progress=None, _fit=fit):
            self._spy_fit_rows = np.asarray(train_rows)
            return _fit(self, data, train_rows, valid_rows, progress)

        def spy_predict(self, data, rows, _predict=predict):
            out = _predict(self, data, rows)
            calls.append((self.kind, self._spy_fit_rows, np.asarray(rows), out))
            return out

        monkeypatch.setattr(cls, "fit", spy_fit)
        monkeypatch.setattr(cls, "predict_proba", spy_predict)
    meta_inputs = []
    meta_fit = MetaLearner.fit

    def spy_meta(self, features, y):
        meta_inputs.append((features, y))
        return meta_fit(self, features, y)

    monkeypatch.setattr(MetaLearner, "fit", spy_meta)

    train, valid, test = split(len(planted))
    test = planted.labelled(test)
    model = GBDTEnsemble(params=FAST, k=3, seed=1)
    history = model.fit(planted, train, valid)
    oof_calls = list(calls)
    assert len(oof_calls) == 3 * 3  # k folds x 3 members, nothing else predicted in fit
    for _, fit_rows, held, _ in oof_calls:
        assert np.intersect1d(fit_rows, held).size == 0
        before, after = fit_rows[fit_rows < held[0]], fit_rows[fit_rows > held[-1]]
        assert before.size == 0 or held[0] - before.max() > HORIZON
        assert after.size == 0 or after.min() - held[-1] > HORIZON
    # the held-out blocks tile the labelled training rows exactly once per member
    for kind in GBDT_CLASSES:
        held = np.concatenate([c[2] for c in oof_calls if c[0] == kind])
        np.testing.assert_array_equal(held, planted.labelled(train))
    # the meta-learner was fit on those OOF probabilities and nothing else
    (features, y_meta), = meta_inputs
    expected = log_features([np.vstack([c[3] for c in oof_calls if c[0] == kind])
                             for kind in model.member_kinds])
    np.testing.assert_array_equal(features, expected)
    np.testing.assert_array_equal(y_meta, planted.y[planted.labelled(train)])
    assert history["n_oof_rows"] == len(planted.labelled(train))
    assert [r["member"] for r in history["curve"][:1]] == ["lightgbm"]

    proba = model.predict_proba(planted, test)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    members = model.member_proba(planted, test)
    acc = accuracy(planted, proba, test)
    member_acc = {k: accuracy(planted, p, test) for k, p in members.items()}
    assert acc > 0.7, acc
    assert acc >= min(member_acc.values()) - 0.01, (acc, member_acc)
    imp = model.importance()
    assert imp.index[0] == "sig" and imp.sum() == pytest.approx(1.0)

    monkeypatch.undo()
    model.save(tmp_path / "gbdt")
    loaded = load_model(tmp_path / "gbdt")
    assert isinstance(loaded, GBDTEnsemble)
    np.testing.assert_array_equal(loaded.predict_proba(planted, test), proba)
    with pytest.raises(ValueError, match="holds a 'gbdt' model"):
        LightGBMModel.load(tmp_path / "gbdt")


def test_stack_of_two_gbdt_members_round_trips(planted: MLFrame, tmp_path) -> None:
    train, valid, test = split(len(planted))
    stack = make_model("ensemble", members=["lightgbm", "xgboost", "lightgbm"],
                       member_kwargs={"lightgbm": {"params": FAST["lightgbm"]},
                                      "xgboost": {"params": FAST["xgboost"]}})
    assert isinstance(stack, Stack) and stack.names() == ["lightgbm", "xgboost",
                                                          "lightgbm-2"]
    seen = []
    history = stack.fit(planted, train, valid, progress=lambda *a: seen.append(a[0]))
    assert history["n_meta_rows"] == len(planted.labelled(valid))
    assert {"lightgbm:iteration", "xgboost:iteration"} <= set(seen)
    test = planted.labelled(test)
    proba = stack.predict_proba(planted, test)
    assert accuracy(planted, proba, test) > 0.7
    stack.save(tmp_path / "stack")
    manifest = json.loads((tmp_path / "stack" / "config.json").read_text())
    assert [m["folder"] for m in manifest["members"]] == ["lightgbm", "xgboost",
                                                          "lightgbm-2"]
    loaded = load_model(tmp_path / "stack")
    assert isinstance(loaded, Stack) and loaded.names() == stack.names()
    np.testing.assert_array_equal(loaded.predict_proba(planted, test), proba)


class _Windowed(LightGBMModel):
    """A member that, like a sequence expert, cannot predict the first 1100 rows."""

    def usable_rows(self, data: MLFrame, rows: np.ndarray) -> np.ndarray:
        return rows[rows >= 1100]


def test_stack_meta_rows_are_those_every_member_can_predict(planted: MLFrame) -> None:
    train, valid, _ = split(len(planted))
    stack = Stack([_Windowed(params=FAST["lightgbm"]), XGBoostModel(params=FAST["xgboost"])])
    history = stack.fit(planted, train, valid)
    assert history["n_meta_rows"] == len(planted.labelled(valid[valid >= 1100]))


def test_make_model_dispatch_and_errors(tmp_path) -> None:
    for kind, cls in GBDT_CLASSES.items():
        model = make_model(kind, params={"n_estimators": 7}, seed=3)
        assert isinstance(model, cls) and model.params["n_estimators"] == 7
    ens = make_model("gbdt", members=("lightgbm", "catboost"), k=4)
    assert isinstance(ens, GBDTEnsemble) and ens.member_kinds == ["lightgbm", "catboost"]
    with pytest.raises(ValueError, match="known kinds: lightgbm, xgboost"):
        make_model("random-forest")
    with pytest.raises(ValueError, match="members must be among"):
        make_model("gbdt", members=("lightgbm", "svm"))
    with pytest.raises(ValueError, match="cannot contain another"):
        make_model("ensemble", members=["ensemble"])
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"kind": "svm"}))
    with pytest.raises(ValueError, match="unknown model kind 'svm'"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"kind": "lightgbm",
                                                      "classes": ["BUY", "HOLD", "SELL"]}))
    with pytest.raises(ValueError, match="class order"):
        load_model(tmp_path)
    assert set(KINDS) == {"lightgbm", "xgboost", "catboost", "gbdt", "xlstm-pattern",
                          "xlstm-indicator", "lstm", "ensemble"}


def test_make_model_neural_kinds() -> None:
    experts = pytest.importorskip("perptrader.ml.experts")
    pattern = make_model("xlstm-pattern", config={"seq_len": 16, "max_epochs": 1})
    assert isinstance(pattern, experts.XLSTMExpert) and pattern.kind == "xlstm-pattern"
    assert pattern.config.seq_len == 16
    assert make_model("xlstm-indicator").kind == "xlstm-indicator"
    assert isinstance(make_model("lstm"), experts.LSTMReference)
    stack = make_model("ensemble", config={"seq_len": 8})
    assert [m.kind for m in stack.members] == ["gbdt", "xlstm-pattern", "xlstm-indicator"]
    assert all(m.config.seq_len == 8 for m in stack.members[1:])
    assert stacking.Stack is type(stack)
