"""One RL trial for a research study: train PPO per seed on a span, test on a later span.

``agent_trial`` is what the research study runner (``perptrader.research``) calls: it
takes a loaded bar frame and two spans and needs neither the CLI, the market store nor
the model registry. Everything else is the code an agent trained by ``rl train`` runs
on, so a study's trial and a saved agent differ only in their settings:

* the state: ``features="minimal"`` (the default) is the fused state WITHOUT model
  outputs: the VSA and market columns of ``rl.state`` (fitted on the training rows) plus
  the nine account features. It needs no fitted model, so a tiny agent trains in
  seconds; the model-output state stays with ``rl train``, whose quick models take
  minutes and must be registered.
* training: ``rl.agents.train_ppo`` (MaskablePPO, the entropy schedule) on the train
  span, whose last ``valid_share`` picks the policy kept (as ``rl train`` does);
* the test: ``rl.rollout.run_agent`` over the test span, its decisions backtested by
  ``backtest.engine.run_on_frame`` on the same bars, costs and funding as
  ``rl eval`` (``rl.evaluate.backtest_rollout``).

Spans are half-open, ``[start, end)`` of bar open times. Features are computed on the
whole frame (they are causal), so the test span's first bars have a full state when the
frame holds history before it; the feature warm-up (up to 728 1h bars for the 30-day
funding z-score) is cut from the FRONT of the frame, i.e. from the train span.
No look-ahead: the PCA/z-score statistics, the policy and its choice use train rows only.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perptrader.core.errors import PerptraderError
from perptrader.core.jsonsafe import json_safe
from perptrader.rl.agents import PPOSettings, load_policy, train_ppo
from perptrader.rl.data import Window, env_market
from perptrader.rl.evaluate import backtest_rollout
from perptrader.rl.market import EnvMarket, rl_sim_config
from perptrader.rl.reward import RewardConfig
from perptrader.rl.rollout import collapse, run_agent, verdict
from perptrader.rl.state import StateSpec, fit_state, raw_state
from perptrader.sim import CostModel

#: the seeds a study trains when it names none (the research path averages three)
RESEARCH_SEEDS = (0, 1, 2)
#: feature families the minimal state reads (VSA and the market columns of rl.state)
MINIMAL_FAMILIES = ("vsa", "trend", "momentum", "volatility", "funding", "oi")
STATE_KINDS = ("minimal",)
#: PPO settings of a study trial unless ``settings`` overrides them: small rollouts so a
#: few thousand steps still make several updates, no checkpoints
TRIAL_PPO = {"n_envs": 4, "n_steps": 128, "batch_size": 256, "n_epochs": 4,
             "net_arch": (64, 64), "episode_bars": 240}


@dataclass(frozen=True)
class TrialSettings:
    """What a study may set (``settings`` dict); unknown keys that are PPO settings
    (``PPOSettings`` fields, e.g. ``ent_coef``) are passed to PPO, others are refused."""

    timesteps: int = 20_000
    features: str = "minimal"
    reward: str = "log_growth"
    #: share of the train span's rows kept for validation (model choice)
    valid_share: float = 0.15
    #: validation episodes during training (the best one's policy is kept)
    n_evals: int = 4
    ppo: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def from_dict(cls, settings: dict[str, Any] | None) -> TrialSettings:
        own = {f.name for f in fields(cls)} - {"ppo"}
        ppo_keys = {f.name for f in fields(PPOSettings)}
        d = dict(settings or {})
        unknown = sorted(set(d) - own - ppo_keys)
        if unknown:
            raise PerptraderError(f"unknown RL trial setting(s) {unknown}; trial settings: "
                                  f"{sorted(own)}, or any PPO setting")
        ppo = {k: d.pop(k) for k in list(d) if k in ppo_keys and k not in own}
        out = cls(**d, ppo=tuple(sorted(ppo.items())))
        if out.features not in STATE_KINDS:
            raise PerptraderError(f"RL trial features {out.features!r}: one of "
                                  f"{', '.join(STATE_KINDS)} (the state with model outputs "
                                  f"needs registered models: `perptrader rl train`)")
        if not 0.0 < out.valid_share < 0.5 or out.timesteps < 1 or out.n_evals < 1:
            raise PerptraderError("RL trial: valid_share in (0, 0.5), timesteps >= 1 and "
                                  "n_evals >= 1")
        try:
            out.ppo_settings(0)
            RewardConfig.from_preset(out.reward)
        except (TypeError, ValueError) as exc:
            raise PerptraderError(f"RL trial settings: {exc}") from None
        return out

    def ppo_settings(self, seed: int) -> PPOSettings:
        base = {**TRIAL_PPO, **dict(self.ppo), "seed": int(seed), "seeds": 1}
        rollout = int(base["n_envs"]) * int(base["n_steps"])
        if self.timesteps < rollout:  # a tiny budget still makes whole rollouts
            base["n_steps"] = max(self.timesteps // int(base["n_envs"]), 8)
            rollout = int(base["n_envs"]) * int(base["n_steps"])
        base["batch_size"] = min(int(base["batch_size"]), rollout)
        base.setdefault("eval_every", max(self.timesteps // self.n_evals, rollout))
        base.setdefault("checkpoint_every", 10 ** 12)
        base["net_arch"] = tuple(base["net_arch"])
        return PPOSettings(**base)


@dataclass
class _Spans:
    """The trial's markets: train (with its validation tail) and test."""

    train: EnvMarket
    n_fit: int
    test: EnvMarket
    spec: StateSpec


