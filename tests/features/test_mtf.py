"""Higher-timeframe copies: as-of-close join, complete buckets, contract, real data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feature_checks import assert_contract, assert_no_lookahead, assert_start_invariant
from feature_frames import synthetic_frame
from perptrader.features.base import FeatureContext
from perptrader.features.candles import CANDLE, RANGEVOL
from perptrader.features.derivatives import FUNDING
from perptrader.features.mtf import higher_frame, mtf_family, mtf_warmup

CTX = FeatureContext(timeframe="1h")
H4 = mtf_family(CANDLE, "4h", "1h")


def test_names_and_warmup() -> None:
    assert H4.name == "htf4h_candle"
    assert "htf4h_candle_ret_1" in H4.names
    assert len(H4.names) == len(CANDLE.names)
    assert all(n.startswith("htf4h_candle_") for n in H4.names)
    # 72 four-hour bars, plus the up-to-3 rows before the first whole bucket, plus the
    # 3 rows until a bucket closes: (72 + 2) * 4 - 2
    assert H4.warmup == mtf_warmup(72, 4) == 294
    streak = dict(zip(H4.names, H4.specs, strict=True))["htf4h_candle_streak"]
    assert streak.memory == (11 + 2) * 4 - 2
    day = mtf_family(RANGEVOL, "1d", "1h")
    assert day.name == "htf1d_rangevol" and day.warmup == (168 + 2) * 24 - 2


def test_join_as_of_higher_close_at_bucket_boundary() -> None:
    frame = synthetic_frame(48, seed=3, start="2024-01-01")  # starts on a 4h boundary
    out = H4.run(frame, CTX)
    close = frame["close"]
    # the 00:00-04:00 bar closes with the 1h bar 03:00-04:00, not before
    assert out.loc[:"2024-01-01 02:00"].isna().all().all()
    rng = (frame["high"].iloc[0:4].max() - frame["low"].iloc[0:4].min()) / close.iloc[3]
    assert out.loc["2024-01-01 03:00", "htf4h_candle_range"] == pytest.approx(rng)
    # it stays until the next 4h bar closes at 08:00
    assert (out.loc["2024-01-01 03:00":"2024-01-01 06:00", "htf4h_candle_range"] == rng).all()
    assert out.loc["2024-01-01 07:00", "htf4h_candle_range"] != rng
    # ret_1 of the 04:00-08:00 bar: its close over the previous 4h close
    want = close.iloc[7] / close.iloc[3] - 1
    assert out.loc["2024-01-01 07:00", "htf4h_candle_ret_1"] == pytest.approx(want)
    assert np.isnan(out.loc["2024-01-01 06:00", "htf4h_candle_ret_1"])


def test_no_lookahead_at_bucket_boundary() -> None:
    """Changing a bar changes no row that closes before it, even inside its 4h bucket."""
    frame = synthetic_frame(48, seed=3)
    base = H4.run(frame, CTX)
    for row in (3, 4, 5):  # the last bar of bucket 0, the first and second of bucket 1
        moved = frame.copy()
        moved.iloc[row, moved.columns.get_indexer(["high", "close"])] *= 1.05
        out = H4.run(moved, CTX)
        pd.testing.assert_frame_equal(out.iloc[:row], base.iloc[:row])
        changed_from = ((out != base) & out.notna()).any(axis=1)
        first = int(np.flatnonzero(changed_from.to_numpy())[0])
        assert first == (row // 4) * 4 + 3  # the row where the bucket holding it closes


def test_first_partial_bucket_is_dropped() -> None:
    full = synthetic_frame(48, seed=3)
    late = full.iloc[1:]  # starts at 01:00: the 00:00-04:00 bucket is incomplete
    bars = higher_frame(late, "1h", "4h")
    assert bars.index[0] == pd.Timestamp("2024-01-01 04:00", tz="UTC")
    out = H4.run(late, CTX)
    assert out.loc[:"2024-01-01 06:00"].isna().all().all()
    pd.testing.assert_frame_equal(out.loc["2024-01-01 07:00":, ["htf4h_candle_range"]],
                                  H4.run(full, CTX).loc["2024-01-01 07:00":,
                                                        ["htf4h_candle_range"]])


def test_hole_gives_nan_not_stale_values() -> None:
    frame = synthetic_frame(48, seed=3)
    holed = frame.drop(frame.index[9])  # a missing 09:00 bar: bucket 08:00-12:00 incomplete
    bars = higher_frame(holed, "1h", "4h")
    assert bars.loc["2024-01-01 08:00"].isna().all()
    out = H4.run(holed, CTX)
    assert out.loc["2024-01-01 11:00":"2024-01-01 14:00", "htf4h_candle_range"].isna().all()
    assert out.loc["2024-01-01 15:00", "htf4h_candle_range"] == pytest.approx(
        H4.run(frame, CTX).loc["2024-01-01 15:00", "htf4h_candle_range"])


def test_daily_bar_visible_from_2300() -> None:
    frame = synthetic_frame(72, seed=8)
    out = mtf_family(CANDLE, "1d", "1h").run(frame, CTX)
    col = "htf1d_candle_range"
    assert out.loc[:"2024-01-01 22:00", col].isna().all()
    day = frame.loc["2024-01-01"]
    want = (day["high"].max() - day["low"].min()) / day["close"].iloc[-1]
    shown = out.loc["2024-01-01 23:00":"2024-01-02 22:00", col]
    assert len(shown) == 24
    np.testing.assert_allclose(shown, want, rtol=1e-12)
    assert out.loc["2024-01-02 23:00", col] != shown.iloc[0]


def test_wrong_base_timeframe_and_inputs() -> None:
    frame = synthetic_frame(48, seed=3)
    assert H4.is_available(frame, CTX)
    assert not H4.is_available(frame, FeatureContext(timeframe="15m"))
    with pytest.raises(ValueError, match="built for 1h"):
        H4.run(frame, FeatureContext(timeframe="15m"))
    with pytest.raises(ValueError, match="cannot be resampled"):
        mtf_family(FUNDING, "4h", "1h")
    with pytest.raises(ValueError, match="whole multiple"):
        mtf_family(CANDLE, "90m", "1h")
    with pytest.raises(ValueError, match="whole multiple"):
        mtf_family(CANDLE, "1h", "1h")


@pytest.mark.parametrize(("inner", "higher", "n"), [(CANDLE, "4h", 1200),
                                                   (RANGEVOL, "4h", 1500),
                                                   (CANDLE, "1d", 2400)],
                         ids=["4h-candle", "4h-rangevol", "1d-candle"])
def test_contract(inner, higher, n) -> None:
    family = mtf_family(inner, higher, "1h")
    frame = synthetic_frame(n, seed=13)
    assert_contract(family, frame, CTX)
    assert_no_lookahead(family, frame, CTX)
    assert_start_invariant(family, frame, CTX)


@pytest.mark.integration
def test_real_btc_1h(real_btc_1h: pd.DataFrame) -> None:
    frame = real_btc_1h
    out = assert_contract(H4, frame, CTX)
    daily = mtf_family(RANGEVOL, "1d", "1h")
    day = assert_contract(daily, frame, CTX)
    # the 4h return on the row closing a bucket is the 4h close-to-close return
    closes_4h = frame["close"].iloc[3::4]  # the data starts at 00:00: rows 3, 7, ... close
    assert frame.index[0] == pd.Timestamp("2023-01-01", tz="UTC")
    want = closes_4h.pct_change()
    got = out["htf4h_candle_ret_1"].iloc[3::4]
    np.testing.assert_allclose(got.iloc[1:200], want.iloc[1:200], rtol=1e-9)
    # after its (long: 170 days) warm-up the daily copy is defined almost everywhere
    assert day.iloc[daily.warmup:].notna().mean().min() > 0.95
