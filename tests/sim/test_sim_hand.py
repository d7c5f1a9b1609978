"""Hand-computed accounting cases: every expected number is derived in the comments."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from perptrader.core.errors import PerptraderError
from perptrader.sim import (
    BookLevels,
    CostModel,
    MarketData,
    SimConfig,
    liquidation_price,
    load_tiers,
    simulate,
    simulate_portfolio,
)
from sim.sim_frames import make_frame, targets_at

NO_SLIP = CostModel(slippage_bps=0.0)


def market(frame: pd.DataFrame, symbol: str = "BTCUSDT", timeframe: str = "1h",
           **kw) -> MarketData:
    kw.setdefault("require_funding", "funding_time" in frame.columns)
    return MarketData.from_frame(frame, symbol=symbol, timeframe=timeframe, **kw)


# ---- fees and PnL -------------------------------------------------------------------------

@pytest.mark.parametrize(("target", "expected"), [(1.0, 10_989.5), (-1.0, 8_989.5)])
def test_fees_and_pnl_long_and_short(target: float, expected: float) -> None:
    # decision at bar 0 close -> fill at bar 1 open = 100; equity 10k, 2x allowed, target
    # +-1 -> notional 10,000 -> qty 100; taker fee 5 bps: 10,000 * 0.0005 = 5.
    # decision 0 at bar 1 close -> close at bar 2 open = 110: fee 11,000 * 0.0005 = 5.5.
    # long: +100 * 10 = +1000 -> 10,000 + 1000 - 5 - 5.5 = 10,989.5
    # short: -1000 -> 8,989.5
    f = make_frame([100, 100, 110, 110])
    r = simulate(market(f), targets_at(4, {0: target, 1: 0.0}),
                 SimConfig(leverage=2, costs=NO_SLIP))
    assert r.final_equity == pytest.approx(expected, abs=1e-9)
    assert r.fees_paid == pytest.approx(10.5)
    assert list(r.fills["bar"]) == [1, 2]
    assert list(r.fills["price"]) == [100.0, 110.0]
    assert list(r.fills["side"]) == [int(np.sign(target)), -int(np.sign(target))]
    t = r.trades.iloc[0]
    assert t["gross_pnl"] == pytest.approx(1000 * np.sign(target))
    assert t["net_pnl"] == pytest.approx(expected - 10_000)
    # return on the entry notional (10,000) and on the margin (10,000 / 2x = 5,000)
    assert t["return_pct"] == pytest.approx((expected - 10_000) / 10_000)
    assert t["return_on_margin"] == pytest.approx((expected - 10_000) / 5_000)
    assert t["bars_held"] == 1 and t["exit_reason"] == "signal"


def test_fixed_slippage_and_unchanged_target_sends_nothing() -> None:
    # 10 bps: buy at 100 * 1.001 = 100.1; sized on the fill price: qty = 10,000 / 100.1 so
    # the exposure at the fill is exactly 1. The repeated decision 1.0 sends no order.
    f = make_frame([100, 100, 100, 100, 100])
    cfg = SimConfig(leverage=2, costs=CostModel(slippage_bps=10.0))
    r = simulate(market(f), targets_at(5, {0: 1.0, 1: 1.0, 2: 1.0}), cfg)
    assert len(r.fills) == 1
    assert r.fills["price"].iloc[0] == pytest.approx(100.1)
    assert r.fills["qty"].iloc[0] == pytest.approx(10_000 / 100.1)
    assert r.fills["notional"].iloc[0] == pytest.approx(10_000)


def test_fill_delay_two_bars() -> None:
    f = make_frame([100, 101, 102, 103, 104])
    r = simulate(market(f), targets_at(5, {1: 1.0}),
                 SimConfig(leverage=2, fill_delay=2, costs=NO_SLIP))
    assert list(r.fills["bar"]) == [3]
    assert r.fills["price"].iloc[0] == 103.0


def test_target_capped_at_leverage() -> None:
    f = make_frame([100, 100, 100])
    r = simulate(market(f), targets_at(3, {0: 5.0}), SimConfig(leverage=2, costs=NO_SLIP))
    # 5x asked, 2x allowed: 20,000 notional; margin 10,000 + fee 10 > wallet 10,000, so the
    # quantity is cut to what the margin affords: q * 100 * (1/2 + 0.0005) = 10,000
    assert r.fills["qty"].iloc[0] == pytest.approx(10_000 / (100 * 0.5005))
    assert r.bars["exposure"].abs().max() <= 2.0


# ---- funding ------------------------------------------------------------------------------

def test_funding_8h_symbol_hand_made_frame() -> None:
    # 24 one-hour bars from 00:00, price and mark flat at 100. Long 100 from bar 1 open.
    # Settlements: 08:00 +0.0001 (long pays 100*100*0.0001 = 1), 16:00 -0.0002 (receives 2),
    # 24:00 +0.0003 (pays 3, on the bar 23:00-24:00 that ends at the settlement).
    # Net paid = 1 - 2 + 3 = 2.
    funding = {"2024-01-01 00:00": 0.0005, "2024-01-01 08:00": 0.0001,
               "2024-01-01 16:00": -0.0002, "2024-01-02 00:00": 0.0003}
    f = make_frame([100.0] * 24, funding=funding)
    r = simulate(market(f), targets_at(24, {0: 1.0}), SimConfig(leverage=2, costs=NO_SLIP))
    assert r.funding_paid == pytest.approx(2.0)
    per_bar = r.bars["funding"]
    assert per_bar.iloc[7] == pytest.approx(-1.0)   # bar 07:00-08:00
    assert per_bar.iloc[15] == pytest.approx(2.0)   # bar 15:00-16:00
    assert per_bar.iloc[23] == pytest.approx(-3.0)  # bar 23:00-24:00
    assert (per_bar.drop(per_bar.index[[7, 15, 23]]) == 0).all()
    assert r.trades.empty  # still open
    assert r.final_equity == pytest.approx(10_000 - 5 - 2)


def test_funding_4h_interval_symbol_short_receives() -> None:
    # 4h interval, short 100 at 100 from bar 1. Rates at 04, 08, 12, 16, 20, 24h:
    # 0.0001, 0.0002, -0.0001, 0.0004, 0.0, 0.0001 -> a short receives qty*mark*rate:
    # 100 * 100 * (0.0001 + 0.0002 - 0.0001 + 0.0004 + 0 + 0.0001) = 10,000 * 0.0007 = 7
    rates = [0.0001, 0.0002, -0.0001, 0.0004, 0.0, 0.0001]
    funding = {"2024-01-01 00:00": 0.0}
    for k, rate in enumerate(rates, start=1):
        funding[str(pd.Timestamp("2024-01-01") + pd.Timedelta(hours=4 * k))] = rate
    f = make_frame([100.0] * 24, funding=funding, interval_hours=4.0)
    r = simulate(market(f), targets_at(24, {0: -1.0}), SimConfig(leverage=2, costs=NO_SLIP))
    assert r.funding_paid == pytest.approx(-7.0)
    assert r.market_info["funding_events"] == 5  # the 0.0 settlement moves nothing


def test_funding_uses_mark_close_not_trade_price() -> None:
    funding = {"2024-01-01 00:00": 0.0, "2024-01-01 08:00": 0.001}
    mark = [100.0] * 7 + [120.0] + [100.0] * 2
    f = make_frame([100.0] * 10, funding=funding,
                   marks={"mark_open": [100.0] * 10, "mark_high": [120.0] * 10,
                          "mark_low": [100.0] * 10, "mark_close": mark})
    r = simulate(market(f), targets_at(10, {0: 1.0}), SimConfig(leverage=2, costs=NO_SLIP))
    assert r.funding_paid == pytest.approx(100 * 120 * 0.001)  # qty * mark close * rate


def test_longer_bars_than_funding_interval_need_the_series() -> None:
    idx_funding = {"2024-01-01 00:00": 0.0, "2024-01-01 08:00": 0.0001,
                   "2024-01-01 16:00": 0.0002, "2024-01-02 00:00": 0.0003}
    f = make_frame([100.0] * 3, freq="1D", funding=idx_funding)
    with pytest.raises(PerptraderError, match="funding="):
        market(f, timeframe="1d")
    series = pd.DataFrame({"ts": pd.DatetimeIndex(list(idx_funding), tz="UTC"),
                           "rate": list(idx_funding.values()), "interval_hours": 8.0})
    m = market(f, timeframe="1d", funding=series)
    # day 0 (00:00, 24:00] holds 08:00, 16:00 and 24:00: 0.0001 + 0.0002 + 0.0003
    assert m.funding_due[0] == pytest.approx(0.0006)
    r = simulate(m, targets_at(3, {0: 1.0, 1: 0.0}), SimConfig(leverage=2, costs=NO_SLIP))
    assert r.funding_paid == 0.0  # the position (bar 1 only) saw no settlement


def test_missing_funding_is_an_error_unless_declared_absent() -> None:
    f = make_frame([100.0] * 3)
    with pytest.raises(PerptraderError, match="no funding"):
        MarketData.from_frame(f, symbol="BTCUSDT", timeframe="1h")
    m = MarketData.from_frame(f, symbol="BTCUSDT", timeframe="1h", require_funding=False)
    assert m.info["funding_source"].startswith("none")
    assert any("funding NOT simulated" in w for w in m.warnings)


def test_mark_substitution_is_recorded() -> None:
    f = make_frame([100.0] * 4, marks={"mark_open": [100, np.nan, 100, 100],
                                       "mark_high": [100, np.nan, 100, 100],
                                       "mark_low": [100, np.nan, 100, 100],
                                       "mark_close": [100, np.nan, 100, 100]})
    m = market(f)
    assert m.info["mark_substituted_bars"] == 1
    assert m.mark_source == "mark, trade_price where missing"
    assert MarketData.from_frame(make_frame([1.0]), symbol="X", timeframe="1h",
                                 require_funding=False).mark_source.startswith("trade_price")


# ---- liquidation --------------------------------------------------------------------------

def _liq_frame(mark_low_bar2: float, trade_low_bar2: float = 99.0) -> pd.DataFrame:
    n = 4
    return make_frame([100.0] * n, [101.0] * n, [99.0, 99.0, trade_low_bar2, 99.0],
                      [100.0] * n,
                      marks={"mark_open": [100.0] * n, "mark_high": [101.0] * n,
                             "mark_low": [99.0, 99.0, mark_low_bar2, 99.0],
                             "mark_close": [100.0] * n})


def test_liquidation_price_bracket_1_isolated_long() -> None:
    # BTCUSDT bracket 1 (notional < 50,000): MMR 0.004, cum 0. 10x, equity 10,000,
    # target 1 -> notional 10,000 at EP 100 -> qty 100, isolated margin WB = 1,000.
    # LP = (WB + cum - q*EP) / (q*MMR - q) = (1000 - 10000) / (0.4 - 100) = 90.3614457831...
    tiers = load_tiers("binance", "BTCUSDT")
    assert tiers.bracket(10_000) == 0
    lp = liquidation_price(1_000.0, 100.0, 100.0, 0.004, 0.0)
    assert lp == pytest.approx(9000 / 99.6)
    cfg = SimConfig(leverage=10, costs=NO_SLIP)
    safe = simulate(market(_liq_frame(90.37)), targets_at(4, {0: 1.0}), cfg)
    assert safe.liquidations == 0
    hit = simulate(market(_liq_frame(90.36)), targets_at(4, {0: 1.0}), cfg)
    assert hit.liquidations == 1
    liq = hit.fills[hit.fills["reason"] == "liquidation"].iloc[0]
    assert liq["bar"] == 2 and liq["price"] == pytest.approx(lp)
    # at LP the margin left is exactly the maintenance margin 100 * LP * 0.004 = 36.14;
    # the 1.25 % clearance fee (112.95) is capped at it: the whole 1,000 margin is lost.
    # wallet = 10,000 - 5 (entry fee) - 1,000 = 8,995
    assert hit.final_equity == pytest.approx(8_995.0)
    assert hit.bars["liquidated"].iloc[2]
    assert hit.trades["exit_reason"].iloc[0] == "liquidation"


@pytest.mark.parametrize(("target", "mark_extreme", "expected_lp"), [
    # bracket 2 (50,000 <= notional < 600,000): MMR 0.005, cum 50. 5x, equity 100,000,
    # notional 100,000 at 100 -> q = 1,000, WB = 20,000.
    # long:  (20,000 + 50 - 100,000) / (5 - 1,000)  = -79,950 / -995 = 80.3517587...
    # short: (20,000 + 50 + 100,000) / (5 + 1,000)  = 120,050 / 1,005 = 119.4527363...
    (1.0, "low", 79_950 / 995),
    (-1.0, "high", 120_050 / 1_005),
])
def test_liquidation_price_bracket_2_with_cum(target: float, mark_extreme: str,
                                              expected_lp: float) -> None:
    tiers = load_tiers("binance", "BTCUSDT")
    assert tiers.bracket(100_000) == 1 and tiers.cum[1] == 50.0
    n = 4
    mh = [101.0] * n
    ml = [99.0] * n
    if mark_extreme == "low":
        ml[2] = expected_lp - 0.01
    else:
        mh[2] = expected_lp + 0.01
    f = make_frame([100.0] * n, [101.0] * n, [99.0] * n, [100.0] * n,
                   marks={"mark_open": [100.0] * n, "mark_high": mh, "mark_low": ml,
                          "mark_close": [100.0] * n})
    cfg = SimConfig(initial_cash=100_000, leverage=5, costs=NO_SLIP)
    r = simulate(market(f), targets_at(n, {0: target}), cfg)
    assert r.liquidations == 1
    assert r.fills["price"].iloc[-1] == pytest.approx(expected_lp)
    # clearance fee 1.25% of ~80k-119k notional exceeds the 0.5%*notional - 50 left: all
    # 20,000 margin lost; wallet = 100,000 - 50 (entry fee) - 20,000
    assert r.final_equity == pytest.approx(79_950.0)


def test_liquidation_follows_mark_not_trade_price() -> None:
    cfg = SimConfig(leverage=10, costs=NO_SLIP)
    # trade low crashes to 50 but the mark low stays at 95 -> no liquidation
    r = simulate(market(_liq_frame(95.0, trade_low_bar2=50.0)), targets_at(4, {0: 1.0}), cfg)
    assert r.liquidations == 0
    # trade low barely moves (99) but the mark low reaches 90 -> liquidation inside the bar
    r = simulate(market(_liq_frame(90.0, trade_low_bar2=99.0)), targets_at(4, {0: 1.0}), cfg)
    assert r.liquidations == 1


def test_gap_through_liquidation_isolated_balance_never_negative() -> None:
    # bar 2 opens (trade and mark) at 60, far below LP 90.36 and the bankruptcy price 90:
    # closed at the mark open 60 -> loss 4,000 on a 1,000 margin; capped at the margin,
    # 3,000 covered by the insurance fund. Wallet = 10,000 - 5 - 1,000 = 8,995 >= 0.
    n = 4
    px = [100.0, 100.0, 60.0, 60.0]
    f = make_frame(px, px, px, px, marks={k: px for k in
                                          ("mark_open", "mark_high", "mark_low", "mark_close")})
    r = simulate(market(f), targets_at(n, {0: 1.0}), SimConfig(leverage=10, costs=NO_SLIP))
    assert r.liquidations == 1
    assert r.fills["price"].iloc[-1] == 60.0
    assert r.insurance_covered == pytest.approx(3_000.0)
    assert r.final_equity == pytest.approx(8_995.0)
    assert (r.bars["wallet_balance"] >= 0).all()


def test_cross_gap_wallet_floored_at_zero() -> None:
    # cross, 10x, all 10,000 in the wallet backing one long of 100,000 at 100 (q = 1,000).
    # gap to 80: loss 20,000 > wallet 9,950 -> wallet 0, shortfall to the insurance fund.
    px = [100.0, 100.0, 80.0, 80.0]
    f = make_frame(px, px, px, px, marks={k: px for k in
                                          ("mark_open", "mark_high", "mark_low", "mark_close")})
    cfg = SimConfig(leverage=10, margin_mode="cross", costs=NO_SLIP)
    r = simulate(market(f), targets_at(4, {0: 10.0}), cfg)
    assert r.liquidations == 1
    assert r.final_equity == pytest.approx(0.0, abs=1e-9)
    assert r.insurance_covered > 0


# ---- stops --------------------------------------------------------------------------------

def test_stop_loss_inside_bar_and_adverse_first() -> None:
    # long at 100, SL 2% -> 98, TP 5% -> 105. Bar 2: low 97, high 106: both touched; the
    # adverse extreme is assumed first -> stop-loss at 98.
    f = make_frame([100, 100, 100, 100], [100, 100, 106, 100], [100, 100, 97, 100])
    cfg = SimConfig(leverage=2, stop_loss=0.02, take_profit=0.05,
                    costs=NO_SLIP)
    r = simulate(market(f, require_funding=False), targets_at(4, {0: 1.0}), cfg)
    exit_fill = r.fills.iloc[-1]
    assert exit_fill["reason"] == "stop_loss" and exit_fill["price"] == pytest.approx(98.0)
    assert r.trades["exit_reason"].iloc[0] == "stop_loss"


def test_stop_gap_fills_at_open_and_take_profit() -> None:
    # gap: bar 2 opens at 95 below the 98 stop -> filled at 95
    f = make_frame([100, 100, 95, 95], [100, 100, 96, 95], [100, 100, 94, 95])
    cfg = SimConfig(leverage=2, stop_loss=0.02, costs=NO_SLIP)
    r = simulate(market(f, require_funding=False), targets_at(4, {0: 1.0}), cfg)
    assert r.fills["price"].iloc[-1] == 95.0 and r.fills["bar"].iloc[-1] == 2
    # TP 5%: bar 2 trades 99..106 without reaching the stop -> take profit at 105
    f = make_frame([100, 100, 100, 100], [100, 100, 106, 100], [100, 100, 99, 100])
    cfg = SimConfig(leverage=2, stop_loss=0.02, take_profit=0.05, costs=NO_SLIP)
    r = simulate(market(f, require_funding=False), targets_at(4, {0: 1.0}), cfg)
    assert r.fills["reason"].iloc[-1] == "take_profit"
    assert r.fills["price"].iloc[-1] == pytest.approx(105.0)


def test_trailing_stop_from_new_peak_then_close() -> None:
    # short at 100, trailing 3%. Bar 2: high 100.5 (adverse first; trail level from the
    # entry 103 not reached), low 90 -> peak 90 -> level 92.7; close 95 >= 92.7 -> stopped
    # at 92.7 on the way from the low to the close.
    f = make_frame([100, 100, 100, 95], [100, 100, 100.5, 95], [100, 100, 90, 95],
                   [100, 100, 95, 95])
    cfg = SimConfig(leverage=2, trailing_stop=0.03, costs=NO_SLIP)
    r = simulate(market(f, require_funding=False), targets_at(4, {0: -1.0}), cfg)
    last = r.fills.iloc[-1]
    assert last["reason"] == "trailing_stop" and last["price"] == pytest.approx(92.7)
    assert last["bar"] == 2


def test_risk_sizing() -> None:
    # risk 1% of 10,000 = 100 over a 2% stop -> notional 5,000 -> qty 50 at 100
    f = make_frame([100.0] * 3)
    cfg = SimConfig(leverage=3, sizing="risk", risk_fraction=0.01, stop_loss=0.02,
                    costs=NO_SLIP)
    r = simulate(market(f, require_funding=False), targets_at(3, {0: 1.0}), cfg)
    assert r.fills["qty"].iloc[0] == pytest.approx(50.0)
    cfg = SimConfig(leverage=3, sizing="notional", notional_size=2_500, costs=NO_SLIP)
    r = simulate(market(f, require_funding=False), targets_at(3, {0: -2.0}), cfg)
    assert r.fills["qty"].iloc[0] == pytest.approx(50.0) and r.fills["side"].iloc[0] == -1


# ---- slippage models ----------------------------------------------------------------------

def test_book_walk_vwap_and_partial_fill() -> None:
    # target 10,000 notional (2x allowed) against asks 10 @ 100.0, 30 @ 100.5, 20 @ 101:
    # only 60 available -> partial fill of 60 at VWAP (1000 + 3015 + 2020) / 60 = 100.5833;
    # the request is sized on that expected fill price: 10,000 / 100.5833 = 99.42; the
    # rest is cancelled and reported.
    f = make_frame([100.0] * 3)
    book = BookLevels(ts=f.index[[1]], ask_px=np.array([[100.0, 100.5, 101.0]]),
                      ask_qty=np.array([[10.0, 30.0, 20.0]]),
                      bid_px=np.array([[99.5, 99.0, 98.5]]),
                      bid_qty=np.array([[10.0, 10.0, 10.0]]))
    cfg = SimConfig(leverage=2, costs=CostModel(slippage_model="book"))
    r = simulate(market(f, require_funding=False), targets_at(3, {0: 1.0}), cfg, book=book)
    fill = r.fills.iloc[0]
    assert fill["qty"] == pytest.approx(60.0) and fill["partial"]
    assert fill["requested_qty"] == pytest.approx(10_000 / (6035.0 / 60.0))
    assert fill["price"] == pytest.approx(6035.0 / 60.0)
    assert any("partial" in w for w in r.warnings)


def test_volatility_slippage_scales_with_previous_range() -> None:
    # window 2; ranges (h-l)/o: bars 0,1 = 1%, bar 2 = 3%. Fill at bar 3 uses
    # r = range_2 / mean(range_1, range_2) = 0.03 / 0.02 = 1.5 -> 10 bps * 1.5 = 15 bps
    o = [100.0] * 5
    h = [100.5, 100.5, 101.5, 100.5, 100.5]
    lo = [99.5, 99.5, 98.5, 99.5, 99.5]
    f = make_frame(o, h, lo, o)
    cfg = SimConfig(leverage=2, costs=CostModel(slippage_bps=10, slippage_model="volatility",
                                                vol_window=2))
    r = simulate(market(f, require_funding=False), targets_at(5, {2: 1.0}), cfg)
    assert r.fills["price"].iloc[0] == pytest.approx(100 * 1.0015)


# ---- portfolio ----------------------------------------------------------------------------

def test_portfolio_cross_shares_one_wallet() -> None:
    # BTC long 0.5x equity, ETH short 0.5x: each notional 5,000 at 100 -> q = 50 each;
    # fees 2 * 2.5 = 5. BTC +10 -> +500, ETH +10 -> -500; equity 10,000 - 5 = 9,995.
    fb = make_frame([100, 100, 110, 110])
    fe = make_frame([100, 100, 110, 110])
    markets = {"BTCUSDT": market(fb, require_funding=False),
               "ETHUSDT": market(fe, "ETHUSDT", require_funding=False)}
    targets = {"BTCUSDT": targets_at(4, {0: 0.5}), "ETHUSDT": targets_at(4, {0: -0.5})}
    r = simulate_portfolio(markets, targets,
                           SimConfig(leverage=2, margin_mode="cross", costs=NO_SLIP))
    assert r.final_equity == pytest.approx(9_995.0)
    assert set(r.symbol_bars) == {"BTCUSDT", "ETHUSDT"}
    assert r.symbol_bars["ETHUSDT"]["unrealized_pnl"].iloc[-1] == pytest.approx(-500.0)


def test_unknown_symbol_uses_the_default_ladder_with_a_warning_or_is_refused() -> None:
    f = make_frame([1.0] * 3)
    m = MarketData.from_frame(f, symbol="FOOUSDT", timeframe="1h", require_funding=False)
    r = simulate(m, np.full(3, np.nan), SimConfig())
    assert r.final_equity == 10_000.0
    assert any("FOOUSDT: no published margin tiers" in w for w in r.warnings)
    assert "DEFAULT" in r.market_info["tiers"]["FOOUSDT"]
    with pytest.raises(PerptraderError, match="margin tiers"):
        simulate(m, np.full(3, np.nan), SimConfig(strict_tiers=True))
    with pytest.raises(PerptraderError, match="margin tiers"):
        load_tiers("binance", "FOOUSDT")
    tiers = load_tiers("binance", "FOOUSDT", allow_default=True)
    assert "not published" in tiers.source and tiers.fallback
    r = simulate(m, np.full(3, np.nan), SimConfig(tiers=tiers))
    assert r.final_equity == 10_000.0


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="fill_delay"):
        SimConfig(fill_delay=0)
    with pytest.raises(ValueError, match="stop_loss"):
        SimConfig(sizing="risk")
    with pytest.raises(PerptraderError, match="leverage"):
        load_tiers("binance", "BTCUSDT").max_notional(200)


def test_lower_timeframe_detail_resolves_the_intrabar_order() -> None:
    # Same 1h bar as the adverse-first test (low 97, high 106, SL 98, TP 105). With 15m
    # detail showing the high (106) at 02:15 before the low (97) at 02:45, the long hits
    # take-profit first; without detail the stop-loss wins.
    f = make_frame([100, 100, 100, 100], [100, 100, 106, 100], [100, 100, 97, 100])
    sub_idx = pd.date_range("2024-01-01 02:00", periods=4, freq="15min", tz="UTC")
    detail = pd.DataFrame({"high": [101.0, 106.0, 102.0, 100.0],
                           "low": [99.0, 100.0, 97.0, 99.0]}, index=sub_idx)
    cfg = SimConfig(leverage=2, stop_loss=0.02, take_profit=0.05, costs=NO_SLIP)
    m = market(f, require_funding=False, detail=detail)
    assert list(m.hl_order) == [0.0, 0.0, 1.0, 0.0]
    assert m.info["intrabar_resolved_bars"] == 1
    r = simulate(m, targets_at(4, {0: 1.0}), cfg)
    assert r.fills["reason"].iloc[-1] == "take_profit"
    assert r.fills["price"].iloc[-1] == pytest.approx(105.0)
    # detail in the other order (low first) -> stop-loss, as the default path
    detail_low_first = pd.DataFrame({"high": [101.0, 100.0, 106.0, 100.0],
                                     "low": [99.0, 97.0, 100.0, 99.0]}, index=sub_idx)
    r = simulate(market(f, require_funding=False, detail=detail_low_first),
                 targets_at(4, {0: 1.0}), cfg)
    assert r.fills["reason"].iloc[-1] == "stop_loss"
    # detail that does not hold the bar's extremes says nothing: order unknown (0)
    bad = detail.assign(high=detail["high"] - 1.0)
    assert market(f, require_funding=False, detail=bad).hl_order[2] == 0.0


def test_detail_high_first_then_trailing_from_new_peak() -> None:
    # long at 100, trailing 3%, high 110 first (peak 110 -> level 106.7), then low 104:
    # stopped at 106.7 on the way down; the default path (low first) would not stop out
    # (low 104 > 100 * 0.97, close 108 > 106.7).
    f = make_frame([100, 100, 100, 108], [100, 100, 110, 108], [100, 100, 99.5, 108],
                   [100, 100, 108, 108])
    sub_idx = pd.date_range("2024-01-01 02:00", periods=2, freq="30min", tz="UTC")
    detail = pd.DataFrame({"high": [110.0, 108.0], "low": [100.0, 99.5]}, index=sub_idx)
    cfg = SimConfig(leverage=2, trailing_stop=0.03, costs=NO_SLIP)
    r = simulate(market(f, require_funding=False, detail=detail), targets_at(4, {0: 1.0}),
                 cfg)
    assert r.fills["reason"].iloc[-1] == "trailing_stop"
    assert r.fills["price"].iloc[-1] == pytest.approx(106.7)
    r = simulate(market(f, require_funding=False), targets_at(4, {0: 1.0}), cfg)
    assert list(r.fills["reason"]) == ["signal"]


def test_portfolio_cross_liquidation_price_counts_the_other_position() -> None:
    # cross, 20x, wallet 1,000. Both sized on equity 1,000 at the open of bar 1 (price 100):
    # BTC target 10 -> notional 10,000, q = 100 (fee 5); ETH target -5 -> notional 5,000,
    # q = -50 (fee 2.5). Wallet 992.5. ETH's maintenance margin 5,000 * 0.004 - 0 = 20,
    # its uPnL 0 (mark flat at 100), so BTC is backed by WB = 992.5 - 20 + 0 = 972.5:
    # LP_btc = (972.5 + 0 - 100 * 100) / (100 * 0.004 - 100) = 9,027.5 / 99.6 = 90.6376
    n = 4
    lp = (10_000 - 972.5) / 99.6

    def btc(mark_low: float) -> MarketData:
        lows = [99.0, 99.0, mark_low, 99.0]
        f = make_frame([100.0] * n, [101.0] * n, [99.0] * n, [100.0] * n,
                       marks={"mark_open": [100.0] * n, "mark_high": [101.0] * n,
                              "mark_low": lows, "mark_close": [100.0] * n})
        return market(f, require_funding=False)

    eth = market(make_frame([100.0] * n), "ETHUSDT", require_funding=False)
    cfg = SimConfig(initial_cash=1_000, leverage=20, margin_mode="cross", costs=NO_SLIP)
    targets = {"BTCUSDT": targets_at(n, {0: 10.0}), "ETHUSDT": targets_at(n, {0: -5.0})}
    safe = simulate_portfolio({"BTCUSDT": btc(lp + 0.02), "ETHUSDT": eth}, targets, cfg)
    assert safe.liquidations == 0
    hit = simulate_portfolio({"BTCUSDT": btc(lp - 0.02), "ETHUSDT": eth}, targets, cfg)
    liq = hit.fills[hit.fills["reason"] == "liquidation"]
    assert liq["symbol"].iloc[0] == "BTCUSDT" and liq["bar"].iloc[0] == 2
    assert liq["price"].iloc[0] == pytest.approx(lp)
    # BTC's loss at LP: 100 * (90.6376 - 100) = -936.24 leaves 56.26 in the wallet; the
    # 1.25% clearance fee (113.3) is capped at it -> wallet 0, which then cannot carry the
    # ETH short either (LP_eth = (0 + 5,000) / 50.2 = 99.6 < mark 100): liquidated next.
    assert hit.liquidations == 2 and liq["symbol"].iloc[1] == "ETHUSDT"
    assert (hit.bars["equity"] >= 0).all()
    # without a clearance fee 56.26 stays: LP_eth = (56.26 + 5,000) / 50.2 = 100.72 > 100
    no_fee = SimConfig(initial_cash=1_000, leverage=20, margin_mode="cross",
                       costs=CostModel(slippage_bps=0.0, liquidation_fee=0.0))
    hit = simulate_portfolio({"BTCUSDT": btc(lp - 0.02), "ETHUSDT": eth}, targets, no_fee)
    assert hit.liquidations == 1
    assert hit.symbol_bars["ETHUSDT"]["position_qty"].iloc[-1] == pytest.approx(-50.0)
    assert hit.final_equity == pytest.approx(992.5 + 100 * (lp - 100))
