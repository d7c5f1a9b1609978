"""``PerpFuturesEnv``: the API contracts SB3 relies on, the action masks, invalid actions,
seeding, observation layout and the absence of look-ahead."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from feature_frames import synthetic_frame
from perptrader.rl import EnvMarket, PerpFuturesEnv, RewardConfig
from perptrader.rl import actions as ACT
from perptrader.rl.core import ACCOUNT_FEATURES, OBS_CLIP
from perptrader.rl.reward import TERMS
from rl.rl_frames import (
    PRICE_COLUMNS,
    build_market,
    crash_frame,
    play,
    small_market,
    state_frame,
)

OPENS = {ACT.LONG_05, ACT.LONG_1, ACT.LONG_2, ACT.SHORT_05, ACT.SHORT_1, ACT.SHORT_2}
IN_POSITION = {ACT.HOLD, ACT.CLOSE, ACT.INCREASE, ACT.REDUCE}


@pytest.fixture(scope="module")
def market() -> EnvMarket:
    return small_market(400)


def valid_set(mask: np.ndarray) -> set[int]:
    return {int(a) for a in np.flatnonzero(mask)}


# ---- API checkers --------------------------------------------------------------------------
@pytest.mark.parametrize("checker", ["sb3", "gymnasium"])
def test_env_checkers_pass_without_warnings(market: EnvMarket, checker: str) -> None:
    """Both checkers step the env with random actions (invalid ones included) and
    compare seeded resets; a warning from them means SB3 would see a malformed env."""
    env = PerpFuturesEnv(market, episode_bars=50)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if checker == "sb3":
            sb3_check_env(env, warn=True)
        else:
            gym_check_env(env, skip_render_check=True)
    assert [str(w.message) for w in caught] == []


def test_observations_always_lie_in_the_space(market: EnvMarket) -> None:
    """A random episode from bar 0 (NaN warm-up state, a raw close of ~30000 in the
    state): every observation is float32, finite and inside the +-OBS_CLIP box."""
    env = PerpFuturesEnv(market, episode_bars=None)
    run = play(env, start=0, end=len(market) - 1, rng=np.random.default_rng(5))
    assert len(run.infos) == len(market) - 1
    names = env.observation_names
    for obs in run.observations:
        assert obs.dtype == np.float32
        assert obs in env.observation_space
    first = run.observations[0]
    assert first[names.index("r1_mean24")] == 0.0  # NaN in the state reads as 0
    assert first[names.index("close_raw")] == OBS_CLIP  # ~30000 is clipped
    assert max(abs(i["target"]) for i in run.infos) == 2.0  # the 2x account was used


# ---- masks -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("actions", "target", "valid"), [
    ([], 0.0, {ACT.HOLD} | OPENS),
    ([ACT.LONG_1], 1.0, IN_POSITION),
    ([ACT.SHORT_1], -1.0, IN_POSITION),
    ([ACT.LONG_2], 2.0, IN_POSITION - {ACT.INCREASE}),
    ([ACT.SHORT_2], -2.0, IN_POSITION - {ACT.INCREASE}),
    ([ACT.LONG_05], 0.5, IN_POSITION - {ACT.REDUCE}),
    ([ACT.SHORT_05], -0.5, IN_POSITION - {ACT.REDUCE}),
    ([ACT.LONG_1, ACT.INCREASE], 1.5, IN_POSITION),
    ([ACT.LONG_1, ACT.INCREASE, ACT.INCREASE], 2.0, IN_POSITION - {ACT.INCREASE}),
    ([ACT.SHORT_2, ACT.REDUCE, ACT.REDUCE], -1.0, IN_POSITION),
    ([ACT.SHORT_2, ACT.REDUCE, ACT.REDUCE, ACT.REDUCE], -0.5, IN_POSITION - {ACT.REDUCE}),
    ([ACT.LONG_1, ACT.CLOSE], 0.0, {ACT.HOLD} | OPENS),
])
def test_masks_follow_the_target(market: EnvMarket, actions: list[int], target: float,
                                 valid: set[int]) -> None:
    env = PerpFuturesEnv(market)
    run = play(env, actions, start=100, end=200)
    assert len(run.infos) == len(actions)
    if run.infos:
        assert run.infos[-1]["target"] == target
        assert run.infos[-1]["invalid_actions"] == 0
        assert np.sign(run.infos[-1]["position_qty"]) == np.sign(target)
    mask = env.action_masks()
    assert mask.dtype == np.bool_ and mask.shape == (ACT.N_ACTIONS,)
    assert valid_set(mask) == valid
    assert valid_set(ACT.action_mask(target, 2.0)) == valid


def test_max_exposure_one_masks_the_2x_opens() -> None:
    """The mask reads the account's leverage cap, not a constant 2."""
    mask = ACT.action_mask(0.0, 1.0)
    assert valid_set(mask) == {ACT.HOLD, ACT.LONG_05, ACT.LONG_1, ACT.SHORT_05, ACT.SHORT_1}
    assert not ACT.action_mask(1.0, 1.0)[ACT.INCREASE]


