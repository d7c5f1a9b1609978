"""The dual agent's committee: a pattern agent and an indicator agent propose actions;
VSA and risk rules decide.

Rules, in order (risk first, then agreement):

1. Risk: in a position whose drawdown from the equity peak exceeds ``max_drawdown`` or
   whose margin ratio (maintenance / margin balance) exceeds ``max_margin_ratio``, close.
2. In a position: close if either agent closes (taking risk off needs one vote); reduce
   if either reduces; increase only if both increase; else hold.
3. Flat: both open on the same side -> open with the smaller size; one opens and the
   other holds -> open only when a VSA event confirms that side at this bar, with the
   proposed size capped at 1x; they open on opposite sides -> stay flat.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from perptrader.rl import actions as ACT
from perptrader.rl.market import MAX_EXPOSURE


@dataclass(frozen=True)
class CommitteeRules:
    max_drawdown: float = 0.25
    max_margin_ratio: float = 0.5
    #: the largest size one agent may open alone (with VSA confirmation)
    solo_max_size: float = 1.0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _side(action: int) -> int:
    if ACT.LONG_05 <= action <= ACT.LONG_2:
        return 1
    if ACT.SHORT_05 <= action <= ACT.SHORT_2:
        return -1
    return 0


def _open(side: int, size: float) -> int:
    """The opening action of ``side`` with the largest size <= ``size``."""
    longs = ((2.0, ACT.LONG_2), (1.0, ACT.LONG_1), (0.5, ACT.LONG_05))
    shorts = ((2.0, ACT.SHORT_2), (1.0, ACT.SHORT_1), (0.5, ACT.SHORT_05))
    for s, a in longs if side > 0 else shorts:
        if s <= size + 1e-9:
            return a
    return ACT.LONG_05 if side > 0 else ACT.SHORT_05


def combine(pattern: int, indicator: int, *, target: float, vsa_dir: float,
            drawdown: float, margin_ratio: float, rules: CommitteeRules,
            max_exposure: float = MAX_EXPOSURE) -> int:
    """The committee's action (see the module docstring); always valid at ``target``
    (a rule's choice that is not, e.g. increasing at the cap, becomes hold)."""
    action = _decide(pattern, indicator, target=target, vsa_dir=vsa_dir, drawdown=drawdown,
                     margin_ratio=margin_ratio, rules=rules)
    return action if ACT.action_valid(target, action, max_exposure) else ACT.HOLD


def _decide(pattern: int, indicator: int, *, target: float, vsa_dir: float,
            drawdown: float, margin_ratio: float, rules: CommitteeRules) -> int:
    flat = abs(target) < 1e-9
    if not flat:
        if drawdown > rules.max_drawdown or margin_ratio > rules.max_margin_ratio:
            return ACT.CLOSE
        votes = (pattern, indicator)
        if ACT.CLOSE in votes:
            return ACT.CLOSE
        if ACT.REDUCE in votes and abs(target) >= 1.0 - 1e-9:
            return ACT.REDUCE
        if pattern == indicator == ACT.INCREASE:
            return ACT.INCREASE
        return ACT.HOLD
    sp, si = _side(pattern), _side(indicator)
    if sp and si:
        if sp != si:
            return ACT.HOLD
        return _open(sp, min(abs(ACT.OPEN_SIZE[pattern]), abs(ACT.OPEN_SIZE[indicator])))
    solo = pattern if sp else (indicator if si else ACT.HOLD)
    side = _side(solo)
    if side and vsa_dir == side:
        return _open(side, min(abs(ACT.OPEN_SIZE[solo]), rules.solo_max_size))
    return ACT.HOLD
