"""Out-of-sample probabilities to target exposures, fold by fold, for each decision kind.

What each kind may look at when it chooses, for test fold f (never fold f's test rows):

* ``threshold``: nothing; a fixed rule (long when P(BUY) >= t, short when P(SELL) >= t).
* ``cost_aware``: its settings are searched on the TUNING rows of fold f: the fold's
  validation slice (per-symbol walk-forward; pooled models have none of their own) and
  the earlier folds' out-of-sample windows of the same symbol, purged as below. A
  validation slice alone (a few hundred bars) let the search pick settings that were
  lucky there; fold 0 of a pooled run has nothing to tune on and stays flat.
* ``meta``: the meta model (``ml.meta``) learns from the primary (threshold) signals
  on the same tuning rows plus every earlier fold's test rows, whose outcomes are known
  by then; rows whose trade would end at or after the first test bar are dropped
  (purged), so no test-window price decides a meta-label.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from perptrader.ml.base import CLASSES, MLFrame
from perptrader.ml.decision import (
    NEVER,
    DecisionInputs,
    DecisionParams,
    decide,
    decision_inputs,
    fit_decision,
    grid_settings,
)
from perptrader.ml.trading import signals
from perptrader.research.study import DecisionSpec

#: fewest meta-labelled rows a meta model is fitted on (fewer: the fold stays flat)
MIN_META_ROWS = 60


@dataclass
class DecisionContext:
    """What the decision kinds need about one symbol's out-of-sample run."""

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
    vol_window: int = 72
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


@dataclass
class DecisionRun:
    """Targets of the test rows and what was chosen per fold."""

    targets: pd.Series
    folds: list[dict[str, Any]] = field(default_factory=list)
    #: settings searched per fold (0 for rules without a search)
    n_settings: int = 0
    warnings: list[str] = field(default_factory=list)


def _proba(frame: pd.DataFrame) -> np.ndarray:
    return frame[list(CLASSES)].to_numpy(dtype=np.float64)


def _block(ctx: DecisionContext, part: pd.DataFrame) -> tuple[DecisionInputs, np.ndarray]:
    """(DecisionInputs, opens) of a contiguous run of rows of ``part``."""
    sigma, funding = ctx.per_bar()
    pos = ctx.bars.index.get_indexer(part.index)
    inputs = DecisionInputs(_proba(part), sigma[pos], funding[pos], ctx.k, ctx.horizon,
                            ctx.round_trip_cost, ctx.fundings_per_bar)
    return inputs, ctx.bars["open"].to_numpy(dtype=np.float64)[pos]


def _contiguous(frame: pd.DataFrame, bars: pd.DataFrame) -> list[pd.DataFrame]:
    """``frame`` split where its rows are not consecutive bars."""
    if frame.empty:
        return []
    pos = bars.index.get_indexer(frame.index)
    cuts = np.flatnonzero(np.diff(pos) != 1) + 1
    return [frame.iloc[a:b] for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(frame)],
                                            strict=True)]


def _tuning(ctx: DecisionContext, fold: int, first_test: pd.Timestamp) -> pd.DataFrame:
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


def run_decision(ctx: DecisionContext, spec: DecisionSpec) -> DecisionRun:
    """Targets of every out-of-sample row under ``spec`` (see the module docstring)."""
    folds = sorted(int(f) for f in ctx.oos["fold"].unique())
    parts: list[pd.Series] = []
    run = DecisionRun(pd.Series(dtype=np.float64))
    for f in folds:
        test = ctx.oos[ctx.oos["fold"] == f]
        if spec.kind == "threshold":
            target = signals(_proba(test), spec.threshold, spec.threshold)
            run.folds.append({"fold": f})
        elif spec.kind == "cost_aware":
            target, record = _cost_aware(ctx, spec, f, test)
            run.folds.append(record)
            run.n_settings = len(grid_settings(spec.grid or None))
        else:
            target, record = _meta(ctx, spec, f, test)
            run.folds.append(record)
            if record.get("skipped"):
                run.warnings.append(f"fold {f}: {record['skipped']}")
        parts.append(pd.Series(target, index=test.index))
    run.targets = pd.concat(parts).sort_index() if parts else run.targets
    return run


