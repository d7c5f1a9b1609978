"""The cost-aware layer over a walk-forward's out-of-sample probabilities.

Two uses share these steps: a research study (``research.decisions``) and ``perptrader
train``, which stores the layer with the registered model (``fit_stored_rule``) and
reports the layer's honest out-of-sample trading beside the plain 0.45 rule
(``cost_aware_oos``).

What the layer may look at when it chooses for test fold f (never fold f's test rows):
the TUNING rows of f, i.e. the fold's validation slice (when the walk-forward kept
one) and the earlier folds' out-of-sample windows, purged so that no tuning trade
ends at or after the first test bar. A validation slice alone (a few hundred bars) let
the search pick settings that were lucky there. On the tuning rows it first measures
the edge scale k (``decision.fit_edge_scale``; no skill -> k = 0 -> flat), then
searches the grid for net return (``decision.fit_decision``).

The layer stored with a registered model is chosen the same way on ALL out-of-sample
rows: the final model is fitted on the latest window, and every one of those rows
lies before the first bar it will ever trade.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from perptrader.core.errors import PerptraderError
from perptrader.ml.base import CLASSES, MLFrame
from perptrader.ml.decision import (
    NEVER,
    CostAwareRule,
    DecisionInputs,
    decide,
    decision_inputs,
    fit_decision,
    fit_edge_scale,
)

#: the window of σ the layer uses (the label's default: three days of 1h bars)
VOL_WINDOW = 72


def fundings_per_bar(timeframe: str) -> float:
    """Funding settlements per bar (Binance USD-M settles every 8 h)."""
    from perptrader.core.timeframes import timeframe_delta

    return timeframe_delta(timeframe) / pd.Timedelta(hours=8)


def forward_return(bars: pd.DataFrame, index: pd.DatetimeIndex, horizon: int) -> np.ndarray:
    """close[t + h] / close[t] − 1 at the given bar times (NaN beyond the data): the
    target of the information coefficient and of the edge scale."""
    close = bars["close"].to_numpy(dtype=np.float64)
    fwd = np.full(len(close), np.nan)
    if horizon < len(close):
        fwd[: len(close) - horizon] = close[horizon:] / close[: len(close) - horizon] - 1.0
    pos = bars.index.get_indexer(index)
    if (pos < 0).any():
        raise PerptraderError("forward_return: some times are not bars of the frame")
    return fwd[pos]


@dataclass
class DecisionContext:
    """What the decision layers need about one symbol's out-of-sample run."""

    data: MLFrame
    bars: pd.DataFrame
    #: test-row probabilities (index bar time; SELL, HOLD, BUY, fold)
    oos: pd.DataFrame
    #: validation-row probabilities per fold (same columns); empty when there are none
    valid: pd.DataFrame
    k: float
    horizon: int
    round_trip_cost: float
    fundings_per_bar: float
    vol_window: int = VOL_WINDOW
    seed: int = 0
    _per_bar: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def per_bar(self) -> tuple[np.ndarray, np.ndarray]:
        """(σ, funding rate) of every bar of ``bars`` (σ needs the bars before a block,
        so it is computed once on the whole series)."""
        if self._per_bar is None:
            inputs = decision_inputs(self.bars, np.full((len(self.bars), 3), np.nan),
                                     k=self.k, horizon=self.horizon,
                                     round_trip_cost=self.round_trip_cost,
                                     vol_window=self.vol_window,
                                     fundings_per_bar=self.fundings_per_bar)
            self._per_bar = (inputs.sigma, inputs.funding_rate)
        return self._per_bar


def proba_of(frame: pd.DataFrame) -> np.ndarray:
    """The SELL/HOLD/BUY columns as an (n, 3) float64 array."""
    return frame[list(CLASSES)].to_numpy(dtype=np.float64)


def block(ctx: DecisionContext, part: pd.DataFrame) -> tuple[DecisionInputs, np.ndarray]:
    """(DecisionInputs, opens) of a contiguous run of rows of ``part``."""
    sigma, funding = ctx.per_bar()
    pos = ctx.bars.index.get_indexer(part.index)
    inputs = DecisionInputs(proba_of(part), sigma[pos], funding[pos], ctx.k, ctx.horizon,
                            ctx.round_trip_cost, ctx.fundings_per_bar)
    return inputs, ctx.bars["open"].to_numpy(dtype=np.float64)[pos]


def contiguous(frame: pd.DataFrame, bars: pd.DataFrame) -> list[pd.DataFrame]:
    """``frame`` split where its rows are not consecutive bars."""
    if frame.empty:
        return []
    pos = bars.index.get_indexer(frame.index)
    cuts = np.flatnonzero(np.diff(pos) != 1) + 1
    return [frame.iloc[a:b] for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(frame)],
                                            strict=True)]


