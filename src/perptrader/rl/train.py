"""``perptrader rl train``: models -> fused state -> PPO agent(s), saved by name.

Windows inside ``[start, end)`` (no row is used twice for fitting):

1. models: with ``--models`` the registered models are used as they are, and the
   agent's rows start ``horizon`` bars after the last bar they were trained on (their
   manifests' data range), so the agent never sees in-sample model outputs. Without
   ``--models`` quick models (the GBDT ensemble and both xLSTM experts) are fitted on the
   first ``model_share`` of the window and registered as ``<name>-<kind>``;
2. agent training: the following rows up to the validation slice; the state's PCA and
   z-scores are fitted here;
3. validation: the last ``valid_share`` of the rows, used by the evaluation callback
   to pick the policy kept.

``settings.seeds`` policies (seeds ``seed, seed + 1, ...``) are trained on the same
state; each is run once over the validation slice afterwards and its collapse is stored
in the manifest with a verdict (``"fail: collapsed (...)"`` when any seed collapsed).

The out-of-sample test is ``perptrader rl eval`` on a later window.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perptrader import __version__
from perptrader.core.errors import PerptraderError
from perptrader.core.timeframes import timeframe_delta
from perptrader.features.pipeline import families_of
from perptrader.features.sets import get_set
from perptrader.marketdata.store.base import MarketStore
from perptrader.ml.base import MLFrame
from perptrader.rl import storage
from perptrader.rl.agents import PPOSettings, TrainProgress, train_ppo
from perptrader.rl.committee import CommitteeRules
from perptrader.rl.data import (
    build_raw,
    env_market,
    load_models,
    load_window,
    model_families,
    models_end,
)
from perptrader.rl.market import MAX_EXPOSURE, rl_sim_config
from perptrader.rl.reward import RewardConfig
from perptrader.rl.rollout import collapse, run_agent, verdict
from perptrader.rl.state import ROLES, fit_state
from perptrader.sim import CostModel

AGENTS = ("ppo", "ppo-dual")
#: role -> model kind of the quick models
QUICK_KINDS = {"gbdt": "gbdt", "pattern": "xlstm-pattern", "indicator": "xlstm-indicator"}
Log = Callable[[str], None]


def fit_quick_models(data: MLFrame, fit_rows: np.ndarray, kwargs_by_kind: dict[str, dict],
                     *, name: str, log: Log, registered: list[Path] | None = None
                     ) -> dict[str, tuple[Any, dict[str, Any]]]:
    """Fit and register the three quick models on ``fit_rows`` (last 15% of their
    labelled rows for early stopping, the ``horizon`` rows before it purged); their
    version folders are appended to ``registered`` (removed if the agent then fails)."""
    from perptrader.ml.models import make_model
    from perptrader.ml.registry import register, show

    labelled = data.labelled(fit_rows)
    n_valid = max(round(0.15 * len(labelled)), 1)
    valid = labelled[len(labelled) - n_valid:]
    train = labelled[labelled < valid[0] - data.horizon]
    if len(train) < 500:
        raise PerptraderError(f"{len(train)} labelled rows to fit the quick models on; give "
                              f"a longer window (--start earlier) or name --models")
    sub = MLFrame(frame=data.frame.iloc[: int(fit_rows[-1]) + 1], features=data.features,
                  label=data.label, horizon=data.horizon, meta=data.meta)
    out = {}
    for role, kind in QUICK_KINDS.items():
        t0 = time.perf_counter()
        kwargs = kwargs_by_kind.get(kind, {})
        model = make_model(kind, **kwargs)
        model.fit(data, train, valid)
        reg_name = f"{name}-{kind}"
        folder = register(reg_name, model, data=sub,
                 summary={"warnings": ["quick model fitted for an RL agent's state; no "
                                       "walk-forward was run"]},
                 spec={"fit": "rl quick model", "train_rows": len(train),
                       "valid_rows": len(valid)}, model_kwargs=kwargs)
        if registered is not None:
            registered.append(folder)
        manifest = show(reg_name)
        out[role] = (model, manifest)
        log(f"  quick {kind}: {len(train):,} train / {len(valid):,} valid rows, "
            f"{time.perf_counter() - t0:.0f} s -> registered {reg_name} "
            f"v{manifest['version']}")
    return out


def validation_check(market: Any, root: Path, labels: list[str], spec: Any, seed: int,
                     valid: tuple[int, int], reward: RewardConfig, agent: str
                     ) -> dict[str, Any]:
    """One seed's policies run deterministically over the validation slice: its return,
    trades (a position still open at the end counts as one), action shares and collapse.
    Cheap (one pass, no backtest) and enough to tell a collapsed seed at training time."""
    from perptrader.rl.agents import load_policy

    policies = {label: load_policy(root / label / "policy.zip") for label in labels}
    cols = {label: spec.agent_columns(label) for label in labels if label != "ppo"}
    rules = CommitteeRules() if agent == "ppo-dual" else None
    out = run_agent(market, policies, cols, first=valid[0], last=valid[1], rules=rules,
                    reward=reward)
    trades = int(out.info["trades"]) + int(len(out.decisions) > 0
                                           and out.decisions.iloc[-1] != 0.0)
    dist, positions = out.action_distribution(), out.position_shares()
    reason = collapse(dist, trades, out.decisions.to_numpy())
    init = market.config.initial_cash
    final = float(out.equity.iloc[-1]) if len(out.equity) else init
    return {"seed": int(seed), "net_return": final / init - 1.0, "trades": trades,
            "action_share": dist, "position_share": positions,
            "collapsed": reason is not None,
            "collapse_reason": reason}


def train_agent(store: MarketStore, *, symbol: str, timeframe: str, agent: str, name: str,
                timesteps: int, start: Any = None, end: Any = None,
                models: list[str] | None = None,
                quick_kwargs: dict[str, dict] | None = None,
                reward: RewardConfig | None = None, settings: PPOSettings | None = None,
                costs: CostModel | None = None, model_share: float = 0.5,
                valid_share: float = 0.15, emb_components: int = 4,
                overwrite: bool = False, log: Log = print,
                progress: Callable[[str], TrainProgress] | None = None) -> dict[str, Any]:
    """Train and save agent ``name`` (see the module docstring); returns its manifest."""
    if agent not in AGENTS:
        raise PerptraderError(f"unknown agent {agent!r}; one of {', '.join(AGENTS)}")
    if not 0.0 < model_share < 1.0 or not 0.0 < valid_share < 0.5:
        raise PerptraderError("model_share must be in (0, 1) and valid_share in (0, 0.5)")
    reward = reward or RewardConfig()
    settings = settings or PPOSettings()
    rollout = settings.n_envs * settings.n_steps
    if timesteps < rollout:
        raise PerptraderError(f"--timesteps {timesteps} is less than one rollout "
                              f"({settings.n_envs} envs x {settings.n_steps} steps = {rollout})")
    t0 = time.perf_counter()
    registered: list[Path] = []
    tmp, final = storage.new_agent_folder(name, overwrite=overwrite)
    try:
        families = model_families(models, timeframe) if models else None
        window = load_window(store, symbol, timeframe, start, end, families=families)
        data = window.data
        log(f"research table {window.symbol} {timeframe}: {len(data):,} rows x "
            f"{len(data.features)} features, {data.index[0]} .. {data.index[-1]}")
        if models:
            loaded = load_models(models, data)
            first_rl = models_end(loaded) + (data.horizon + 1) * timeframe_delta(timeframe)
            fit_info = {"source": "registry", "trained_until": str(models_end(loaded))}
        else:
            split = int(len(data) * model_share)
            loaded = fit_quick_models(data, np.arange(split, dtype=np.int64),
                                      quick_kwargs or {}, name=name, log=log,
                                      registered=registered)
            first_rl = data.index[min(split + data.horizon, len(data) - 1)]
            fit_info = {"source": "quick", "first_bar": str(data.index[0]),
                        "last_bar": str(data.index[split - 1])}
        if agent == "ppo-dual" and not {"pattern", "indicator"} <= set(loaded):
            raise PerptraderError("ppo-dual needs both xLSTM experts (pattern and indicator) "
                                  "among --models")
        rows = np.nonzero(data.index >= first_rl)[0].astype(np.int64)
        if len(rows) < 500:
            raise PerptraderError(
                f"{len(rows)} rows after the models' training data (which ends "
                f"{fit_info.get('trained_until', fit_info.get('last_bar'))}); the agent needs "
                f"more: move --end later or use models trained on earlier data")
        raw = build_raw(window, loaded, rows)
        n_valid = max(int(len(rows) * valid_share), 50)
        n_train = len(rows) - n_valid
        spec = fit_state(raw, np.arange(n_train), [r for r in ROLES if r in loaded],
                         emb_components=emb_components)
        config = rl_sim_config(costs)
        market = env_market(window, raw, spec, config)
        train_w, valid_w = (0, n_train - 1), (n_train - 1, len(rows) - 1)
        log(f"agent {agent}: trains on {market.index[0]} .. {market.index[n_train - 1]} "
            f"({n_train:,} bars), validates on .. {market.index[-1]} ({n_valid:,} bars); "
            f"state {len(spec.columns)} + 9 account columns; reward {reward.preset}")
        labels = ["ppo"] if agent == "ppo" else ["pattern", "indicator"]
        records, checks = [], []
        seeds = settings.seed_list
        for seed in seeds:
            root = storage.policy_root(tmp, seed, seeds[0])
            seeded = replace(settings, seed=seed)
            for label in labels:
                cols = None if label == "ppo" else spec.agent_columns(label)
                rec = train_ppo(market, train=train_w, valid=valid_w, timesteps=timesteps,
                                out_dir=root, label=label, reward=reward, settings=seeded,
                                obs_columns=cols, progress=progress(
                                    label if len(seeds) == 1 else f"{label} s{seed}")
                                if progress else None)
                log(f"  {label} (seed {seed}): {rec['timesteps']:,} steps in "
                    f"{rec['wall_s']:.0f} s ({rec['steps_per_s']:,.0f} steps/s); kept the "
                    f"{rec['policy']} policy (validation reward {rec['best_valid_reward']})")
                records.append(rec)
            checks.append(validation_check(market, root, labels, spec, seed, valid_w,
                                           reward, agent))
            log(f"  seed {seed} on the validation slice: return "
                f"{checks[-1]['net_return']:+.2%}, {checks[-1]['trades']} trades"
                + (f", COLLAPSED: {checks[-1]['collapse_reason']}"
                   if checks[-1]["collapsed"] else ""))
        valid_verdict = verdict({c["seed"]: c["collapse_reason"] for c in checks})
        manifest = {
            "name": name, "agent": agent, "symbol": window.symbol, "timeframe": timeframe,
            "created": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
            "perptrader_version": __version__,
            "feature_set": data.meta.get("feature_set", "default"),
            "feature_hash": data.meta.get("feature_hash"),
            "families": families_of(data.features, get_set(data.meta.get(
                "feature_set", "default")), timeframe),
            "windows": {"requested": [str(start) if start else None,
                                      str(end) if end else None],
                        "models": fit_info,
                        "train": [str(market.index[0]), str(market.index[n_train - 1])],
                        "valid": [str(market.index[n_train - 1]), str(market.index[-1])]},
            "models": {role: {"name": m["name"], "version": m["version"],
                              "kind": m["kind"]} for role, (_, m) in loaded.items()},
            "state": {"columns": spec.columns, "missing": spec.missing,
                      "emb_components": emb_components},
            "reward": reward.as_dict(), "ppo": settings.as_dict(),
            "committee": CommitteeRules().as_dict() if agent == "ppo-dual" else None,
            "account": {"initial_cash": config.initial_cash, "max_exposure": MAX_EXPOSURE,
                        "margin_mode": config.margin_mode,
                        "taker_fee": config.costs.taker_fee,
                        "slippage_bps": config.costs.slippage_bps},
            "training": records, "timesteps": timesteps, "seeds": seeds,
            "validation": {"seeds": checks, "verdict": valid_verdict},
            "warnings": window.warnings, "wall_s": round(time.perf_counter() - t0, 1),
        }
        storage.write_json(tmp / storage.STATE, spec.as_dict())
        storage.write_json(tmp / storage.MANIFEST, manifest)
        storage.commit_agent(tmp, final)
    except BaseException:
        # nothing half-made stays behind: neither the agent nor its quick models
        for folder in [tmp, *registered]:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return storage.read_manifest(name)
