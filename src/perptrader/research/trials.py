"""Units of work of a study and the trials they produce.

A UNIT is what must be trained once: (symbol, timeframe, feature set, label, model) for
a per-symbol walk-forward, or (timeframe, feature set, label, model) for a pooled one.
Each unit yields one TRIAL per decision kind: the same out-of-sample probabilities
turned into targets and run through the one backtest engine. Units are pure functions
of their payload (data in, JSON-able records out, seeds fixed, one thread per model),
so the local and the Ray backend run the same code and give the same numbers.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from perptrader.core.jsonsafe import json_safe
from perptrader.ml.base import CLASSES, MLFrame
from perptrader.ml.decision_oos import DecisionContext, forward_return, fundings_per_bar
from perptrader.research.cells import Cell, relabel
from perptrader.research.decisions import run_decision
from perptrader.research.study import DecisionSpec, LabelSpec, ModelSpec

#: trading figures a trial records (keys of ``backtest.metrics.performance``)
TRADE_KEYS = ("total_return", "annual_return", "sharpe", "sortino", "max_drawdown", "trades",
              "time_in_market", "turnover", "fees_paid", "funding_paid", "gross_pnl",
              "net_pnl", "fee_share", "funding_share", "win_rate", "avg_bars_held")
#: thread-count parameter of each GBDT library (one thread: same numbers on any backend)
THREADS = {"lightgbm": "num_threads", "xgboost": "nthread", "catboost": "thread_count"}


@dataclass
class Unit:
    """One training job of a study (see the module docstring)."""

    id: str
    kind: str  # "symbol" | "pooled"
    timeframe: str
    feature_set: str
    label: LabelSpec
    model: ModelSpec
    decisions: tuple[DecisionSpec, ...]
    walkforward: str
    costs: dict[str, Any]
    seed: int
    #: symbol units: one cell; pooled units: every pooled symbol's cell
    cells: dict[str, Cell] = field(default_factory=dict)
    train_symbols: tuple[str, ...] = ()
    symbol_feature: bool = False
    leader: str = "BTCUSDT"


def model_kwargs(spec: ModelSpec, seed: int) -> dict[str, Any]:
    """``make_model`` kwargs: the quick or full settings, the study's params, one thread
    per library and the study's seed."""
    from perptrader.ml.pipeline import model_kwargs_for

    params = dict(spec.params)
    if spec.kind in THREADS:
        params.setdefault(THREADS[spec.kind], 1)
    kwargs = model_kwargs_for(spec.kind, quick=spec.quick, params=params)
    if spec.kind == "gbdt":
        kwargs["params"] = {k: {**v, THREADS[k]: 1} for k, v in kwargs.get("params", {}).items()}
    if spec.kind in (*THREADS, "gbdt"):
        kwargs["seed"] = seed
    elif spec.kind != "ensemble":
        kwargs["config"] = {**kwargs.get("config", {}), "seed": seed}
    return kwargs


def round_trip(costs: dict[str, Any]) -> float:
    from perptrader.ml.decision import round_trip_cost
    from perptrader.sim.costs import CostModel

    return round_trip_cost(CostModel(**costs))


def signal_quality(oos: pd.DataFrame, data: MLFrame, bars: pd.DataFrame,
                   horizon: int) -> dict[str, Any]:
    """Classification scores and the information coefficient of the out-of-sample
    probabilities: IC / rank IC = Pearson / Spearman correlation of P(BUY) − P(SELL)
    with the forward return over the label's horizon."""
    from perptrader.ml.evaluate import classification_metrics

    y = pd.Series(data.y, index=data.index).reindex(oos.index).to_numpy()
    proba = oos[list(CLASSES)].to_numpy(dtype=np.float64)
    m = classification_metrics(y, proba)
    score = proba[:, 2] - proba[:, 0]
    fwd = forward_return(bars, oos.index, horizon)
    ok = np.isfinite(score) & np.isfinite(fwd)
    ic = rank_ic = math.nan
    if ok.sum() > 10 and np.std(score[ok]) > 0:
        ic = float(np.corrcoef(score[ok], fwd[ok])[0, 1])
        rank_ic = float(stats.spearmanr(score[ok], fwd[ok]).statistic)
    return {"n": m["n"], "macro_f1": m["macro_f1"], "accuracy": m["accuracy"],
            "log_loss": m["log_loss"],
            "f1": {c: m["per_class"][c]["f1"] for c in CLASSES},
            "ic": ic, "rank_ic": rank_ic}