def tuning_rows(ctx: DecisionContext, fold: int, first_test: pd.Timestamp) -> pd.DataFrame:
    """Rows fold ``fold`` may tune on: its validation rows and the earlier folds' test
    rows, purged so that no trade ends inside the test window."""
    parts = [ctx.oos[ctx.oos["fold"] < fold]]
    if not ctx.valid.empty:
        parts.insert(0, ctx.valid[ctx.valid["fold"] == fold])
    # a time in both (a rolling window's validation slice overlaps the previous test
    # window): the current model's validation probability is kept
    out = pd.concat(parts).sort_index(kind="stable")
    out = out[~out.index.duplicated(keep="first")]
    pos = ctx.bars.index.get_indexer(out.index)
    limit = ctx.bars.index.get_indexer([first_test])[0]
    return out[pos + 1 + ctx.horizon < limit]


def choose_rule(ctx: DecisionContext, tuning: pd.DataFrame,
                grid: dict[str, tuple[Any, ...]] | None = None
                ) -> tuple[CostAwareRule, dict[str, Any]]:
    """Measure the edge scale, then search the settings, both on ``tuning`` (rows of
    ``ctx.bars``): the rule and a record of what was seen."""
    sigma, _ = ctx.per_bar()
    pos = ctx.bars.index.get_indexer(tuning.index)
    score = proba_of(tuning)[:, 2] - proba_of(tuning)[:, 0] if len(tuning) else np.zeros(0)
    fwd_z = forward_return(ctx.bars, tuning.index, ctx.horizon) / (
        sigma[pos] * np.sqrt(ctx.horizon))
    scale = fit_edge_scale(score, fwd_z, overlap=ctx.horizon)
    fitted = replace(ctx, k=scale.k)
    blocks = [block(fitted, b) for b in contiguous(tuning, ctx.bars) if len(b) > 2]
    params, net, chosen = NEVER, 0.0, False
    if blocks and scale.k > 0:
        fit = fit_decision(blocks, grid)
        params, net, chosen = fit.params, fit.valid_net, fit.trades
    rule = CostAwareRule(params, scale.k, ctx.horizon, ctx.round_trip_cost, ctx.vol_window,
                         ctx.fundings_per_bar)
    record = {"tuning_rows": len(tuning), "edge_k": scale.k, "edge_slope": scale.slope,
              "edge_t": scale.t, "tuning_net": net, "trades": chosen,
              "params": None if params is NEVER else params.as_dict()}
    return rule, record


def apply_rule(ctx: DecisionContext, rule: CostAwareRule, rows: pd.DataFrame) -> np.ndarray:
    """Targets of ``rows`` under ``rule``, each contiguous run from flat."""
    fitted = replace(ctx, k=rule.k)
    target = np.zeros(len(rows))
    for b in contiguous(rows, ctx.bars):
        inputs, _ = block(fitted, b)
        target[rows.index.get_indexer(b.index)] = decide(inputs, rule.params)
    return target


def cost_aware_fold(ctx: DecisionContext, fold: int, test: pd.DataFrame,
                    grid: dict[str, tuple[Any, ...]] | None = None
                    ) -> tuple[np.ndarray, dict[str, Any]]:
    """Targets of fold ``fold``'s test rows, the layer chosen on its tuning rows."""
    rule, record = choose_rule(ctx, tuning_rows(ctx, fold, test.index[0]), grid)
    return apply_rule(ctx, rule, test), {"fold": fold, **record}


def cost_aware_oos(ctx: DecisionContext, grid: dict[str, tuple[Any, ...]] | None = None
                   ) -> tuple[pd.Series, list[dict[str, Any]]]:
    """Targets of every out-of-sample row, fold by fold, and what each fold chose."""
    parts, records = [], []
    for f in sorted(int(f) for f in ctx.oos["fold"].unique()):
        test = ctx.oos[ctx.oos["fold"] == f]
        target, record = cost_aware_fold(ctx, f, test, grid)
        parts.append(pd.Series(target, index=test.index))
        records.append(record)
    targets = pd.concat(parts).sort_index() if parts else pd.Series(dtype=np.float64)
    return targets, records


def fit_stored_rule(ctx: DecisionContext, grid: dict[str, tuple[Any, ...]] | None = None
                    ) -> tuple[CostAwareRule, dict[str, Any]]:
    """The layer a registered model trades with: chosen on every out-of-sample row of
    the walk-forward (all earlier than anything the final model trades), with the
    newest validation slice; rows whose horizon runs past the data are dropped."""
    parts = [ctx.oos]
    if not ctx.valid.empty:
        parts.append(ctx.valid[ctx.valid["fold"] == ctx.valid["fold"].max()])
    rows = pd.concat(parts).sort_index(kind="stable")
    rows = rows[~rows.index.duplicated(keep="first")]
    pos = ctx.bars.index.get_indexer(rows.index)
    rows = rows[pos + 1 + ctx.horizon < len(ctx.bars)]
    rule, record = choose_rule(ctx, rows, grid)
    record.update(first_row=rows.index.min().isoformat() if len(rows) else None,
                  last_row=rows.index.max().isoformat() if len(rows) else None)
    return rule, record


__all__ = ["VOL_WINDOW", "DecisionContext", "apply_rule", "block", "choose_rule",
           "contiguous", "cost_aware_fold", "cost_aware_oos", "fit_stored_rule",
           "forward_return", "fundings_per_bar", "proba_of", "tuning_rows"]