def _span_rows(index: pd.DatetimeIndex, span: tuple[Any, Any], what: str) -> np.ndarray:
    lo, hi = (pd.Timestamp(t) for t in span)
    lo = lo.tz_localize("UTC") if lo.tzinfo is None else lo.tz_convert("UTC")
    hi = hi.tz_localize("UTC") if hi.tzinfo is None else hi.tz_convert("UTC")
    rows = np.nonzero((index >= lo) & (index < hi))[0].astype(np.int64)
    if len(rows) == 0:
        raise PerptraderError(f"the {what} span [{lo}, {hi}) holds no bars with features "
                              f"(the feature warm-up is cut from the frame's start)")
    return rows


def build_spans(bars: pd.DataFrame, *, symbol: str, timeframe: str,
                funding: pd.DataFrame | None, train: tuple[Any, Any],
                test: tuple[Any, Any], costs: Any | None, valid_share: float) -> _Spans:
    """Features on the whole frame, the minimal state fitted on the train span's rows
    before its validation tail, one ``EnvMarket`` per span."""
    from perptrader.ml.dataset import build_ml_frame
    from perptrader.sim.market import choose_funding

    data = build_ml_frame(bars, symbol=symbol, timeframe=timeframe,
                          families=list(MINIMAL_FAMILIES))
    train_rows = _span_rows(data.index, train, "train")
    test_rows = _span_rows(data.index, test, "test")
    if train_rows[-1] >= test_rows[0]:
        raise PerptraderError(f"the train span {train} must end before the test span "
                              f"{test} starts")
    n_valid = max(int(len(train_rows) * valid_share), 30)
    n_fit = len(train_rows) - n_valid
    if n_fit < 100 or len(test_rows) < 3:
        raise PerptraderError(f"{len(train_rows)} train / {len(test_rows)} test bars with "
                              f"features: too few for an RL trial (train needs >= "
                              f"{100 + n_valid})")
    warnings: list[str] = []
    chosen, _ = choose_funding(bars, timeframe, funding, warnings)
    window = Window(symbol=symbol, timeframe=timeframe, data=data, bars=bars,
                    funding=chosen, warnings=warnings)
    empty = pd.DataFrame(index=data.index)
    raw = raw_state(data, empty)
    spec = fit_state(raw.iloc[train_rows], np.arange(n_fit), [])
    config = rl_sim_config(_cost_model(costs))
    return _Spans(train=env_market(window, raw.iloc[train_rows], spec, config),
                  n_fit=n_fit, test=env_market(window, raw.iloc[test_rows], spec, config),
                  spec=spec)


def _cost_model(costs: Any | None) -> CostModel | None:
    """A ``CostModel``, a dict of its fields, or None (the standard costs)."""
    if costs is None or isinstance(costs, CostModel):
        return costs
    if isinstance(costs, dict):
        return CostModel(**costs)
    raise PerptraderError(f"costs must be a CostModel or a dict of its fields, not "
                          f"{type(costs).__name__}")


def _bar_returns(res: Any, initial_cash: float) -> np.ndarray:
    """Net return of every test bar (equity at its close over the one before; the first
    over the initial cash), after fees, slippage and funding."""
    equity = res.sim.bars["equity"].to_numpy(np.float64)
    prev = np.concatenate([[initial_cash], equity[:-1]])
    return np.where(prev > 0.0, equity / np.where(prev > 0.0, prev, 1.0) - 1.0, 0.0)