def trade(bars: pd.DataFrame, funding: pd.DataFrame, targets: pd.Series, *, symbol: str,
          timeframe: str, costs: dict[str, Any], label: str
          ) -> tuple[dict[str, Any], dict[str, Any], pd.Series, pd.Series]:
    """(trading figures, buy-and-hold figures, bar returns, buy-and-hold bar returns)
    of ``targets`` through the backtest engine."""
    from perptrader.backtest.metrics import bar_returns
    from perptrader.ml.trading import cost_share, targets_backtest_result
    from perptrader.sim.costs import CostModel

    res = targets_backtest_result(bars, targets, symbol=symbol, timeframe=timeframe,
                                  costs=CostModel(**costs), funding=funding, label=label)
    cash = res.config.initial_cash
    figures = {k: res.metrics.get(k) for k in TRADE_KEYS}
    figures["cost_share"] = cost_share(res.metrics, cash)
    bench = {k: res.benchmark_metrics.get(k) for k in TRADE_KEYS}
    index = res.frame.index
    r = pd.Series(bar_returns(res.sim.bars["equity"].to_numpy(dtype=np.float64), cash),
                  index=index)
    rb = pd.Series(bar_returns(res.benchmark.bars["equity"].to_numpy(dtype=np.float64),
                               cash), index=index)
    return figures, bench, r, rb


def fold_returns(r: pd.Series, oos: pd.DataFrame) -> list[dict[str, Any]]:
    """Compounded net return of each fold's test window (for per-fold tables)."""
    out = []
    for f, part in oos.groupby("fold"):
        rr = r.loc[(r.index >= part.index.min()) & (r.index <= part.index.max())]
        out.append({"fold": int(f), "first": part.index.min().isoformat(),
                    "last": part.index.max().isoformat(),
                    "net_return": float(np.prod(1.0 + rr.to_numpy()) - 1.0)})
    return out


def _trials_of(unit: Unit, symbol: str, cell: Cell, data: MLFrame, oos: pd.DataFrame,
               valid: pd.DataFrame, signal: dict[str, Any], seen: bool,
               extra: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, pd.Series]]:
    """One trial per decision kind of one symbol's out-of-sample probabilities."""
    rtc = round_trip(unit.costs)
    ctx = DecisionContext(data=data, bars=cell.bars, oos=oos, valid=valid, k=unit.label.k,
                          horizon=unit.label.horizon, round_trip_cost=rtc,
                          fundings_per_bar=fundings_per_bar(unit.timeframe), seed=unit.seed)
    trials, returns = [], {}
    for dec in unit.decisions:
        trial_id = f"{unit.id}/{symbol}/{dec.name}" if unit.kind == "pooled" \
            else f"{unit.id}/{dec.name}"
        t0 = time.perf_counter()
        run = run_decision(ctx, dec)
        figures, bench, r, rb = trade(cell.bars, cell.funding, run.targets, symbol=symbol,
                                      timeframe=unit.timeframe, costs=unit.costs,
                                      label=dec.name)
        returns[trial_id] = r
        returns[f"buy_and_hold/{unit.timeframe}/{symbol}"] = rb
        trials.append(json_safe({
            "id": trial_id, "kind": unit.kind, "unit": unit.id, "symbol": symbol,
            "timeframe": unit.timeframe, "feature_set": unit.feature_set,
            "label": unit.label.name, "model": unit.model.name, "decision": dec.name,
            "decision_kind": dec.kind,
            "recipe": f"{'pooled:' if unit.kind == 'pooled' else ''}{unit.feature_set}/"
                      f"{unit.label.name}/{unit.model.name}/{dec.name}",
            "seen": seen, "signal": signal, "trading": figures, "buy_and_hold": bench,
            "folds": [{**a, **b} for a, b in zip(fold_returns(r, oos), run.folds,
                                                   strict=False)],
            "decision_settings_searched": run.n_settings,
            "first_bar": r.index[0].isoformat(), "last_bar": r.index[-1].isoformat(),
            "bars": len(r), "warnings": run.warnings, "seconds": time.perf_counter() - t0,
            **extra}))
    return trials, returns


