"""``PerpVecEnv``: each of its environments is a ``PerpFuturesEnv``; auto-reset, masks
and seeding behave as SB3 / MaskablePPO expect."""

from __future__ import annotations

import numpy as np
import pytest
from sb3_contrib.common.maskable.utils import get_action_masks

from perptrader.rl import EnvMarket, PerpFuturesEnv, PerpVecEnv
from perptrader.rl import actions as ACT
from rl.rl_frames import build_market, crash_frame, flat_mask, play, small_market

N = 8
EPISODE = 40


@pytest.fixture(scope="module")
def market() -> EnvMarket:
    return small_market(400)


@pytest.mark.parametrize("parallel", [False, True])
def test_each_env_matches_a_single_env(market: EnvMarket, parallel: bool) -> None:
    """Env i of the batch, reset at known bounds and given env i's action sequence,
    returns what a lone ``PerpFuturesEnv`` returns at every step, the terminal step's
    observation (in the info) included; the eight envs interleave without leaking, on
    one thread and on numba's threads alike."""
    starts = 10 + 37 * np.arange(N)
    ends = starts + EPISODE
    singles = [play(PerpFuturesEnv(market), start=int(s), end=int(e),
                    rng=np.random.default_rng(i))
               for i, (s, e) in enumerate(zip(starts, ends, strict=True))]
    assert all(len(run.infos) == EPISODE for run in singles)
    vec = PerpVecEnv(market, N, episode_bars=EPISODE, seed=0, parallel=parallel)
    vec.reset()
    vec.batch.reset(np.arange(N), starts, ends)
    obs0 = vec.batch.observations()
    for i in range(N):
        np.testing.assert_array_equal(obs0[i], singles[i].observations[0])
    for k in range(EPISODE):
        actions = np.array([run.actions[k] for run in singles])
        assert vec.action_masks()[np.arange(N), actions].all()
        vec.step_async(actions)
        obs, rewards, dones, infos = vec.step_wait()
        assert rewards.dtype == np.float32 and obs.dtype == np.float32
        for i, run in enumerate(singles):
            assert rewards[i] == np.float32(run.rewards[k])
            if k < EPISODE - 1:
                assert not dones[i] and infos[i] == {}
                np.testing.assert_array_equal(obs[i], run.observations[k + 1])
            else:
                assert dones[i]
                np.testing.assert_array_equal(infos[i]["terminal_observation"],
                                              run.observations[k + 1])
                assert infos[i]["equity"] == run.infos[k]["equity"]
                assert infos[i]["trades"] == run.infos[k]["trades"]
    assert all(run.infos[-1]["invalid_actions"] == 0 for run in singles)


def test_auto_reset_returns_the_new_episodes_first_observation(market: EnvMarket) -> None:
    vec = PerpVecEnv(market, N, episode_bars=5, seed=2)
    vec.reset()
    starts = np.array([vec.batch.bar(i) for i in range(N)])
    for step in range(5):
        obs, _, dones, infos = vec.step(np.full(N, ACT.LONG_1 if step == 0 else ACT.HOLD))
    assert dones.all() and vec.episodes_done == N
    new_starts = np.array([vec.batch.bar(i) for i in range(N)])
    assert not np.array_equal(new_starts, starts)
    for i in range(N):
        info = infos[i]
        assert info["TimeLimit.truncated"] is True
        assert info["bar"] == starts[i] + 5 and info["target"] == 1.0
        first, _ = PerpFuturesEnv(market).reset(options={"start": int(new_starts[i])})
        np.testing.assert_array_equal(obs[i], first)
        assert not np.array_equal(info["terminal_observation"], obs[i])
        assert vec.batch.target(i) == 0.0 and vec.batch.equity(i) == 10_000.0
    np.testing.assert_array_equal(get_action_masks(vec), np.tile(flat_mask(), (N, 1)))


