"""``rl.rollout.run_agent`` with scripted stand-ins for trained policies: its decisions
are the environment's, their backtest reproduces its equity, the dual path asks each
agent on its own columns and follows the committee, and the collapse / distribution
summaries of ``rl eval``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from feature_frames import synthetic_frame
from perptrader.rl import EnvMarket, PerpFuturesEnv
from perptrader.rl import actions as ACT
from perptrader.rl.committee import CommitteeRules, combine
from perptrader.rl.core import ACCOUNT_FEATURES, N_ACCOUNT
from perptrader.rl.evaluate import AlwaysFlat, backtest_rollout
from perptrader.rl.market import MAX_EXPOSURE
from perptrader.rl.rollout import COLLAPSE_SHARE, Rollout, collapse, run_agent
from rl.rl_frames import build_market, play, small_market

Script = Callable[[int, np.ndarray, np.random.Generator], int]


class ScriptedPolicy:
    """What ``run_agent`` needs of a MaskablePPO model: ``predict(obs, action_masks=...,
    deterministic=True)``; records every observation and mask it was given."""

    def __init__(self, script: Script, seed: int = 0) -> None:
        self.script = script
        self.rng = np.random.default_rng(seed)
        self.observations: list[np.ndarray] = []
        self.masks: list[np.ndarray] = []
        self.actions: list[int] = []

    def predict(self, obs: np.ndarray, action_masks: np.ndarray | None = None,
                deterministic: bool = False) -> tuple[np.ndarray, None]:
        assert deterministic and action_masks is not None
        self.observations.append(np.array(obs, copy=True))
        self.masks.append(np.array(action_masks, copy=True))
        a = self.script(len(self.actions), action_masks, self.rng)
        self.actions.append(a)
        return np.array(a), None


def random_valid(step: int, mask: np.ndarray, rng: np.random.Generator) -> int:
    return int(rng.choice(np.flatnonzero(mask)))


def always_hold(step: int, mask: np.ndarray, rng: np.random.Generator) -> int:
    return ACT.HOLD


def one_trade(step: int, mask: np.ndarray, rng: np.random.Generator) -> int:
    """Long from bar 5 to bar 20, flat otherwise: one (closed) trade."""
    return {5: ACT.LONG_1, 20: ACT.CLOSE}.get(step, ACT.HOLD)


@pytest.fixture(scope="module")
def market() -> EnvMarket:
    return small_market(300)


def replay(market: EnvMarket, actions: np.ndarray, first: int = 0,
           last: int | None = None):
    """The same actions stepped through a fresh environment by hand."""
    env = PerpFuturesEnv(market, episode_bars=None)
    last = len(market) - 1 if last is None else last
    return play(env, [int(a) for a in actions], start=first, end=last)


def target_before(run, k: int) -> float:
    return 0.0 if k == 0 else run.infos[k - 1]["target"]


# ---- single agent -------------------------------------------------------------------------
def test_decisions_are_the_environment_decisions(market: EnvMarket) -> None:
    policy = ScriptedPolicy(random_valid, seed=0)
    out = run_agent(market, {"ppo": policy}, {})
    n = len(market) - 1  # one decision per bar but the last
    assert len(out.decisions) == len(out.actions) == len(out.equity) == n
    assert out.decisions.index.equals(market.index[:-1])
    assert out.equity.index.equals(market.index[1:])  # equity at the bar the step ends on
    np.testing.assert_array_equal(out.actions, policy.actions)
    run = replay(market, out.actions)
    assert len(run.infos) == n
    np.testing.assert_array_equal(out.decisions.to_numpy(), run.series("decision"))
    np.testing.assert_array_equal(out.equity.to_numpy(), run.series("equity"))
    assert out.info == {"trades": run.infos[-1]["trades"], "liquidations": 0,
                        "invalid_actions": 0}
    assert out.info["trades"] >= 10
    # the policy saw the environment's full observations and masks
    for k in range(n):
        np.testing.assert_array_equal(policy.observations[k], run.observations[k])
        np.testing.assert_array_equal(policy.masks[k],
                                      ACT.action_mask(target_before(run, k), MAX_EXPOSURE))


def test_a_sub_window(market: EnvMarket) -> None:
    out = run_agent(market, {"ppo": ScriptedPolicy(random_valid, seed=3)}, {}, first=50,
                    last=200)
    assert out.decisions.index.equals(market.index[50:200])
    run = replay(market, out.actions, first=50, last=200)
    np.testing.assert_array_equal(out.decisions.to_numpy(), run.series("decision"))


def test_the_backtest_of_the_decisions_gives_the_equity(market: EnvMarket) -> None:
    """``backtest_rollout`` (what ``rl eval`` reports) on the agent's decisions follows
    the environment's equity bar by bar until the backtest's forced close at the open of
    the last bar; baselines run on the same bars and account."""
    out = run_agent(market, {"ppo": ScriptedPolicy(random_valid, seed=1)}, {})
    res, base = backtest_rollout(market, out, label="rl:scripted",
                                 baselines={"always_flat": AlwaysFlat()})
    equity = res.sim.bars["equity"]
    before_close = out.equity.iloc[:-1]
    np.testing.assert_allclose(before_close.to_numpy(),
                               equity.loc[before_close.index].to_numpy(), rtol=1e-9)
    assert equity.iloc[0] == market.config.initial_cash
    assert res.sim.bars["position_qty"].iloc[-1] == 0.0  # closed at the end
    assert out.decisions.iloc[-1] != 0.0  # ... where the agent was still in a position
    assert res.config == market.config
    assert res.sim.fees_paid > 0.0
    assert set(base) == {"always_flat"}
    np.testing.assert_array_equal(base["always_flat"].sim.bars["equity"].to_numpy(),
                                  market.config.initial_cash)


# ---- summaries --------------------------------------------------------------------------
def distribution(**shares: float) -> dict[str, float]:
    d = dict.fromkeys(ACT.ACTION_NAMES, 0.0)
    d.update(shares)
    return d


def test_collapse_rules() -> None:
    mixed = np.r_[np.ones(50), np.zeros(50)]
    assert collapse(distribution(hold=1.0), 0, mixed) == "no trades"
    assert collapse(distribution(hold=0.4, long_1x=0.3, close=0.3), 0, mixed) == "no trades"
    assert collapse(distribution(hold=0.5, close=0.5), 4, np.zeros(0)) == "no decisions"
    # exactly COLLAPSE_SHARE of one target is still a policy; above it is not
    at_limit = np.r_[np.zeros(90), np.ones(10)]
    assert collapse(distribution(hold=0.9, close=0.1), 4, at_limit) is None
    assert collapse(distribution(hold=0.9, close=0.1), 4, np.r_[np.zeros(91), np.ones(9)]) \
        == "target +0.00 on 91% of the steps ('hold' action on 90%)"
    # with the targets: one target kept on nearly every step is a constant policy ...
    hold = distribution(hold=0.96, long_1x=0.02, close=0.02)
    flat_mostly = np.r_[np.zeros(98), np.ones(2)]
    assert collapse(hold, 3, flat_mostly) == \
        "target +0.00 on 98% of the steps ('hold' action on 96%)"
    # ... while repeating 'hold' to keep varied positions is not, nor is an always-long
    # agent that sizes its position up and down
    varied = np.r_[np.ones(45), -np.ones(25), np.zeros(30)]
    assert collapse(hold, 12, varied) is None
    sized = np.r_[np.full(40, 1.0), np.full(30, 0.5), np.full(27, 2.0), np.zeros(3)]
    assert collapse(distribution(hold=0.35, increase=0.3, reduce=0.35), 40, sized) is None
    assert collapse(hold, 0, varied) == "no trades"


def swing(step: int, mask: np.ndarray, rng: np.random.Generator) -> int:
    """Long for 30 bars, flat for 30, short for 30, ...: 'hold' on most steps."""
    turn = {0: ACT.LONG_1, 30: ACT.CLOSE, 60: ACT.SHORT_1, 90: ACT.CLOSE}
    return turn.get(step % 120, ACT.HOLD)


@pytest.mark.parametrize(("script", "trades", "reason"), [
    (always_hold, 0, "no trades"),
    (one_trade, 1, "target +0.00 on "),
    (random_valid, None, None),
    (swing, None, None),
])
def test_collapse_of_rollouts(market: EnvMarket, script: Script, trades: int | None,
                              reason: str | None) -> None:
    out = run_agent(market, {"ppo": ScriptedPolicy(script, seed=2)}, {})
    if trades is not None:
        assert out.info["trades"] == trades
    found = collapse(out.action_distribution(), out.info["trades"], out.decisions.to_numpy())
    if script is swing:  # a position keeper: 'hold' on > 90% of the steps, not dead
        assert max(out.action_distribution().values()) > COLLAPSE_SHARE
    if reason is None:
        assert found is None
    else:
        assert found is not None and found.startswith(reason)


@pytest.mark.parametrize("script", [always_hold, one_trade, random_valid])
def test_action_distribution_and_position_shares(market: EnvMarket, script: Script) -> None:
    out = run_agent(market, {"ppo": ScriptedPolicy(script, seed=4)}, {})
    dist = out.action_distribution()
    assert list(dist) == list(ACT.ACTION_NAMES)
    assert sum(dist.values()) == pytest.approx(1.0, abs=1e-3)  # rounded to 4 decimals
    counts = np.bincount(out.actions, minlength=ACT.N_ACTIONS) / len(out.actions)
    np.testing.assert_allclose(list(dist.values()), counts, atol=5e-5)
    shares = out.position_shares()
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-3)
    d = out.decisions.to_numpy()
    assert shares["long"] == pytest.approx((d > 0).mean(), abs=5e-5)
    assert shares["flat"] == pytest.approx((d == 0).mean(), abs=5e-5)


def test_an_empty_rollout_summarises_without_error() -> None:
    empty = Rollout(decisions=pd.Series([], dtype=float), actions=np.zeros(0, np.int64),
                    equity=pd.Series([], dtype=float))
    assert sum(empty.action_distribution().values()) == 0.0
    assert collapse(empty.action_distribution(), 0, empty.decisions.to_numpy()) == "no trades"


# ---- dual agents and the committee -------------------------------------------------------
@pytest.fixture(scope="module")
def vsa_market() -> EnvMarket:
    """A market whose VSA direction fires often, so solo opens are confirmed now and
    then."""
    frame = synthetic_frame(300, seed=3)
    rng = np.random.default_rng(3)
    vsa = rng.choice([-1.0, 0.0, 1.0], size=len(frame), p=[0.25, 0.5, 0.25])
    return build_market(frame, vsa_dir=vsa)


def test_dual_agents_see_their_columns_and_the_committee_decides(vsa_market: EnvMarket
                                                                 ) -> None:
    m = vsa_market
    n_state = m.state.shape[1]
    account = np.arange(n_state, n_state + N_ACCOUNT)
    cols = {"pattern": np.array([0, *account]), "indicator": np.array([1, 2, *account])}
    pattern = ScriptedPolicy(random_valid, seed=11)
    indicator = ScriptedPolicy(random_valid, seed=12)
    rules = CommitteeRules(max_drawdown=0.02)  # tight, so the risk rule fires too
    out = run_agent(m, {"pattern": pattern, "indicator": indicator}, cols, rules=rules)
    n = len(m) - 1
    assert len(pattern.actions) == len(indicator.actions) == n
    run = replay(m, out.actions)
    np.testing.assert_array_equal(out.decisions.to_numpy(), run.series("decision"))
    dd = n_state + ACCOUNT_FEATURES.index("acc_drawdown")
    mr = n_state + ACCOUNT_FEATURES.index("acc_margin_ratio")
    risk_closes = solo_opens = 0
    for k in range(n):
        full = run.observations[k]
        for policy, role in ((pattern, "pattern"), (indicator, "indicator")):
            np.testing.assert_array_equal(policy.observations[k], full[cols[role]])
            np.testing.assert_array_equal(policy.masks[k], ACT.action_mask(
                target_before(run, k), MAX_EXPOSURE))
        votes = (pattern.actions[k], indicator.actions[k])
        want = combine(*votes, target=target_before(run, k), vsa_dir=float(m.vsa_dir[k]),
                       drawdown=float(full[dd]), margin_ratio=float(full[mr]), rules=rules)
        assert out.actions[k] == want, k
        risk_closes += want == ACT.CLOSE and ACT.CLOSE not in votes
        solo_opens += (target_before(run, k) == 0.0 and want != ACT.HOLD
                       and ACT.HOLD in votes)
    assert risk_closes > 0 and solo_opens > 0  # the paths above were exercised
    assert out.info["invalid_actions"] == 0 and out.info["trades"] > 5
    for policy, role in ((pattern, "pattern"), (indicator, "indicator")):
        shares = np.bincount(policy.actions, minlength=ACT.N_ACTIONS) / n
        np.testing.assert_allclose(list(out.info[f"{role}_proposals"].values()), shares,
                                   atol=5e-5)