def run_symbol_unit(unit: Unit) -> tuple[list[dict[str, Any]], dict[str, pd.Series]]:
    """Walk-forward one model on one symbol, then every decision kind on its OOS."""
    from perptrader.ml.splits import WalkForwardSpec
    from perptrader.ml.walkforward import run_walk_forward
    from perptrader.ml.weights import fold_sample_weight

    (symbol, cell), = unit.cells.items()
    data = relabel(cell.data, cell.bars, unit.label, round_trip(unit.costs))
    t0 = time.perf_counter()
    wf = run_walk_forward(data, unit.model.kind, WalkForwardSpec.parse(unit.walkforward),
                          model_kwargs=model_kwargs(unit.model, unit.seed),
                          refit_final=False, keep_valid=True,
                          fold_weights=fold_sample_weight if unit.label.uniqueness_weights
                          else None)
    signal = signal_quality(wf.oos_proba, data, cell.bars, unit.label.horizon)
    signal["baselines"] = {name: m["macro_f1"] for name, m in wf.summary["baselines"].items()}
    extra = {"train_seconds": time.perf_counter() - t0, "n_folds": len(wf.summary["folds"]),
             "n_features": len(data.features)}
    return _trials_of(unit, symbol, cell, data, wf.oos_proba, wf.valid_proba, signal, True,
                      extra)


def run_pooled_unit(unit: Unit) -> tuple[list[dict[str, Any]], dict[str, pd.Series]]:
    """One pooled model per fold on ``train_symbols``; every pooled symbol's OOS (seen
    or never seen) through every decision kind."""
    from perptrader.ml.pooled import pool, pooled_walk_forward
    from perptrader.ml.splits import WalkForwardSpec

    rtc = round_trip(unit.costs)
    frames = {s: relabel(c.data, c.bars, unit.label, rtc) for s, c in unit.cells.items()}
    leader = unit.cells.get(unit.leader)
    pooled = pool(frames, symbol_feature=unit.symbol_feature,
                  leader=unit.leader if leader is not None else None,
                  leader_close=None if leader is None else leader.bars["close"])
    t0 = time.perf_counter()
    oos = pooled_walk_forward(pooled, unit.model.kind, WalkForwardSpec.parse(unit.walkforward),
                              model_kwargs=model_kwargs(unit.model, unit.seed),
                              train_symbols=list(unit.train_symbols))
    seconds = time.perf_counter() - t0
    trials, returns = [], {}
    for symbol, proba in oos.items():
        if proba.empty:
            continue
        cell, data = unit.cells[symbol], frames[symbol]
        proba = proba.sort_index()
        signal = signal_quality(proba, data, cell.bars, unit.label.horizon)
        extra = {"train_seconds": seconds, "n_folds": int(proba["fold"].nunique()),
                 "n_features": len(pooled.data.features)}
        t, r = _trials_of(unit, symbol, cell, data, proba, pd.DataFrame(), signal,
                          symbol in unit.train_symbols, extra)
        trials += t
        returns.update(r)
    return trials, returns


def run_unit(unit: Unit) -> tuple[list[dict[str, Any]], dict[str, pd.Series]]:
    """The trials of one unit (the function both backends call)."""
    import torch

    torch.set_num_threads(1)
    if unit.kind == "pooled":
        return run_pooled_unit(unit)
    return run_symbol_unit(unit)


__all__ = ["TRADE_KEYS", "Unit", "model_kwargs", "run_unit", "signal_quality", "trade"]
