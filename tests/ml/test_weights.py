"""Label-uniqueness sample weights and their use by the GBDT models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_frames import planted_ml_frame
from perptrader.ml.base import MLFrame
from perptrader.ml.gbdt import LightGBMModel
from perptrader.ml.weights import (
    average_uniqueness,
    concurrency,
    fold_sample_weight,
    label_end_positions,
    uniqueness_weights,
)


def _brute_uniqueness(end: np.ndarray) -> np.ndarray:
    """López de Prado's definition, loop by loop."""
    n = len(end)
    conc = np.zeros(n)
    for i in range(n):
        if end[i] >= 0:
            conc[i + 1:end[i] + 1] += 1
    out = np.full(n, np.nan)
    for i in range(n):
        if end[i] >= 0:
            out[i] = np.mean(1.0 / conc[i + 1:end[i] + 1])
    return out


def test_label_end_positions() -> None:
    bars = np.array([2.0, np.nan, 1.0, 3.0, 1.0])
    np.testing.assert_array_equal(label_end_positions(5, bars), [2, -1, 3, -1, -1])
    assert label_end_positions(5, bars).dtype == np.int64
    with pytest.raises(ValueError, match=">= 1"):
        label_end_positions(2, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="length"):
        label_end_positions(3, np.array([1.0]))


def test_uniqueness_by_hand() -> None:
    # row 0 spans bars 1-2, row 1 bars 2-3, row 2 unknown; bar 2 is shared
    end = np.array([2, 3, -1, -1])
    np.testing.assert_array_equal(concurrency(end), [0, 1, 2, 1])
    u = average_uniqueness(end)
    np.testing.assert_allclose(u[:2], [0.75, 0.75])
    assert np.isnan(u[2:]).all()
    # one-bar labels never overlap: every label is fully unique
    np.testing.assert_array_equal(average_uniqueness(np.array([1, 2, 3, -1])),
                                  [1.0, 1.0, 1.0, np.nan])


def test_uniqueness_matches_definition() -> None:
    rng = np.random.default_rng(0)
    n = 400
    bars = rng.integers(1, 30, n).astype(np.float64)
    bars[rng.random(n) < 0.1] = np.nan
    end = label_end_positions(n, bars)
    got = average_uniqueness(end)
    np.testing.assert_allclose(got, _brute_uniqueness(end), rtol=1e-12)
    known = ~np.isnan(got)
    assert (got[known] > 0).all() and (got[known] <= 1).all()


def test_bad_end_positions_refused() -> None:
    with pytest.raises(ValueError):
        average_uniqueness(np.array([0, -1]))  # ends at its own bar
    with pytest.raises(ValueError):
        average_uniqueness(np.array([5, -1]))  # past the data
    with pytest.raises(ValueError):
        average_uniqueness(np.array([1.0, -1.0]))  # not integer positions


def _tb_frame(n: int = 300, seed: int = 1) -> MLFrame:
    """A table with a triple-barrier label: random exits after 1..12 bars."""
    rng = np.random.default_rng(seed)
    bars = rng.integers(1, 13, n).astype(np.float64)
    label = rng.choice([-1.0, 0.0, 1.0], n)
    bars[-12:] = np.nan
    label[-12:] = np.nan
    frame = pd.DataFrame({"f": rng.normal(size=n), "label_tb": label, "label_tb_bars": bars,
                          "label_adaptive": label},
                         index=pd.date_range("2024", periods=n, freq="h", tz="UTC"))
    return MLFrame(frame, ["f"], label="label_tb", horizon=12)


def test_uniqueness_weights_use_barrier_exits_or_horizon() -> None:
    data = _tb_frame()
    rows = np.arange(len(data))
    end = label_end_positions(len(data), data.frame["label_tb_bars"].to_numpy())
    want = average_uniqueness(end)
    got = uniqueness_weights(data, rows, normalize=False)
    np.testing.assert_allclose(got, want)
    norm = uniqueness_weights(data, rows)
    assert np.nanmean(norm) == pytest.approx(1.0)
    ratio = (norm / got)[~np.isnan(got)]
    np.testing.assert_allclose(ratio, ratio[0])  # only rescaled
    # another label: the fixed horizon (every span 12 bars)
    fixed = MLFrame(data.frame, ["f"], label="label_adaptive", horizon=12)
    bars = np.where(np.isnan(data.frame["label_adaptive"]), np.nan, 12.0)
    np.testing.assert_allclose(uniqueness_weights(fixed, rows, normalize=False),
                               average_uniqueness(label_end_positions(len(data), bars)))


