"""Costs are in the reward on the step they are paid, counted by the accounting core,
and every size of the action set is reachable on the agent's account.

The frames hold the price still (open = high = low = close = mark = 100) so that the
only equity changes are the costs: a trade step loses exactly its fee and slippage, a
holding step loses exactly its funding, and nothing else moves the reward.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from feature_frames import synthetic_frame
from perptrader.rl import PerpFuturesEnv
from perptrader.rl import actions as ACT
from perptrader.rl.evaluate import backtest_rollout
from perptrader.rl.market import MAX_EXPOSURE
from perptrader.rl.rollout import run_agent
from perptrader.sim import CostModel
from perptrader.sim import kernel as K
from rl.rl_frames import FREE, PRICE_COLUMNS, build_market, hand_frame, play, small_market

INIT = 10_000.0
COSTS = CostModel(taker_fee=0.0005, slippage_bps=2.0)


def still_frame(n: int, *, funding: bool) -> pd.DataFrame:
    """Loader-shaped bars at a constant 100; with ``funding`` the 8h funding columns of
    ``synthetic_frame`` (rates ~1e-4, settlements every 8 bars)."""
    if not funding:
        return hand_frame([100.0] * n)
    frame = synthetic_frame(n, seed=11)
    for c in PRICE_COLUMNS:
        frame[c] = 100.0
    return frame


class Scripted:
    """A stand-in policy: ``plan[step]`` (hold otherwise), as ``run_agent`` asks it."""

    def __init__(self, plan: dict[int, int]) -> None:
        self.plan, self.k = plan, 0

    def predict(self, obs, action_masks=None, deterministic=True):
        a = self.plan.get(self.k, ACT.HOLD)
        self.k += 1
        return np.array(a), None


def pnl_terms(run) -> np.ndarray:
    return np.array([i["reward_terms"]["pnl"] for i in run.infos])


def log_terms(run) -> np.ndarray:
    return np.array([i["reward_terms"]["log_growth"] for i in run.infos])


@pytest.mark.parametrize("action", [ACT.LONG_05, ACT.LONG_1, ACT.LONG_2, ACT.SHORT_1])
def test_the_trade_step_pays_the_kernels_fee_and_slippage(action: int) -> None:
    m = build_market(still_frame(12, funding=False), costs=COSTS)
    run = play(PerpFuturesEnv(m), [action, ACT.HOLD, ACT.CLOSE, ACT.HOLD], start=2, end=8)
    entry, held, exit_, _ = run.infos
    qty = entry["position_qty"]
    side = math.copysign(1.0, qty)
    fill = 100.0 * (1.0 + side * COSTS.slippage_bps * 1e-4)
    fee = abs(qty) * fill * COSTS.taker_fee
    # the accounting core's fee, as the environment counted it, is the textbook fee ...
    assert entry["fees"] == pytest.approx(fee, rel=1e-12)
    # ... and the reward of the fill step is exactly minus fee and slippage
    cost = fee + abs(qty) * abs(fill - 100.0)
    assert pnl_terms(run)[0] == pytest.approx(-100.0 * cost / INIT, rel=1e-9)
    assert log_terms(run)[0] == pytest.approx(100.0 * math.log(1.0 - cost / INIT), rel=1e-9)
    # nothing is paid while holding at a still price, the exit pays its own fee on its step
    assert pnl_terms(run)[1] == 0.0 and pnl_terms(run)[3] == 0.0
    exit_fee = exit_["fees"] - held["fees"]
    exit_fill = 100.0 * (1.0 - side * COSTS.slippage_bps * 1e-4)
    assert exit_fee == pytest.approx(abs(qty) * exit_fill * COSTS.taker_fee, rel=1e-12)
    exit_cost = exit_fee + abs(qty) * abs(exit_fill - 100.0)
    assert exit_["equity"] == pytest.approx(held["equity"] - exit_cost, rel=1e-12)
    assert pnl_terms(run)[2] == pytest.approx(-100.0 * exit_cost / held["equity"], rel=1e-9)


def test_the_env_fee_is_the_backtests_fee_on_the_same_bar() -> None:
    """The reward's cost and the backtest of the same decisions charge one fee, on one
    bar: the environment and the backtester share the kernel."""

    m = build_market(still_frame(12, funding=False), costs=COSTS)
    out = run_agent(m, {"ppo": Scripted({1: ACT.LONG_2, 4: ACT.REDUCE, 6: ACT.CLOSE})}, {})
    res, _ = backtest_rollout(m, out, label="script", baselines={})
    bt_fees = res.sim.bars["fees"].to_numpy()
    env = PerpFuturesEnv(m)
    run = play(env, out.actions.tolist(), start=0, end=len(m) - 1)
    env_fees = np.diff(np.concatenate([[0.0], [i["fees"] for i in run.infos]]))
    bars = [i["bar"] for i in run.infos]
    np.testing.assert_allclose(env_fees, bt_fees[bars], rtol=1e-12, atol=1e-12)
    assert np.count_nonzero(env_fees) == 3  # open, reduce, close: each on its fill bar


def test_funding_is_in_the_reward_on_the_settlement_step() -> None:
    m = build_market(still_frame(80, funding=True), costs=FREE)
    due = m.market.funding_due
    run = play(PerpFuturesEnv(m), [ACT.LONG_1] + [ACT.HOLD] * 60, start=5, end=70)
    fund = np.array([i["funding_received"] for i in run.infos])
    paid = np.diff(np.concatenate([[0.0], fund]))
    bars = np.array([i["bar"] for i in run.infos])
    qty = run.infos[0]["position_qty"]
    settle = due[bars] != 0.0
    assert settle.sum() >= 7, "the frame should settle funding every 8 bars"
    # the core charges qty * mark * rate exactly at the settlement bars, nowhere else
    np.testing.assert_allclose(paid[settle], -qty * 100.0 * due[bars][settle], rtol=1e-12)
    assert not paid[~settle].any()
    eq = np.array([i["equity"] for i in run.infos])
    prev = np.concatenate([[INIT], eq[:-1]])
    # and the reward of those steps is the funding, of the others zero (no costs, no move)
    np.testing.assert_allclose(pnl_terms(run), 100.0 * paid / prev, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(log_terms(run), 100.0 * np.log1p(paid / prev), rtol=1e-9,
                               atol=1e-15)


# ---- the action set's sizes ------------------------------------------------------------------
def exposure(m, info) -> float:
    return abs(info["position_qty"]) * m.xs[info["bar"], K.X_MC] / info["equity"]


def test_every_opening_size_is_reached_and_distinct() -> None:
    """0.5x, 1x and 2x give three different exposures, each within 1% of its size at the
    fill (the 2x open is trimmed by the fee the margin must also cover, ~0.1%)."""
    m = build_market(still_frame(12, funding=False))  # default costs
    for sizes in ((ACT.LONG_05, ACT.LONG_1, ACT.LONG_2), (ACT.SHORT_05, ACT.SHORT_1,
                                                          ACT.SHORT_2)):
        got = []
        for a in sizes:
            run = play(PerpFuturesEnv(m), [a], start=2, end=5)
            got.append(exposure(m, run.infos[0]))
        np.testing.assert_allclose(got, [0.5, 1.0, MAX_EXPOSURE], rtol=0.01)
        assert got[0] < got[1] < got[2]


def test_the_increase_reduce_ladder_reaches_every_step() -> None:
    m = build_market(still_frame(12, funding=False))
    up = play(PerpFuturesEnv(m), [ACT.LONG_05, ACT.INCREASE, ACT.INCREASE, ACT.INCREASE],
              start=2, end=8)
    np.testing.assert_allclose([exposure(m, i) for i in up.infos], [0.5, 1.0, 1.5, 2.0],
                               rtol=0.01)
    assert ACT.action_mask(2.0, MAX_EXPOSURE)[ACT.INCREASE] == np.False_
    down = play(PerpFuturesEnv(m), [ACT.SHORT_2, ACT.REDUCE, ACT.REDUCE, ACT.REDUCE],
                start=2, end=8)
    np.testing.assert_allclose([exposure(m, i) for i in down.infos], [2.0, 1.5, 1.0, 0.5],
                               rtol=0.01)
    assert ACT.action_mask(-0.5, MAX_EXPOSURE)[ACT.REDUCE] == np.False_


def test_increasing_a_winner_is_capped_by_isolated_margin_but_still_adds() -> None:
    """Isolated margin lends on the wallet, not on unrealised profit: after a +10% move
    a 1.5x long's "increase to 2x" reaches ~1.87x. It still adds exposure (the action is
    not a no-op), and at a loss the full 2x is reached."""
    for gain, lo, hi in ((1.10, 1.8, 1.95), (0.95, 1.98, 2.02)):
        m = build_market(hand_frame([100.0] * 5 + [100.0 * gain] * 10))
        run = play(PerpFuturesEnv(m), [ACT.LONG_1, ACT.INCREASE, ACT.HOLD, ACT.HOLD,
                                       ACT.INCREASE], start=2, end=12)
        before, after = exposure(m, run.infos[3]), exposure(m, run.infos[4])
        assert after > before + 0.3
        assert lo < after < hi, (gain, after)


def test_a_random_market_opens_three_distinct_sizes() -> None:
    m = small_market(200)
    got = [exposure(m, play(PerpFuturesEnv(m), [a], start=50, end=53).infos[0])
           for a in (ACT.LONG_05, ACT.LONG_1, ACT.LONG_2)]
    assert got[0] < 0.6 < got[1] < 1.2 < got[2]