# ---- invalid actions ------------------------------------------------------------------------
@pytest.mark.parametrize(("prefix", "invalid"), [
    ([], ACT.CLOSE),
    ([], ACT.INCREASE),
    ([], ACT.REDUCE),
    ([], 10),
    ([], -1),
    ([ACT.LONG_1], ACT.SHORT_1),
    ([ACT.LONG_1], ACT.LONG_2),
    ([ACT.LONG_2], ACT.INCREASE),
    ([ACT.SHORT_05], ACT.REDUCE),
])
def test_invalid_action_is_counted_and_acts_as_hold(market: EnvMarket, prefix: list[int],
                                                    invalid: int) -> None:
    """Same episode twice, once with the invalid action and once with HOLD in its place:
    everything but the counter matches, for the step and the steps after it."""
    tail = [ACT.HOLD] * 3
    bad = play(PerpFuturesEnv(market), [*prefix, invalid, *tail], start=120, end=200)
    good = play(PerpFuturesEnv(market), [*prefix, ACT.HOLD, *tail], start=120, end=200)
    k = len(prefix)
    assert [i["invalid_actions"] for i in bad.infos[k:]] == [1] * (len(tail) + 1)
    assert all(i["invalid_actions"] == 0 for i in good.infos)
    np.testing.assert_array_equal(np.array(bad.observations), np.array(good.observations))
    assert bad.rewards == good.rewards
    for b, g in zip(bad.infos, good.infos, strict=True):
        assert {**b, "invalid_actions": 0} == g


# ---- episodes, seeding, names --------------------------------------------------------------
def test_episode_runs_from_start_to_end(market: EnvMarket) -> None:
    env = PerpFuturesEnv(market)
    _, info = env.reset(options={"start": 50, "end": 60})
    assert info["bar"] == 50 and info["equity"] == market.config.initial_cash
    bars, flags = [], []
    for _ in range(10):
        _, _, terminated, truncated, info = env.step(ACT.HOLD)
        bars.append(info["bar"])
        flags.append((terminated, truncated))
    assert bars == list(range(51, 61))
    assert flags == [(False, False)] * 9 + [(False, True)]
    with pytest.raises(RuntimeError):
        env.step(ACT.HOLD)


def test_step_before_reset_raises(market: EnvMarket) -> None:
    with pytest.raises(RuntimeError):
        PerpFuturesEnv(market).step(ACT.HOLD)


def test_reset_with_the_same_seed_gives_the_same_start(market: EnvMarket) -> None:
    env = PerpFuturesEnv(market, episode_bars=50)
    starts = {}
    for seed in range(6):
        obs_a, info_a = env.reset(seed=seed)
        env.step(ACT.LONG_1)  # state left behind must not leak into the next reset
        obs_b, info_b = env.reset(seed=seed)
        assert info_a["bar"] == info_b["bar"]
        assert info_a["equity"] == info_b["equity"] == market.config.initial_cash
        np.testing.assert_array_equal(obs_a, obs_b)
        starts[seed] = info_a["bar"]
        assert 0 <= starts[seed] <= len(market) - 1 - 50
    assert len(set(starts.values())) > 1  # the seed does pick the start


def test_reset_info_does_not_carry_the_previous_episode(market: EnvMarket) -> None:
    fresh = PerpFuturesEnv(market).reset(options={"start": 60})[1]
    env = PerpFuturesEnv(market)
    play(env, [ACT.LONG_1, ACT.HOLD], start=100, end=150)
    assert env.reset(options={"start": 60})[1] == fresh


def test_observation_names_match_the_observation(market: EnvMarket) -> None:
    env = PerpFuturesEnv(market)
    names = env.observation_names
    assert len(names) == env.observation_space.shape[0]
    assert names[:len(market.state_columns)] == market.state_columns
    assert tuple(names[-len(ACCOUNT_FEATURES):]) == ACCOUNT_FEATURES
    assert len(ACCOUNT_FEATURES) == 9


def test_obs_columns_select_from_the_full_observation(market: EnvMarket) -> None:
    cols = np.array([0, 4, 5])  # r1, acc_exposure, acc_leverage_used
    full = play(PerpFuturesEnv(market), [ACT.LONG_1, ACT.INCREASE, ACT.HOLD], start=80,
                end=120)
    part_env = PerpFuturesEnv(market, obs_columns=cols)
    part = play(part_env, full.actions, start=80, end=120)
    assert part_env.observation_names == ["r1", "acc_exposure", "acc_leverage_used"]
    assert part_env.observation_space.shape == (3,)
    for f, p in zip(full.observations, part.observations, strict=True):
        np.testing.assert_array_equal(f[cols], p)
    assert part.observations[-1][2] == pytest.approx(0.75)  # target 1.5 of max 2


