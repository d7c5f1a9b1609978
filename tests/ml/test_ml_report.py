"""The offline ML HTML report on a small fake walk-forward summary."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from perptrader.ml.evaluate import classification_metrics
from perptrader.ml.report import (
    confusion_figure,
    history_frame,
    learning_figure,
    write_ml_report,
)


def _proba(pred: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    p = rng.dirichlet(np.ones(3), len(pred)) * 0.4
    p[np.arange(len(pred)), pred] += 0.6
    return p


def fake_summary(collapsed: bool = False) -> dict:
    """The layout of ``WalkForwardResult.summary`` with 3 folds of random predictions."""
    rng = np.random.default_rng(1)
    folds, all_y, all_p, all_b = [], [], [], {"majority": [], "persistence": []}
    for k in range(3):
        y = rng.integers(0, 3, 200)
        pred = np.full(200, 2) if collapsed else np.where(rng.random(200) < 0.5, y,
                                                          rng.integers(0, 3, 200))
        p = _proba(pred, rng)
        base = {"majority": _proba(np.ones(200, dtype=int), rng),
                "persistence": _proba(rng.integers(0, 3, 200), rng)}
        folds.append({"index": k, "train": [f"2023-0{k + 1}-01T00:00:00+00:00",
                                            f"2024-0{k + 1}-01T00:00:00+00:00"],
                      "test": [f"2024-0{k + 1}-02T00:00:00+00:00",
                               f"2024-0{k + 2}-01T00:00:00+00:00"],
                      "metrics": classification_metrics(y, p),
                      "baselines": {n: classification_metrics(y, b) for n, b in base.items()}})
        all_y.append(y)
        all_p.append(p)
        for n, b in base.items():
            all_b[n].append(b)
    y = np.concatenate(all_y)
    return {"model": "lightgbm", "symbol": "TESTUSDT", "timeframe": "1h",
            "feature_hash": "abc123def4567890", "folds": folds,
            "oos": classification_metrics(y, np.vstack(all_p)),
            "baselines": {n: classification_metrics(y, np.vstack(b))
                          for n, b in all_b.items()}}


def neural_history(seed: int, epochs: int = 5) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"epoch": e, "train_loss": 1.1 - 0.05 * e, "val_loss": 1.1 - 0.02 * e
             + rng.normal(0, 0.01), "val_macro_f1": 0.3 + 0.02 * e, "lr": 1e-3,
             "seconds": 1.5} for e in range(1, epochs + 1)]


def test_report_sections_and_offline(tmp_path: Path) -> None:
    summary = fake_summary()
    histories = {"fold 0": neural_history(0), "fold 1": neural_history(1, epochs=3),
                 "fold 2 gbdt": {"valid_logloss": [1.09, 1.05, 1.04, 1.04]}}
    out = write_ml_report(tmp_path / "sub" / "report.html", summary, histories)
    assert out.exists()
    text = out.read_text(encoding="utf-8")
    # offline: plotly.js inlined exactly once, no CDN script
    assert len(text) > 1_000_000
    assert not re.search(r"<script[^>]+src=", text)
    assert text.count("plotly.js v") <= 2                     # only the one bundle
    for needle in ("Out-of-sample: model vs baselines", "baseline: majority",
                   "baseline: persistence", "Confusion matrices", "Per fold",
                   "Macro-F1 per fold", "Learning curves", "train_loss", "val_macro_f1",
                   "valid_logloss", "TESTUSDT", "2024-01-02 → 2024-02-01"):
        assert needle in text, needle
    # the OOS table: model row first, with its macro-F1 as computed
    f1 = f"{summary['oos']['macro_f1']:.3f}"
    assert re.search(r"<tr class='model'><td>lightgbm</td>.*?" + re.escape(f1), text)
    assert "OUT-OF-SAMPLE WARNING" not in text
    # confusion matrices: one heatmap per scored model (model + 2 baselines), counts as text
    fig = confusion_figure(summary)
    assert fig is not None and len(fig.data) == 3
    counts = np.asarray(summary["oos"]["confusion"])
    assert np.array_equal(np.asarray(fig.data[0].text, dtype=int), counts)
    assert np.allclose(np.asarray(fig.data[0].z).sum(axis=1), 1.0)   # share of true class


def test_dominant_class_warning_is_red(tmp_path: Path) -> None:
    summary = fake_summary(collapsed=True)
    assert summary["oos"]["dominant_class_warning"]
    text = write_ml_report(tmp_path / "r.html", summary).read_text(encoding="utf-8")
    assert "<p class='warn'>⚠ OUT-OF-SAMPLE WARNING: the model predicts BUY" in text
    assert ".warn{color:#c00" in text
    summary["warnings"] = [f"out-of-sample: {summary['oos']['dominant_class_warning']}",
                           "fold 1: no labelled test rows, skipped"]
    text = write_ml_report(tmp_path / "r2.html", summary).read_text(encoding="utf-8")
    assert text.count("the model predicts BUY for") == 1 + 3     # header once + 3 folds
    assert "<p class='warn'>⚠ fold 1: no labelled test rows, skipped</p>" in text
    assert "no training histories given" in text


def test_report_survives_missing_keys(tmp_path: Path) -> None:
    summary = fake_summary()
    for f in summary["folds"]:
        del f["baselines"]
        f.pop("train")
        f["metrics"].pop("ece")
    summary.pop("baselines")
    summary["oos"].pop("confusion")
    text = write_ml_report(tmp_path / "m.html", summary, {"fold 0": [], "x": "junk"}).read_text(
        encoding="utf-8")
    assert "Per fold" in text and "–" in text
    bare = write_ml_report(tmp_path / "bare.html", {"model": "xlstm-pattern"}).read_text(
        encoding="utf-8")
    assert "no out-of-sample metrics" in bare and "no per-fold results" in bare


def test_history_frame_shapes() -> None:
    records = history_frame(neural_history(0))
    assert list(records.columns) == ["epoch", "train_loss", "val_loss", "val_macro_f1", "lr",
                                     "seconds"]
    assert len(records) == 5
    gbdt = history_frame({"valid_logloss": [1.0, 0.9], "best_iteration": 2,
                          "members": {"xgb": {"valid_mlogloss": [1.1, 1.0, 0.95]},
                                      "nn": [{"epoch": 1, "val_loss": 1.0}]}})
    assert set(gbdt.columns) == {"valid_logloss", "members/xgb/valid_mlogloss",
                                 "members/nn/epoch", "members/nn/val_loss"}
    assert len(gbdt) == 3 and np.isnan(gbdt["valid_logloss"].iloc[2])
    assert history_frame("not a history").empty and history_frame([1, 2]).empty
    fig = learning_figure({"a": neural_history(0), "b": {"valid_logloss": [1.0, 0.9]}})
    assert fig is not None
    titles = {a.text for a in fig.layout.annotations}
    assert {"train_loss", "val_loss", "val_macro_f1", "valid_logloss"} <= titles
    assert "epoch" not in titles                              # the x axis is no curve
    assert learning_figure({"a": []}) is None
    # walkforward.history_records shape: "step" rows, a final scalar only on the last row
    recs = [{"step": 1, "valid_logloss": 1.0}, {"step": 2, "valid_logloss": 0.9,
                                                  "best_iteration": 2, "kind": "lightgbm"}]
    fig = learning_figure({"lgbm fold 0": recs})
    assert [a.text for a in fig.layout.annotations] == ["valid_logloss"]
    assert fig.layout.xaxis.title.text == "step"
