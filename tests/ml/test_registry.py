"""The model registry: versions, manifest, atomic writes, refusing other features."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ml_frames import synthetic_ml_frame
from perptrader.core.errors import PerptraderError
from perptrader.ml.base import MLFrame
from perptrader.ml.gbdt import LightGBMModel
from perptrader.ml.registry import (
    list_models,
    load_registered,
    models_root,
    predict_registered,
    predictable_rows,
    register,
    show,
    versions,
)
from perptrader.ml.splits import WalkForwardSpec

SPEC = WalkForwardSpec.parse("train=30d,test=10d")
SUMMARY = {
    "oos": {"macro_f1": 0.41, "accuracy": 0.45, "log_loss": 1.05},
    "baselines": {"majority": {"macro_f1": 0.2}},
    "folds": [{"metrics": {"macro_f1": 0.4}}, {"metrics": {"macro_f1": 0.42}}],
    "warnings": [],
}


@pytest.fixture(scope="module")
def fitted() -> tuple[MLFrame, LightGBMModel]:
    full = synthetic_ml_frame()
    data = MLFrame(full.frame, full.features[:20], full.label, full.horizon, dict(full.meta))
    model = LightGBMModel({"n_estimators": 5, "num_leaves": 7, "num_threads": 2,
                           "early_stopping_rounds": 5})
    model.fit(data, np.arange(0, 900), np.arange(930, 1100))
    return data, model


def test_register_versions_manifest_and_round_trip(fitted, tmp_path: Path) -> None:
    data, model = fitted
    report = tmp_path / "r.html"
    report.write_text("<html></html>")
    kwargs = {"params": {"n_estimators": 5}}
    first = register("btc-lgbm", model, data=data, summary=SUMMARY, spec=SPEC,
                     model_kwargs=kwargs, report_path=report)
    second = register("btc-lgbm", model, data=data, summary=SUMMARY, spec=SPEC,
                      model_kwargs=kwargs)
    assert first.name == "1" and second.name == "2"
    assert first.parent == models_root() / "btc-lgbm"  # settings.data_dir / models
    assert versions("btc-lgbm") == [1, 2]
    assert (first / "report.html").is_file() and not (second / "report.html").exists()
    m = show("btc-lgbm")
    assert m["version"] == 2 and show("btc-lgbm", 1)["report"] == "report.html"
    for key in ("name", "kind", "created", "perptrader_version", "git_commit", "symbol",
                "timeframe", "feature_set", "feature_hash", "features", "label", "horizon",
                "data", "walk_forward", "model_kwargs", "metrics"):
        assert key in m, key
    assert m["kind"] == "lightgbm" and m["features"] == data.features
    assert m["feature_hash"] == data.meta["feature_hash"] and m["symbol"] == "TEST"
    assert m["walk_forward"]["train"] == "30d" and m["model_kwargs"] == kwargs
    assert m["metrics"]["oos"]["macro_f1"] == 0.41
    assert m["metrics"]["folds_macro_f1"] == [0.4, 0.42]
    assert m["data"]["rows"] == len(data)
    rows = list_models()
    assert [(r["name"], r["version"], r["versions"]) for r in rows] == [("btc-lgbm", 2, [1, 2])]
    loaded, manifest = load_registered("btc-lgbm", 1, data=data)
    assert manifest["version"] == 1
    rows_ = np.arange(1200, 1300)
    assert np.allclose(loaded.predict_proba(data, rows_), model.predict_proba(data, rows_))


def test_refuses_other_features(fitted) -> None:
    data, model = fitted
    register("m", model, data=data, summary=SUMMARY, spec=SPEC)
    fewer = MLFrame(data.frame, data.features[:-1], data.label, data.horizon,
                    {**data.meta, "feature_hash": "0" * 16})
    with pytest.raises(PerptraderError, match=r"feature hash.*1 feature\(s\) missing"):
        load_registered("m", data=fewer)
    extra = MLFrame(data.frame, [*data.features, "close"], data.label, data.horizon,
                    dict(data.meta))
    with pytest.raises(PerptraderError, match=r"1 extra feature\(s\): \['close'\]"):
        load_registered("m", data=extra)
    shuffled = MLFrame(data.frame, data.features[::-1], data.label, data.horizon,
                       dict(data.meta))
    with pytest.raises(PerptraderError, match="different order"):
        load_registered("m", data=shuffled)


class _Exploding:
    kind = "lightgbm"

    def save(self, folder: Path) -> None:
        (Path(folder) / "half.bin").write_bytes(b"x" * 10)
        raise OSError("disk full")


def test_failed_write_leaves_no_version(fitted) -> None:
    data, model = fitted
    register("m", model, data=data, summary=SUMMARY, spec=SPEC)
    with pytest.raises(OSError, match="disk full"):
        register("m", _Exploding(), data=data, summary=SUMMARY, spec=SPEC)  # type: ignore[arg-type]
    base = models_root() / "m"
    assert sorted(p.name for p in base.iterdir()) == ["1"]
    # a temp folder left by a killed process is invisible and does not take a number
    (base / ".tmp-dead").mkdir()
    (base / ".tmp-dead" / "manifest.json").write_text(json.dumps({"version": 2}))
    assert versions("m") == [1]
    assert register("m", model, data=data, summary=SUMMARY, spec=SPEC).name == "2"


def test_unknown_names_and_versions(fitted) -> None:
    data, model = fitted
    with pytest.raises(PerptraderError, match="invalid model name"):
        register("../evil", model, data=data, summary=SUMMARY, spec=SPEC)
    with pytest.raises(PerptraderError, match="no model named"):
        show("absent")
    register("m", model, data=data, summary=SUMMARY, spec=SPEC)
    with pytest.raises(PerptraderError, match=r"no version 7; versions: \[1\]"):
        show("m", 7)
    assert list_models()[0]["macro_f1"] == 0.41


def test_temperature_is_stored_and_applied(fitted) -> None:
    data, model = fitted
    register("cal", model, data=data, summary={**SUMMARY, "final_temperature": 3.0},
             spec=SPEC)
    loaded, manifest = load_registered("cal", data=data)
    assert manifest["temperature"] == 3.0
    rows = np.arange(1200, 1260)
    raw = model.predict_proba(data, rows)
    scaled = predict_registered(loaded, manifest, data, rows)
    assert (scaled.argmax(1) == raw.argmax(1)).all()
    assert scaled.max(1).mean() < raw.max(1).mean()  # T > 1 softens
    register("plain", model, data=data, summary=SUMMARY, spec=SPEC)
    _, plain = load_registered("plain")
    assert plain["temperature"] is None
    assert np.allclose(predict_registered(loaded, plain, data, rows), raw)


def test_predictable_rows_follows_sequence_members(fitted) -> None:
    data, model = fitted

    class Seq:
        def __init__(self, first: int) -> None:
            self.first = first

        def usable_rows(self, data, rows):
            return rows[rows >= self.first]

    class Stacked:
        members = (model, Seq(31), Seq(63))

    rows = np.arange(100)
    assert (predictable_rows(model, data, rows) == rows).all()
    assert (predictable_rows(Seq(31), data, rows) == np.arange(31, 100)).all()
    assert (predictable_rows(Stacked(), data, rows) == np.arange(63, 100)).all()
