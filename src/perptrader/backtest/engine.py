"""Run a strategy and the buy-and-hold benchmark through the ONE accounting core.

``run_backtest`` loads the research frame (``marketdata.loader.load``), asks the
strategy for target exposures, and simulates them with ``perptrader.sim.simulate``
under the given costs and leverage; buy-and-hold runs on the same bars, costs and
funding, so the two rows of every table differ only by the decisions.

Leverage: strategies speak in unit exposure (+1 = long notional equal to equity); the
engine multiplies the targets by ``leverage`` and gives the same leverage to the
simulator's margin model, so ``--leverage 3`` means 3x the notional (and 3x the
funding and fees), for the strategy and for the benchmark alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from perptrader.backtest.metrics import bar_returns, performance
from perptrader.backtest.overfitting import DeflatedSharpe, deflated_sharpe
from perptrader.config import Settings
from perptrader.core.errors import PerptraderError
from perptrader.core.jsonsafe import json_safe
from perptrader.core.timeframes import timeframe_delta
from perptrader.marketdata.loader import funding_events, load
from perptrader.marketdata.store.base import MarketStore
from perptrader.sim import CostModel, MarketData, SimConfig, SimResult, simulate
from perptrader.sim.market import NO_FUNDING, choose_funding
from perptrader.strategies import BuyAndHold, Policy

TimeLike = datetime | str | pd.Timestamp | None


@dataclass
class BacktestResult:
    """Everything one run produced; ``as_json()`` is ``result.json``."""

    symbol: str
    timeframe: str
    strategy: Policy
    config: SimConfig
    leverage: float
    frame: pd.DataFrame
    targets: np.ndarray
    sim: SimResult
    benchmark: SimResult
    metrics: dict[str, Any]
    benchmark_metrics: dict[str, Any]
    dsr: DeflatedSharpe
    funding_source: str
    warnings: list[str] = field(default_factory=list)

    @property
    def data_range(self) -> dict[str, Any]:
        idx = self.frame.index
        return {"first_bar": idx[0].isoformat(), "last_bar": idx[-1].isoformat(),
                "end": (idx[-1] + timeframe_delta(self.timeframe)).isoformat(),
                "bars": len(idx), "funding": self.funding_source}

    def as_json(self) -> dict[str, Any]:
        costs = self.config.costs
        out: dict[str, Any] = {
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "strategy": self.strategy.name,
            "params": self.strategy.params,
            "config": {
                "initial_cash": self.config.initial_cash, "leverage": self.leverage,
                "margin_mode": self.config.margin_mode, "fill_delay": self.config.fill_delay,
                "maker_fee": costs.maker_fee, "taker_fee": costs.taker_fee,
                "slippage_bps": costs.slippage_bps, "slippage_model": costs.slippage_model,
            },
            "data": self.data_range,
            **self.metrics,
            "deflated_sharpe": {
                "dsr": self.dsr.dsr, "n_trials": self.dsr.n_trials,
                "sharpe_per_bar": self.dsr.sharpe, "sr0_per_bar": self.dsr.sr0,
                "skew": self.dsr.skew, "kurtosis": self.dsr.kurtosis,
                "sr_variance": self.dsr.sr_variance,
                "variance_source": self.dsr.variance_source,
            },
            "benchmark": {"strategy": "buy_and_hold", **self.benchmark_metrics},
            "warnings": list(self.warnings),
        }
        return json_safe(out)


def summarize(result: SimResult, initial_cash: float, timeframe: str) -> dict[str, Any]:
    """The metrics dict of one simulation (see ``metrics.performance``)."""
    bars, trades, fills = result.bars, result.trades, result.fills
    return performance(
        equity=bars["equity"].to_numpy(dtype=np.float64),
        initial_cash=initial_cash,
        timeframe=timeframe,
        exposure=bars["exposure"].to_numpy(dtype=np.float64, na_value=np.nan),
        trade_net_pnl=trades["net_pnl"].to_numpy(dtype=np.float64),
        trade_returns=trades["return_pct"].to_numpy(dtype=np.float64),
        trade_bars_held=trades["bars_held"].to_numpy(dtype=np.float64),
        traded_notional=float(np.abs(fills["notional"].to_numpy(dtype=np.float64)).sum()),
        fees_paid=float(result.fees_paid),
        funding_paid=float(result.funding_paid),
        liquidations=int(result.liquidations),
    )


def run_on_frame(
    frame: pd.DataFrame,
    strategy: Policy,
    *,
    symbol: str,
    timeframe: str,
    costs: CostModel | None = None,
    leverage: float = 1.0,
    initial_cash: float = 10_000.0,
    funding: pd.DataFrame | None = None,
    n_trials: int = 1,
    fill_delay: int = 1,
    margin_mode: str = "isolated",
    close_at_end: bool = True,
    margin_leverage: float | None = None,
) -> BacktestResult:
    """Simulate ``strategy`` and buy-and-hold on an already loaded frame.

    ``close_at_end``: every position is closed at the open of the last bar (a flat
    decision ``fill_delay`` bars before it), paying the exit fee and slippage, so the
    trade list holds every trade and the final equity is cash, not a mark.

    ``funding``: the stored settlement events; they are handed to the simulator when a
    bar is longer than the shortest funding interval (the frame's as-of funding columns
    can then not show every settlement). Without any funding in the frame or the events,
    funding is not charged and a warning says so.

    ``margin_leverage``: the margin model's leverage when it differs from the target
    scale ``leverage``: an RL agent's targets already range over 0.5x..2x, so it runs with
    ``leverage=1, margin_leverage=2`` (its environment's account), and so do the
    baselines it is compared with.
    """
    if len(frame) < 2:
        raise PerptraderError(f"{symbol} {timeframe}: {len(frame)} bar(s) is too little data "
                              f"to backtest")
    if not leverage >= 1.0:
        raise PerptraderError(f"leverage must be >= 1, got {leverage}")
    warnings: list[str] = []
    costs = costs or CostModel()
    events, source = choose_funding(frame, timeframe, funding, warnings)
    market = MarketData.from_frame(frame, symbol=symbol, timeframe=timeframe, funding=events,
                                   require_funding=source != NO_FUNDING)
    # a strategy may name its own account (an RL agent: 2x margin for its 0.5x..2x targets)
    margin_leverage = margin_leverage or getattr(strategy, "margin_leverage", None)
    if margin_leverage is not None and not margin_leverage >= leverage:
        raise PerptraderError(f"margin_leverage {margin_leverage} must be >= leverage "
                              f"{leverage}")
    config = SimConfig(initial_cash=initial_cash, leverage=margin_leverage or leverage,
                       margin_mode=margin_mode, costs=costs, fill_delay=fill_delay)
    raw = np.asarray(strategy.targets(frame), dtype=np.float64)
    if raw.shape != (len(frame),):
        raise PerptraderError(f"strategy {strategy.name!r} returned {raw.shape} targets for "
                              f"{len(frame)} bars")
    targets = flat_at_end(raw * leverage, fill_delay) if close_at_end else raw * leverage
    bench_targets = BuyAndHold().targets(frame) * leverage
    if close_at_end:
        bench_targets = flat_at_end(bench_targets, fill_delay)
    sim = simulate(market, targets, config)
    bench = simulate(market, bench_targets, config)
    warnings.extend(f"{strategy.name}: {w}" for w in sim.warnings)
    warnings.extend(f"buy_and_hold: {w}" for w in bench.warnings)
    metrics = summarize(sim, initial_cash, timeframe)
    r = bar_returns(sim.bars["equity"].to_numpy(dtype=np.float64), initial_cash)
    return BacktestResult(
        symbol=symbol, timeframe=timeframe, strategy=strategy, config=config,
        leverage=leverage, frame=frame, targets=targets, sim=sim, benchmark=bench,
        metrics=metrics, benchmark_metrics=summarize(bench, initial_cash, timeframe),
        dsr=deflated_sharpe(r, n_trials=n_trials), funding_source=source,
        warnings=list(dict.fromkeys(warnings)))


def flat_at_end(targets: np.ndarray, fill_delay: int) -> np.ndarray:
    """The targets with a flat decision that fills at the open of the last bar."""
    out = np.array(targets, dtype=np.float64)
    last_decision = len(out) - 1 - fill_delay
    if last_decision >= 0:
        out[last_decision:] = 0.0
    return out


def run_backtest(
    symbol: str,
    timeframe: str,
    strategy: Policy,
    start: TimeLike = None,
    end: TimeLike = None,
    costs: CostModel | None = None,
    leverage: float = 1.0,
    *,
    store: MarketStore | None = None,
    settings: Settings | None = None,
    initial_cash: float = 10_000.0,
    n_trials: int = 1,
    fill_delay: int = 1,
) -> BacktestResult:
    """Load ``symbol``/``timeframe`` from the store and run ``strategy`` beside
    buy-and-hold (see ``run_on_frame``). ``end`` is exclusive, naive times are UTC.
    Raises PerptraderError when no bars are stored."""
    from perptrader.marketdata.store import using_store

    with using_store(store, settings) as opened:
        frame = load(symbol, timeframe, start, end, store=opened)
        events = funding_events(opened, symbol, frame, timeframe)
    return run_on_frame(frame, strategy, symbol=frame.attrs.get("symbol", symbol),
                        timeframe=timeframe, costs=costs, leverage=leverage,
                        initial_cash=initial_cash, funding=events, n_trials=n_trials,
                        fill_delay=fill_delay)


def run_portfolio(
    symbols: Sequence[str],
    timeframe: str,
    strategy: Policy,
    start: TimeLike = None,
    end: TimeLike = None,
    costs: CostModel | None = None,
    leverage: float = 1.0,
    *,
    store: MarketStore | None = None,
    settings: Settings | None = None,
    initial_cash: float = 10_000.0,
    n_trials: int = 1,
    fill_delay: int = 1,
    margin_mode: str = "cross",
) -> BacktestResult:
    """Several symbols in ONE account (``sim.simulate_portfolio``; cross margin by
    default): each symbol gets the strategy's targets scaled by ``leverage / S``, so the
    book's total exposure is that of a single-symbol run. The benchmark is the
    equal-weight buy-and-hold of the same symbols. Bars are aligned on the timestamps
    all symbols share (a warning says how many were dropped). ``frame`` of the result is
    the FIRST symbol's (its price is the one the report draws)."""
    from perptrader.marketdata.store import using_store
    from perptrader.sim import simulate_portfolio

    symbols = list(dict.fromkeys(symbols))
    if len(symbols) < 2:
        raise PerptraderError("run_portfolio needs at least two symbols; use run_backtest")
    if not leverage >= 1.0:
        raise PerptraderError(f"leverage must be >= 1, got {leverage}")
    with using_store(store, settings) as opened:
        frames = {s: load(s, timeframe, start, end, store=opened) for s in symbols}
        events = {s: funding_events(opened, s, f, timeframe) for s, f in frames.items()}
    common = frames[symbols[0]].index
    for f in frames.values():
        common = common.intersection(f.index)
    if len(common) < 2:
        raise PerptraderError(f"{', '.join(symbols)} share {len(common)} {timeframe} bars; "
                              f"nothing to backtest together")
    warnings: list[str] = []
    dropped = {s: len(f) - len(common) for s, f in frames.items() if len(f) != len(common)}
    if dropped:
        warnings.append(f"bars not shared by all symbols dropped: {dropped}")
    costs = costs or CostModel()
    config = SimConfig(initial_cash=initial_cash, leverage=leverage, margin_mode=margin_mode,
                       costs=costs, fill_delay=fill_delay)
    markets, targets, bench_targets, sources = {}, {}, {}, []
    weight = leverage / len(symbols)
    for s in symbols:
        frame = frames[s].loc[common]
        ev, source = choose_funding(frame, timeframe, events[s], warnings)
        markets[s] = MarketData.from_frame(frame, symbol=s, timeframe=timeframe, funding=ev,
                                           require_funding=source != NO_FUNDING)
        targets[s] = flat_at_end(
            np.asarray(strategy.targets(frame), dtype=np.float64) * weight, fill_delay)
        bench_targets[s] = flat_at_end(BuyAndHold().targets(frame) * weight, fill_delay)
        sources.append(f"{s}: {source}")
    sim = simulate_portfolio(markets, targets, config)
    bench = simulate_portfolio(markets, bench_targets, config)
    warnings.extend(f"{strategy.name}: {w}" for w in sim.warnings)
    warnings.extend(f"buy_and_hold: {w}" for w in bench.warnings)
    r = bar_returns(sim.bars["equity"].to_numpy(dtype=np.float64), initial_cash)
    first = frames[symbols[0]].loc[common]
    return BacktestResult(
        symbol="+".join(symbols), timeframe=timeframe, strategy=strategy, config=config,
        leverage=leverage, frame=first, targets=targets[symbols[0]], sim=sim,
        benchmark=bench, metrics=summarize(sim, initial_cash, timeframe),
        benchmark_metrics=summarize(bench, initial_cash, timeframe),
        dsr=deflated_sharpe(r, n_trials=n_trials), funding_source="; ".join(sources),
        warnings=list(dict.fromkeys(warnings)))


__all__ = ["BacktestResult", "run_backtest", "run_on_frame",
           "run_portfolio", "summarize"]