def test_termination_is_not_a_time_limit() -> None:
    """A 2x long through a 60 % gap loses its whole margin: the episode terminates (not
    truncated) and SB3 must bootstrap nothing, so TimeLimit.truncated is False."""
    m = build_market(crash_frame(300, at=150))
    vec = PerpVecEnv(m, 2, episode_bars=100, seed=0)
    vec.reset()
    vec.batch.reset(np.arange(2), np.array([140, 140]), np.array([240, 240]))
    infos: list[dict] = []
    for step in range(11):
        first = step == 0
        _, _, dones, infos = vec.step(np.array([ACT.LONG_2 if first else ACT.HOLD,
                                                ACT.HOLD]))
    assert dones.tolist() == [True, False]
    assert infos[0]["TimeLimit.truncated"] is False
    assert infos[0]["bar"] == 151 and infos[0]["liquidations"] == 1
    assert infos[1] == {}


def test_action_masks_are_per_env(market: EnvMarket) -> None:
    vec = PerpVecEnv(market, N, episode_bars=50, seed=0)
    vec.reset()
    masks = get_action_masks(vec)
    assert masks.shape == (N, ACT.N_ACTIONS) and masks.dtype == np.bool_
    np.testing.assert_array_equal(masks, np.tile(flat_mask(), (N, 1)))
    actions = np.full(N, ACT.HOLD)
    actions[[0, 3]] = [ACT.LONG_2, ACT.SHORT_05]
    vec.step(actions)
    masks = get_action_masks(vec)
    np.testing.assert_array_equal(masks[0], ACT.action_mask(2.0, 2.0))
    np.testing.assert_array_equal(masks[3], ACT.action_mask(-0.5, 2.0))
    np.testing.assert_array_equal(np.delete(masks, [0, 3], axis=0),
                                  np.tile(flat_mask(), (N - 2, 1)))
    assert vec.has_attr("action_masks")
    assert [m.tolist() for m in vec.env_method("action_masks", indices=[3])] == \
        [masks[3].tolist()]


def test_seeded_resets_repeat(market: EnvMarket) -> None:
    vec = PerpVecEnv(market, N, episode_bars=50)

    def seeded_reset(seed: int) -> tuple[np.ndarray, np.ndarray]:
        vec.seed(seed)
        obs = vec.reset()
        return obs, np.array([vec.batch.bar(i) for i in range(N)])

    obs_a, starts_a = seeded_reset(3)
    vec.step(np.full(N, ACT.LONG_1))
    obs_b, starts_b = seeded_reset(3)
    np.testing.assert_array_equal(starts_a, starts_b)
    np.testing.assert_array_equal(obs_a, obs_b)
    assert len(set(starts_a.tolist())) > 1  # random starts, not one fixed bar
    _, starts_c = seeded_reset(4)
    assert not np.array_equal(starts_a, starts_c)
    first = PerpVecEnv(market, N, episode_bars=50, seed=9).reset()
    np.testing.assert_array_equal(first, PerpVecEnv(market, N, episode_bars=50,
                                                    seed=9).reset())


@pytest.mark.slow
def test_maskable_ppo_learns_a_few_steps(market: EnvMarket) -> None:
    """The smallest MaskablePPO run: one rollout of 8 x 32 steps and one epoch."""
    from sb3_contrib import MaskablePPO

    vec = PerpVecEnv(market, N, episode_bars=20, seed=0)
    model = MaskablePPO("MlpPolicy", vec, n_steps=32, batch_size=64, n_epochs=1,
                        device="cpu", seed=0)
    model.learn(256)
    assert model.num_timesteps == 256
    assert vec.episodes_done >= N  # 32 steps per env: each ends a 20-bar episode
    obs = vec.reset()
    action, _ = model.predict(obs, action_masks=get_action_masks(vec), deterministic=True)
    assert action.shape == (N,)
    assert get_action_masks(vec)[np.arange(N), action].all()
