"""Metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from perptrader.backtest import metrics as m


def test_periods_per_year_on_the_bar_clock() -> None:
    assert m.periods_per_year("1h") == 8760
    assert m.periods_per_year("1d") == 365
    assert m.periods_per_year("1m") == 525_600


def test_five_point_equity_curve() -> None:
    eq = np.array([100.0, 120.0, 90.0, 110.0, 130.0])
    dd = m.drawdown(eq, 100.0)
    assert dd.max_drawdown == pytest.approx(90 / 120 - 1)  # -25 %
    assert dd.trough == 2
    assert dd.max_duration_bars == 2  # bars 2 and 3 are under water, bar 4 recovers
    np.testing.assert_allclose(dd.series, [0, 0, -0.25, 110 / 120 - 1, 0])
    assert m.total_return(eq, 100.0) == pytest.approx(0.30)
    np.testing.assert_allclose(m.bar_returns(eq, 100.0), [0, 0.2, -0.25, 110 / 90 - 1,
                                                          130 / 110 - 1])


def test_unrecovered_drawdown_runs_to_the_end_and_initial_cash_is_a_peak() -> None:
    dd = m.drawdown(np.array([95.0, 97.0, 101.0, 99.0, 98.0]), 100.0)
    assert dd.max_drawdown == pytest.approx(-0.05)
    assert dd.max_duration_bars == 2  # 95, 97 below the initial 100; 99, 98 below 101
    dd = m.drawdown(np.array([99.0, 98.0, 97.0]), 100.0)
    assert dd.max_duration_bars == 3


def test_sharpe_sortino_volatility_of_a_known_series() -> None:
    r = np.array([0.01, -0.01, 0.02, 0.0])
    # mean 0.005, sample std sqrt(0.0005 / 3); per-bar Sharpe sqrt(0.15)
    assert m.sharpe(r) == pytest.approx(math.sqrt(0.15))
    assert m.sharpe(r, 4) == pytest.approx(math.sqrt(0.6))
    assert m.volatility(r, 4) == pytest.approx(math.sqrt(0.0005 / 3) * 2)
    # downside deviation sqrt(mean([0, 1e-4, 0, 0])) = 0.005
    assert m.sortino(r, 1) == pytest.approx(1.0)
    assert math.isnan(m.sharpe(np.full(5, 0.01)))  # zero volatility: undefined
    assert math.isnan(m.sortino(np.full(5, 0.01), 1))  # no losing bar


def test_cagr_and_calmar() -> None:
    assert m.cagr(np.array([110.0, 121.0]), 100.0, ppy=1) == pytest.approx(0.10)
    assert m.cagr(np.array([50.0, 121.0, 144.0]), 100.0, ppy=12) == pytest.approx(
        1.44 ** 4 - 1)
    assert m.cagr(np.array([50.0, 0.0]), 100.0, ppy=1) == -1.0
    assert m.calmar(0.2, -0.1) == pytest.approx(2.0)
    assert math.isnan(m.calmar(0.2, 0.0))


def test_trade_stats() -> None:
    ts = m.trade_stats(np.array([30.0, -10.0, 20.0, -20.0]), np.array([0.03, -0.01, 0.02,
                                                                       -0.02]),
                       np.array([1, 2, 3, 4]))
    assert ts.trades == 4 and ts.win_rate == 0.5
    assert ts.profit_factor == pytest.approx(50 / 30)
    assert ts.expectancy == pytest.approx(5.0)  # 0.5 * 25 - 0.5 * 15
    assert ts.avg_win == 25 and ts.avg_loss == -15 and ts.avg_bars_held == 2.5
    assert ts.avg_trade_return == pytest.approx(0.005)
    assert m.trade_stats(np.array([5.0]), np.array([0.1]), np.array([1])).profit_factor \
        == math.inf
    none = m.trade_stats(np.array([]), np.array([]), np.array([]))
    assert none.trades == 0 and math.isnan(none.win_rate)


def test_performance_dict_costs_and_exposure() -> None:
    eq = np.array([1000.0, 1010.0, 990.0, 1020.0])
    out = m.performance(
        equity=eq, initial_cash=1000.0, timeframe="1d",
        exposure=np.array([0.0, 1.0, -0.5, np.nan]),
        trade_net_pnl=np.array([20.0]), trade_returns=np.array([0.02]),
        trade_bars_held=np.array([3]), traded_notional=2005.0, fees_paid=2.0,
        funding_paid=3.0, liquidations=0)
    assert out["net_pnl"] == pytest.approx(20.0)
    assert out["gross_pnl"] == pytest.approx(25.0)  # net + fees + funding paid
    assert out["fee_share"] == pytest.approx(2 / 25)
    assert out["funding_share"] == pytest.approx(3 / 25)
    assert out["time_in_market"] == 0.5  # NaN exposure = no position
    assert out["avg_abs_exposure"] == pytest.approx(1.5 / 4)
    assert out["turnover"] == pytest.approx(2005.0 / 1005.0)
    assert out["annual_turnover"] == pytest.approx(2005.0 / 1005.0 * 365 / 4)
    assert out["max_drawdown"] == pytest.approx(990 / 1010 - 1)
    assert out["total_return"] == pytest.approx(0.02)
    losing = m.performance(
        equity=np.array([990.0]), initial_cash=1000.0, timeframe="1d",
        exposure=np.array([1.0]), trade_net_pnl=np.array([]), trade_returns=np.array([]),
        trade_bars_held=np.array([]), traded_notional=0.0, fees_paid=20.0,
        funding_paid=0.0, liquidations=0)
    assert losing["gross_pnl"] == pytest.approx(10.0)
    assert losing["fee_share"] == pytest.approx(2.0)  # fees ate twice the gross profit
