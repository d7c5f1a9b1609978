"""The dual agent's committee (``rl.committee.combine``): each rule of the module
docstring, and that its action is valid at the current target whatever the agents
propose."""

from __future__ import annotations

import itertools

import pytest

from perptrader.rl import actions as ACT
from perptrader.rl.committee import CommitteeRules, combine
from perptrader.rl.market import MAX_EXPOSURE

RULES = CommitteeRules()
OPENS_LONG = (ACT.LONG_05, ACT.LONG_1, ACT.LONG_2)
OPENS_SHORT = (ACT.SHORT_05, ACT.SHORT_1, ACT.SHORT_2)
#: every target the 2x account can reach in 0.5 steps
TARGETS = (0.0, 0.5, 1.0, 1.5, 2.0, -0.5, -1.0, -1.5, -2.0)


def decide(pattern: int, indicator: int, target: float, *, vsa_dir: float = 0.0,
           drawdown: float = 0.0, margin_ratio: float = 0.0,
           rules: CommitteeRules = RULES) -> int:
    return combine(pattern, indicator, target=target, vsa_dir=vsa_dir, drawdown=drawdown,
                   margin_ratio=margin_ratio, rules=rules)


def both_ways(pattern: int, indicator: int, target: float, **kw: float) -> set[int]:
    """The decision with the agents swapped too: no rule favours one agent."""
    return {decide(pattern, indicator, target, **kw), decide(indicator, pattern, target, **kw)}


# ---- 1. risk ------------------------------------------------------------------------------
@pytest.mark.parametrize("target", [1.0, -1.5, 0.5])
@pytest.mark.parametrize("votes", [(ACT.HOLD, ACT.HOLD), (ACT.INCREASE, ACT.INCREASE),
                                   (ACT.REDUCE, ACT.HOLD)])
def test_risk_closes_whatever_the_votes(target: float, votes: tuple[int, int]) -> None:
    assert decide(*votes, target, drawdown=RULES.max_drawdown + 0.01) == ACT.CLOSE
    assert decide(*votes, target, margin_ratio=RULES.max_margin_ratio + 0.01) == ACT.CLOSE
    # at the limits (not beyond) the ordinary rules apply
    at_limit = decide(*votes, target, drawdown=RULES.max_drawdown,
                      margin_ratio=RULES.max_margin_ratio)
    assert at_limit == decide(*votes, target)
    assert at_limit != ACT.CLOSE


def test_risk_limits_come_from_the_rules() -> None:
    strict = CommitteeRules(max_drawdown=0.05, max_margin_ratio=0.1)
    assert decide(ACT.HOLD, ACT.HOLD, 1.0, drawdown=0.06, rules=strict) == ACT.CLOSE
    assert decide(ACT.HOLD, ACT.HOLD, 1.0, margin_ratio=0.11, rules=strict) == ACT.CLOSE
    assert decide(ACT.HOLD, ACT.HOLD, 1.0, drawdown=0.06) == ACT.HOLD


def test_risk_does_not_apply_when_flat() -> None:
    """Flat there is nothing to close: both agents opening still opens."""
    assert decide(ACT.LONG_1, ACT.LONG_1, 0.0, drawdown=0.9, margin_ratio=0.9) == ACT.LONG_1


# ---- 2. in a position ------------------------------------------------------------------------
@pytest.mark.parametrize("other", [ACT.HOLD, ACT.INCREASE, ACT.REDUCE, ACT.CLOSE])
@pytest.mark.parametrize("target", [1.0, -1.5, 0.5])
def test_one_close_vote_closes(other: int, target: float) -> None:
    assert both_ways(ACT.CLOSE, other, target) == {ACT.CLOSE}


@pytest.mark.parametrize("other", [ACT.HOLD, ACT.INCREASE, ACT.REDUCE])
@pytest.mark.parametrize("target", [1.0, 1.5, 2.0, -1.0, -2.0])
def test_one_reduce_vote_reduces(other: int, target: float) -> None:
    assert both_ways(ACT.REDUCE, other, target) == {ACT.REDUCE}


@pytest.mark.parametrize("target", [0.5, -0.5])
def test_reduce_below_the_smallest_size_holds(target: float) -> None:
    """Reducing 0.5x would be a close, which one vote to reduce does not ask for."""
    assert both_ways(ACT.REDUCE, ACT.HOLD, target) == {ACT.HOLD}


@pytest.mark.parametrize("target", [0.5, 1.0, 1.5, -0.5, -1.5])
def test_increase_needs_both_votes(target: float) -> None:
    assert decide(ACT.INCREASE, ACT.INCREASE, target) == ACT.INCREASE
    assert both_ways(ACT.INCREASE, ACT.HOLD, target) == {ACT.HOLD}


