"""Metrics hand-checked on tiny arrays, temperature scaling, and the three baselines."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from ml_frames import synthetic_ml_frame
from perptrader.ml.base import MLFrame
from perptrader.ml.evaluate import (
    apply_temperature,
    baselines,
    classification_metrics,
    expected_calibration_error,
    fit_temperature,
    persistence_baseline,
)
from perptrader.ml.splits import WalkForwardSpec, walk_forward


def proba_for(pred: list[int], conf: float = 0.6) -> np.ndarray:
    """Rows whose argmax is ``pred`` with max probability ``conf``."""
    p = np.full((len(pred), 3), (1 - conf) / 2)
    p[np.arange(len(pred)), pred] = conf
    return p


def test_metrics_hand_counted() -> None:
    y = np.array([0, 0, 1, 1, 2, 2, 2, -1])
    pred = [0, 1, 1, 1, 2, 0, 2, 2]                         # the -1 row is skipped
    m = classification_metrics(y, proba_for(pred))
    assert m["n"] == 7
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 2]]
    assert m["accuracy"] == pytest.approx(5 / 7)
    assert m["per_class"]["SELL"] == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert m["per_class"]["HOLD"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["HOLD"]["f1"] == pytest.approx(0.8)
    assert m["per_class"]["BUY"]["recall"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.8) / 3)
    assert m["prediction_distribution"] == pytest.approx({"SELL": 2 / 7, "HOLD": 3 / 7,
                                                          "BUY": 2 / 7})
    # log-loss by hand: 5 hits at 0.6, 2 misses at 0.2
    assert m["log_loss"] == pytest.approx(-(5 * np.log(0.6) + 2 * np.log(0.2)) / 7)
    # one confidence bin (0.6): accuracy 5/7 vs confidence 0.6
    assert m["ece"] == pytest.approx(abs(5 / 7 - 0.6))
    assert m["dominant_class_warning"] is None


def test_missing_classes_do_not_break_metrics() -> None:
    y = np.array([1, 1, 1, 1])                              # only HOLD in the truth
    m = classification_metrics(y, proba_for([1, 1, 0, 1], conf=0.8))
    assert m["confusion"] == [[0, 0, 0], [1, 3, 0], [0, 0, 0]]
    assert m["per_class"]["BUY"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                     "support": 0}
    assert np.isfinite(m["log_loss"])


def test_ece_zero_for_a_perfectly_calibrated_toy() -> None:
    # 10 rows at confidence 0.6 with 6 right, 5 rows at 0.8 with 4 right
    y = np.array([0] * 6 + [1] * 4 + [2] * 4 + [0])
    pred = [0] * 10 + [2] * 5
    p = np.vstack([proba_for(pred[:10], 0.6), proba_for(pred[10:], 0.8)])
    assert expected_calibration_error(y, p) == pytest.approx(0.0, abs=1e-12)
    assert classification_metrics(y, p)["ece"] == pytest.approx(0.0, abs=1e-12)
    # over-confident: 0.9 confidence, half right -> ECE 0.4
    assert expected_calibration_error(np.array([0, 0, 1, 1]),
                                      proba_for([0, 0, 0, 0], 0.9)) == pytest.approx(0.4)


def test_dominant_class_warning() -> None:
    y = np.zeros(10, dtype=np.int64)
    m = classification_metrics(y, proba_for([2] * 8 + [0, 1]))
    assert m["dominant_class_warning"] is not None
    assert "BUY" in m["dominant_class_warning"] and "80.0%" in m["dominant_class_warning"]
    assert classification_metrics(y, proba_for([2] * 7 + [0, 1, 1]))[
        "dominant_class_warning"] is None                   # exactly 70% is not > 70%


def test_metrics_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="no row with a known label"):
        classification_metrics(np.array([-1, -1]), proba_for([0, 1]))
    with pytest.raises(ValueError, match="shape"):
        classification_metrics(np.array([0, 1]), np.ones((2, 2)) / 2)
    with pytest.raises(ValueError):
        classification_metrics(np.array([0, 1]), np.array([[np.nan, 0.5, 0.5], [1, 0, 0]]))


def _toy_logits(n: int = 4000, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.0, (n, 3))
    true_p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = (rng.random(n)[:, None] > np.cumsum(true_p, axis=1)).sum(axis=1)
    return logits, y


def _nll(p: np.ndarray, y: np.ndarray) -> float:
    return float(-np.log(p[np.arange(len(y)), y]).mean())


def test_temperature_fixes_over_and_under_confidence() -> None:
    logits, y = _toy_logits()
    for scale, side in ((3.0, "over"), (0.3, "under")):
        z = logits * scale
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        t = fit_temperature(p, y)
        assert (t > 1.5) if side == "over" else (t < 0.7)
        assert t == pytest.approx(scale, rel=0.15)           # recovers the distortion
        q = apply_temperature(p, t)
        assert _nll(q, y) < _nll(p, y)
        assert np.allclose(q.sum(axis=1), 1.0)
        assert np.array_equal(q.argmax(axis=1), p.argmax(axis=1))
    with pytest.raises(ValueError):
        apply_temperature(p, 0.0)


# --- baselines on a synthetic research table ---------------------------------------------

@pytest.fixture(scope="module")
def data() -> MLFrame:
    return synthetic_ml_frame()


@pytest.fixture(scope="module")
def split(data: MLFrame) -> tuple[np.ndarray, np.ndarray]:
    n = len(data)
    train = np.arange(0, int(n * 0.7) - data.horizon, dtype=np.int64)
    test = np.arange(int(n * 0.7), n, dtype=np.int64)
    return train, test


def test_baselines_shapes_and_majority(data: MLFrame, split) -> None:
    train, test = split
    out = baselines(data, train, test)
    assert set(out) == {"majority", "persistence", "logistic"}
    for name, p in out.items():
        assert p.shape == (len(test), 3), name
        assert np.allclose(p.sum(axis=1), 1.0), name
        assert (p >= 0).all(), name
    y = data.y[train]
    mode = int(pd.Series(y[y >= 0]).mode().iloc[0])
    assert (out["majority"].argmax(axis=1) == mode).all()
    assert out["majority"].max() == pytest.approx(0.98)
    for name, p in out.items():                               # all scoreable
        m = classification_metrics(data.y[test], p)
        assert 0.0 <= m["macro_f1"] <= 1.0, name
    # the logistic baseline beats chance-free guessing at least on its own training rows
    fit_m = classification_metrics(data.y[train], baselines(data, train, train)["logistic"])
    assert fit_m["macro_f1"] > 0.4


def test_persistence_hand_checked_and_past_only(data: MLFrame, split) -> None:
    _, test = split
    p = persistence_baseline(data, test)
    close = data.frame["close"].to_numpy(float)
    thr = data.frame["label_adaptive_threshold"].to_numpy(float)
    h = data.horizon
    ret = close[test] / close[test - h] - 1
    expected = np.where(ret > thr[test], 2, np.where(ret < -thr[test], 0, 1))
    assert np.array_equal(p.argmax(axis=1), expected)
    assert len(set(expected.tolist())) == 3                  # the toy shows all three
    # truncation: the prediction for row t is the same when nothing after t exists
    for t in test[::97]:
        cut = MLFrame(data.frame.iloc[: t + 1], data.features, data.label, data.horizon)
        assert np.array_equal(persistence_baseline(cut, np.array([t])), p[test == t])
    # without the threshold column the threshold is 0: never HOLD unless ret == 0
    bare = data.frame.drop(columns=["label_adaptive_threshold"])
    p0 = persistence_baseline(MLFrame(bare, data.features, data.label, data.horizon), test)
    assert np.array_equal(p0.argmax(axis=1), np.where(ret > 0, 2, np.where(ret < 0, 0, 1)))


def test_baselines_never_see_test_labels(data: MLFrame, split) -> None:
    train, test = split
    before = baselines(data, train, test)
    frame = data.frame.copy()
    col = frame.columns.get_loc(data.label)
    rng = np.random.default_rng(0)
    frame.iloc[test, col] = rng.choice([-1.0, 0.0, 1.0], len(test))   # scramble test labels
    scrambled = dataclasses.replace(data, frame=frame)
    after = baselines(scrambled, train, test)
    for name in before:
        assert np.allclose(before[name], after[name]), name


def test_logistic_handles_all_nan_columns(data: MLFrame, split) -> None:
    train, test = split
    frame = data.frame.copy()
    frame.iloc[train, frame.columns.get_loc(data.features[0])] = np.nan   # NaN in train
    frame.iloc[:, frame.columns.get_loc(data.features[1])] = np.inf       # inf everywhere
    p = baselines(dataclasses.replace(data, frame=frame), train, test)["logistic"]
    assert np.isfinite(p).all() and np.allclose(p.sum(axis=1), 1.0)


@pytest.mark.integration
def test_real_btc_baselines_walk_forward(real_btc_1h_ml: MLFrame) -> None:
    data = real_btc_1h_ml
    folds = walk_forward(data.index, WalkForwardSpec(train="540d", test="90d"), data.horizon)
    y = data.y
    probs: dict[str, list[np.ndarray]] = {"majority": [], "persistence": [], "logistic": []}
    for f in folds:
        for name, p in baselines(data, np.concatenate([f.train, f.valid]), f.test).items():
            probs[name].append(p)
    y_test = np.concatenate([y[f.test] for f in folds])
    print(f"\n{len(folds)} folds, {int((y_test >= 0).sum())} labelled OOS rows")
    for name, parts in probs.items():
        m = classification_metrics(y_test, np.vstack(parts))
        dist = ", ".join(f"{k} {v:.0%}" for k, v in m["prediction_distribution"].items())
        print(f"{name:12s} macro-F1 {m['macro_f1']:.3f} acc {m['accuracy']:.3f} "
              f"log-loss {m['log_loss']:.3f} ECE {m['ece']:.3f} ({dist})")
        assert 0.0 <= m["macro_f1"] <= 1.0
        assert m["n"] > 5000
