"""The accounting core on the real BTCUSDT perpetual 1h frame (2023-01 .. 2025-06)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from perptrader.sim import Account, MarketData, SimConfig, simulate

pytestmark = pytest.mark.integration


def _alternating(n: int, every: int = 24) -> np.ndarray:
    return np.where((np.arange(n) // every) % 2 == 0, 1.0, -1.0)


def test_funding_paid_equals_independent_sum_over_settlements(real_btc_1h) -> None:
    frame = real_btc_1h
    market = MarketData.from_frame(frame)
    config = SimConfig(leverage=2)
    r = simulate(market, _alternating(len(frame)), config)
    # independently: a settlement T is paid on the bar whose (open, close] holds T, i.e.
    # where the shown funding_time changes; amount = position at that close * mark * rate
    ft = frame["funding_time"]
    changed = ft.ne(ft.shift()) & ft.notna()
    close_time = frame.index + pd.Timedelta("1h")
    inside = (ft > frame.index) & (ft <= close_time)
    events = changed & inside
    mark = frame["mark_close"].fillna(frame["close"])
    paid = (r.bars["position_qty"] * mark * frame["funding_rate"])[events].sum()
    assert r.funding_paid == pytest.approx(paid, rel=1e-12)
    # 8h funding over 2.5 years: three settlements a day, none lost
    days = (frame.index[-1] - frame.index[0]).total_seconds() / 86_400
    assert abs(int(events.sum()) - 3 * days) <= 3
    assert market.info["funding_settlements_missing"] == 0
    # the mark is absent before 2023-12-02 and that is on record
    assert market.info["mark_substituted_bars"] > 0
    assert any("mark" in w for w in r.warnings)
    assert r.funding_paid != 0.0


def test_step_path_equals_array_path_to_the_cent(real_btc_1h) -> None:
    frame = real_btc_1h.iloc[-6000:]
    market = MarketData.from_frame(frame, symbol="BTCUSDT", timeframe="1h")
    targets = _alternating(len(frame), 36) * 3.0
    targets[::7] = np.nan
    config = SimConfig(leverage=5, stop_loss=0.02, take_profit=0.05, trailing_stop=0.03,
                       margin_mode="cross")
    r = simulate(market, targets, config)
    acct = Account(config, "BTCUSDT", timeframe="1h")
    equity = np.array([acct.step(market.bar(i), targets[i]).equity
                       for i in range(len(market))])
    np.testing.assert_array_equal(np.round(equity, 2), np.round(r.bars["equity"], 2))
    assert acct.fees_paid == pytest.approx(r.fees_paid, abs=0.005)
    assert acct.funding_paid == pytest.approx(r.funding_paid, abs=0.005)
    assert len(acct.trades) == len(r.trades)
    assert set(r.fills["reason"]) >= {"signal", "stop_loss"}


def test_high_leverage_is_liquidated_on_real_data(real_btc_1h) -> None:
    market = MarketData.from_frame(real_btc_1h)
    # short 50x from 2023-01-01, when BTC rallied from ~16.5k to ~23k within the month
    r = simulate(market, np.full(len(real_btc_1h), -50.0), SimConfig(leverage=50))
    assert r.liquidations >= 1
    assert (r.bars["wallet_balance"] >= 0).all()
    first = r.fills[r.fills["reason"] == "liquidation"].iloc[0]
    # a 50x short is liquidated less than 2% above its entry (LP from bracket 2)
    entry = r.fills.iloc[0]["price"]
    assert entry < first["price"] < entry * 1.02
    assert first["ts"] < pd.Timestamp("2023-02-01", tz="UTC")
