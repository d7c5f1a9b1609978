"""Time and funding-cycle families on known timestamps, contract, real data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from feature_checks import assert_contract, assert_no_lookahead, assert_start_invariant
from feature_frames import synthetic_frame
from perptrader.features.base import FeatureContext
from perptrader.features.calendar import FAMILIES, TIME
from perptrader.features.derivatives import FUNDING


def _frame(stamps: list[str], **cols) -> pd.DataFrame:
    idx = pd.DatetimeIndex(pd.to_datetime(stamps, utc=True), name="ts").as_unit("us")
    return pd.DataFrame({"close": 1.0, **cols}, index=idx)


def test_families_exported() -> None:
    assert tuple(f.name for f in FAMILIES) == ("time",)
    assert TIME.requires == ()


def test_time_on_known_timestamps() -> None:
    # 2024-01-06 is a Saturday, 2024-01-08 a Monday
    frame = _frame(["2024-01-06 13:00", "2024-01-08 07:00", "2024-01-08 23:00"])
    out = TIME.run(frame, FeatureContext(timeframe="1h"))
    sat, mon, late = out.iloc[0], out.iloc[1], out.iloc[2]
    assert sat["time_hour_sin"] == pytest.approx(math.sin(2 * math.pi * 13 / 24))
    assert sat["time_hour_cos"] == pytest.approx(math.cos(2 * math.pi * 13 / 24))
    assert sat["time_dow_sin"] == pytest.approx(math.sin(2 * math.pi * 5 / 7))
    assert sat["time_dow_cos"] == pytest.approx(math.cos(2 * math.pi * 5 / 7))
    assert sat["time_weekend"] == 1.0
    assert mon["time_dow_sin"] == pytest.approx(0.0, abs=1e-12)
    assert mon["time_dow_cos"] == pytest.approx(1.0)
    assert mon["time_weekend"] == 0.0
    # bar 13:00-14:00 closes 6h into the 08:00-16:00 funding interval
    assert sat["time_grid_funding_phase"] == pytest.approx(0.75)
    assert sat["time_grid_hours_to_funding"] == pytest.approx(2.0)
    # bar 07:00-08:00 closes on the 08:00 settlement: a new interval starts
    assert mon["time_grid_funding_phase"] == 0.0
    assert mon["time_grid_hours_to_funding"] == 8.0
    # 23:00 sits next to 00:00 on the circle
    assert late["time_hour_cos"] == pytest.approx(math.cos(2 * math.pi * 23 / 24))


def test_time_uses_bar_open_and_timeframe_for_close() -> None:
    frame = _frame(["2024-01-08 12:00", "2024-01-08 13:30"])
    four_h = TIME.run(frame.iloc[:1], FeatureContext(timeframe="4h")).iloc[0]
    # hour of the OPEN (12:00) whatever the timeframe; the 4h bar closes at 16:00
    assert four_h["time_hour_sin"] == pytest.approx(math.sin(2 * math.pi * 12 / 24))
    assert four_h["time_grid_funding_phase"] == 0.0
    assert four_h["time_grid_hours_to_funding"] == 8.0
    quarter = TIME.run(frame.iloc[1:], FeatureContext(timeframe="15m")).iloc[0]
    assert quarter["time_hour_sin"] == pytest.approx(math.sin(2 * math.pi * 13.5 / 24))
    assert quarter["time_grid_hours_to_funding"] == pytest.approx(2.25)


def test_time_rejects_naive_index() -> None:
    frame = pd.DataFrame({"close": [1.0]}, index=pd.DatetimeIndex(["2024-01-01"]))
    with pytest.raises(ValueError, match="tz-aware"):
        TIME.run(frame, FeatureContext())


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_contract(family) -> None:
    frame = synthetic_frame(800, seed=2)
    assert_contract(family, frame)
    assert_no_lookahead(family, frame)
    assert_start_invariant(family, frame)


def test_synthetic_funding_matches_grid() -> None:
    frame = synthetic_frame(300, seed=4)
    ctx = FeatureContext()
    cycle, grid = FUNDING.run(frame, ctx), TIME.run(frame, ctx)
    np.testing.assert_allclose(cycle["funding_phase"], grid["time_grid_funding_phase"])


@pytest.mark.integration
def test_real_btc_1h(real_btc_1h: pd.DataFrame) -> None:
    ctx = FeatureContext(symbol="BTCUSDT", timeframe="1h")
    time_ = assert_contract(TIME, real_btc_1h, ctx)
    cycle = FUNDING.run(real_btc_1h, ctx)
    # BTCUSDT settles on the 00/08/16 UTC grid: the stored settlement times agree with it
    known = cycle["funding_phase"].notna()
    assert known.mean() > 0.99
    np.testing.assert_allclose(cycle.loc[known, "funding_phase"],
                               time_.loc[known, "time_grid_funding_phase"], atol=1e-12)
    assert time_["time_weekend"].mean() == pytest.approx(2 / 7, abs=0.01)
