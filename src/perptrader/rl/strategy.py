"""A trained agent as a backtest strategy: ``--strategy rl:NAME``.

``targets(frame)`` rebuilds the agent's state on the frame (features, the registered
models named in its manifest, its frozen PCA/z-scores), runs the agent bar by bar and
returns its decisions. Bars before the state exists (feature warm-up, the experts' first
window) are flat. For out-of-sample figures beside the baselines use ``rl eval``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from perptrader.core.errors import PerptraderError
from perptrader.rl.market import MAX_EXPOSURE

PREFIX = "rl:"


@dataclass
class RLStrategy:
    agent: str
    #: the agent's account: its targets (0.5x..2x) run on 2x margin (``run_on_frame``
    #: reads this when no margin leverage is given)
    margin_leverage: float = MAX_EXPOSURE

    @property
    def name(self) -> str:
        return f"{PREFIX}{self.agent}"

    @property
    def params(self) -> dict[str, Any]:
        return {"agent": self.agent}

    def targets(self, frame: pd.DataFrame) -> np.ndarray:
        from perptrader.ml.dataset import build_ml_frame
        from perptrader.rl.committee import CommitteeRules
        from perptrader.rl.data import Window, build_raw, env_market, load_models
        from perptrader.rl.evaluate import load_agent
        from perptrader.rl.market import rl_sim_config
        from perptrader.rl.rollout import run_agent

        manifest, spec, policies, cols = load_agent(self.agent)
        try:
            data = build_ml_frame(frame, symbol=manifest["symbol"],
                                  timeframe=manifest["timeframe"],
                                  feature_set=manifest["feature_set"],
                                  families=manifest["families"])
        except ValueError as exc:
            raise PerptraderError(f"agent {self.agent!r}: cannot build its features on this "
                                  f"frame: {exc}") from None
        window = Window(symbol=manifest["symbol"], timeframe=manifest["timeframe"],
                        data=data, bars=frame, funding=None)
        models = load_models(list(manifest["models"].values()), data)
        raw = build_raw(window, models, np.arange(len(data), dtype=np.int64))
        raw = raw.dropna(subset=[c for c in raw.columns if "_p_" in c])
        market = env_market(window, raw, spec, rl_sim_config())
        rules = CommitteeRules(**manifest["committee"]) if manifest.get("committee") else None
        rollout = run_agent(market, policies, cols, rules=rules)
        return rollout.decisions.reindex(frame.index).fillna(0.0).to_numpy(np.float64)


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
