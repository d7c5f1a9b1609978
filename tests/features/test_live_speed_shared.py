"""The shortcuts the live path takes to be fast change no value: pandas' rolling kernels
called directly, columns and higher-timeframe bars shared between the families of one
computation, and one-thread prediction of small batches (no wall-clock asserted)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feature_frames import synthetic_frame
from perptrader.features import shared
from perptrader.features.arrays import block_frame, col
from perptrader.features.base import FeatureContext
from perptrader.features.candles import CANDLE
from perptrader.features.incremental import IncrementalFeatures
from perptrader.features.mtf import _higher_bars, higher_frame, mtf_family
from perptrader.features.pipeline import compute_features, plan
from perptrader.features.sets import get_set
from perptrader.features.vsa import FAMILIES as VSA_FAMILIES
from perptrader.features.windows import STATS, trailing, trailing_cov, trailing_time

CTX = FeatureContext(symbol="BTCUSDT", timeframe="1h")


def _series(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n) * 1e3 + 1e5
    if n > 12:
        x[[3, 7]] = np.nan
        x[9], x[11] = np.inf, -np.inf
    return x


@pytest.mark.parametrize("n", [0, 1, 5, 60, 2000])
@pytest.mark.parametrize("window", [1, 2, 5, 20, 100])
def test_trailing_is_pandas_rolling_bit_for_bit(n: int, window: int) -> None:
    x = _series(n, n + window)
    y = np.random.default_rng(window).normal(size=n)
    read_only = x.copy()
    read_only.flags.writeable = False
    roll = pd.Series(x).rolling(window, min_periods=window)
    for how in STATS:
        want = roll.std(ddof=1) if how == "std" else getattr(roll, how)()
        np.testing.assert_array_equal(trailing(read_only, window, how), want.to_numpy())
    np.testing.assert_array_equal(trailing(x, window, "std", ddof=0),
                                  roll.std(ddof=0).to_numpy())
    np.testing.assert_array_equal(trailing_cov(read_only, y, window),
                                  roll.cov(pd.Series(y)).to_numpy())


@pytest.mark.parametrize("n", [0, 1, 3, 50, 400])
@pytest.mark.parametrize("span_h", [24, 720])
def test_trailing_time_is_pandas_time_rolling_bit_for_bit(n: int, span_h: int) -> None:
    rng = np.random.default_rng(n + span_h)
    hours = np.cumsum(rng.choice([1, 4, 8, 8, 16], size=n)).astype(np.int64)
    times = hours * 3_600_000_000 + 1_700_000_000_000_000
    x = rng.normal(size=n) * 1e-4
    if n > 10:
        x[5] = np.nan
    index = pd.DatetimeIndex(pd.to_datetime(times, unit="us", utc=True))
    roll = pd.Series(x, index=index).rolling(f"{span_h}h")
    for how in ("mean", "sum", "std", "var"):
        np.testing.assert_array_equal(trailing_time(x, times, span_h * 3_600_000_000, how),
                                      getattr(roll, how)().to_numpy())


def test_trailing_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError):
        trailing(np.ones(3), 2, "median")
    with pytest.raises(ValueError):
        trailing(np.ones(3), 0, "mean")
    with pytest.raises(ValueError):
        trailing_time(np.ones(2), np.array([2, 1]), 5, "mean")


def test_col_is_read_only_and_shared_only_for_registered_frames() -> None:
    frame = synthetic_frame(300, seed=5)
    plain = col(frame, "close")
    assert not plain.flags.writeable
    np.testing.assert_array_equal(plain, frame["close"].to_numpy())
    tail = frame.iloc[-50:]
    lookalike = tail.copy()
    lookalike["close"] = 1.0  # same index, other values: never taken for the tail
    with shared.shared_frame(frame):
        shared.register(tail)
        got = col(tail, "close")
        assert not got.flags.writeable
        np.testing.assert_array_equal(got, frame["close"].to_numpy()[-50:])
        assert np.shares_memory(got, col(frame, "close"))
        np.testing.assert_array_equal(col(lookalike, "close"), np.ones(50))
        counts = col(tail, "trade_count")  # an Int64 column: converted, then read-only
        assert counts.dtype == np.float64 and not counts.flags.writeable
    assert shared.suffix_rows(tail) is None  # the context is closed


@pytest.mark.parametrize("drop", [None, 9, 130, 200])
def test_shared_higher_bars_equal_each_suffix_resampled_alone(drop: int | None) -> None:
    frame = synthetic_frame(240, seed=11)
    if drop is not None:  # a hole: a bucket on the grid with no bar
        frame = frame.drop(frame.index[drop])
    ohlcv = ("open", "high", "low", "close", "volume")
    with shared.shared_frame(frame):
        for rows in (len(frame), 239, 200, 101, 100, 99, 98, 97, 30, 5, 3):
            tail = shared.register(frame.iloc[-rows:])
            for tf in ("4h", "1d"):
                alone = higher_frame(tail, "1h", tf)
                got = _higher_bars(tail, "1h", tf, ohlcv)
                pd.testing.assert_frame_equal(got, alone[list(ohlcv)], check_freq=False)
                full = _higher_bars(tail, "1h", tf, None)
                pd.testing.assert_frame_equal(full, alone, check_freq=False)


def test_batch_build_with_shared_inputs_equals_each_family_alone() -> None:
    frame = synthetic_frame(1200, seed=4)
    families = [mtf_family(CANDLE, "4h", "1h"), mtf_family(VSA_FAMILIES[0], "4h", "1h"),
                mtf_family(CANDLE, "1d", "1h"), CANDLE]
    together = compute_features(frame, families, CTX)
    for family in families:  # outside any context: the ordinary reads and resamples
        alone = family.run(frame, CTX)
        pd.testing.assert_frame_equal(together[family.names], alone)


def test_live_rows_equal_batch_on_the_default_set() -> None:
    frame = synthetic_frame(3300, seed=6)
    the_plan = plan(frame, get_set("default"), CTX)
    bars = 30
    batch = compute_features(frame, the_plan.families, CTX).iloc[-bars:]
    live = IncrementalFeatures(the_plan.families, CTX, frame.iloc[:-bars])
    rows = [live.update(frame.iloc[[len(frame) - bars + i]]) for i in range(bars)]
    got = pd.DataFrame(rows, index=batch.index, columns=batch.columns)
    # each tail covers its family's memory: equal to rounding (the rolling kernels'
    # sums depend on where a window series starts only at that level)
    np.testing.assert_allclose(got.to_numpy(), batch.to_numpy(), rtol=1e-9, atol=1e-9)
    assert (np.isnan(got.to_numpy()) == np.isnan(batch.to_numpy())).all()


def test_live_path_checks_the_frame_timeframe() -> None:
    frame = synthetic_frame(400, seed=2)
    frame.attrs["timeframe"] = "4h"
    with pytest.raises(ValueError, match="timeframe"):
        IncrementalFeatures([CANDLE], CTX, frame.iloc[:-1])
    history = frame.iloc[:-1].copy()
    history.attrs = {}
    live = IncrementalFeatures([CANDLE], CTX, history)
    row = frame.iloc[[-1]]
    with pytest.raises(ValueError, match="timeframe"):
        live.update(row)


def test_block_frame_is_one_float_block() -> None:
    frame = synthetic_frame(10, seed=1)
    out = block_frame(frame, {"a": np.arange(10), "b": np.ones(10, dtype=bool)})
    assert list(out.columns) == ["a", "b"] and (out.dtypes == np.float64).all()
    assert out.index.equals(frame.index)
    np.testing.assert_array_equal(out["a"].to_numpy(), np.arange(10.0))


def test_shared_contexts_are_per_thread() -> None:
    import threading

    frame = synthetic_frame(100, seed=3)
    tail = frame.iloc[-10:]
    seen: list[int | None] = []
    with shared.shared_frame(frame):
        shared.register(tail)
        worker = threading.Thread(target=lambda: seen.append(shared.suffix_rows(tail)))
        worker.start()
        worker.join()
        assert shared.suffix_rows(tail) == 10
    assert seen == [None]
