"""run_backtest on a synthetic store: strategy beside buy-and-hold, costs, funding."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

from perptrader.backtest.engine import run_backtest, run_portfolio
from perptrader.core.errors import PerptraderError
from perptrader.sim import CostModel
from perptrader.strategies import get_strategy


def test_strategy_and_benchmark_on_the_same_bars(store, fill) -> None:
    fill(store)
    res = run_backtest("BTCUSDT", "1h", get_strategy("sma_cross", {"fast": 5, "slow": 20}),
                       store=store, initial_cash=1_000.0)
    assert len(res.frame) == 720 and len(res.sim.bars) == 720
    m, b = res.metrics, res.benchmark_metrics
    eq = res.sim.bars["equity"].to_numpy()
    assert m["total_return"] == pytest.approx(eq[-1] / 1_000.0 - 1)
    assert m["fees_paid"] == pytest.approx(res.sim.fees_paid) and m["fees_paid"] > 0
    assert m["trades"] == len(res.sim.trades) > 3
    # in from the second bar, out at the open of the last one: one closed trade
    assert b["trades"] == 1 and b["time_in_market"] > 0.99
    for sim in (res.sim, res.benchmark):
        assert sim.bars["position_qty"].iloc[-1] == 0  # flat: equity is cash at the end
        assert not any("still open" in w for w in sim.warnings)
    # buy-and-hold holds a long through 8h settlements at +0.01 %: it pays funding
    assert b["funding_paid"] > 0
    assert b["funding_paid"] == pytest.approx(-res.benchmark.bars["funding"].sum())
    assert res.funding_source.startswith("frame columns")
    assert res.data_range["bars"] == 720
    assert res.data_range["first_bar"].startswith("2024-01-01T00:00:00")


def test_positions_may_be_left_open_at_the_end(store, fill) -> None:
    fill(store)
    res = run_backtest("BTCUSDT", "1h", get_strategy("buy_and_hold"), store=store)
    from perptrader.backtest.engine import run_on_frame

    kept = run_on_frame(res.frame, get_strategy("buy_and_hold"), symbol="BTCUSDT",
                        timeframe="1h", close_at_end=False)
    assert kept.sim.bars["position_qty"].iloc[-1] > 0 and kept.metrics["trades"] == 0
    # closing costs the exit fee and slippage, nothing else
    assert res.metrics["fees_paid"] > kept.metrics["fees_paid"]


def test_costs_and_leverage_reach_the_simulator(store, fill) -> None:
    fill(store)
    strat = get_strategy("sma_cross", {"fast": 5, "slow": 20})
    free = run_backtest("BTCUSDT", "1h", strat, store=store,
                        costs=CostModel(maker_fee=0, taker_fee=0, slippage_bps=0))
    dear = run_backtest("BTCUSDT", "1h", strat, store=store,
                        costs=CostModel(taker_fee=0.001, slippage_bps=5))
    assert free.metrics["fees_paid"] == 0
    assert dear.metrics["final_equity"] < free.metrics["final_equity"]
    lev = run_backtest("BTCUSDT", "1h", strat, store=store, leverage=3.0)
    # filled at the open of bar 1: 3x notional / equity at that bar's close (1 bar of drift)
    assert lev.benchmark.bars["exposure"].iloc[1] == pytest.approx(3.0, rel=0.05)
    assert lev.benchmark_metrics["avg_abs_exposure"] > 2.0
    assert lev.config.leverage == 3.0 and np.nanmax(np.abs(lev.targets)) == 3.0
    with pytest.raises(PerptraderError, match="leverage"):
        run_backtest("BTCUSDT", "1h", strat, store=store, leverage=0.5)


def test_window_and_json(store, fill) -> None:
    fill(store)
    res = run_backtest("BTCUSDT", "1h", get_strategy("random", {"seed": 3}),
                       start="2024-01-05", end="2024-01-15", store=store, n_trials=20)
    assert res.data_range["bars"] == 240
    js = res.as_json()
    text = orjson.dumps(js)  # no nan/inf may reach JSON
    assert b"NaN" not in text and b"Infinity" not in text
    for key in ("total_return", "annual_return", "sharpe", "sortino", "max_drawdown",
                "win_rate", "trades", "fees_paid", "funding_paid", "liquidations"):
        assert key in js and key in js["benchmark"]
    assert js["params"] == {"seed": 3, "p_entry": 0.02, "p_exit": 0.05, "long_only": False}
    assert js["deflated_sharpe"]["n_trials"] == 20
    assert js["config"]["taker_fee"] == 0.0005


def test_daily_bars_use_the_stored_settlements(store, fill) -> None:
    fill(store)  # 1h bars only: the loader resamples to 1d, three settlements per bar
    res = run_backtest("BTCUSDT", "1d", get_strategy("buy_and_hold"), store=store)
    assert res.funding_source.startswith("stored settlement events")
    # 0.01 % per 8h on ~1x notional (10,000) for the 29 held days: about 87 settlements
    paid = res.benchmark_metrics["funding_paid"]
    assert math.isclose(paid / (1e-4 * 10_000), 87, rel_tol=0.3)
    four = run_backtest("BTCUSDT", "4h", get_strategy("buy_and_hold"), store=store)
    assert four.funding_source.startswith("frame columns")  # <= one settlement per bar


def test_missing_funding_is_an_explicit_warning(store, fill) -> None:
    fill(store, funding=False)
    res = run_backtest("BTCUSDT", "1h", get_strategy("buy_and_hold"), store=store)
    assert res.metrics["funding_paid"] == 0
    assert any("funding is NOT charged" in w for w in res.warnings)
    assert res.as_json()["data"]["funding"].startswith("none")


def test_no_data_is_a_clear_error(store, fill) -> None:
    with pytest.raises(PerptraderError, match="Import data first"):
        run_backtest("BTCUSDT", "1h", get_strategy("buy_and_hold"), store=store)


def test_several_symbols_share_one_cross_margin_account(store, fill) -> None:
    fill(store)
    fill(store, n=700, seed=9, symbol="ETHUSDT")  # 20 bars fewer: dropped from the union
    strat = get_strategy("sma_cross", {"fast": 5, "slow": 20})
    res = run_portfolio(["BTCUSDT", "ETHUSDT"], "1h", strat, store=store, leverage=2.0)
    assert res.symbol == "BTCUSDT+ETHUSDT" and len(res.sim.bars) == 700
    assert res.config.margin_mode == "cross"
    assert any("dropped" in w for w in res.warnings)
    # each symbol carries leverage / 2 of unit exposure: the book's gross exposure <= 2
    assert np.nanmax(np.abs(res.targets)) == 1.0
    bench = res.benchmark.bars["exposure"].iloc[1]
    assert bench == pytest.approx(2.0, rel=0.05)
    assert set(res.sim.trades["symbol"]) == {"BTCUSDT", "ETHUSDT"}
    with pytest.raises(PerptraderError, match="two symbols"):
        run_portfolio(["BTCUSDT"], "1h", strat, store=store)