def test_test_rows_do_not_leak_into_training_weights() -> None:
    data = _tb_frame()
    train = np.arange(0, 150)  # purged: a gap of 12 bars before the test rows
    before = uniqueness_weights(data, train)
    frame = data.frame.copy()
    rng = np.random.default_rng(9)
    frame.loc[frame.index[162:], "label_tb_bars"] = rng.integers(1, 3, len(frame) - 162)
    frame.loc[frame.index[162:], "label_tb"] = 1.0
    after = uniqueness_weights(MLFrame(frame, ["f"], label="label_tb", horizon=12), train)
    np.testing.assert_array_equal(before, after)
    # ...while counting them in would have changed the last training rows' weights
    full = uniqueness_weights(data, np.arange(len(data)), normalize=False)[:150]
    assert not np.allclose(full, uniqueness_weights(data, train, normalize=False))


def test_fold_sample_weight() -> None:
    data = _tb_frame()
    train, valid = np.arange(0, 100), np.arange(112, 150)
    w = fold_sample_weight(data, train, valid)
    np.testing.assert_allclose(w[train], uniqueness_weights(data, train))
    np.testing.assert_allclose(w[valid], uniqueness_weights(data, valid))
    assert np.isnan(w[100:112]).all() and np.isnan(w[150:]).all()


def test_mlframe_sample_weight_validation() -> None:
    data = _tb_frame(50)
    with pytest.raises(ValueError, match="one value per row"):
        MLFrame(data.frame, ["f"], label="label_tb", sample_weight=np.ones(3))
    with pytest.raises(ValueError, match=">= 0"):
        MLFrame(data.frame, ["f"], label="label_tb", sample_weight=-np.ones(50))
    w = np.full(50, np.nan)
    w[3] = 0.5
    framed = MLFrame(data.frame, ["f"], label="label_tb", sample_weight=w)
    np.testing.assert_array_equal(framed.weights(np.array([2, 3])), [1.0, 0.5])
    np.testing.assert_array_equal(data.weights(np.array([2, 3])), [1.0, 1.0])


FAST = {"n_estimators": 30, "early_stopping_rounds": 10, "num_threads": 1}


def _fit_proba(data: MLFrame) -> np.ndarray:
    n = len(data)
    train, valid, test = np.arange(0, 1100), np.arange(1200, 1450), np.arange(1500, n)
    model = LightGBMModel(params=FAST, seed=0)
    model.fit(data, train, valid)
    return model.predict_proba(data, test)


def test_gbdt_unit_weights_bit_identical_and_weights_used() -> None:
    base = planted_ml_frame(2000, 0, signal=0.6)
    ones = MLFrame(base.frame, base.features, label=base.label, horizon=base.horizon,
                   sample_weight=np.ones(len(base)))
    plain = _fit_proba(base)
    np.testing.assert_array_equal(_fit_proba(ones), plain)
    rng = np.random.default_rng(4)
    weighted = MLFrame(base.frame, base.features, label=base.label, horizon=base.horizon,
                       sample_weight=rng.uniform(0.1, 2.0, len(base)))
    assert not np.allclose(_fit_proba(weighted), plain)


@pytest.mark.integration
def test_real_btc_uniqueness(real_btc_1h: pd.DataFrame) -> None:
    from perptrader.features.labels import LabelConfig, triple_barrier_labels

    labels = triple_barrier_labels(real_btc_1h, LabelConfig(cost=0.0012))
    frame = labels.assign(f=0.0)
    data = MLFrame(frame, ["f"], label="label_tb", horizon=24)
    rows = np.arange(len(data))
    u = uniqueness_weights(data, rows, normalize=False)
    conc = concurrency(label_end_positions(len(data), labels["label_tb_bars"].to_numpy()))
    known = ~np.isnan(u)
    print(f"\nBTCUSDT 1h triple barrier (24-bar limit): mean uniqueness {u[known].mean():.4f}, "
          f"median {np.median(u[known]):.4f}, mean bars {labels['label_tb_bars'].mean():.2f}, "
          f"mean concurrency {conc[conc > 0].mean():.2f}, max {conc.max()}")
    assert known.sum() == labels["label_tb"].notna().sum()
    # every label spans 1..24 bars: more unique than 1/24, far from independent
    assert 1 / 24 < u[known].mean() < 0.5
    assert conc.max() <= 24


def test_class_balance_on_weighted_rows() -> None:
    from perptrader.ml.gbdt import class_weight_table

    y = np.array([0, 1, 1, 1, 2, 2])
    w = np.array([1.0, 0.2, 0.2, 0.2, 1.0, 0.5])
    table = class_weight_table(y, w)
    sums = np.bincount(y, weights=table[y] * w)
    np.testing.assert_allclose(sums, sums[0])  # every class weighs the same
    assert sums.sum() == pytest.approx(w.sum())
    np.testing.assert_array_equal(class_weight_table(y, np.ones(6)), class_weight_table(y))
