"""Run a trained agent over a window, one deterministic decision per bar.

This is how an agent trades outside training: ``rl eval`` and the ``rl:NAME`` backtest
strategy both use it, and the decisions it returns are ordinary backtest targets (the
environment and the backtester share the accounting, so the backtest of these targets
reproduces the environment's equity; tests/rl/test_equivalence.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from perptrader.rl import actions as ACT
from perptrader.rl import core as C
from perptrader.rl.committee import CommitteeRules, combine
from perptrader.rl.env import PerpFuturesEnv
from perptrader.rl.market import EnvMarket
from perptrader.rl.reward import RewardConfig

#: one target kept above this share of the steps = a collapsed policy
COLLAPSE_SHARE = 0.90
_DRAWDOWN = C.ACCOUNT_FEATURES.index("acc_drawdown")
_MARGIN_RATIO = C.ACCOUNT_FEATURES.index("acc_margin_ratio")


@dataclass
class Rollout:
    """Decisions (targets at each decision bar's close) and what the agent did."""

    decisions: pd.Series
    actions: np.ndarray
    equity: pd.Series
    info: dict[str, Any] = field(default_factory=dict)

    def action_distribution(self) -> dict[str, float]:
        n = max(len(self.actions), 1)
        counts = np.bincount(self.actions, minlength=ACT.N_ACTIONS)
        return {name: round(float(c) / n, 4) for name, c in zip(ACT.ACTION_NAMES, counts,
                                                                   strict=True)}

    def position_shares(self) -> dict[str, float]:
        d = self.decisions.to_numpy()
        n = max(len(d), 1)
        return {"long": round(float((d > 0).sum()) / n, 4),
                "short": round(float((d < 0).sum()) / n, 4),
                "flat": round(float((d == 0).sum()) / n, 4)}


def collapse(distribution: dict[str, float], trades: int,
             decisions: np.ndarray) -> str | None:
    """Why a policy counts as collapsed (None when it does not): no trades, or one
    TARGET exposure (``Rollout.decisions``) kept on more than ``COLLAPSE_SHARE`` of the
    steps. Not one action: under incremental actions an agent repeats 'hold' while it
    keeps a position, and an always-long agent may still size its position up and
    down; one target kept on nearly every step is a constant policy (always flat, or
    buy-and-hold by another name). The dominant action is named beside it."""
    if trades == 0:
        return "no trades"
    d = np.round(np.asarray(decisions, dtype=np.float64), 9)
    if len(d) == 0:
        return "no decisions"
    values, counts = np.unique(d, return_counts=True)
    i = int(np.argmax(counts))
    share = counts[i] / len(d)
    if share <= COLLAPSE_SHARE:
        return None
    top = max(distribution, key=distribution.get)
    return (f"target {values[i]:+.2f} on {share:.0%} of the steps ('{top}' action on "
            f"{distribution[top]:.0%})")


def verdict(reasons: dict[int, str | None]) -> str:
    """The verdict over an agent's seeds (seed -> collapse reason or None): ``"ok"``, or
    ``"fail: collapsed (seed 0: 'hold' on 97% of the steps; ...)"`` when ANY seed
    collapsed. One collapsed seed fails the agent: a mean over seeds would otherwise hide
    a policy that does nothing behind one that happened to trade."""
    bad = [f"seed {seed}: {why}" for seed, why in reasons.items() if why is not None]
    if not reasons:
        return "fail: no seeds evaluated"
    return f"fail: collapsed ({'; '.join(bad)})" if bad else "ok"


def seed_summary(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    """The mean over seeds of each numeric ``keys`` figure (None when no seed has it)."""
    out: dict[str, Any] = {}
    for k in keys:
        vals = [float(r[k]) for r in rows if r.get(k) is not None
                and np.isfinite(float(r[k]))]
        out[k] = float(np.mean(vals)) if vals else None
    return out


def run_agent(market: EnvMarket, policies: dict[str, Any], obs_columns: dict[str, np.ndarray],
              *, first: int = 0, last: int | None = None,
              rules: CommitteeRules | None = None,
              reward: RewardConfig | None = None) -> Rollout:
    """Step ``policies`` ({"ppo": model} or {"pattern": m, "indicator": m}) through the
    whole window, deterministically, masks applied; the dual agents' proposals go
    through the committee."""
    env = PerpFuturesEnv(market, reward, first=first, last=last, episode_bars=None)
    obs, _ = env.reset(options={"start": env.window.first, "end": env.window.last})
    rules = rules or CommitteeRules()
    n_state = market.state.shape[1]
    dual = "ppo" not in policies
    decisions, acts, equity, bars = [], [], [], []
    proposals = {"pattern": [], "indicator": []}
    done = False
    while not done:
        mask = env.action_masks()
        t = env.batch.bar(0)
        if dual:
            votes = {}
            for role in ("pattern", "indicator"):
                a, _ = policies[role].predict(obs[obs_columns[role]], action_masks=mask,
                                              deterministic=True)
                votes[role] = int(a)
                proposals[role].append(int(a))
            action = combine(votes["pattern"], votes["indicator"],
                             target=env.batch.target(0), vsa_dir=float(market.vsa_dir[t]),
                             drawdown=float(obs[n_state + _DRAWDOWN]),
                             margin_ratio=float(obs[n_state + _MARGIN_RATIO]), rules=rules)
        else:
            a, _ = policies["ppo"].predict(obs, action_masks=mask, deterministic=True)
            action = int(a)
        obs, _, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        bars.append(t)
        decisions.append(info["decision"])
        acts.append(action)
        equity.append(info["equity"])
    at = np.asarray(bars, dtype=np.int64)
    out = Rollout(decisions=pd.Series(decisions, index=market.index[at], name="target"),
                  actions=np.asarray(acts, dtype=np.int64),
                  # the equity a decision's step ends with is marked at the next bar's close
                  equity=pd.Series(equity, index=market.index[at + 1], name="equity"),
                  info={"trades": info["trades"], "liquidations": info["liquidations"],
                        "invalid_actions": info["invalid_actions"]})
    if dual:
        for role, seq in proposals.items():
            counts = np.bincount(np.asarray(seq, dtype=np.int64), minlength=ACT.N_ACTIONS)
            out.info[f"{role}_proposals"] = {
                name: round(float(c) / max(len(seq), 1), 4)
                for name, c in zip(ACT.ACTION_NAMES, counts, strict=True)}
    return out
