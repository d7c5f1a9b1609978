"""``PerpFuturesEnv``: one leveraged futures account as a gymnasium environment.

Observation: the fused market state of the bar that just closed (``EnvMarket.state``)
followed by the account (``core.ACCOUNT_FEATURES``), clipped to +-10. Action: one of
``actions.ACTION_NAMES``; ``action_masks()`` gives the valid ones (MaskablePPO).
Episodes start at a random bar of ``[first, last - episode_bars]`` (seeded by
``reset(seed=...)``) and last ``episode_bars`` steps; ``options={"start": i, "end": j}``
picks them. Costs, funding and liquidation are always on: they are the kernel's.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from perptrader.rl import actions as ACT
from perptrader.rl import core as C
from perptrader.rl.batch import AccountBatch
from perptrader.rl.market import EnvMarket
from perptrader.rl.reward import TERMS, RewardConfig


class EpisodeWindow:
    """Where episodes may run: decisions at bars ``first .. last - 1`` (the step from the
    last decision fills and ends on ``last``), ``episode_bars`` steps long (None = the
    whole window, from ``first``: what evaluation uses)."""

    def __init__(self, n_bars: int, first: int = 0, last: int | None = None,
                 episode_bars: int | None = 720) -> None:
        last = n_bars - 1 if last is None else last
        if not 0 <= first < last < n_bars:
            raise ValueError(f"episode window [{first}, {last}] is not inside 0..{n_bars - 1}"
                             f" with at least one step")
        self.first, self.last = int(first), int(last)
        span = self.last - self.first
        self.episode_bars = span if episode_bars is None else min(int(episode_bars), span)
        if self.episode_bars < 1:
            raise ValueError("episode_bars must be >= 1")

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        hi = self.last - self.episode_bars
        starts = rng.integers(self.first, hi + 1, size=n) if hi > self.first else \
            np.full(n, self.first)
        return starts.astype(np.int64), (starts + self.episode_bars).astype(np.int64)


def observation_space(n_obs: int) -> gym.spaces.Box:
    return gym.spaces.Box(-C.OBS_CLIP, C.OBS_CLIP, shape=(n_obs,), dtype=np.float32)


class PerpFuturesEnv(gym.Env):
    """See the module docstring. ``obs_columns`` restricts the observation to some of its
    columns (the dual agents each see their own part of the state)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, market: EnvMarket, reward: RewardConfig | None = None, *,
                 first: int = 0, last: int | None = None, episode_bars: int | None = 720,
                 min_equity: float = 0.0, obs_columns: np.ndarray | None = None) -> None:
        super().__init__()
        self.market = market
        self.window = EpisodeWindow(len(market), first, last, episode_bars)
        self.batch = AccountBatch(market, 1, reward, min_equity=min_equity,
                                  obs_columns=obs_columns)
        self.observation_space = observation_space(self.batch.n_obs)
        self.action_space = gym.spaces.Discrete(ACT.N_ACTIONS)
        self._rng = np.random.default_rng()
        self._act = np.zeros(1, dtype=np.int64)
        self._ready = False

    @property
    def observation_names(self) -> list[str]:
        return self.batch.observation_names

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        options = options or {}
        if "start" in options:
            start = int(options["start"])
            end = int(options.get("end", min(start + self.window.episode_bars,
                                             self.window.last)))
            starts, ends = np.array([start]), np.array([end])
        else:
            starts, ends = self.window.sample(self._rng, 1)
        self.batch.reset(np.zeros(1, dtype=np.int64), starts, ends)
        self._ready = True
        return self.batch.observations()[0].copy(), self.batch.info(0)

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self._ready:
            raise RuntimeError("call reset() before step(), and again after an episode ends")
        self._act[0] = int(action)
        b = self.batch
        b.step(self._act)
        terminated, truncated = bool(b.terminated[0]), bool(b.truncated[0])
        info: dict[str, Any] = b.info(0)
        info["reward_terms"] = dict(zip(TERMS, b.terms[0].tolist(), strict=True))
        if terminated or truncated:
            self._ready = False
        return (b.observations()[0].copy(), float(b.rewards[0]), terminated, truncated, info)

    def action_masks(self) -> np.ndarray:
        return self.batch.masks()[0].copy()
