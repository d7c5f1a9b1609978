"""Training one MaskablePPO agent on ``PerpVecEnv``: seeds, checkpoints, TensorBoard,
evaluation on a validation slice, an entropy schedule, Rich progress.

The policy kept is the one that did best on the validation slice (``MaskableEvalCallback``
runs one deterministic episode over the whole slice every ``eval_every`` steps); the
final policy is kept too. Both are SB3 zips in the agent's folder.

Why an entropy schedule: with a constant small entropy bonus the policy can sharpen onto
one action (usually ``hold``) within the first rollouts, before the value function has
learned anything; a constant large bonus keeps it random to the end. The bonus therefore
starts high (``ent_coef``) and decays to ``ent_coef_end`` over the run (``ent_schedule``:
linear or exponential); SB3 reads ``model.ent_coef`` at every update, so a callback sets
it before each rollout. On its own it did not remove the
collapse in our runs (docs/rl.md has the figures); the verdict still catches it.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from perptrader.rl.market import EnvMarket
from perptrader.rl.reward import RewardConfig

#: how the entropy bonus decays over training (``PPOSettings.ent_schedule``)
ENT_SCHEDULES = ("linear", "exponential")
#: progress callback: (timesteps done, total, metrics)
TrainProgress = Callable[[int, int, dict[str, float]], None]


@dataclass(frozen=True)
class PPOSettings:
    """MaskablePPO and environment settings (defaults sized for 2 CPU cores)."""

    n_envs: int = 16
    n_steps: int = 256
    batch_size: int = 1024
    n_epochs: int = 4
    learning_rate: float = 3e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    #: entropy bonus at the start of training ...
    ent_coef: float = 0.05
    #: ... and at its end (None = constant ``ent_coef``, what manifests written before the
    #: schedule existed mean)
    ent_coef_end: float | None = 0.005
    #: "linear" or "exponential" (geometric) decay from ent_coef to ent_coef_end
    ent_schedule: str = "linear"
    clip_range: float = 0.2
    net_arch: tuple[int, ...] = (64, 64)
    episode_bars: int = 720
    #: an episode ends when equity falls below this share of the initial cash
    min_equity: float = 0.5
    eval_every: int = 10_000
    checkpoint_every: int = 50_000
    seed: int = 0
    #: independently seeded policies trained per agent (seed, seed + 1, ...); evaluation
    #: reports each and their mean, and fails when any of them collapsed
    seeds: int = 1
    #: torch threads while training: the 64x64 policy gains nothing from more, and on a
    #: shared 2-core machine two OpenMP threads beside other work ran 10x slower
    torch_threads: int = 1

    def __post_init__(self) -> None:
        if self.ent_schedule not in ENT_SCHEDULES:
            raise ValueError(f"ent_schedule must be one of {', '.join(ENT_SCHEDULES)}, got "
                             f"{self.ent_schedule!r}")
        end = self.ent_coef if self.ent_coef_end is None else self.ent_coef_end
        if not (self.ent_coef >= 0.0 and end >= 0.0):
            raise ValueError(f"ent_coef and ent_coef_end must be >= 0, got {self.ent_coef}, "
                             f"{self.ent_coef_end}")
        if self.ent_schedule == "exponential" and (self.ent_coef > 0.0) != (end > 0.0):
            raise ValueError("an exponential entropy schedule needs ent_coef and "
                             "ent_coef_end both > 0 (or both 0)")
        if int(self.seeds) < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")

    @property
    def seed_list(self) -> list[int]:
        """The seeds of the policies an agent trains: seed, seed + 1, ..."""
        return [int(self.seed) + k for k in range(int(self.seeds))]

    def entropy_at(self, progress: float) -> float:
        """The entropy coefficient after ``progress`` (0..1) of the training steps."""
        start = float(self.ent_coef)
        end = start if self.ent_coef_end is None else float(self.ent_coef_end)
        p = min(max(float(progress), 0.0), 1.0)
        if self.ent_schedule == "exponential" and start > 0.0:
            return start * (end / start) ** p
        return start + (end - start) * p

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["net_arch"] = list(self.net_arch)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PPOSettings:
        """Settings from a manifest or overrides. A manifest written before the entropy
        schedule has no ``ent_coef_end``: it trained with a constant ``ent_coef``, so it
        loads as a constant schedule (not with today's default decay)."""
        d = dict(d)
        if "ent_coef" in d and "ent_coef_end" not in d:
            d["ent_coef_end"] = None
        return cls(**{**d, "net_arch": tuple(d.get("net_arch", (64, 64)))})


def _entropy_callback(settings: PPOSettings, total: int):
    """Sets ``model.ent_coef`` before every rollout (the value the update after it uses)
    and logs it as ``train/ent_coef``: the first update uses ``ent_coef``, the last one
    ``ent_coef_end``, the ones between follow the schedule."""
    from stable_baselines3.common.callbacks import BaseCallback

    rollout = settings.n_envs * settings.n_steps
    last = max(-(-total // rollout) - 1, 1)  # index of the last update

    class _EntropySchedule(BaseCallback):
        def _on_rollout_start(self) -> None:
            value = settings.entropy_at(self.model.num_timesteps / rollout / last)
            self.model.ent_coef = value
            self.logger.record("train/ent_coef", value)

        def _on_step(self) -> bool:
            return True

    return _EntropySchedule()


def _progress_callback(total: int, progress: TrainProgress | None):
    from stable_baselines3.common.callbacks import BaseCallback

    class _Progress(BaseCallback):
        """Rich progress, and each finished episode's account in TensorBoard
        (``episode/*``: final equity, trades, liquidations, fees, invalid actions)."""

        def _on_step(self) -> bool:
            for info in self.locals.get("infos", ()):
                if "equity" in info:  # only episode ends carry the account
                    for key in ("equity", "trades", "liquidations", "fees",
                                "invalid_actions"):
                        self.logger.record_mean(f"episode/{key}", float(info[key]))
            if progress is not None and self.n_calls % 20 == 0:
                rew = [e["r"] for e in self.model.ep_info_buffer] if self.model.ep_info_buffer \
                    else []
                progress(self.num_timesteps, total,
                         {"ep_reward": float(np.mean(rew)) if rew else float("nan")})
            return True

    return _Progress()


def train_ppo(market: EnvMarket, *, train: tuple[int, int], valid: tuple[int, int],
              timesteps: int, out_dir: Path, label: str, reward: RewardConfig,
              settings: PPOSettings, obs_columns: np.ndarray | None = None,
              progress: TrainProgress | None = None, tensorboard: bool = True,
              checkpoints: bool = True) -> dict[str, Any]:
    """Train one agent; writes ``<out_dir>/<label>/{policy.zip, final.zip, best/,
    checkpoints/, eval/}`` and TensorBoard logs under ``<out_dir>/tensorboard``. Returns
    the training record (timesteps, wall time, steps/s, the validation curve, the
    entropy coefficient at the start and end). ``tensorboard`` / ``checkpoints`` off:
    what a throw-away research trial wants (no files it will not read)."""
    import torch
    from sb3_contrib import MaskablePPO
    from sb3_contrib.common.maskable.callbacks import MaskableEvalCallback
    from stable_baselines3.common.callbacks import CallbackList, CheckpointCallback
    from stable_baselines3.common.utils import set_random_seed
    from stable_baselines3.common.vec_env import VecMonitor

    from perptrader.rl.vec_env import PerpVecEnv

    if timesteps < settings.n_envs * settings.n_steps:
        raise ValueError(f"--timesteps {timesteps} is less than one rollout "
                         f"({settings.n_envs} envs x {settings.n_steps} steps)")
    folder = Path(out_dir) / label
    folder.mkdir(parents=True, exist_ok=True)
    set_random_seed(settings.seed)
    torch.manual_seed(settings.seed)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(max(int(settings.torch_threads), 1))
    env = VecMonitor(PerpVecEnv(market, settings.n_envs, reward, first=train[0],
                                last=train[1], episode_bars=settings.episode_bars,
                                min_equity=settings.min_equity, obs_columns=obs_columns,
                                seed=settings.seed))
    eval_env = VecMonitor(PerpVecEnv(market, 1, reward, first=valid[0], last=valid[1],
                                     episode_bars=None, obs_columns=obs_columns,
                                     seed=settings.seed))
    model = MaskablePPO(
        "MlpPolicy", env, n_steps=settings.n_steps, batch_size=settings.batch_size,
        n_epochs=settings.n_epochs, learning_rate=settings.learning_rate,
        gamma=settings.gamma, gae_lambda=settings.gae_lambda, ent_coef=settings.ent_coef,
        clip_range=settings.clip_range,
        policy_kwargs={"net_arch": list(settings.net_arch)},
        tensorboard_log=str(Path(out_dir) / "tensorboard") if tensorboard else None,
        seed=settings.seed,
        device="cpu", verbose=0)
    per_env = max(settings.eval_every // settings.n_envs, 1)
    eval_cb = MaskableEvalCallback(eval_env, n_eval_episodes=1, eval_freq=per_env,
                                   best_model_save_path=str(folder / "best"),
                                   log_path=str(folder / "eval"), deterministic=True,
                                   verbose=0)
    ckpt = CheckpointCallback(save_freq=max(settings.checkpoint_every // settings.n_envs, 1),
                              save_path=str(folder / "checkpoints"), name_prefix=label)
    callbacks = [eval_cb, *([ckpt] if checkpoints else []),
                 _entropy_callback(settings, timesteps), _progress_callback(timesteps,
                                                                            progress)]
    t0 = time.perf_counter()
    try:
        model.learn(timesteps, callback=CallbackList(callbacks), tb_log_name=label,
                    progress_bar=False)
    finally:
        torch.set_num_threads(threads_before)
    wall = time.perf_counter() - t0
    model.save(folder / "final.zip")
    best = folder / "best" / "best_model.zip"
    chosen = "best" if best.is_file() else "final"
    shutil.copyfile(best if chosen == "best" else folder / "final.zip", folder / "policy.zip")
    curve = [{"timesteps": int(t), "valid_reward": float(np.mean(r))}
             for t, r in zip(eval_cb.evaluations_timesteps, eval_cb.evaluations_results,
                             strict=True)]
    return {"label": label, "timesteps": int(model.num_timesteps), "wall_s": round(wall, 1),
            "steps_per_s": round(model.num_timesteps / wall, 1) if wall > 0 else None,
            "valid_curve": curve, "best_valid_reward": float(eval_cb.best_mean_reward)
            if curve else None, "policy": chosen, "seed": settings.seed,
            "ent_coef": [settings.entropy_at(0.0), float(model.ent_coef)]}


def load_policy(path: Path):
    """A saved MaskablePPO policy (CPU)."""
    from sb3_contrib import MaskablePPO

    return MaskablePPO.load(str(path), device="cpu")
