"""The same action sequence through the environment and through the backtester gives the
same equity path.

The environment's decisions (``info["decision"]``, the target after each action) become
a backtest target series (NaN before the episode's start bar) and run through
``sim.simulate`` on the environment's own ``MarketData`` and ``SimConfig``, and through
``backtest.engine.run_on_frame`` (``leverage=1, margin_leverage=2``: the agent's targets
are already in 0.5x..2x, the margin model is the 2x account). Equity must agree to 1e-6
relative at every bar of the episode, cumulative fees and funding at every bar too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest

from feature_frames import synthetic_frame
from perptrader.backtest.engine import run_on_frame
from perptrader.rl import EnvMarket, PerpFuturesEnv
from perptrader.rl import actions as ACT
from perptrader.sim import CostModel, SimResult, simulate
from rl.rl_frames import (
    SYMBOL,
    TIMEFRAME,
    Rollout,
    build_market,
    crash_frame,
    play,
)

RTOL = 1e-6
PATHS = ("simulate", "run_on_frame")


@dataclass
class FixedTargets:
    """A backtest strategy that replays a given target series (the env's decisions)."""

    values: np.ndarray
    name: str = "env_decisions"

    @property
    def params(self) -> dict[str, Any]:
        return {}

    def targets(self, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.values, dtype=np.float64)


def decision_targets(run: Rollout, start: int, n_bars: int) -> np.ndarray:
    """The episode's decisions at bars start, start + 1, ...; NaN elsewhere."""
    t = np.full(n_bars, np.nan)
    d = run.series("decision")
    t[start:start + len(d)] = d
    return t


def backtest(path: str, frame: pd.DataFrame, m: EnvMarket, targets: np.ndarray) -> SimResult:
    if path == "simulate":
        return simulate(m.market, targets, m.config)
    result = run_on_frame(frame, FixedTargets(targets), symbol=SYMBOL, timeframe=TIMEFRAME,
                          costs=m.config.costs, leverage=1.0,
                          margin_leverage=m.config.leverage,
                          initial_cash=m.config.initial_cash, close_at_end=False)
    assert result.config == m.config  # the same account, or the comparison means nothing
    return result.sim


def assert_same_path(run: Rollout, res: SimResult, start: int) -> None:
    """Equity, cumulative fees and funding (the env reports funding received: the bar
    frame's sign) and liquidation count agree at every bar of the episode."""
    bars = slice(start + 1, start + 1 + len(run.infos))
    assert [i["bar"] for i in run.infos] == list(range(bars.start, bars.stop))
    eq = res.bars["equity"].to_numpy()
    np.testing.assert_allclose(run.series("equity"), eq[bars], rtol=RTOL, atol=0)
    np.testing.assert_array_equal(eq[:start + 1], res.config.initial_cash)
    fees = res.bars["fees"].cumsum().to_numpy()
    np.testing.assert_allclose(run.series("fees"), fees[bars], rtol=RTOL, atol=1e-9)
    funding = res.bars["funding"].cumsum().to_numpy()
    np.testing.assert_allclose(run.series("funding_received"), funding[bars], rtol=RTOL, atol=1e-9)
    qty = res.bars["position_qty"].to_numpy()
    np.testing.assert_allclose(run.series("position_qty"), qty[bars], rtol=RTOL, atol=1e-12)
    liqs = np.cumsum(res.bars["liquidated"].to_numpy())
    np.testing.assert_array_equal(run.series("liquidations"), liqs[bars])


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthetic_frame(400, seed=11)


#: (seed, costs): the default costs, and two others (volatility-scaled slippage reads the
#: kernel's per-bar slippage scale, which the env must take from the same place)
CASES = [
    (0, None),
    (1, None),
    (2, CostModel(slippage_model="volatility", slippage_bps=3.0)),
    (3, CostModel(taker_fee=0.0004, slippage_bps=2.0)),
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("seed", "costs"), CASES)
def test_random_actions_give_the_backtest_equity(frame: pd.DataFrame, seed: int,
                                                 costs: CostModel | None, path: str) -> None:
    market = build_market(frame, costs=costs)
    start = 30 + 40 * seed
    end = len(market) - 1 if seed % 2 else start + 200
    run = play(PerpFuturesEnv(market), start=start, end=end, rng=np.random.default_rng(seed))
    assert len(run.infos) == end - start  # no early termination: a full episode compared
    targets = run.series("target")
    assert np.abs(targets).max() == 2.0  # 2x leverage was used
    assert run.infos[-1]["trades"] >= 5 and run.infos[-1]["fees"] > 0
    assert run.infos[-1]["funding_received"] != 0.0
    res = backtest(path, frame, market, decision_targets(run, start, len(market)))
    assert_same_path(run, res, start)
    if end == len(market) - 1:  # the backtest ran exactly the episode: totals agree too
        assert run.infos[-1]["fees"] == pytest.approx(res.fees_paid, rel=RTOL)
        assert run.infos[-1]["funding_received"] == pytest.approx(-res.funding_paid, rel=RTOL)


CRASH_AT = 150


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("open_action", [ACT.LONG_1, ACT.LONG_2])
def test_liquidation_matches_the_backtest(open_action: int, path: str) -> None:
    """Prices fall to 40 % at the open of bar CRASH_AT + 1: the long (1x or 2x on the 2x
    isolated account) is liquidated there. The env's target drops to 0 with it (one bar
    of hold only, then flat masks) and its equity still equals the backtest's; after the
    1x liquidation random play continues on the equity that is left."""
    frame = crash_frame(300, at=CRASH_AT)
    m = build_market(frame)
    env = PerpFuturesEnv(m)
    start = CRASH_AT - 20
    prefix = play(env, [open_action] + [ACT.HOLD] * 20, start=start, end=280)
    assert prefix.infos[-1]["bar"] == CRASH_AT + 1
    # one bar of hold only (the decision returns to 0), then the flat mask
    hold_only = np.zeros(ACT.N_ACTIONS, dtype=bool)
    hold_only[ACT.HOLD] = True
    np.testing.assert_array_equal(env.action_masks(), hold_only)
    names = env.observation_names
    last_obs = prefix.observations[-1]
    assert last_obs[names.index("acc_side")] == 0.0
    assert last_obs[names.index("acc_leverage_used")] == 0.0
    run = play(env, [open_action] + [ACT.HOLD] * 20, start=start, end=280,
               rng=np.random.default_rng(4))
    liq = run.infos[20]
    assert liq["bar"] == CRASH_AT + 1
    assert liq["liquidations"] == 1 and liq["position_qty"] == 0.0
    assert liq["target"] == 0.0 and liq["decision"] == ACT.OPEN_SIZE[open_action]
    assert run.infos[19]["liquidations"] == 0 and run.infos[19]["position_qty"] > 0.0
    assert liq["equity"] < 0.55 * m.config.initial_cash
    if open_action == ACT.LONG_2:
        assert len(run.infos) == 21  # the whole margin is lost: terminated
        assert liq["equity"] == pytest.approx(0.0, abs=1e-6)
        assert run.infos[-1]["reward_terms"]["log_growth"] < -1000.0
        with pytest.raises(RuntimeError):
            env.step(ACT.HOLD)
    else:
        assert run.infos[-1]["bar"] == 280 and run.infos[-1]["trades"] >= 3
    res = backtest(path, frame, m, decision_targets(run, start, len(m)))
    assert res.liquidations == 1
    assert bool(res.bars["liquidated"].iloc[CRASH_AT + 1])
    assert_same_path(run, res, start)
