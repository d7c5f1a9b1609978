"""A trained agent as a policy: ``--strategy rl:NAME``.

``targets(frame)`` rebuilds the agent's state on the frame (features, the registered
models named in its manifest, its frozen PCA/z-scores), runs the agent bar by bar on ITS
OWN simulated account (``rollout.run_agent``: the 2x isolated RL account) and returns its
decisions. Bars before the state exists (feature warm-up, the experts' first window) are
flat, and so is the frame's last bar (the rollout's last step fills on it).

``decide(bars, account)`` is the same decision for the last bar of ``bars``, but on the
account the caller really trades: the state row of that bar (the batch pipeline on a
stale call, then live features and one model prediction per bar) plus the nine account
features built from the ``AccountView`` exactly as ``rl.core._account_obs`` builds them
from the environment's arrays, the action mask of the current target, the forced-flat
rule and, for dual agents, the committee. With the view of the account ``run_agent``
simulates, ``decide(frame[: t + 1], view) == targets(frame)[t]``.

The agent, its state spec and its models are loaded once per policy object.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from perptrader.core.errors import PerptraderError
from perptrader.rl.market import MAX_EXPOSURE
from perptrader.strategies.base import AccountView, PolicyBase

PREFIX = "rl:"
#: rows of model outputs / closes the live state keeps (the longest return is 24 bars)
MIN_BUFFER_ROWS = 25


def account_features(view: AccountView, target: float,
                     max_exposure: float = MAX_EXPOSURE) -> np.ndarray:
    """The nine account columns of the observation (``core.ACCOUNT_FEATURES``) from a view,
    computed as ``core._account_obs`` does from the environment's arrays (same formulas,
    same order of operations), as float32 clipped to +-OBS_CLIP. ``target``: the current
    target exposure after the forced-flat rule (``E_TARGET``)."""
    from perptrader.rl.core import N_ACCOUNT, OBS_CLIP, TIME_SCALE

    qty, ep = view.position_qty, view.entry_price
    mc, c, eq = view.mark_price, view.close_price, view.equity
    side = 1.0 if qty > 0.0 else (-1.0 if qty < 0.0 else 0.0)
    safe_eq = eq if eq > 1e-9 else 1e-9
    out = np.zeros(N_ACCOUNT, dtype=np.float64)
    out[0] = side
    out[1] = abs(qty) * mc / safe_eq if qty != 0.0 else 0.0  # a flat view may lack a mark
    out[2] = abs(target) / max_exposure
    out[3] = side * (c - ep) / ep if qty != 0.0 and ep > 0.0 else 0.0
    out[4] = qty * (mc - ep) / safe_eq if qty != 0.0 else 0.0
    out[5] = math.log(safe_eq / view.initial_equity)
    if qty != 0.0:
        balance = view.position_margin + qty * (mc - ep)
        out[6] = view.maintenance_margin / balance if balance > 0.0 else OBS_CLIP
    eb = view.bars_in_position
    out[7] = min(eb / TIME_SCALE, OBS_CLIP) if eb >= 0 and qty != 0.0 else 0.0
    out[8] = 1.0 - eq / view.peak_equity if view.peak_equity > 0.0 else 0.0
    return np.clip(out.astype(np.float32), -OBS_CLIP, OBS_CLIP)


def current_target(view: AccountView) -> tuple[float, bool]:
    """(the target the masks read, forced flat): the last target sent (NaN = 0), set to 0
    with only hold allowed when the account holds nothing although the target says "in"
    (a liquidation, or an open without margin), as ``core._step_one`` does."""
    target = 0.0 if math.isnan(view.target) else float(view.target)
    if view.position_qty == 0.0 and target != 0.0:
        return 0.0, True
    return target, False


@dataclass
class RLStrategy(PolicyBase):
    agent: str
    #: the agent's account: its targets (0.5x..2x) run on 2x margin (``run_on_frame``
    #: reads this when no margin leverage is given)
    margin_leverage: float = MAX_EXPOSURE
    #: (manifest, spec, policies, obs columns), loaded once
    _agent: tuple[Any, ...] | None = field(default=None, init=False, repr=False,
                                           compare=False)
    #: role -> (model, manifest), loaded once (checked against every table built)
    _models: dict[str, tuple[Any, dict[str, Any]]] | None = field(
        default=None, init=False, repr=False, compare=False)
    _live: dict[str, Any] = field(default_factory=dict, init=False, repr=False,
                                  compare=False)

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{PREFIX}{self.agent}"

    @property
    def params(self) -> dict[str, Any]:
        return {"agent": self.agent}

    @property
    def warmup_bars(self) -> int:
        """The feature warm-up plus the longest model window: the first bar with a state."""
        from perptrader.features.pipeline import candidate_families
        from perptrader.features.sets import get_set
        from perptrader.ml.strategy import sequence_length

        manifest = self.loaded()[0]
        wanted = set(manifest["families"])
        families = candidate_families(get_set(manifest["feature_set"]),
                                      manifest["timeframe"])
        warmup = max((f.warmup for f in families if f.name in wanted), default=0)
        seq = max((sequence_length(m) for m, _ in self._load_models().values()), default=1)
        return warmup + seq - 1

    def loaded(self) -> tuple[Any, ...]:
        """(manifest, state spec, policies, observation columns per dual policy)."""
        if self._agent is None:
            from perptrader.rl.evaluate import load_agent

            self._agent = load_agent(self.agent)
        return self._agent

    def _load_models(self) -> dict[str, tuple[Any, dict[str, Any]]]:
        if self._models is None:
            from perptrader.ml.registry import load_registered

            out = {}
            for role, ref in self.loaded()[0]["models"].items():
                out[role] = load_registered(ref["name"], ref["version"])
            self._models = out
        return self._models

    def _table(self, frame: pd.DataFrame) -> Any:
        """The research table of ``frame`` on the agent's families, checked against every
        model's feature list and hash."""
        from perptrader.ml.dataset import build_ml_frame
        from perptrader.ml.registry import feature_mismatch

        manifest = self.loaded()[0]
        try:
            data = build_ml_frame(frame, symbol=manifest["symbol"],
                                  timeframe=manifest["timeframe"],
                                  feature_set=manifest["feature_set"],
                                  families=manifest["families"])
        except ValueError as exc:
            raise PerptraderError(f"agent {self.agent!r}: cannot build its features on this "
                                  f"frame: {exc}") from None
        for _model, m in self._load_models().values():
            problem = feature_mismatch(m, data)
            if problem:
                raise PerptraderError(f"agent {self.agent!r}: model {m['name']!r} "
                                      f"v{m['version']} does not match this frame's "
                                      f"features: {problem}")
        return data

    def targets(self, frame: pd.DataFrame) -> np.ndarray:
        from perptrader.rl.committee import CommitteeRules
        from perptrader.rl.data import Window, build_raw, env_market
        from perptrader.rl.market import rl_sim_config
        from perptrader.rl.rollout import run_agent

        manifest, spec, policies, cols = self.loaded()
        data = self._table(frame)
        window = Window(symbol=manifest["symbol"], timeframe=manifest["timeframe"],
                        data=data, bars=frame, funding=None)
        raw = build_raw(window, self._load_models(), np.arange(len(data), dtype=np.int64))
        raw = raw.dropna(subset=[c for c in raw.columns if "_p_" in c])
        market = env_market(window, raw, spec, rl_sim_config())
        rules = CommitteeRules(**manifest["committee"]) if manifest.get("committee") else None
        rollout = run_agent(market, policies, cols, rules=rules)
        return rollout.decisions.reindex(frame.index).fillna(0.0).to_numpy(np.float64)

    # -- the per-bar path ---------------------------------------------------------------
    def decide(self, bars: pd.DataFrame, account: AccountView) -> float:
        """The agent's decision at the close of the last bar, on ``account``."""
        if len(bars) == 0:
            raise ValueError(f"{self.name}: decide needs at least one bar")
        live = self._live
        if len(bars) >= 2 and live.get("ts") == bars.index[-2] and "features" in live:
            state, vsa_dir = self._next_state(bars)
        else:
            state, vsa_dir = self._rebuild(bars)
        live["ts"] = bars.index[-1]
        if state is None:
            return 0.0  # no state yet: the batch form is flat there too
        return self._act(state, vsa_dir, account)

    def _act(self, state: np.ndarray, vsa_dir: float, view: AccountView) -> float:
        """Observation, mask, the policy (or the committee) and the next target."""
        from perptrader.rl import actions as ACT
        from perptrader.rl.committee import CommitteeRules, combine
        from perptrader.rl.core import ACCOUNT_FEATURES, OBS_CLIP

        manifest, _, policies, cols = self.loaded()
        target, forced = current_target(view)
        n_state = len(state)
        obs = np.empty(n_state + len(ACCOUNT_FEATURES), dtype=np.float32)
        obs[:n_state] = np.where(np.isnan(state), np.float32(0.0),
                                 np.clip(state, -OBS_CLIP, OBS_CLIP))
        obs[n_state:] = account_features(view, target, MAX_EXPOSURE)
        mask = ACT.action_mask(target, MAX_EXPOSURE)
        if forced:
            mask[1:] = False
        if "ppo" in policies:
            a, _ = policies["ppo"].predict(obs, action_masks=mask, deterministic=True)
            action = int(a)
        else:
            votes = {role: int(policies[role].predict(obs[cols[role]], action_masks=mask,
                                                      deterministic=True)[0])
                     for role in ("pattern", "indicator")}
            rules = CommitteeRules(**manifest["committee"]) if manifest.get("committee") \
                else CommitteeRules()
            at = n_state + ACCOUNT_FEATURES.index
            action = combine(votes["pattern"], votes["indicator"], target=target,
                             vsa_dir=vsa_dir, drawdown=float(obs[at("acc_drawdown")]),
                             margin_ratio=float(obs[at("acc_margin_ratio")]), rules=rules)
        if not ACT.action_valid(target, action, MAX_EXPOSURE) or (forced and
                                                                  action != ACT.HOLD):
            action = ACT.HOLD  # what the environment does with an invalid action
        return float(ACT.next_target(target, action))

    def _rebuild(self, bars: pd.DataFrame) -> tuple[np.ndarray | None, float]:
        """The state of the last bar by the batch pipeline on all of ``bars``, and the
        live state (features, recent rows) for the bars that follow."""
        from perptrader.features.base import FeatureContext
        from perptrader.features.incremental import IncrementalFeatures
        from perptrader.features.pipeline import plan
        from perptrader.features.sets import get_set
        from perptrader.ml.base import OHLCV
        from perptrader.ml.strategy import sequence_length

        self._live.clear()
        manifest = self.loaded()[0]
        if len(bars) <= self.warmup_bars:
            return None, 0.0
        data = self._table(bars)
        ctx = FeatureContext(symbol=manifest["symbol"], timeframe=manifest["timeframe"])
        wanted = set(manifest["families"])
        families = [f for f in plan(bars, get_set(manifest["feature_set"]), ctx).families
                    if f.name in wanted]
        seq = max((sequence_length(m) for m, _ in self._load_models().values()), default=1)
        keep = max(seq, MIN_BUFFER_ROWS)
        self._live.update(features=IncrementalFeatures(families, ctx, bars), keep=keep,
                          names=list(data.features), label=data.label,
                          rows=data.frame[[*OHLCV, *data.features]].iloc[-keep:].astype(
                              "float64"),
                          warmup=len(bars) - len(data))
        return self._state_of_last(bars)

    def _next_state(self, bars: pd.DataFrame) -> tuple[np.ndarray | None, float]:
        """One bar more: its live features appended to the recent rows."""
        from perptrader.ml.base import OHLCV

        live = self._live
        values = live["features"].update(bars.iloc[[-1]])
        row = pd.DataFrame([[*bars[list(OHLCV)].iloc[-1].to_numpy(np.float64),
                             *values.to_numpy()]], index=bars.index[-1:],
                           columns=[*OHLCV, *live["names"]])
        live["rows"] = pd.concat([live["rows"], row]).iloc[-live["keep"]:]
        return self._state_of_last(bars)

    def _state_of_last(self, bars: pd.DataFrame) -> tuple[np.ndarray | None, float]:
        """The state row (float32, as ``EnvMarket.state`` holds it) and the VSA direction
        of the newest buffered row; None while some model cannot predict it yet."""
        from perptrader.ml.base import MLFrame
        from perptrader.rl.state import apply_state, model_outputs, raw_state

        live = self._live
        table = live["rows"].copy()
        table[live["label"]] = np.nan
        data = MLFrame(table, live["names"], label=live["label"], meta={})
        last = np.array([len(table) - 1], dtype=np.int64)
        outputs = model_outputs(data, self._load_models(), last)
        if outputs[[c for c in outputs.columns if "_p_" in c]].isna().to_numpy().any():
            return None, 0.0
        spec = self.loaded()[1]
        state = apply_state(raw_state(data, outputs), spec)
        values = state.to_numpy(dtype=np.float32, na_value=np.nan)[0]
        vsa_dir = self._vsa_dir(bars) if "ppo" not in self.loaded()[2] else 0.0
        return values, vsa_dir

    def _vsa_dir(self, bars: pd.DataFrame) -> float:
        """+1/-1 when the ``vsa`` strategy's entry event fires at the last bar, computed
        as ``rl.state.vsa_direction`` does on the research table (which starts at the
        warm-up cut), on a window long enough to be start-invariant."""
        from perptrader.strategies.vsa import WINDOW_FACTOR, VsaStrategy

        vsa = VsaStrategy()
        start = max(self._live["warmup"], len(bars) - WINDOW_FACTOR * vsa.warmup_bars)
        long_, short = vsa.signals(bars.iloc[start:])
        return float(long_[-1]) - float(short[-1])


def rl_strategy(name: str, params: Mapping[str, object] | None = None) -> RLStrategy:
    agent = name[len(PREFIX):]
    if not agent:
        raise ValueError(f"rl strategy {name!r}: expected rl:NAME")
    if params:
        raise ValueError(f"strategy {name!r} takes no parameters, got {sorted(params)}")
    return RLStrategy(agent)


def register() -> None:
    """Entry point (``perptrader.policies``): ``rl:NAME`` resolves here."""
    from perptrader.strategies.registry import register_prefix

    register_prefix(PREFIX, rl_strategy, "a trained RL agent on its 2x-margin account "
                    "(rl:NAME)")