# ---- no look-ahead --------------------------------------------------------------------------
K_CHANGE = 200
#: every term but the differential Sharpe (tested on its own below)
CAUSAL_TERMS = RewardConfig(weights={t: 1.0 for t in TERMS if t != "diff_sharpe"},
                            preset=None)


def future_changed_markets(k: int) -> tuple[EnvMarket, EnvMarket]:
    """Two markets equal up to bar ``k`` and different after it: prices and marks 30 %
    higher, funding rates of the other sign, state values shifted, VSA / expert signals
    set."""
    frame = synthetic_frame(400)
    other = frame.copy()
    later = slice(k + 1, None)
    for c in PRICE_COLUMNS:
        other.iloc[later, other.columns.get_loc(c)] *= 1.3
    other.iloc[later, other.columns.get_loc("funding_rate")] *= -5.0
    state = state_frame(frame)
    other_state = state.copy()
    other_state.iloc[later] += 7.0
    n = len(frame)
    signal = np.zeros(n)
    other_signal = signal.copy()
    other_signal[k + 1:] = 1.0
    return (build_market(frame, state=state),
            build_market(other, state=other_state, vsa_dir=other_signal,
                         agree=other_signal, conflict=other_signal))


def causal_info(info: dict) -> dict:
    """A step's info without the differential Sharpe term."""
    terms = {k: v for k, v in info["reward_terms"].items() if k != "diff_sharpe"}
    return {**info, "reward_terms": terms}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_look_ahead(seed: int) -> None:
    """Observations, rewards (every causal term) and infos of the steps ending at bars
    <= k are identical when only bars after k differ; the step into k + 1 does differ
    (so the comparison is not vacuous)."""
    a, b = future_changed_markets(K_CHANGE)
    start = K_CHANGE - 60
    run_a = play(PerpFuturesEnv(a, CAUSAL_TERMS), start=start, end=K_CHANGE + 20,
                 rng=np.random.default_rng(seed))
    run_b = play(PerpFuturesEnv(b, CAUSAL_TERMS), run_a.actions, start=start,
                 end=K_CHANGE + 20)
    np.testing.assert_array_equal(run_a.observations[0], run_b.observations[0])
    n_before = K_CHANGE - start  # steps ending at bars start+1 .. k
    assert run_a.infos[n_before - 1]["bar"] == K_CHANGE
    for j in range(n_before):
        np.testing.assert_array_equal(run_a.observations[j + 1], run_b.observations[j + 1])
        assert run_a.rewards[j] == run_b.rewards[j]
        assert causal_info(run_a.infos[j]) == causal_info(run_b.infos[j])
    assert not np.array_equal(run_a.observations[n_before + 1],
                              run_b.observations[n_before + 1])


def test_no_look_ahead_in_diff_sharpe() -> None:
    a, b = future_changed_markets(K_CHANGE)
    reward = RewardConfig.from_preset("diff_sharpe")
    actions = [ACT.LONG_1] + [ACT.HOLD] * 20
    start = K_CHANGE - 30
    run_a = play(PerpFuturesEnv(a, reward), actions, start=start, end=K_CHANGE + 10)
    run_b = play(PerpFuturesEnv(b, reward), actions, start=start, end=K_CHANGE + 10)
    n_before = K_CHANGE - start
    assert run_a.rewards[:n_before] == run_b.rewards[:n_before]


def test_after_a_liquidation_one_flat_bar_then_the_same_open_works() -> None:
    """A liquidation leaves the decision at the liquidated target; a backtest target
    series cannot re-send the same target, so the env allows only hold for one bar (the
    decision returns to 0), after which the same open fills."""
    env = PerpFuturesEnv(build_market(crash_frame(300, at=150)))
    run = play(env, [ACT.LONG_1] + [ACT.HOLD] * 20, start=130, end=200)
    assert run.infos[20]["bar"] == 151 and run.infos[20]["liquidations"] == 1
    mask = env.action_masks()
    assert mask[ACT.HOLD] and mask.sum() == 1
    _, _, _, _, info = env.step(ACT.LONG_1)  # invalid now: counted, acts as hold
    assert info["invalid_actions"] == 1 and info["decision"] == 0.0
    assert env.action_masks()[ACT.LONG_1]
    _, _, _, _, info = env.step(ACT.LONG_1)
    assert info["target"] == 1.0 and info["position_qty"] > 0.0
