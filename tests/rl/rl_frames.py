"""Small ``EnvMarket``s built in the test (no real data), shared by the RL tests.

The frames are tiny so that every test runs in well under a second once numba has
compiled the core (the compiled functions are cached on disk).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from feature_frames import synthetic_frame
from perptrader.rl import EnvMarket, PerpFuturesEnv, rl_sim_config
from perptrader.rl import actions as ACT
from perptrader.sim import CostModel

SYMBOL = "BTCUSDT"
TIMEFRAME = "1h"
PRICE_COLUMNS = ("open", "high", "low", "close", "mark_open", "mark_high", "mark_low",
                 "mark_close")
#: costs that make hand-computed equity exact (no fee, no slippage, no clearance fee)
FREE = CostModel(maker_fee=0.0, taker_fee=0.0, slippage_bps=0.0, liquidation_fee=0.0)


def state_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A causal market state: the bar's log return in %, its 24-bar mean (NaN during the
    warm-up, which the environment must read as 0) and the raw close (far above the
    observation clip, which the environment must clip)."""
    r1 = np.log(frame["close"]).diff().fillna(0.0) * 100.0
    return pd.DataFrame({"r1": r1, "r1_mean24": r1.rolling(24).mean(),
                         "close_raw": frame["close"]}, index=frame.index)


def build_market(frame: pd.DataFrame, *, state: pd.DataFrame | None = None,
                 costs: CostModel | None = None, vsa_dir: np.ndarray | None = None,
                 agree: np.ndarray | None = None,
                 conflict: np.ndarray | None = None) -> EnvMarket:
    """An ``EnvMarket`` over ``frame`` on the RL account (2x isolated, fill at next open)."""
    return EnvMarket.build(frame, state_frame(frame) if state is None else state,
                           symbol=SYMBOL, timeframe=TIMEFRAME, config=rl_sim_config(costs),
                           vsa_dir=vsa_dir, agree=agree, conflict=conflict)


def small_market(n: int = 400, *, seed: int = 7, costs: CostModel | None = None
                 ) -> EnvMarket:
    """A random-walk market with marks and 8h funding (``synthetic_frame``)."""
    return build_market(synthetic_frame(n, seed=seed), costs=costs)


def crash_frame(n: int = 300, *, at: int, factor: float = 0.4, seed: int = 7
                ) -> pd.DataFrame:
    """``synthetic_frame`` with every trade and mark price after bar ``at`` multiplied by
    ``factor``: a gap at the open of ``at + 1`` that liquidates a leveraged long."""
    frame = synthetic_frame(n, seed=seed)
    cols = [c for c in PRICE_COLUMNS if c in frame.columns]
    frame.iloc[at + 1:, [frame.columns.get_loc(c) for c in cols]] *= factor
    return frame


def hand_frame(prices: Sequence[float], start: str = "2024-01-01") -> pd.DataFrame:
    """Loader-shaped 1h bars with open = high = low = close = ``prices[t]`` (so a price
    change happens as a gap at a bar's open), no marks (trade prices are used) and no
    funding: equity paths can be computed by hand."""
    p = np.asarray(prices, dtype=np.float64)
    idx = pd.date_range(start, periods=len(p), freq="1h", tz="UTC",
                        name="ts").as_unit("us")
    return pd.DataFrame({"open": p, "high": p, "low": p, "close": p, "volume": 1.0},
                        index=idx)


def random_valid_action(mask: np.ndarray, rng: np.random.Generator) -> int:
    """A uniformly drawn valid action (what a masked random policy does)."""
    return int(rng.choice(np.flatnonzero(mask)))


@dataclass
class Rollout:
    """One episode: the actions taken, the observations (the reset's first, then one per
    step), the rewards and the step infos."""

    actions: list[int] = field(default_factory=list)
    observations: list[np.ndarray] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    infos: list[dict[str, Any]] = field(default_factory=list)

    def series(self, key: str) -> np.ndarray:
        """One info value per step, e.g. ``series("equity")``."""
        return np.array([info[key] for info in self.infos], dtype=np.float64)


def play(env: PerpFuturesEnv, actions: Sequence[int] = (), *, start: int, end: int,
         rng: np.random.Generator | None = None) -> Rollout:
    """Reset ``env`` at ``start``..``end``, step ``actions``, then (with ``rng``) random
    valid actions until the episode ends; stops early when the episode ends."""
    obs, _ = env.reset(options={"start": start, "end": end})
    out = Rollout(observations=[obs])
    done = False
    while not done and (len(out.actions) < len(actions) or rng is not None):
        k = len(out.actions)
        a = int(actions[k]) if k < len(actions) else random_valid_action(env.action_masks(),
                                                                          rng)
        obs, r, terminated, truncated, info = env.step(a)
        out.actions.append(a)
        out.observations.append(obs)
        out.rewards.append(r)
        out.infos.append(info)
        done = terminated or truncated
    return out


def flat_mask() -> np.ndarray:
    """The mask of a flat account at 2x max exposure: hold and the six opens."""
    return ACT.action_mask(0.0, 2.0)
