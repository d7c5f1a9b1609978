"""Stop-loss, take-profit and trailing-stop exits WITH slippage, hand-computed.

Every other stop test runs with zero slippage, so the sign of the slippage on these exits
was untested: an exit must always fill WORSE for the trader (a long sells below the level,
a short buys above it). Fees are zero here so each number is just prices.

Common setup: 10,000 cash, leverage 2, target +-1 decided at bar 0 -> filled at bar 1's
open (100) with 10 bps slippage: long buys at 100 * 1.001 = 100.1, short sells at
100 * 0.999 = 99.9; qty = 10,000 / fill price (sized on the fill). Stop levels are
fractions of that average ENTRY price.
"""

from __future__ import annotations

import pytest

from perptrader.sim import CostModel, MarketData, SimConfig, simulate
from sim.sim_frames import make_frame, targets_at

SLIP = CostModel(slippage_bps=10.0, taker_fee=0.0, maker_fee=0.0)
LONG_IN, SHORT_IN = 100.0 * 1.001, 100.0 * 0.999


def _run(frame, target: float, **cfg):
    m = MarketData.from_frame(frame, symbol="BTCUSDT", timeframe="1h", require_funding=False)
    return simulate(m, targets_at(len(frame), {0: target}), SimConfig(leverage=2, costs=SLIP,
                                                                       **cfg))


def _check(r, reason: str, entry: float, exit_price: float, side: float) -> None:
    fills = r.fills
    assert list(fills["reason"]) == ["signal", reason]
    assert fills["price"].iloc[0] == pytest.approx(entry, rel=1e-12)
    assert fills["price"].iloc[1] == pytest.approx(exit_price, rel=1e-12)
    qty = 10_000 / entry
    assert r.final_equity == pytest.approx(10_000 + side * qty * (exit_price - entry),
                                           rel=1e-12)


def test_long_stop_loss_sells_below_the_level() -> None:
    # SL 2% of 100.1 = 98.098; bar 2 low 97 touches it; the sell fills 10 bps lower:
    # 98.098 * 0.999 = 97.999902 (NOT 98.196098, the favourable side)
    f = make_frame([100, 100, 100, 100], [100, 100, 100, 100], [100, 100, 97, 100])
    r = _run(f, 1.0, stop_loss=0.02)
    _check(r, "stop_loss", LONG_IN, LONG_IN * 0.98 * 0.999, +1.0)
    assert r.fills["price"].iloc[1] == pytest.approx(97.999902)


def test_short_stop_loss_buys_above_the_level() -> None:
    # SL 2% above 99.9 = 101.898; bar 2 high 103; the buy fills at 101.898 * 1.001
    # = 101.999898
    f = make_frame([100, 100, 100, 100], [100, 100, 103, 100], [100, 100, 100, 100])
    r = _run(f, -1.0, stop_loss=0.02)
    _check(r, "stop_loss", SHORT_IN, SHORT_IN * 1.02 * 1.001, -1.0)
    assert r.fills["price"].iloc[1] == pytest.approx(101.999898)


def test_long_take_profit_sells_below_the_level() -> None:
    # TP 5% of 100.1 = 105.105; bar 2 high 106; the sell fills at 105.105 * 0.999
    # = 104.999895
    f = make_frame([100, 100, 100, 100], [100, 100, 106, 100], [100, 100, 100, 100])
    r = _run(f, 1.0, take_profit=0.05)
    _check(r, "take_profit", LONG_IN, LONG_IN * 1.05 * 0.999, +1.0)
    assert r.fills["price"].iloc[1] == pytest.approx(104.999895)


def test_short_take_profit_buys_above_the_level() -> None:
    # TP 5% below 99.9 = 94.905; bar 2 low 94; the buy fills at 94.905 * 1.001 = 95.0
    # (94.999905)
    f = make_frame([100, 100, 100, 100], [100, 100, 100, 100], [100, 100, 94, 100])
    r = _run(f, -1.0, take_profit=0.05)
    _check(r, "take_profit", SHORT_IN, SHORT_IN * 0.95 * 1.001, -1.0)
    assert r.fills["price"].iloc[1] == pytest.approx(94.999905)


def test_long_trailing_stop_sells_below_the_trail() -> None:
    # peak starts at the entry 100.1 (trail 97.097, the low 100 does not touch it); the
    # high 110 moves the peak -> trail 110 * 0.97 = 106.7; the close 105 is below it ->
    # stopped; the sell fills at 106.7 * 0.999 = 106.5933
    f = make_frame([100, 100, 100, 105], [100, 100, 110, 105], [100, 100, 100, 105],
                   [100, 100, 105, 105])
    r = _run(f, 1.0, trailing_stop=0.03)
    _check(r, "trailing_stop", LONG_IN, 110 * 0.97 * 0.999, +1.0)
    assert r.fills["price"].iloc[1] == pytest.approx(106.5933)


def test_short_trailing_stop_buys_above_the_trail() -> None:
    # short at 99.9: the high 100.5 stays below the first trail 99.9 * 1.03 = 102.897;
    # the low 90 moves the peak -> trail 92.7; the close 95 is above -> stopped; the buy
    # fills at 92.7 * 1.001 = 92.7927
    f = make_frame([100, 100, 100, 95], [100, 100, 100.5, 95], [100, 100, 90, 95],
                   [100, 100, 95, 95])
    r = _run(f, -1.0, trailing_stop=0.03)
    _check(r, "trailing_stop", SHORT_IN, 90 * 1.03 * 1.001, -1.0)
    assert r.fills["price"].iloc[1] == pytest.approx(92.7927)


def test_gap_through_the_stop_fills_at_the_open_minus_slippage() -> None:
    # bar 2 opens at 95, below the 98.098 stop: the sell fills at the open, 10 bps worse:
    # 95 * 0.999 = 94.905
    f = make_frame([100, 100, 95, 95], [100, 100, 96, 95], [100, 100, 94, 95])
    r = _run(f, 1.0, stop_loss=0.02)
    _check(r, "stop_loss", LONG_IN, 95 * 0.999, +1.0)
    assert r.fills["bar"].iloc[1] == 2


def test_exit_slippage_scales_with_the_bps() -> None:
    # the same stop with 0, 10 and 30 bps: each exit is lower by exactly level * bps
    f = make_frame([100, 100, 100, 100], [100, 100, 100, 100], [100, 100, 97, 100])
    m = MarketData.from_frame(f, symbol="BTCUSDT", timeframe="1h", require_funding=False)
    for bps in (0.0, 10.0, 30.0):
        costs = CostModel(slippage_bps=bps, taker_fee=0.0, maker_fee=0.0)
        r = simulate(m, targets_at(4, {0: 1.0}), SimConfig(leverage=2, stop_loss=0.02,
                                                           costs=costs))
        entry = 100 * (1 + bps * 1e-4)
        assert r.fills["price"].iloc[1] == pytest.approx(entry * 0.98 * (1 - bps * 1e-4),
                                                         rel=1e-12)
