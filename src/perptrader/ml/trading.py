"""Does the classifier make money? Its out-of-sample probabilities as trades.

Classification scores say little about P&L: a model can be right on many small moves
and wrong on the big ones. ``oos_backtest`` turns the walk-forward's OUT-OF-SAMPLE
probabilities into target exposures with the same rule the live ``ModelStrategy`` uses
(``signals``) and runs them through the ONE backtest engine (costs, funding, fills at
the next open) beside buy-and-hold over the same span, so the model row and the
benchmark row differ only by the decisions. Bars outside the test windows (none, for
adjacent rolling windows) and rows without a prediction are flat: the model never
trades on a bar it was trained on.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from perptrader.core.errors import PerptraderError
from perptrader.ml.base import CLASSES, MLFrame
from perptrader.strategies.precomputed import PrecomputedTargets

#: the metrics a trading row shows (keys of ``backtest.metrics.performance``)
TRADING_KEYS = ("total_return", "annual_return", "sharpe", "sortino", "max_drawdown",
                "win_rate", "trades", "time_in_market", "turnover", "fees_paid",
                "funding_paid")


def signals(proba: np.ndarray, buy_threshold: float = 0.45,
            sell_threshold: float = 0.45) -> np.ndarray:
    """+1 where P(BUY) >= buy_threshold and P(BUY) > P(SELL); -1 where P(SELL) >=
    sell_threshold and P(SELL) > P(BUY); 0 otherwise (also for NaN rows). Vectorized.

    HOLD's probability is not compared: a 0.46 BUY / 0.50 HOLD row is still a long,
    because the thresholds, not the arg-max, decide how sure the model must be.
    """
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != len(CLASSES):
        raise ValueError(f"probabilities must be (n, 3) in {CLASSES} order, got {p.shape}")
    for name, t in (("buy_threshold", buy_threshold), ("sell_threshold", sell_threshold)):
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {t}")
    sell, buy = p[:, 0], p[:, 2]
    out = np.zeros(len(p), dtype=np.float64)
    out[(buy >= buy_threshold) & (buy > sell)] = 1.0
    out[(sell >= sell_threshold) & (sell > buy)] = -1.0
    return out


def oos_targets(oos_proba: pd.DataFrame, buy_threshold: float = 0.45,
                sell_threshold: float = 0.45) -> pd.Series:
    """The target of every out-of-sample bar (index = bar open time)."""
    missing = [c for c in CLASSES if c not in oos_proba.columns]
    if missing:
        raise PerptraderError(f"oos_proba lacks the probability columns {missing}")
    sig = signals(oos_proba[list(CLASSES)].to_numpy(dtype=np.float64), buy_threshold,
                  sell_threshold)
    return pd.Series(sig, index=oos_proba.index, name="target")


def oos_backtest_result(data: MLFrame, bars: pd.DataFrame, oos_proba: pd.DataFrame, *,
                        buy_threshold: float = 0.45, sell_threshold: float = 0.45,
                        costs: Any | None = None, leverage: float = 1.0,
                        funding: pd.DataFrame | None = None):
    """The ``BacktestResult`` of the OOS targets over the span of the test windows."""
    if oos_proba.empty:
        raise PerptraderError("no out-of-sample predictions to backtest")
    return targets_backtest_result(
        bars, oos_targets(oos_proba, buy_threshold, sell_threshold),
        symbol=str(data.meta.get("symbol") or ""),
        timeframe=str(data.meta.get("timeframe") or "1h"), costs=costs, leverage=leverage,
        funding=funding, label="model_oos",
        settings={"buy_threshold": buy_threshold, "sell_threshold": sell_threshold})


def targets_backtest_result(bars: pd.DataFrame, targets: pd.Series, *, symbol: str,
                            timeframe: str, costs: Any | None = None, leverage: float = 1.0,
                            funding: pd.DataFrame | None = None, label: str = "targets",
                            settings: dict[str, Any] | None = None, n_trials: int = 1):
    """The ``BacktestResult`` of per-bar ``targets`` (index = bar open times, decided at
    the close) over their span of ``bars``, beside buy-and-hold on the same bars; bars
    of the span without a target are flat."""
    from perptrader.backtest.engine import run_on_frame

    if targets.empty:
        raise PerptraderError("no targets to backtest")
    first, last = targets.index.min(), targets.index.max()
    span = bars.loc[(bars.index >= first) & (bars.index <= last)]
    if len(span) < 2:
        raise PerptraderError(f"the bars hold {len(span)} bar(s) between {first} and {last}: "
                              "too few to backtest the out-of-sample predictions")
    if not targets.index.isin(span.index).all():
        raise PerptraderError("some out-of-sample timestamps are not bars of the given frame "
                              "(another symbol or timeframe?)")
    strategy = PrecomputedTargets(targets, label=label, settings=dict(settings or {}))
    return run_on_frame(span, strategy, symbol=symbol, timeframe=timeframe, costs=costs,
                        leverage=leverage, funding=funding, n_trials=n_trials)


def oos_backtest(data: MLFrame, bars: pd.DataFrame, oos_proba: pd.DataFrame, *,
                 buy_threshold: float = 0.45, sell_threshold: float = 0.45,
                 costs: Any | None = None, leverage: float = 1.0,
                 funding: pd.DataFrame | None = None) -> dict[str, Any]:
    """The model's OOS trading figures beside buy-and-hold on the same bars and costs
    (``oos_trading`` of ``oos_backtest_result``)."""
    res = oos_backtest_result(data, bars, oos_proba, buy_threshold=buy_threshold,
                              sell_threshold=sell_threshold, costs=costs, leverage=leverage,
                              funding=funding)
    return oos_trading(res, buy_threshold=buy_threshold, sell_threshold=sell_threshold,
                       leverage=leverage)


def oos_trading(res: Any, *, buy_threshold: float = 0.45, sell_threshold: float = 0.45,
                leverage: float = 1.0) -> dict[str, Any]:
    """{"model": {...}, "buy_and_hold": {...}, "first_bar", "last_bar", "bars",
    "buy_threshold", "sell_threshold", "leverage", "funding", "warnings"} of the
    backtest of the OOS threshold targets."""
    from perptrader.core.jsonsafe import json_safe

    rng = res.data_range
    return json_safe({
        "model": {k: res.metrics.get(k) for k in TRADING_KEYS},
        "buy_and_hold": {k: res.benchmark_metrics.get(k) for k in TRADING_KEYS},
        "first_bar": rng["first_bar"], "last_bar": rng["last_bar"], "bars": rng["bars"],
        "buy_threshold": buy_threshold, "sell_threshold": sell_threshold,
        "leverage": leverage, "funding": rng["funding"],
        "warnings": list(res.warnings),
    })


def cost_share(metrics: dict[str, Any], initial_cash: float) -> float:
    """Fees + funding paid as a share of the starting capital: defined whatever the sign
    of the gross P&L (a share of a negative gross reads as nonsense)."""
    return (float(metrics["fees_paid"]) + float(metrics["funding_paid"])) / initial_cash


def _figures(metrics: dict[str, Any], initial_cash: float) -> dict[str, Any]:
    return {**{k: metrics.get(k) for k in TRADING_KEYS},
            "cost_share": cost_share(metrics, initial_cash)}


def decision_comparison(data: MLFrame, bars: pd.DataFrame, threshold: Any,
                        cost_aware: pd.Series, *, costs: Any | None = None,
                        funding: pd.DataFrame | None = None) -> dict[str, Any]:
    """The plain 0.45 rule and the cost-aware layer on the SAME out-of-sample
    probabilities, bars and costs, beside buy-and-hold: {"threshold", "cost_aware",
    "buy_and_hold": figures (``TRADING_KEYS`` + ``cost_share``), "first_bar",
    "last_bar", "bars"}. ``threshold``: the backtest of the 0.45 rule
    (``oos_backtest_result``, run once for both reports); ``cost_aware``: the layer's
    target per OOS bar, backtested here with the same costs and funding."""
    from perptrader.core.jsonsafe import json_safe

    res = targets_backtest_result(bars, cost_aware, symbol=str(data.meta.get("symbol") or ""),
                                  timeframe=str(data.meta.get("timeframe") or "1h"),
                                  costs=costs, funding=funding, label="cost_aware")
    cash = threshold.config.initial_cash
    rng = threshold.data_range
    return json_safe({
        "threshold": _figures(threshold.metrics, cash),
        "cost_aware": _figures(res.metrics, cash),
        "buy_and_hold": _figures(threshold.benchmark_metrics, cash),
        "first_bar": rng["first_bar"], "last_bar": rng["last_bar"], "bars": rng["bars"]})
