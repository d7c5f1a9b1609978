"""The entropy schedule (settings, old manifests, what PPO really uses at each update),
seed lists, and the collapse verdict over seeds."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from perptrader.rl import actions as ACT
from perptrader.rl.agents import PPOSettings, train_ppo
from perptrader.rl.evaluate import SEED_FIGURES, seed_row
from perptrader.rl.reward import RewardConfig
from perptrader.rl.rollout import collapse, run_agent, seed_summary, verdict
from perptrader.rl.storage import manifest_seeds, policy_root
from rl.rl_frames import small_market


# ---- the schedule ------------------------------------------------------------------------
def test_linear_and_exponential_schedules() -> None:
    lin = PPOSettings(ent_coef=0.05, ent_coef_end=0.005)
    assert [lin.entropy_at(p) for p in (0.0, 0.5, 1.0)] == pytest.approx(
        [0.05, 0.0275, 0.005])
    assert lin.entropy_at(-1.0) == 0.05 and lin.entropy_at(2.0) == pytest.approx(0.005)
    exp = PPOSettings(ent_coef=0.04, ent_coef_end=0.0025, ent_schedule="exponential")
    assert [exp.entropy_at(p) for p in (0.0, 0.5, 1.0)] == pytest.approx([0.04, 0.01,
                                                                          0.0025])
    const = PPOSettings(ent_coef=0.01, ent_coef_end=None)
    assert const.entropy_at(0.0) == const.entropy_at(1.0) == 0.01


def test_defaults_decay_and_are_stored() -> None:
    d = PPOSettings().as_dict()
    assert d["ent_coef"] > d["ent_coef_end"] > 0.0 and d["ent_schedule"] == "linear"
    assert d["seeds"] == 1
    assert PPOSettings.from_dict(d) == PPOSettings()


def test_an_old_manifest_loads_as_its_constant_entropy() -> None:
    """A manifest written before the schedule (no ent_coef_end, no seeds) trained with a
    constant ent_coef: it must not load as today's decaying default."""
    old = {"n_envs": 16, "n_steps": 256, "batch_size": 1024, "n_epochs": 4,
           "learning_rate": 3e-4, "gamma": 0.99, "gae_lambda": 0.95, "ent_coef": 0.01,
           "clip_range": 0.2, "net_arch": [64, 64], "episode_bars": 720,
           "min_equity": 0.5, "eval_every": 10_000, "checkpoint_every": 50_000,
           "seed": 7, "torch_threads": 1}
    s = PPOSettings.from_dict(old)
    assert s.ent_coef_end is None and s.entropy_at(1.0) == 0.01
    assert s.seed_list == [7]
    assert manifest_seeds({"ppo": old}) == [7]
    assert manifest_seeds({"ppo": old, "seeds": [7, 8, 9]}) == [7, 8, 9]


@pytest.mark.parametrize("bad", [{"ent_schedule": "cosine"}, {"ent_coef": -0.1},
                                 {"ent_coef_end": -1.0}, {"seeds": 0},
                                 {"ent_schedule": "exponential", "ent_coef_end": 0.0}])
def test_bad_schedule_settings_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        PPOSettings(**bad)


def test_seed_list_and_policy_folders(tmp_path: Path) -> None:
    assert PPOSettings(seed=4, seeds=3).seed_list == [4, 5, 6]
    assert policy_root(tmp_path, 4, 4) == tmp_path
    assert policy_root(tmp_path, 5, 4) == tmp_path / "seeds" / "5"


@pytest.mark.slow
def test_training_decays_ent_coef_update_by_update(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """What each PPO update really used: ``ent_coef`` at the first, ``ent_coef_end`` at
    the last, strictly decreasing between."""
    from sb3_contrib import MaskablePPO

    used: list[float] = []
    original = MaskablePPO.train

    def spy(self) -> None:
        used.append(float(self.ent_coef))
        original(self)

    monkeypatch.setattr(MaskablePPO, "train", spy)
    settings = PPOSettings(n_envs=2, n_steps=32, batch_size=64, n_epochs=1, episode_bars=50,
                           eval_every=10 ** 6, checkpoint_every=10 ** 6, net_arch=(8,),
                           ent_coef=0.08, ent_coef_end=0.002)
    rec = train_ppo(small_market(300), train=(0, 220), valid=(220, 299), timesteps=5 * 64,
                    out_dir=tmp_path, label="ppo", reward=RewardConfig(), settings=settings,
                    tensorboard=False, checkpoints=False)
    assert len(used) == 5
    assert used[0] == pytest.approx(0.08) and used[-1] == pytest.approx(0.002)
    assert all(b < a for a, b in itertools.pairwise(used))
    np.testing.assert_allclose(used, np.linspace(0.08, 0.002, 5))
    assert rec["ent_coef"] == pytest.approx([0.08, 0.002])


# ---- verdict over seeds ------------------------------------------------------------------
def test_verdict() -> None:
    assert verdict({0: None, 1: None}) == "ok"
    assert verdict({0: None, 1: "no trades", 2: "'hold' on 97% of the steps"}) == (
        "fail: collapsed (seed 1: no trades; seed 2: 'hold' on 97% of the steps)")
    assert verdict({}).startswith("fail")


class _Hold:
    def predict(self, obs, action_masks=None, deterministic=True):
        return np.array(ACT.HOLD), None


class _Random:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def predict(self, obs, action_masks=None, deterministic=True):
        return np.array(int(self.rng.choice(np.flatnonzero(action_masks)))), None


def test_a_collapsed_seed_fails_the_verdict_and_the_mean_keeps_every_seed() -> None:
    """Seeds 0 and 2 trade at random, seed 1 only holds: the verdict fails on seed 1 and
    names it, and the mean is over all three seeds."""
    from perptrader.rl.evaluate import backtest_rollout

    m = small_market(300)
    rows = []
    for seed, policy in ((0, _Random(0)), (1, _Hold()), (2, _Random(2))):
        out = run_agent(m, {"ppo": policy}, {})
        res, _ = backtest_rollout(m, out, label=f"s{seed}", baselines={})
        rows.append(seed_row(seed, res, out))
        assert rows[-1]["collapse_reason"] == collapse(out.action_distribution(),
                                                       int(res.metrics["trades"]),
                                                       out.decisions.to_numpy())
    assert [r["collapsed"] for r in rows] == [False, True, False]
    assert rows[1]["collapse_reason"] == "no trades" and rows[1]["total_return"] == 0.0
    assert rows[1]["position_share"]["flat"] == 1.0
    v = verdict({r["seed"]: r["collapse_reason"] for r in rows})
    assert v == "fail: collapsed (seed 1: no trades)"
    mean = seed_summary(rows, SEED_FIGURES)
    assert mean["total_return"] == pytest.approx(np.mean([r["total_return"] for r in rows]))
    assert mean["trades"] == pytest.approx(np.mean([r["trades"] for r in rows]))
    assert set(mean) == set(SEED_FIGURES)


def test_seed_summary_skips_missing_figures() -> None:
    rows = [{"sharpe": 1.0, "x": None}, {"sharpe": float("nan"), "x": None},
            {"sharpe": 3.0}]
    assert seed_summary(rows, ("sharpe", "x")) == {"sharpe": 2.0, "x": None}