def test_hold_and_opening_votes_in_a_position_hold() -> None:
    """Opening proposals mean nothing in a position (masked for the agents)."""
    assert decide(ACT.HOLD, ACT.HOLD, 1.0) == ACT.HOLD
    assert both_ways(ACT.LONG_2, ACT.HOLD, 1.0) == {ACT.HOLD}
    assert both_ways(ACT.SHORT_1, ACT.INCREASE, -1.0) == {ACT.HOLD}


# ---- 3. flat ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("a", "b", "want"), [
    (ACT.LONG_2, ACT.LONG_05, ACT.LONG_05),
    (ACT.LONG_2, ACT.LONG_1, ACT.LONG_1),
    (ACT.LONG_2, ACT.LONG_2, ACT.LONG_2),
    (ACT.SHORT_1, ACT.SHORT_2, ACT.SHORT_1),
    (ACT.SHORT_05, ACT.SHORT_1, ACT.SHORT_05),
    (ACT.SHORT_2, ACT.SHORT_2, ACT.SHORT_2),
])
@pytest.mark.parametrize("vsa_dir", [-1.0, 0.0, 1.0])
def test_same_side_opens_the_smaller_size(a: int, b: int, want: int, vsa_dir: float) -> None:
    """Agreement does not need VSA (nor does VSA against it veto it)."""
    assert both_ways(a, b, 0.0, vsa_dir=vsa_dir) == {want}


@pytest.mark.parametrize("vsa_dir", [-1.0, 0.0, 1.0])
def test_opposite_sides_stay_flat(vsa_dir: float) -> None:
    for a, b in itertools.product(OPENS_LONG, OPENS_SHORT):
        assert both_ways(a, b, 0.0, vsa_dir=vsa_dir) == {ACT.HOLD}


@pytest.mark.parametrize(("solo", "side", "want"), [
    (ACT.LONG_05, 1.0, ACT.LONG_05),
    (ACT.LONG_1, 1.0, ACT.LONG_1),
    (ACT.LONG_2, 1.0, ACT.LONG_1),  # capped at 1x
    (ACT.SHORT_05, -1.0, ACT.SHORT_05),
    (ACT.SHORT_2, -1.0, ACT.SHORT_1),
])
def test_a_solo_open_needs_vsa_on_its_side(solo: int, side: float, want: int) -> None:
    assert both_ways(solo, ACT.HOLD, 0.0, vsa_dir=side) == {want}
    assert both_ways(solo, ACT.HOLD, 0.0, vsa_dir=0.0) == {ACT.HOLD}
    assert both_ways(solo, ACT.HOLD, 0.0, vsa_dir=-side) == {ACT.HOLD}


def test_the_solo_cap_comes_from_the_rules() -> None:
    wide = CommitteeRules(solo_max_size=2.0)
    narrow = CommitteeRules(solo_max_size=0.5)
    assert decide(ACT.LONG_2, ACT.HOLD, 0.0, vsa_dir=1.0, rules=wide) == ACT.LONG_2
    assert decide(ACT.SHORT_2, ACT.HOLD, 0.0, vsa_dir=-1.0, rules=narrow) == ACT.SHORT_05


def test_both_holding_when_flat_holds() -> None:
    for vsa_dir in (-1.0, 0.0, 1.0):
        assert decide(ACT.HOLD, ACT.HOLD, 0.0, vsa_dir=vsa_dir) == ACT.HOLD


# ---- validity --------------------------------------------------------------------------------
def cases(proposals_valid: bool):
    """(pattern, indicator, target, vsa_dir, drawdown, margin_ratio) over every target and
    proposal pair (only the ones valid at the target with ``proposals_valid``)."""
    for target in TARGETS:
        acts = [a for a in range(ACT.N_ACTIONS)
                if not proposals_valid or ACT.action_valid(target, a, MAX_EXPOSURE)]
        for p, i in itertools.product(acts, acts):
            for vsa_dir, dd, mr in itertools.product((-1.0, 0.0, 1.0), (0.0, 0.3),
                                                     (0.0, 0.6)):
                yield p, i, target, vsa_dir, dd, mr


def invalid_decisions(proposals_valid: bool) -> list[tuple]:
    bad = []
    for p, i, target, vsa_dir, dd, mr in cases(proposals_valid):
        a = decide(p, i, target, vsa_dir=vsa_dir, drawdown=dd, margin_ratio=mr)
        if not ACT.action_valid(target, a, MAX_EXPOSURE):
            bad.append((p, i, target, vsa_dir, dd, mr, a))
    return bad


def test_the_decision_is_valid_for_masked_proposals() -> None:
    """What ``run_agent`` feeds it: each agent's proposal is valid at the target."""
    assert len(list(cases(True))) > 1000
    assert invalid_decisions(True) == []


def test_the_decision_is_valid_for_any_proposals() -> None:
    """``combine``'s docstring: always valid at ``target``, whatever is proposed."""
    assert invalid_decisions(False) == []