def _one_seed(spans: _Spans, cfg: TrialSettings, reward: RewardConfig, seed: int,
              folder: Path) -> tuple[dict[str, Any], np.ndarray]:
    """Train seed ``seed`` on the train span, run it over the test span, backtest it."""
    settings = cfg.ppo_settings(seed)
    n = len(spans.train)
    rec = train_ppo(spans.train, train=(0, spans.n_fit - 1), valid=(spans.n_fit - 1, n - 1),
                    timesteps=max(cfg.timesteps, settings.n_envs * settings.n_steps),
                    out_dir=folder, label=f"seed{seed}", reward=reward, settings=settings,
                    tensorboard=False, checkpoints=False)
    policy = load_policy(folder / f"seed{seed}" / "policy.zip")
    rollout = run_agent(spans.test, {"ppo": policy}, {}, reward=reward)
    res, _ = backtest_rollout(spans.test, rollout, label=f"rl-trial-s{seed}", baselines={})
    dist, positions = rollout.action_distribution(), rollout.position_shares()
    trades = int(res.metrics.get("trades") or 0)
    reason = collapse(dist, trades, rollout.decisions.to_numpy())
    row = {"seed": int(seed), "net_return": res.metrics.get("total_return"),
           "sharpe": res.metrics.get("sharpe"), "trades": trades,
           "turnover": res.metrics.get("turnover"),
           "max_drawdown": res.metrics.get("max_drawdown"), "action_share": dist,
           "position_share": positions, "collapsed": reason is not None,
           "collapse_reason": reason, "policy": rec["policy"],
           "train_wall_s": rec["wall_s"], "timesteps": rec["timesteps"]}
    return row, _bar_returns(res, spans.test.config.initial_cash)


def agent_trial(bars: pd.DataFrame, *, symbol: str, timeframe: str,
                funding: pd.DataFrame | None, train: tuple[pd.Timestamp, pd.Timestamp],
                test: tuple[pd.Timestamp, pd.Timestamp], settings: dict[str, Any],
                seeds: list[int], costs: Any | None = None) -> dict[str, Any]:
    """Train one PPO agent per seed on ``train`` and test each on ``test`` (see the
    module docstring); returns JSON-able results:

    ``seeds``: per seed ``seed, net_return, sharpe, trades, turnover, max_drawdown,
    action_share, position_share, collapsed, collapse_reason`` (+ training facts);
    ``mean_net_return`` (mean over seeds), ``mean_sharpe``, ``collapsed_seeds``,
    ``verdict`` ("ok" or "fail: collapsed (...)" when any seed collapsed),
    ``bar_returns`` (the seed-averaged net return of every test bar, one per entry of
    ``test_index``, the test span's bar open times as ISO strings) and ``settings``.

    ``funding``: stored settlement events (``marketdata.loader.funding_events``) or None
    (the frame's funding columns are used); ``costs``: a ``sim.CostModel`` or a dict of
    its fields, default the standard taker costs.
    """
    import torch

    if not seeds:
        raise PerptraderError("agent_trial needs at least one seed")
    cfg = TrialSettings.from_dict(settings)
    reward = RewardConfig.from_preset(cfg.reward)
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        spans = build_spans(bars, symbol=symbol, timeframe=timeframe, funding=funding,
                            train=train, test=test, costs=costs, valid_share=cfg.valid_share)
        rows, returns = [], []
        with tempfile.TemporaryDirectory(prefix="rl-trial-") as tmp:
            for seed in seeds:
                row, rets = _one_seed(spans, cfg, reward, int(seed), Path(tmp))
                rows.append(row)
                returns.append(rets)
    finally:
        torch.set_num_threads(threads)
    nets = [r["net_return"] for r in rows if r["net_return"] is not None]
    sharpes = [r["sharpe"] for r in rows if r["sharpe"] is not None
               and np.isfinite(r["sharpe"])]
    out = {
        "seeds": rows,
        "mean_net_return": float(np.mean(nets)) if nets else None,
        "mean_sharpe": float(np.mean(sharpes)) if sharpes else None,
        "collapsed_seeds": [r["seed"] for r in rows if r["collapsed"]],
        "verdict": verdict({r["seed"]: r["collapse_reason"] for r in rows}),
        "bar_returns": np.mean(np.vstack(returns), axis=0).tolist(),
        "test_index": [t.isoformat() for t in spans.test.index],
        "train_index": [spans.train.index[0].isoformat(), spans.train.index[-1].isoformat()],
        "state_columns": spans.spec.columns,
        "settings": {"timesteps": cfg.timesteps, "features": cfg.features,
                     "reward": cfg.reward, "valid_share": cfg.valid_share,
                     "ppo": {k: v for k, v in cfg.ppo_settings(0).as_dict().items()
                             if k not in ("seed", "seeds")}},
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    return json_safe(out)
