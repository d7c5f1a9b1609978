"""Reward terms against hand-computed numbers on tiny frames.

The hand frames have open = high = low = close at every bar (a price change is a gap
at a bar's open), no funding and no costs, so the equity of a position is exact:
a 2x long entered at 100 with 10 000 holds 200 units and is worth 10 000 + 200 (p - 100).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from perptrader.rl import PRESETS, EnvMarket, PerpFuturesEnv, RewardConfig
from perptrader.rl import actions as ACT
from perptrader.rl.reward import DEFAULT_PRESET, TERMS
from rl.rl_frames import (
    FREE,
    Rollout,
    build_market,
    crash_frame,
    hand_frame,
    play,
    small_market,
)

INIT = 10_000.0
H, L05, L1, L2, S05, S1, S2 = (ACT.HOLD, ACT.LONG_05, ACT.LONG_1, ACT.LONG_2, ACT.SHORT_05,
                               ACT.SHORT_1, ACT.SHORT_2)
CLOSE, INC, RED = ACT.CLOSE, ACT.INCREASE, ACT.REDUCE
ALL_ONE = RewardConfig(weights={t: 1.0 for t in TERMS}, preset=None)


def terms(run: Rollout, name: str) -> np.ndarray:
    return np.array([i["reward_terms"][name] for i in run.infos])


def hand_market(prices: list[float], **signals: np.ndarray) -> EnvMarket:
    return build_market(hand_frame(prices), costs=FREE, **signals)


# ---- log growth, pnl, leverage, drawdown on one 2x long -------------------------------
#: bars 0-7 at 100, 8-11 at 110, 12-15 at 99, 16-19 at 104.5, 20-23 at 88, 24-29 at 100
PATH = [100.0] * 8 + [110.0] * 4 + [99.0] * 4 + [104.5] * 4 + [88.0] * 4 + [100.0] * 6
#: a 2x long decided at bar 2, filled at the open of bar 3 (200 units at 100), held to
#: bar 29: equity 10 000 + 200 (p - 100) from bar 3 on
EQUITY = {3: 10_000.0, 8: 12_000.0, 12: 9_800.0, 16: 10_900.0, 20: 7_600.0, 24: 10_000.0}


@pytest.fixture(scope="module")
def long_2x() -> Rollout:
    env = PerpFuturesEnv(hand_market(PATH), ALL_ONE)
    return play(env, [L2] + [H] * 26, start=2, end=29)


def hand_equity() -> np.ndarray:
    """Equity at bars 3..29 (the step ending at bar t is step t - 3)."""
    eq, out = INIT, []
    for t in range(3, 30):
        eq = EQUITY.get(t, eq)
        out.append(eq)
    return np.array(out)


def test_hand_equity_path(long_2x: Rollout) -> None:
    assert [i["bar"] for i in long_2x.infos] == list(range(3, 30))
    np.testing.assert_allclose(long_2x.series("equity"), hand_equity(), rtol=1e-12)
    assert long_2x.infos[0]["position_qty"] == pytest.approx(200.0)


def test_log_growth_and_pnl(long_2x: Rollout) -> None:
    eq = hand_equity()
    prev = np.concatenate([[INIT], eq[:-1]])
    np.testing.assert_allclose(terms(long_2x, "log_growth"), 100 * np.log(eq / prev),
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(terms(long_2x, "pnl"), 100 * (eq / prev - 1), rtol=1e-9,
                               atol=1e-12)
    # by hand: bar 8 (step 5): +20 %; bar 12 (step 9): 9800 / 12000
    assert terms(long_2x, "pnl")[5] == pytest.approx(20.0)
    assert terms(long_2x, "log_growth")[9] == pytest.approx(100 * math.log(9_800 / 12_000))
    # from the env's own equity, and additive over the episode
    env_eq = np.concatenate([[INIT], long_2x.series("equity")])
    np.testing.assert_allclose(terms(long_2x, "log_growth"),
                               100 * np.log(env_eq[1:] / env_eq[:-1]), rtol=1e-12,
                               atol=1e-12)
    assert terms(long_2x, "log_growth").sum() == pytest.approx(100 * math.log(env_eq[-1]
                                                                              / INIT))


def test_leverage_is_minus_the_actual_exposure(long_2x: Rollout) -> None:
    """Not the target (2): 200 p / (200 p - 10 000) moves with the price."""
    lev = terms(long_2x, "leverage")
    assert lev[0] == pytest.approx(-2.0)  # bar 3: 20 000 / 10 000
    assert lev[5] == pytest.approx(-22_000 / 12_000)  # bar 8
    assert lev[9] == pytest.approx(-19_800 / 9_800)  # bar 12
    assert lev[17] == pytest.approx(-17_600 / 7_600)  # bar 20
    flat = play(PerpFuturesEnv(hand_market(PATH), ALL_ONE), [H] * 5, start=2, end=29)
    assert (terms(flat, "leverage") == 0.0).all()


def test_drawdown_penalises_only_new_drawdown(long_2x: Rollout) -> None:
    """Peak 12 000 at bar 8. Bar 12: drawdown 0 -> 18.33 %; bar 16 recovers to 9.17 %
    (no penalty); bar 20 deepens it to 36.67 % (the increase, 27.5 %, is charged);
    bar 24 recovers (no penalty). Flat bars cost nothing."""
    dd = terms(long_2x, "drawdown")
    expected = np.zeros(len(dd))
    expected[12 - 3] = -100 * (1 - 9_800 / 12_000)
    expected[20 - 3] = -100 * ((1 - 7_600 / 12_000) - (1 - 10_900 / 12_000))
    np.testing.assert_allclose(dd, expected, atol=1e-9)
    assert dd[17] == pytest.approx(-27.5)


# ---- trade Sharpe --------------------------------------------------------------------------
#: bars 0-3 at 100, 4-6 at 110, 7-9 at 104.5, 10-29 at 94.05
TRADES_PATH = [100.0] * 4 + [110.0] * 3 + [104.5] * 3 + [94.05] * 20
#: long 1x 100 -> 110 (+10 %, closes bar 4); short 1x 110 -> 104.5 (+5 %, closes bar 8);
#: long 1x 104.5 -> 94.05 (-10 %, closes bar 11); decisions from bar 0
TRADES_ACTIONS = [L1, H, H, CLOSE, S1, H, H, CLOSE, L1, H, CLOSE, H, H]
TRADE_RETURNS = (0.10, 0.05, -0.10)


def sample_sharpe(returns: tuple[float, ...]) -> float:
    r = np.array(returns)
    return float(np.clip(r.mean() / r.std(ddof=1), -3.0, 3.0))


@pytest.mark.parametrize(("window", "at_bar_11"), [
    (20, sample_sharpe(TRADE_RETURNS)),  # all three: 0.1601
    (2, sample_sharpe(TRADE_RETURNS[1:])),  # the last two: -0.2357
])
def test_trade_sharpe_on_closing_bars_only(window: int, at_bar_11: float) -> None:
    reward = RewardConfig(weights={"trade_sharpe": 1.0}, preset=None, sharpe_trades=window)
    run = play(PerpFuturesEnv(hand_market(TRADES_PATH), reward), TRADES_ACTIONS, start=0,
               end=29)
    eq = run.series("equity")
    assert [eq[3], eq[7], eq[10]] == pytest.approx([11_000.0, 11_550.0, 10_395.0])
    assert run.infos[10]["trades"] == 3
    ts = terms(run, "trade_sharpe")
    expected = np.zeros(len(ts))
    expected[8 - 1] = sample_sharpe(TRADE_RETURNS[:2])  # 2.1213; one trade (bar 4): 0
    expected[11 - 1] = at_bar_11
    np.testing.assert_allclose(ts, expected, atol=1e-9)
    np.testing.assert_allclose(run.rewards, ts, atol=1e-12)
    assert expected[7] == pytest.approx(2.1213203) and at_bar_11 != 0.0


@pytest.mark.parametrize(("side", "clipped"), [(L1, -3.0), (S1, 3.0)])
def test_trade_sharpe_is_clipped(side: int, clipped: float) -> None:
    """Two trades of almost equal return (10 % and 10.1 %): |mean / std| ~ 140 -> 3."""
    prices = [100.0] * 3 + [90.0] * 3 + [80.91] * 10
    reward = RewardConfig(weights={"trade_sharpe": 1.0}, preset=None)
    actions = [side, H, CLOSE, side, H, CLOSE, H]
    run = play(PerpFuturesEnv(hand_market(prices), reward), actions, start=0, end=15)
    assert run.infos[5]["trades"] == 2
    assert terms(run, "trade_sharpe")[5] == clipped
    assert np.count_nonzero(terms(run, "trade_sharpe")) == 1


def test_trade_sharpe_from_the_env_equity_with_costs() -> None:
    """Random play with fees, slippage and funding: a trade's return is the equity at the
    bar it closes over the equity at the close BEFORE its entry fill (so the entry fee
    counts), and the term at each closing bar is the clipped mean / std of the last
    ``sharpe_trades`` (here 5) returns."""
    reward = RewardConfig(weights={"trade_sharpe": 1.0}, preset=None, sharpe_trades=5)
    run = play(PerpFuturesEnv(small_market(400), reward), start=20, end=380,
               rng=np.random.default_rng(3))
    eq = np.concatenate([[INIT], run.series("equity")])
    qty = np.concatenate([[0.0], run.series("position_qty")])
    returns: list[float] = []
    expected = np.zeros(len(run.infos))
    entry_eq = np.nan
    for j in range(len(run.infos)):  # step j moves equity eq[j] -> eq[j + 1]
        if qty[j] == 0.0 and qty[j + 1] != 0.0:
            entry_eq = eq[j]
        if qty[j] != 0.0 and qty[j + 1] == 0.0:
            returns.append(eq[j + 1] / entry_eq - 1)
            if len(returns) >= 2:
                expected[j] = sample_sharpe(tuple(returns[-5:]))
    assert len(returns) >= 10 and run.infos[-1]["trades"] == len(returns)
    np.testing.assert_allclose(terms(run, "trade_sharpe"), expected, rtol=1e-9, atol=1e-12)


# ---- VSA and expert agreement ----------------------------------------------------------------
FLAT = [100.0] * 30
D = 10  # the decision bar carrying the signals


def term_of_step(market: EnvMarket, prefix: list[int], action: int, name: str) -> float:
    """The ``name`` term of ``action`` decided at bar D, after ``prefix`` (which starts at
    D - len(prefix))."""
    env = PerpFuturesEnv(market, ALL_ONE)
    run = play(env, [*prefix, action], start=D - len(prefix), end=29)
    assert run.infos[-1]["bar"] == D + 1 and run.infos[-1]["invalid_actions"] == 0
    return run.infos[-1]["reward_terms"][name]


@pytest.fixture(scope="module")
def vsa_market() -> EnvMarket:
    """A VSA long event at bar D, a short event at bar D + 5."""
    vsa = np.zeros(len(FLAT))
    vsa[D], vsa[D + 5] = 1.0, -1.0
    return hand_market(FLAT, vsa_dir=vsa)


@pytest.mark.parametrize(("prefix", "action", "expected"), [
    ([], L05, 1.0), ([], L1, 1.0), ([], L2, 1.0),
    ([], S05, 0.0), ([], S2, 0.0), ([], H, 0.0),
    ([L1], INC, 1.0), ([L1], RED, 0.0), ([L1], CLOSE, 0.0), ([L1], H, 0.0),
    ([S1], INC, 0.0),  # adds to a short against a long event
])
def test_vsa_term_at_the_decision_bar(vsa_market: EnvMarket, prefix: list[int], action: int,
                                      expected: float) -> None:
    assert term_of_step(vsa_market, prefix, action, "vsa") == expected


def test_vsa_term_reads_the_decision_bar_not_its_neighbours(vsa_market: EnvMarket) -> None:
    """Opening long one bar before the long event (not known yet) or one bar after it,
    and shorting one bar after the short event, earn nothing; shorting at it earns 1."""
    env = PerpFuturesEnv(vsa_market, ALL_ONE)
    # decisions at D-1: long, D: close, D+1: long, D+2: close, D+3..D+5: hold, D+6: short
    run = play(env, [L1, CLOSE, L1, CLOSE, H, H, H, S1, H], start=D - 1, end=29)
    assert run.infos[-1]["invalid_actions"] == 0
    assert terms(run, "vsa").tolist() == [0.0] * 9
    run = play(env, [S2], start=D + 5, end=29)
    assert terms(run, "vsa").tolist() == [1.0]


@pytest.fixture(scope="module")
def experts_market() -> EnvMarket:
    """Experts agree BUY at D, agree SELL at D + 5, conflict at D + 10."""
    agree = np.zeros(len(FLAT))
    conflict = np.zeros(len(FLAT))
    agree[D], agree[D + 5] = 1.0, -1.0
    conflict[D + 10] = 1.0
    return hand_market(FLAT, agree=agree, conflict=conflict)


@pytest.mark.parametrize(("bar", "prefix", "action", "expected"), [
    (D, [], L1, 1.0), (D, [], S1, 0.0), (D, [], H, 0.0), (D, [L05], INC, 1.0),
    (D + 5, [], S05, 1.0), (D + 5, [], L2, 0.0), (D + 5, [S1], INC, 1.0),
    (D + 10, [], L1, -1.0), (D + 10, [], S1, -1.0), (D + 10, [L1], INC, -1.0),
    (D + 10, [], H, 0.0), (D + 10, [L1], CLOSE, 0.0), (D + 10, [L1], RED, 0.0),
    (D + 1, [], L1, 0.0),
])
def test_experts_term(experts_market: EnvMarket, bar: int, prefix: list[int], action: int,
                      expected: float) -> None:
    env = PerpFuturesEnv(experts_market, ALL_ONE)
    run = play(env, [*prefix, action], start=bar - len(prefix), end=29)
    assert run.infos[-1]["bar"] == bar + 1 and run.infos[-1]["invalid_actions"] == 0
    assert run.infos[-1]["reward_terms"]["experts"] == expected


# ---- the weighted sum, presets, config -------------------------------------------------------
def test_reward_is_the_weighted_sum_of_the_terms() -> None:
    """Random weights on every term, random play with random signals: the reward is the
    weighted sum, and every term did fire somewhere (so none is tested as a constant 0)."""
    rng = np.random.default_rng(0)
    n = 400
    m = small_market(n)
    m.vsa_dir[:] = rng.choice([-1.0, 0.0, 1.0], n)
    m.agree[:] = rng.choice([-1.0, 0.0, 1.0], n)
    m.conflict[:] = (rng.random(n) < 0.2) * (m.agree == 0)
    weights = dict(zip(TERMS, rng.uniform(0.1, 2.0, len(TERMS)).tolist(), strict=True))
    run = play(PerpFuturesEnv(m, RewardConfig(weights=weights, preset=None)), start=20,
               end=380, rng=rng)
    for r, info in zip(run.rewards, run.infos, strict=True):
        t = info["reward_terms"]
        assert r == pytest.approx(sum(weights[k] * t[k] for k in TERMS), rel=1e-12,
                                  abs=1e-12)
    for name in TERMS:
        assert np.count_nonzero(terms(run, name)) > 0, name


def test_default_reward_is_log_growth() -> None:
    m = small_market(300)
    run = play(PerpFuturesEnv(m), start=10, end=200, rng=np.random.default_rng(1))
    assert RewardConfig().preset == DEFAULT_PRESET == "log_growth"
    np.testing.assert_array_equal(run.rewards, terms(run, "log_growth"))
    final = run.infos[-1]["equity"]
    assert sum(run.rewards) == pytest.approx(100 * math.log(final / INIT), rel=1e-9)


def test_diff_sharpe_first_step() -> None:
    """With EMAs at (0, b0) the first step's differential Sharpe is r / sqrt(b0): here r
    is the entry cost of a 1x long (fee + slippage) on a flat bar."""
    prices = [100.0, 101.0, 99.0, 100.0, 100.0, 100.0, 100.0, 100.0]
    m = build_market(hand_frame(prices))
    run = play(PerpFuturesEnv(m, RewardConfig.from_preset("diff_sharpe")), [L1], start=3,
               end=6)
    r = run.infos[0]["equity"] / INIT - 1
    assert r < 0
    assert run.rewards[0] == pytest.approx(max(r / math.sqrt(m.r2_mean[3]), -5.0), rel=1e-9)


def test_presets() -> None:
    assert PRESETS["log_growth"] == {"log_growth": 1.0}
    assert PRESETS["weighted"] == {"pnl": 0.7, "trade_sharpe": 0.2, "drawdown": 0.1,
                                   "vsa": 0.1}
    assert PRESETS["diff_sharpe"] == {"diff_sharpe": 1.0}
    weighted = RewardConfig.from_preset("weighted")
    np.testing.assert_array_equal(weighted.vector(), [0, 0.7, 0, 0, 0.2, 0.1, 0.1, 0])
    custom = RewardConfig.from_preset("weighted", {"experts": 0.5})
    assert custom.preset == "weighted+custom" and custom.weights["experts"] == 0.5
    assert RewardConfig.from_dict(custom.as_dict()) == RewardConfig(
        weights={**PRESETS["weighted"], "experts": 0.5}, preset="weighted+custom")


@pytest.mark.parametrize("make", [
    lambda: RewardConfig(weights={"sharpe": 1.0}),
    lambda: RewardConfig(weights={"pnl": 1.0, "profit": 1.0}),
    lambda: RewardConfig.from_preset("weighted", {"vsa_bonus": 1.0}),
    lambda: RewardConfig.from_preset("sortino"),
    lambda: RewardConfig(weights={"pnl": float("nan")}),
    lambda: RewardConfig(sharpe_trades=1),
    lambda: RewardConfig(dsr_eta=1.0),
])
def test_reward_config_rejects_bad_settings(make) -> None:
    with pytest.raises(ValueError):
        make()


def test_a_wiped_out_account_ends_and_earns_nothing_after() -> None:
    for seed in range(12):
        env = PerpFuturesEnv(build_market(crash_frame(300, at=180, seed=seed)))
        run = play(env, [L2] + [H] * 15, start=170, end=290)
        liq = next(j for j, i in enumerate(run.infos) if i["liquidations"])
        assert run.infos[liq]["bar"] == 181
        assert run.infos[liq]["equity"] == pytest.approx(0.0, abs=1e-6)
        assert len(run.infos) == liq + 1, f"seed {seed}: the episode went on"
        assert max(run.rewards[liq:]) < 0.0, f"seed {seed}: paid after the wipe-out"
