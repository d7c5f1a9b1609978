"""RL agent trials of a study (``rl.study.agent_trial``), on the same research span.

An agent trains once per seed on the window before the cell's first walk-forward test
window and is tested on the whole out-of-sample span the classifiers are tested on (up
to the lockbox), so its figures line up with theirs. A collapsed seed (one action for
nearly every bar, or no trade) fails the trial's verdict and the study's.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from perptrader.core.jsonsafe import json_safe
from perptrader.research.cells import Cell, first_test_bar
from perptrader.research.runner import Progress
from perptrader.research.study import Study


def run_agents(study: Study, cells: dict[tuple[str, str, str], Cell],
               progress: Progress | None = None
               ) -> tuple[list[dict[str, Any]], dict[str, pd.Series]]:
    """One trial per (agent, symbol)."""
    from perptrader.ml.splits import WalkForwardSpec
    from perptrader.rl.rollout import seed_summary
    from perptrader.rl.study import agent_trial
    from perptrader.sim.costs import CostModel

    fs = study.feature_sets[0]
    jobs = [(a, s) for a in study.agents for s in a.symbols]
    trials, returns = [], {}
    for i, (agent, symbol) in enumerate(jobs):
        if progress:
            progress("agent", i, len(jobs), f"{agent.name} {symbol}")
        cell = cells[(symbol, agent.timeframe, fs)]
        spec = study.walkforward[agent.timeframe]
        start, end = first_test_bar(cell, spec), cell.lockbox_start
        train = (start - WalkForwardSpec.parse(spec).train_td, start)
        out = agent_trial(cell.bars, symbol=symbol, timeframe=agent.timeframe,
                          funding=cell.funding, train=train, test=(start, end),
                          settings=dict(agent.settings), seeds=list(agent.seeds),
                          costs=CostModel(**study.costs))
        trial_id = f"agent/{agent.timeframe}/{agent.name}/{symbol}"
        r = pd.Series(out["bar_returns"], index=pd.DatetimeIndex(out["test_index"]))
        returns[trial_id] = r
        trials.append(json_safe({
            "id": trial_id, "kind": "agent", "unit": trial_id, "symbol": symbol,
            "timeframe": agent.timeframe, "recipe": f"agent:{agent.name}",
            "decision": None, "seen": True, "agent": out,
            "collapsed": bool(out.get("collapsed_seeds")),
            "trading": {"total_return": out.get("mean_net_return"),
                        **seed_summary(out.get("seeds", []),
                                       ("sharpe", "trades", "turnover"))},
            "verdict": out.get("verdict"),
            "first_bar": r.index[0].isoformat() if len(r) else None,
            "last_bar": r.index[-1].isoformat() if len(r) else None}))
    if progress and jobs:
        progress("agent", len(jobs), len(jobs), "")
    return trials, returns


__all__ = ["run_agents"]
