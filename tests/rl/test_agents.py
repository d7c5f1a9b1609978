"""``rl.agents.train_ppo``: seeded runs repeat exactly, and a run leaves its checkpoints,
TensorBoard events, validation curve and the policy it kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from perptrader.rl.agents import PPOSettings, load_policy, train_ppo
from perptrader.rl.reward import RewardConfig
from rl.rl_frames import small_market

SETTINGS = PPOSettings(n_envs=2, n_steps=64, batch_size=64, n_epochs=1, episode_bars=50,
                       eval_every=128, checkpoint_every=128, net_arch=(16, 16))


def _train(tmp: Path, seed: int) -> dict:
    market = small_market(300)
    settings = PPOSettings(**{**SETTINGS.as_dict(), "net_arch": (16, 16), "seed": seed})
    return train_ppo(market, train=(0, 220), valid=(220, 299), timesteps=256, out_dir=tmp,
                     label="ppo", reward=RewardConfig(), settings=settings)


def _weights(path: Path) -> list[torch.Tensor]:
    return [p.detach().clone() for p in load_policy(path).policy.parameters()]


@pytest.mark.slow
def test_seeded_training_repeats_and_leaves_its_files(tmp_path: Path) -> None:
    a = _train(tmp_path / "a", seed=3)
    b = _train(tmp_path / "b", seed=3)
    _train(tmp_path / "c", seed=4)
    wa, wb, wc = (_weights(tmp_path / x / "ppo" / "final.zip") for x in "abc")
    assert all(torch.equal(x, y) for x, y in zip(wa, wb, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(wa, wc, strict=True))
    assert a["valid_curve"] == b["valid_curve"] and len(a["valid_curve"]) == 2
    assert a["timesteps"] == 256 and a["policy"] == "best"
    folder = tmp_path / "a" / "ppo"
    assert (folder / "policy.zip").is_file() and (folder / "best" / "best_model.zip").is_file()
    assert sorted(p.name for p in (folder / "checkpoints").iterdir())
    assert (folder / "eval" / "evaluations.npz").is_file()
    events = list((tmp_path / "a" / "tensorboard").rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file"
    assert np.isfinite(a["best_valid_reward"])


def test_too_few_timesteps_for_one_rollout(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="less than one rollout"):
        train_ppo(small_market(300), train=(0, 220), valid=(220, 299), timesteps=10,
                  out_dir=tmp_path, label="ppo", reward=RewardConfig(), settings=SETTINGS)
