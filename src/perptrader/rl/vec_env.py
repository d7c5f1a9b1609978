"""``PerpVecEnv``: N futures accounts stepped together in one numba call, as an SB3
``VecEnv`` (auto-reset at random starts, ``terminal_observation`` and
``TimeLimit.truncated`` in the infos as SB3 expects, ``action_masks`` for MaskablePPO).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numba
import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices

from perptrader.rl import actions as ACT
from perptrader.rl.batch import AccountBatch
from perptrader.rl.env import EpisodeWindow, observation_space
from perptrader.rl.market import EnvMarket
from perptrader.rl.reward import RewardConfig

#: environments from which ``parallel=None`` steps them on numba's threads
PARALLEL_FROM = 32


class PerpVecEnv(VecEnv):
    def __init__(self, market: EnvMarket, n_envs: int = 16,
                 reward: RewardConfig | None = None, *, first: int = 0,
                 last: int | None = None, episode_bars: int | None = 720,
                 min_equity: float = 0.0, obs_columns: np.ndarray | None = None,
                 seed: int | None = None, parallel: bool | None = None) -> None:
        self.market = market
        self.window = EpisodeWindow(len(market), first, last, episode_bars)
        if parallel is None:  # threads pay off from a few dozen environments
            parallel = n_envs >= PARALLEL_FROM and numba.get_num_threads() > 1
        self.batch = AccountBatch(market, n_envs, reward, min_equity=min_equity,
                                  obs_columns=obs_columns, parallel=parallel)
        self.render_mode = None
        super().__init__(n_envs, observation_space(self.batch.n_obs),
                         gym.spaces.Discrete(ACT.N_ACTIONS))
        self._rng = np.random.default_rng(seed)
        self._actions = np.zeros(n_envs, dtype=np.int64)
        self._all = np.arange(n_envs, dtype=np.int64)
        self.episodes_done = 0

    @property
    def observation_names(self) -> list[str]:
        return self.batch.observation_names

    # ---- VecEnv API ---------------------------------------------------------------------
    def reset(self) -> np.ndarray:
        if self._seeds and self._seeds[0] is not None:  # set by VecEnv.seed(); SB3 seeds
            self._rng = np.random.default_rng(self._seeds[0])
        self._reset_seeds()
        starts, ends = self.window.sample(self._rng, self.num_envs)
        self.batch.reset(self._all, starts, ends)
        return self.batch.observations().copy()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions[:] = np.asarray(actions).reshape(-1)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        b = self.batch
        b.step(self._actions)
        obs = b.observations().copy()
        rewards = b.rewards.astype(np.float32)
        done = b.terminated | b.truncated
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if done.any():
            idx = np.nonzero(done)[0]
            for i in idx:
                infos[i] = {**b.info(int(i)), "terminal_observation": obs[i].copy(),
                            "TimeLimit.truncated": bool(b.truncated[i]
                                                        and not b.terminated[i])}
            starts, ends = self.window.sample(self._rng, len(idx))
            b.reset(idx, starts, ends)
            obs[idx] = b.observations()[idx]
            self.episodes_done += len(idx)
        return obs, rewards, done.copy(), infos

    def close(self) -> None:
        return None

    def action_masks(self) -> np.ndarray:
        return self.batch.masks().copy()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        targets = list(self._get_indices(indices))
        if method_name == "action_masks":
            masks = self.batch.masks()
            return [masks[i].copy() for i in targets]
        raise AttributeError(f"PerpVecEnv has no per-environment method {method_name!r}")

    def has_attr(self, attr_name: str) -> bool:
        return attr_name == "action_masks" or hasattr(self, attr_name)

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None
                       ) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def _get_indices(self, indices: VecEnvIndices) -> Sequence[int]:
        if indices is None:
            return range(self.num_envs)
        if isinstance(indices, int):
            return [indices]
        return list(indices)
