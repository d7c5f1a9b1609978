"""Out-of-sample probabilities to target exposures, fold by fold, for each decision kind.

What each kind may look at when it chooses, for test fold f (never fold f's test rows):

* ``threshold``: nothing; a fixed rule (long when P(BUY) >= t, short when P(SELL) >= t).
* ``cost_aware``: its settings are searched on the TUNING rows of fold f: the fold's
  validation slice (per-symbol walk-forward; pooled models have none of their own) and
  the earlier folds' out-of-sample windows of the same symbol, purged as below. A
  validation slice alone (a few hundred bars) let the search pick settings that were
  lucky there; fold 0 of a pooled run has nothing to tune on and stays flat. The steps
  are ``ml.decision_oos``'s, the ones ``perptrader train`` stores with a model.
* ``meta``: the meta model (``ml.meta``) learns from the primary (threshold) signals
  on the same tuning rows plus every earlier fold's test rows, whose outcomes are known
  by then; rows whose trade would end at or after the first test bar are dropped
  (purged), so no test-window price decides a meta-label.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from perptrader.ml.decision import DecisionParams, grid_settings
from perptrader.ml.decision_oos import (
    DecisionContext,
    cost_aware_fold,
    proba_of,
    tuning_rows,
)
from perptrader.ml.trading import signals
from perptrader.research.study import DecisionSpec

#: fewest meta-labelled rows a meta model is fitted on (fewer: the fold stays flat)
MIN_META_ROWS = 60


@dataclass
class DecisionRun:
    """Targets of the test rows and what was chosen per fold."""

    targets: pd.Series
    folds: list[dict[str, Any]] = field(default_factory=list)
    #: settings searched per fold (0 for rules without a search)
    n_settings: int = 0
    warnings: list[str] = field(default_factory=list)


def run_decision(ctx: DecisionContext, spec: DecisionSpec) -> DecisionRun:
    """Targets of every out-of-sample row under ``spec`` (see the module docstring)."""
    folds = sorted(int(f) for f in ctx.oos["fold"].unique())
    parts: list[pd.Series] = []
    run = DecisionRun(pd.Series(dtype=np.float64))
    for f in folds:
        test = ctx.oos[ctx.oos["fold"] == f]
        if spec.kind == "threshold":
            target = signals(proba_of(test), spec.threshold, spec.threshold)
            run.folds.append({"fold": f})
        elif spec.kind == "cost_aware":
            target, record = cost_aware_fold(ctx, f, test, spec.grid or None)
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


def _meta(ctx: DecisionContext, spec: DecisionSpec, fold: int, test: pd.DataFrame
          ) -> tuple[np.ndarray, dict[str, Any]]:
    from perptrader.ml.meta import (
        MetaModel,
        meta_inputs,
        meta_labels,
        meta_size,
        trade_net_returns,
    )

    tuning = tuning_rows(ctx, fold, test.index[0])
    side_all = np.zeros(len(ctx.bars))
    pos = ctx.bars.index.get_indexer(tuning.index)
    side_all[pos] = signals(proba_of(tuning)) if len(tuning) else 0.0
    net = trade_net_returns(ctx.bars, side_all, ctx.horizon, ctx.round_trip_cost)
    y = meta_labels(side_all[pos], net[pos])
    known = ~np.isnan(y)
    if known.sum() < MIN_META_ROWS or len(np.unique(y[known])) < 2:
        return np.zeros(len(test)), {"fold": fold, "meta_rows": int(known.sum()),
                                     "skipped": f"{int(known.sum())} meta-labelled rows "
                                                f"(< {MIN_META_ROWS} or one class): flat"}
    rows = tuning.index[known]
    frame_pos = ctx.data.index.get_indexer(rows)
    x = meta_inputs(ctx.data.x(frame_pos), proba_of(tuning)[known], side_all[pos][known])
    n_valid = max(1, len(rows) // 4)
    model = MetaModel({"num_threads": 1}, seed=ctx.seed)  # same numbers on any backend
    model.fit(x[:-n_valid], y[known][:-n_valid], None, x[-n_valid:], y[known][-n_valid:], None)
    test_side = signals(proba_of(test))
    x_test = meta_inputs(ctx.data.x(ctx.data.index.get_indexer(test.index)), proba_of(test),
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
