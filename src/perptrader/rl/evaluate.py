"""``perptrader rl eval``: an agent out of sample, through the backtester, beside the
baselines.

The agent decides bar by bar (``rollout.run_agent``); its decisions are backtested by
``backtest.engine.run_on_frame`` on the window's bars, and so are the baselines, all on
the agent's account (isolated, margin leverage 2x, same costs and funding):
buy-and-hold, the model-threshold strategy (long/short when the GBDT's P(BUY)/P(SELL)
>= 0.45, the ML issue's rule), always-flat and seeded random entries. A policy is
reported as collapsed when it never trades or one target exposure (flat, or one size of
long or short) is kept on more than 90% of the steps (``rollout.collapse``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perptrader.backtest.engine import BacktestResult, run_on_frame
from perptrader.core.jsonsafe import json_safe
from perptrader.core.timeframes import timeframe_delta
from perptrader.marketdata.store.base import MarketStore
from perptrader.ml.base import CLASSES
from perptrader.ml.trading import signals
from perptrader.rl import storage
from perptrader.rl.agents import load_policy
from perptrader.rl.committee import CommitteeRules
from perptrader.rl.data import (
    EVAL_LOOKBACK_BARS,
    build_raw,
    env_market,
    load_models,
    load_window,
    utc,
)
from perptrader.rl.market import EnvMarket, rl_sim_config
from perptrader.rl.reward import RewardConfig
from perptrader.rl.rollout import Rollout, collapse, run_agent, seed_summary, verdict
from perptrader.rl.state import StateSpec
from perptrader.strategies import AlwaysFlat, BuyAndHold, PrecomputedTargets, RandomEntries

HEADLINE = ("total_return", "sharpe", "sortino", "max_drawdown", "win_rate", "trades",
            "fees_paid", "funding_paid", "liquidations", "time_in_market")
#: the per-seed figures of ``seeds`` (and their mean in ``seed_mean``)
SEED_FIGURES = ("total_return", "sharpe", "max_drawdown", "trades", "turnover",
                "fees_paid", "liquidations")


def load_agent(name: str) -> tuple[dict[str, Any], StateSpec, dict[str, Any],
                                   dict[str, np.ndarray]]:
    """(manifest, state spec, policies, observation columns per policy)."""
    manifest = storage.read_manifest(name)
    spec = StateSpec.from_dict(storage.read_state(name))
    folder = Path(manifest["path"])
    labels = ["ppo"] if manifest["agent"] == "ppo" else ["pattern", "indicator"]
    policies = {label: load_policy(folder / label / "policy.zip") for label in labels}
    cols = {label: spec.agent_columns(label) for label in labels if label != "ppo"}
    return manifest, spec, policies, cols


def load_seed_policies(manifest: dict[str, Any], seed: int) -> dict[str, Any]:
    """The policies of one of the seeds the agent was trained with."""
    folder = Path(manifest["path"])
    labels = ["ppo"] if manifest["agent"] == "ppo" else ["pattern", "indicator"]
    root = storage.policy_root(folder, seed, storage.manifest_seeds(manifest)[0])
    return {label: load_policy(root / label / "policy.zip") for label in labels}


def agent_market(store: MarketStore, manifest: dict[str, Any], spec: StateSpec,
                 start: Any, end: Any) -> tuple[EnvMarket, pd.DataFrame, list[str]]:
    """The agent's ``EnvMarket`` over ``[start, end)`` (warm-up loaded before it), the
    models' probabilities on its bars (for the model-threshold baseline) and the load's
    warnings."""
    window = load_window(store, manifest["symbol"], manifest["timeframe"], start, end,
                         feature_set=manifest["feature_set"],
                         lookback_bars=EVAL_LOOKBACK_BARS, families=manifest["families"])
    models = load_models(list(manifest["models"].values()), window.data)
    rows = np.nonzero(window.data.index >= utc(start))[0].astype(np.int64)
    raw = build_raw(window, models, rows)
    outputs = raw[[c for c in raw.columns if "_p_" in c]]
    market = env_market(window, raw, spec, rl_sim_config())
    return market, outputs, window.warnings


def _row(res: BacktestResult) -> dict[str, Any]:
    return {k: res.metrics.get(k) for k in HEADLINE}


def backtest_rollout(market: EnvMarket, rollout: Rollout, *, label: str,
                     baselines: dict[str, Any]) -> tuple[BacktestResult,
                                                         dict[str, BacktestResult]]:
    """The agent's decisions and the baselines through ``run_on_frame`` on the same
    bars and account."""
    frame = market.market
    bars = pd.DataFrame({"open": frame.open, "high": frame.high, "low": frame.low,
                         "close": frame.close, "mark_open": frame.mark_open,
                         "mark_high": frame.mark_high, "mark_low": frame.mark_low,
                         "mark_close": frame.mark_close}, index=market.index)
    funding = pd.DataFrame({"ts": market.index + timeframe_delta(market.timeframe),
                            "rate": frame.funding_due})
    funding = funding[funding["rate"] != 0.0]
    common = {"symbol": market.symbol, "timeframe": market.timeframe,
              "costs": market.config.costs, "leverage": 1.0,
              "margin_leverage": market.config.leverage,
              "initial_cash": market.config.initial_cash, "funding": funding,
              "n_trials": 1}
    agent = PrecomputedTargets(rollout.decisions, label=label)
    res = run_on_frame(bars, agent, **common)
    base = {k: run_on_frame(bars, s, **common) for k, s in baselines.items()}
    return res, base


def evaluate_agent(store: MarketStore, name: str, start: Any = None, end: Any = None, *,
                   save: bool = True) -> dict[str, Any]:
    """Evaluate agent ``name`` on ``[start, end)`` (default: from the end of its
    validation slice to the end of the data); returns the JSON of ``rl eval``. With
    ``save`` the backtest run (result.json, trades, equity, HTML report) and
    ``rl_eval.json`` go to ``<agent>/eval-<start>-<end>/``."""
    manifest, spec, policies, cols = load_agent(name)
    if start is None:
        start = pd.Timestamp(manifest["windows"]["valid"][1]) + timeframe_delta(
            manifest["timeframe"])
    start = utc(start)
    train_end = pd.Timestamp(manifest["windows"]["valid"][1])
    warnings: list[str] = []
    if start <= train_end:
        warnings.append(f"the window starts at {start}, before the end of the agent's "
                        f"training/validation data ({train_end}): IN-SAMPLE figures")
    market, outputs, load_warnings = agent_market(store, manifest, spec, start, end)
    warnings.extend(load_warnings)
    reward = RewardConfig.from_dict(manifest["reward"])
    rules = CommitteeRules(**manifest["committee"]) if manifest.get("committee") else None
    rollout = run_agent(market, policies, cols, rules=rules, reward=reward)
    baselines: dict[str, Any] = {"buy_and_hold": BuyAndHold(), "always_flat": AlwaysFlat(),
                                 "random": RandomEntries()}
    role = "gbdt" if "gbdt_p_buy" in outputs.columns else next(
        iter(manifest["models"]), None)
    if role is not None and f"{role}_p_buy" in outputs.columns:
        p = outputs[[f"{role}_p_{c.lower()}" for c in CLASSES]].to_numpy(np.float64)
        ok = ~np.isnan(p).any(axis=1)
        sig = np.zeros(len(p))
        sig[ok] = signals(p[ok])
        baselines[f"model_threshold ({manifest['models'][role]['name']})"] = \
            PrecomputedTargets(pd.Series(sig, index=outputs.index), label="model_threshold")
    res, base = backtest_rollout(market, rollout, label=f"rl:{name}", baselines=baselines)
    dist = rollout.action_distribution()
    seeds = storage.manifest_seeds(manifest)
    seed_rows = [seed_row(seeds[0], res, rollout)]
    for seed in seeds[1:]:
        other = run_agent(market, load_seed_policies(manifest, seed), cols, rules=rules,
                          reward=reward)
        r, _ = backtest_rollout(market, other, label=f"rl:{name}@{seed}", baselines={})
        seed_rows.append(seed_row(seed, r, other))
    reasons = {row["seed"]: row["collapse_reason"] for row in seed_rows}
    bad = [f"seed {s}: {why}" for s, why in reasons.items() if why is not None]
    payload: dict[str, Any] = {
        "name": name, "agent": manifest["agent"], "symbol": market.symbol,
        "timeframe": market.timeframe, "start": str(market.index[0]),
        "end": str(market.index[-1] + timeframe_delta(market.timeframe)),
        "bars": len(market), **_row(res),
        "action_distribution": dist, "position_shares": rollout.position_shares(),
        "collapsed": bool(bad), "collapse_reason": "; ".join(bad) if bad else None,
        "verdict": verdict(reasons), "seeds": seed_rows,
        "seed_mean": seed_summary(seed_rows, SEED_FIGURES),
        "invalid_actions": rollout.info["invalid_actions"],
        "baselines": {k: _row(v) for k, v in base.items()},
        "warnings": [*warnings, *res.warnings],
    }
    for key in ("pattern_proposals", "indicator_proposals"):
        if key in rollout.info:
            payload[key] = rollout.info[key]
    env_final = float(rollout.equity.iloc[-1]) if len(rollout.equity) else None
    payload["env_final_equity"] = env_final
    if save:
        from perptrader.backtest.artifacts import write_run

        out_dir = eval_folder(name, payload["start"], payload["end"])
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = write_run(res, out_dir)
        payload["report"] = str(paths.get("report", ""))
        storage.write_json(out_dir / "rl_eval.json", payload)
    return json_safe(payload)


def seed_row(seed: int, res: BacktestResult, rollout: Rollout) -> dict[str, Any]:
    """One seed's line of the evaluation: its figures, action and position shares, and
    collapse (``rollout.collapse`` on its actions and backtest trades)."""
    dist = rollout.action_distribution()
    reason = collapse(dist, int(res.metrics.get("trades") or 0),
                      rollout.decisions.to_numpy())
    return {"seed": int(seed), **{k: res.metrics.get(k) for k in SEED_FIGURES},
            "action_share": dist, "position_share": rollout.position_shares(),
            "collapsed": reason is not None, "collapse_reason": reason}


def eval_folder(name: str, payload_start: Any, payload_end: Any) -> Path:
    """``<agent>/eval-<start>-<end>/``."""
    fmt = "%Y%m%dT%H%M"
    s, e = utc(payload_start).strftime(fmt), utc(payload_end).strftime(fmt)
    return storage.agent_folder(name) / f"eval-{s}-{e}"

