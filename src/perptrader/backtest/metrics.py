"""Performance statistics of one backtest, in pure numpy, each with its formula.

Conventions (the same for every strategy and for the buy-and-hold benchmark, so that
numbers side by side are comparable):

* ``equity`` is the mark-to-market account value at each bar CLOSE; the curve starts
  from ``initial_cash`` (an implicit point before the first bar), so the first bar's
  return and a loss on the very first bar both count.
* Per-bar simple returns ``r_t = E_t / E_{t-1} - 1`` (``E_0 = initial_cash``).
* The clock is the bar clock: ``periods_per_year = 365 d / timeframe`` (crypto trades
  every day), e.g. 8,760 for 1h bars. Risk-free rate 0 (cash in a perp account earns
  nothing by itself).
* A statistic that is undefined for the input (no trades, zero volatility, no gross
  profit) is ``nan`` here and ``null`` in JSON, never a made-up 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from perptrader.core.timeframes import timeframe_ms

YEAR_MS = 365 * 86_400_000


def periods_per_year(timeframe: str) -> float:
    """Bars per 365-day year: 8,760 for ``1h``, 525,600 for ``1m``."""
    return YEAR_MS / timeframe_ms(timeframe)


def bar_returns(equity: np.ndarray, initial_cash: float) -> np.ndarray:
    """``r_t = E_t / E_{t-1} - 1`` with ``E_0 = initial_cash``; a bar after the equity hit
    zero has return 0 (nothing left to gain or lose), not a division by zero."""
    eq = np.asarray(equity, dtype=np.float64)
    prev = np.concatenate(([float(initial_cash)], eq[:-1]))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(prev > 0, eq / prev - 1.0, 0.0)
    return r


def total_return(equity: np.ndarray, initial_cash: float) -> float:
    """``E_T / E_0 - 1``."""
    if len(equity) == 0:
        return math.nan
    return float(equity[-1]) / float(initial_cash) - 1.0


def cagr(equity: np.ndarray, initial_cash: float, ppy: float) -> float:
    """Compound annual growth on the bar clock: ``(E_T/E_0) ** (ppy / n) - 1``;
    -1 when the account was wiped out."""
    n = len(equity)
    if n == 0:
        return math.nan
    growth = float(equity[-1]) / float(initial_cash)
    if growth <= 0:
        return -1.0
    return growth ** (ppy / n) - 1.0


def volatility(returns: np.ndarray, ppy: float) -> float:
    """Annualised standard deviation: ``std(r, ddof=1) * sqrt(ppy)``."""
    if len(returns) < 2:
        return math.nan
    return float(np.std(returns, ddof=1) * math.sqrt(ppy))


def sharpe(returns: np.ndarray, ppy: float = 1.0) -> float:
    """``mean(r) / std(r, ddof=1) * sqrt(ppy)``; ``ppy=1`` gives the per-bar ratio that
    the deflated Sharpe ratio works with. nan when the volatility is 0."""
    if len(returns) < 2:
        return math.nan
    sd = float(np.std(returns, ddof=1))
    if sd == 0.0 or not math.isfinite(sd):
        return math.nan
    return float(np.mean(returns)) / sd * math.sqrt(ppy)


def sortino(returns: np.ndarray, ppy: float) -> float:
    """``mean(r) / DD * sqrt(ppy)`` with the downside deviation about 0,
    ``DD = sqrt(mean(min(r, 0)^2))`` over ALL bars (Sortino & Price 1994); nan when no
    bar lost."""
    if len(returns) < 2:
        return math.nan
    dd = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
    if dd == 0.0:
        return math.nan
    return float(np.mean(returns)) / dd * math.sqrt(ppy)


@dataclass(frozen=True)
class Drawdown:
    """The deepest fall from a running peak and the longest time spent below one."""

    #: ``min_t (E_t / max_{s<=t} E_s - 1)``, <= 0
    max_drawdown: float
    #: index (into ``equity``) of the bar where the deepest drawdown bottomed
    trough: int
    #: longest run of consecutive bars whose equity is below its running peak
    max_duration_bars: int
    #: the drawdown at every bar (<= 0), for plots
    series: np.ndarray


def drawdown(equity: np.ndarray, initial_cash: float) -> Drawdown:
    """Drawdowns against the running peak, the initial cash being the first peak.

    Duration: a bar is *under water* when ``E_t < max_{s<=t} E_s``; the duration of a
    drawdown is the number of consecutive under-water bars (the recovery bar, which is
    back at the peak, is not counted; an unrecovered drawdown runs to the last bar).
    """
    eq = np.concatenate(([float(initial_cash)], np.asarray(equity, dtype=np.float64)))
    peak = np.maximum.accumulate(eq)
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = np.where(peak > 0, eq / peak - 1.0, 0.0)
    under = eq < peak
    idx = np.arange(len(eq))
    last_dry = np.maximum.accumulate(np.where(under, -1, idx))  # last bar at a peak
    run = np.where(under, idx - last_dry, 0)
    dd = dd[1:]
    if len(dd) == 0:
        return Drawdown(math.nan, -1, 0, dd)
    return Drawdown(float(dd.min()), int(dd.argmin()), int(run.max()), dd)


def calmar(annual_return: float, max_dd: float) -> float:
    """``CAGR / |max drawdown|``; nan without a drawdown."""
    if not max_dd or not math.isfinite(max_dd):
        return math.nan
    return annual_return / abs(max_dd)


@dataclass(frozen=True)
class TradeStats:
    trades: int
    win_rate: float
    profit_factor: float
    #: mean net PnL per trade in account currency: ``P(win)*avg_win - P(loss)*avg_loss``
    expectancy: float
    #: mean net return per trade (``return_pct`` of the sim's trade list, a fraction)
    avg_trade_return: float
    avg_win: float
    avg_loss: float
    avg_bars_held: float


def trade_stats(net_pnl: np.ndarray, returns: np.ndarray, bars_held: np.ndarray) -> TradeStats:
    """Closed-trade statistics. ``win_rate = #(net > 0) / #trades``;
    ``profit_factor = sum(net > 0) / |sum(net < 0)|`` (inf with wins and no losses)."""
    pnl = np.asarray(net_pnl, dtype=np.float64)
    n = len(pnl)
    if n == 0:
        nan = math.nan
        return TradeStats(0, nan, nan, nan, nan, nan, nan, nan)
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    gross_loss = float(-losses.sum())
    no_loss = math.inf if len(wins) else math.nan
    pf = float(wins.sum()) / gross_loss if gross_loss > 0 else no_loss
    return TradeStats(
        trades=n,
        win_rate=len(wins) / n,
        profit_factor=pf,
        expectancy=float(pnl.mean()),
        avg_trade_return=float(np.mean(returns)) if len(returns) else math.nan,
        avg_win=float(wins.mean()) if len(wins) else math.nan,
        avg_loss=float(losses.mean()) if len(losses) else math.nan,
        avg_bars_held=float(np.mean(bars_held)) if len(bars_held) else math.nan,
    )


def cost_share(cost: float, gross_pnl: float) -> float:
    """Share of the gross (pre-cost) PnL eaten by a cost: ``cost / gross`` when the
    gross PnL is positive; nan otherwise (a loss before costs has nothing to eat)."""
    if not gross_pnl > 0:
        return math.nan
    return cost / gross_pnl


def performance(
    *,
    equity: np.ndarray,
    initial_cash: float,
    timeframe: str,
    exposure: np.ndarray,
    trade_net_pnl: np.ndarray,
    trade_returns: np.ndarray,
    trade_bars_held: np.ndarray,
    traded_notional: float,
    fees_paid: float,
    funding_paid: float,
    liquidations: int,
) -> dict[str, float | int]:
    """Every headline number of a run as one flat dict (the keys of ``result.json``).

    Beyond the functions above:

    * ``time_in_market`` = share of bars with a non-zero exposure at the close;
      ``avg_abs_exposure`` = ``mean |notional / equity|`` over all bars.
    * ``turnover`` = traded notional / mean equity (how many times the book was traded);
      ``annual_turnover`` = ``turnover * ppy / n``.
    * ``gross_pnl`` = net PnL + fees paid + funding paid: what price moves alone made;
      ``fee_share`` / ``funding_share`` = fees / funding paid as a share of it.
    """
    eq = np.asarray(equity, dtype=np.float64)
    ppy = periods_per_year(timeframe)
    n = len(eq)
    r = bar_returns(eq, initial_cash)
    dd = drawdown(eq, initial_cash)
    ann = cagr(eq, initial_cash, ppy)
    ts = trade_stats(trade_net_pnl, trade_returns, trade_bars_held)
    expo = np.nan_to_num(np.asarray(exposure, dtype=np.float64), nan=0.0)
    net = float(eq[-1] - initial_cash) if n else math.nan
    gross = net + fees_paid + funding_paid
    mean_eq = float(np.mean(eq)) if n else math.nan
    turnover = traded_notional / mean_eq if mean_eq > 0 else math.nan
    return {
        "bars": n,
        "periods_per_year": ppy,
        "initial_cash": float(initial_cash),
        "final_equity": float(eq[-1]) if n else math.nan,
        "net_pnl": net,
        "gross_pnl": gross,
        "total_return": total_return(eq, initial_cash),
        "annual_return": ann,
        "volatility": volatility(r, ppy),
        "sharpe": sharpe(r, ppy),
        "sortino": sortino(r, ppy),
        "calmar": calmar(ann, dd.max_drawdown),
        "max_drawdown": dd.max_drawdown,
        "max_drawdown_duration_bars": dd.max_duration_bars,
        "trades": ts.trades,
        "win_rate": ts.win_rate,
        "profit_factor": ts.profit_factor,
        "expectancy": ts.expectancy,
        "avg_trade_return": ts.avg_trade_return,
        "avg_win": ts.avg_win,
        "avg_loss": ts.avg_loss,
        "avg_bars_held": ts.avg_bars_held,
        "time_in_market": float(np.mean(expo != 0.0)) if n else math.nan,
        "avg_abs_exposure": float(np.mean(np.abs(expo))) if n else math.nan,
        "turnover": turnover,
        "annual_turnover": turnover * ppy / n if n else math.nan,
        "fees_paid": float(fees_paid),
        "funding_paid": float(funding_paid),
        "fee_share": cost_share(fees_paid, gross),
        "funding_share": cost_share(funding_paid, gross),
        "liquidations": int(liquidations),
    }


__all__ = [
    "YEAR_MS",
    "Drawdown",
    "TradeStats",
    "bar_returns",
    "cagr",
    "calmar",
    "cost_share",
    "drawdown",
    "performance",
    "periods_per_year",
    "sharpe",
    "sortino",
    "total_return",
    "trade_stats",
    "volatility",
]