def _cost_aware(ctx: DecisionContext, spec: DecisionSpec, fold: int, test: pd.DataFrame
                ) -> tuple[np.ndarray, dict[str, Any]]:
    """Measure the edge scale, then search the settings, both on the tuning rows."""
    from perptrader.ml.decision import fit_edge_scale
    from perptrader.research.cells import forward_return

    tuning = _tuning(ctx, fold, test.index[0])
    sigma, _ = ctx.per_bar()
    pos = ctx.bars.index.get_indexer(tuning.index)
    score = _proba(tuning)[:, 2] - _proba(tuning)[:, 0] if len(tuning) else np.zeros(0)
    fwd_z = forward_return(ctx.bars, tuning.index, ctx.horizon) / (
        sigma[pos] * np.sqrt(ctx.horizon))
    scale = fit_edge_scale(score, fwd_z, overlap=ctx.horizon)
    fitted = replace(ctx, k=scale.k)
    blocks = [_block(fitted, b) for b in _contiguous(tuning, ctx.bars) if len(b) > 2]
    params, net, chosen = NEVER, 0.0, False
    if blocks and scale.k > 0:
        fit = fit_decision(blocks, spec.grid or None)
        params, net, chosen = fit.params, fit.valid_net, fit.trades
    target = np.zeros(len(test))
    for b in _contiguous(test, ctx.bars):
        inputs, _ = _block(fitted, b)
        target[test.index.get_indexer(b.index)] = decide(inputs, params)
    record = {"fold": fold, "tuning_rows": len(tuning), "edge_k": scale.k,
              "edge_slope": scale.slope, "edge_t": scale.t, "tuning_net": net,
              "trades": chosen, "params": None if params is NEVER else params.as_dict()}
    return target, record


def _meta(ctx: DecisionContext, spec: DecisionSpec, fold: int, test: pd.DataFrame
          ) -> tuple[np.ndarray, dict[str, Any]]:
    from perptrader.ml.meta import (
        MetaModel,
        meta_inputs,
        meta_labels,
        meta_size,
        trade_net_returns,
    )

    tuning = _tuning(ctx, fold, test.index[0])
    side_all = np.zeros(len(ctx.bars))
    pos = ctx.bars.index.get_indexer(tuning.index)
    side_all[pos] = signals(_proba(tuning)) if len(tuning) else 0.0
    net = trade_net_returns(ctx.bars, side_all, ctx.horizon, ctx.round_trip_cost)
    y = meta_labels(side_all[pos], net[pos])
    known = ~np.isnan(y)
    if known.sum() < MIN_META_ROWS or len(np.unique(y[known])) < 2:
        return np.zeros(len(test)), {"fold": fold, "meta_rows": int(known.sum()),
                                     "skipped": f"{int(known.sum())} meta-labelled rows "
                                                f"(< {MIN_META_ROWS} or one class): flat"}
    rows = tuning.index[known]
    frame_pos = ctx.data.index.get_indexer(rows)
    x = meta_inputs(ctx.data.x(frame_pos), _proba(tuning)[known], side_all[pos][known])
    n_valid = max(1, len(rows) // 4)
    model = MetaModel({"num_threads": 1}, seed=ctx.seed)  # same numbers on any backend
    model.fit(x[:-n_valid], y[known][:-n_valid], None, x[-n_valid:], y[known][-n_valid:], None)
    test_side = signals(_proba(test))
    x_test = meta_inputs(ctx.data.x(ctx.data.index.get_indexer(test.index)), _proba(test),
                         test_side)
    p = model.predict(x_test)
    target = meta_size(test_side, p, spec.threshold, spec.sizing)
    return target, {"fold": fold, "meta_rows": int(known.sum()),
                    "meta_success_rate": float(np.mean(y[known])),
                    "taken": int(np.sum(target != 0)), "signals": int(np.sum(test_side != 0))}


__all__ = [
    "MIN_META_ROWS",
    "DecisionContext",
    "DecisionParams",
    "DecisionRun",
    "run_decision",
]
