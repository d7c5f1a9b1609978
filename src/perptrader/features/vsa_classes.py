"""The VSA bar classes (Tom Williams, *Master the Markets*; Wyckoff): rules over the anatomy.

Each class is a conjunction of conditions on the bar and its background. It returns a
0/1 flag and a strength: 0 when the flag is 0, otherwise ``1 + mean(excess terms)``
where each term says how far the bar lies past one continuous threshold (ratios on a log
scale, close location and "lower than" conditions as a fraction of the room left), so
the strength grows monotonically as the bar becomes more extreme and is >= 1 whenever
the class fires. Flags and strengths are NaN on rows where any input of that class is
NaN (warm-up, missing bars): "did not happen" and "could not be judged" stay apart.

Classes are not mutually exclusive: a climactic bar that closes on its low at a new high
is both a buying climax and an upthrust, as a VSA reader would call it.
docs/vsa.md gives every rule in words with its market logic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from perptrader.features.arrays import div as safe_div
from perptrader.features.arrays import shift
from perptrader.features.vsa_anatomy import Anatomy, rolling
from perptrader.features.vsa_params import VSA_CLASSES, VsaParams

Flag = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class _Term:
    """One excess term, evaluated lazily on the few rows where the class fires only."""

    kind: str
    x: np.ndarray
    threshold: np.ndarray | float

    def at(self, rows: np.ndarray) -> np.ndarray:
        x = self.x[rows]
        t = self.threshold[rows] if isinstance(self.threshold, np.ndarray) else self.threshold
        if self.kind == "log":      # ratio >= t: log(x / t), the scale ratios live on
            return np.log(x / t)
        if self.kind == "short":    # x <= t: (t - x) / t, 0..1 for 0 <= x <= t
            return (t - x) / t
        if self.kind == "above":    # close location >= t: share of the room up to 1
            return (x - t) / (1.0 - t)
        return (t - x) / t          # "below": close location <= t: share of room down to 0


def _log_excess(x: np.ndarray, threshold: float) -> _Term:
    """log(x / threshold): >= 0 when x >= threshold."""
    return _Term("log", x, threshold)


def _shortfall(x: np.ndarray, threshold: np.ndarray | float) -> _Term:
    """(threshold - x) / threshold: how far below a ceiling, 0..1."""
    return _Term("short", x, threshold)


def _above(loc: np.ndarray, threshold: float) -> _Term:
    """Close location past an upper threshold, as a share of the room up to 1."""
    return _Term("above", loc, threshold)


def _below(loc: np.ndarray, threshold: float) -> _Term:
    """Close location under a lower threshold, as a share of the room down to 0."""
    return _Term("below", loc, threshold)


def _emit(inputs: Sequence[np.ndarray], conditions: Sequence[np.ndarray],
          terms: Sequence[_Term]) -> Flag:
    """Flag and strength from conditions (NaN compares False) and excess terms."""
    valid = ~np.isnan(inputs[0])
    for x in inputs[1:]:
        valid &= ~np.isnan(x)
    hit = valid.copy()
    for c in conditions:
        hit &= c
    rows = np.flatnonzero(hit)
    flag = np.where(valid, 0.0, np.nan)
    flag[rows] = 1.0
    strength = flag.copy()
    if len(rows):  # most bars fire no class: skip the excess terms on no rows
        strength[rows] = 1.0 + sum(term.at(rows) for term in terms) / len(terms)
    return flag, strength


def _upthrust(a: Anatomy, p: VsaParams) -> Flag:
    """Pushed above resistance, closes back inside on its low, on high volume: supply."""
    return _emit(
        [a.new_high, a.close_loc, a.spread_rel, a.volume_rel],
        [a.new_high == 1, a.close <= a.hh_prev, a.close_loc <= p.close_low,
         a.spread_rel >= p.upthrust_spread, a.volume_rel >= p.vol_high],
        [_below(a.close_loc, p.close_low), _log_excess(a.spread_rel, p.upthrust_spread),
         _log_excess(a.volume_rel, p.vol_high)])


def _buying_climax(a: Anatomy, p: VsaParams) -> Flag:
    """After an up-move, a new high on ultra-high volume and wide spread, closing off the
    high: the public buys from professionals who distribute into the strength."""
    return _emit(
        [a.trend_prev, a.new_high, a.close_loc, a.spread_rel, a.volume_rel],
        [a.trend_prev >= p.trend_min, a.new_high == 1, a.volume_rel >= p.vol_ultra,
         a.spread_rel >= p.spread_wide, a.close_loc < p.close_high],
        [_log_excess(a.trend_prev, p.trend_min), _log_excess(a.volume_rel, p.vol_ultra),
         _log_excess(a.spread_rel, p.spread_wide), _below(a.close_loc, p.close_high)])


def _selling_climax(a: Anatomy, p: VsaParams) -> Flag:
    """After a down-move, a new low on ultra-high volume and wide spread, closing off the
    low: panic selling met by professional buying."""
    return _emit(
        [a.trend_prev, a.new_low, a.close_loc, a.spread_rel, a.volume_rel],
        [a.trend_prev <= -p.trend_min, a.new_low == 1, a.volume_rel >= p.vol_ultra,
         a.spread_rel >= p.spread_wide, a.close_loc > p.close_low],
        [_log_excess(-a.trend_prev, p.trend_min), _log_excess(a.volume_rel, p.vol_ultra),
         _log_excess(a.spread_rel, p.spread_wide), _above(a.close_loc, p.close_low)])


def _stopping_volume(a: Anatomy, p: VsaParams) -> Flag:
    """In a down-move, a down bar on high volume that closes off its low: selling is being
    absorbed (the market is being stopped), a weaker cousin of the selling climax."""
    return _emit(
        [a.trend_prev, a.bar_dir, a.close_loc, a.volume_rel],
        [a.trend_prev <= -p.trend_min, a.bar_dir < 0, a.volume_rel >= p.vol_high,
         a.close_loc > p.close_low],
        [_log_excess(-a.trend_prev, p.trend_min), _log_excess(a.volume_rel, p.vol_high),
         _above(a.close_loc, p.close_low)])


def _two_bar_low(a: Anatomy) -> tuple[np.ndarray, np.ndarray]:
    """Volume below each of the two previous bars, and how far below the lower of them."""
    lower = np.fmin(a.vol_prev1, a.vol_prev2)
    return (a.volume < a.vol_prev1) & (a.volume < a.vol_prev2), _shortfall(a.volume, lower)


def _no_demand(a: Anatomy, p: VsaParams) -> Flag:
    """Up bar, narrow spread, volume lower than each of the previous two bars, in an
    up-move or at resistance: professionals are not buying the rise."""
    quiet, quiet_term = _two_bar_low(a)
    context = (a.trend_prev >= p.trend_min) | (a.range_pos >= p.range_zone)
    return _emit(
        [a.bar_dir, a.spread_rel, a.volume, a.vol_prev1, a.vol_prev2, a.trend_prev,
         a.range_pos],
        [a.bar_dir > 0, a.spread_rel <= p.spread_narrow, quiet, context],
        [_shortfall(a.spread_rel, p.spread_narrow), quiet_term])


def _no_supply(a: Anatomy, p: VsaParams) -> Flag:
    """Down bar, narrow spread, volume lower than each of the previous two bars, in a
    down-move or at support: nobody is selling into the fall."""
    quiet, quiet_term = _two_bar_low(a)
    context = (a.trend_prev <= -p.trend_min) | (a.range_pos <= -p.range_zone)
    return _emit(
        [a.bar_dir, a.spread_rel, a.volume, a.vol_prev1, a.vol_prev2, a.trend_prev,
         a.range_pos],
        [a.bar_dir < 0, a.spread_rel <= p.spread_narrow, quiet, context],
        [_shortfall(a.spread_rel, p.spread_narrow), quiet_term])


def recent_supply(a: Anatomy, p: VsaParams) -> np.ndarray:
    """1 where a high-volume down bar occurred in the test_supply_window bars before t."""
    supply = np.where(np.isnan(a.bar_dir) | np.isnan(a.volume_rel), np.nan,
                      (a.bar_dir < 0) & (a.volume_rel >= p.vol_high))
    return shift(rolling(supply, p.test_supply_window, "max"), 1)


def _test(a: Anatomy, p: VsaParams) -> Flag:
    """After recent supply, a down bar that probes below the previous low yet closes near
    its high on low volume: the market tests for remaining supply and finds none."""
    supply = recent_supply(a, p)
    return _emit(
        [supply, a.bar_dir, a.low, a.low_prev1, a.close_loc, a.volume_rel],
        [supply == 1, a.bar_dir < 0, a.low < a.low_prev1, a.close_loc >= p.close_high,
         a.volume_rel <= p.vol_low],
        [_above(a.close_loc, p.close_high), _shortfall(a.volume_rel, p.vol_low)])


def _shakeout(a: Anatomy, p: VsaParams) -> Flag:
    """A wide-spread drive below recent support that closes back above it, near the high,
    on high volume: stops are run and the supply is bought."""
    return _emit(
        [a.new_low, a.ll_prev, a.close_loc, a.spread_rel, a.volume_rel],
        [a.new_low == 1, a.close > a.ll_prev, a.spread_rel >= p.spread_wide,
         a.close_loc >= p.close_high, a.volume_rel >= p.vol_high],
        [_log_excess(a.spread_rel, p.spread_wide), _above(a.close_loc, p.close_high),
         _log_excess(a.volume_rel, p.vol_high)])


def _ns_high_volume(a: Anatomy, p: VsaParams) -> Flag:
    """Narrow spread on high volume: heavy trading the other side stopped from moving
    price (hidden selling in up bars, hidden buying in down bars)."""
    return _emit(
        [a.spread_rel, a.volume_rel],
        [a.spread_rel <= p.spread_narrow, a.volume_rel >= p.vol_high],
        [_shortfall(a.spread_rel, p.spread_narrow), _log_excess(a.volume_rel, p.vol_high)])


def _wide_spread_up(a: Anatomy, p: VsaParams) -> Flag:
    """Up bar, wide spread, closing in its upper third: mark-up."""
    return _emit(
        [a.bar_dir, a.spread_rel, a.close_loc],
        [a.bar_dir > 0, a.spread_rel >= p.spread_wide, a.close_loc >= p.close_high],
        [_log_excess(a.spread_rel, p.spread_wide), _above(a.close_loc, p.close_high)])


def _wide_spread_down(a: Anatomy, p: VsaParams) -> Flag:
    """Down bar, wide spread, closing in its lower third: mark-down."""
    return _emit(
        [a.bar_dir, a.spread_rel, a.close_loc],
        [a.bar_dir < 0, a.spread_rel >= p.spread_wide, a.close_loc <= p.close_low],
        [_log_excess(a.spread_rel, p.spread_wide), _below(a.close_loc, p.close_low)])


def _effort(a: Anatomy, p: VsaParams, up: bool) -> Flag:
    """Rising volume, high volume, and a close that progressed at least an ordinary move in
    the bar's direction, closing in the favourable half: effort with result."""
    direction = a.bar_dir > 0 if up else a.bar_dir < 0
    placed = a.close_loc >= 0.5 if up else a.close_loc <= 0.5
    return _emit(
        [a.bar_dir, a.volume, a.vol_prev1, a.volume_rel, a.progress_rel, a.close_loc],
        [direction, a.volume > a.vol_prev1, a.volume_rel >= p.vol_high,
         a.progress_rel >= p.effort_progress, placed],
        [_log_excess(a.volume_rel, p.vol_high),
         _log_excess(a.progress_rel, p.effort_progress)])


def absorption_block(a: Anatomy, p: VsaParams) -> tuple[np.ndarray, np.ndarray]:
    """Volume and net close progress of the last absorption_bars bars, each against the
    background of the avg_window bars before the block."""
    m = p.absorption_bars
    volume = safe_div(rolling(a.volume, m, "mean"), shift(a.mean_volume_prev, m - 1))
    net = np.abs(a.close - shift(a.close, m))
    progress = safe_div(net, shift(a.mean_abs_change_prev, m - 1) * np.sqrt(m))
    return volume, progress


def _absorption(a: Anatomy, p: VsaParams) -> Flag:
    """Several bars of high volume whose net close barely moved: the other side absorbs
    all the effort (effort without result)."""
    volume, progress = absorption_block(a, p)
    return _emit(
        [volume, progress],
        [volume >= p.vol_high, progress <= p.absorption_progress],
        [_log_excess(volume, p.vol_high), _shortfall(progress, p.absorption_progress)])


RULES: dict[str, Callable[[Anatomy, VsaParams], Flag]] = {
    "upthrust": _upthrust,
    "buying_climax": _buying_climax,
    "selling_climax": _selling_climax,
    "stopping_volume": _stopping_volume,
    "no_demand": _no_demand,
    "no_supply": _no_supply,
    "test": _test,
    "shakeout": _shakeout,
    "ns_high_volume": _ns_high_volume,
    "wide_spread_up": _wide_spread_up,
    "wide_spread_down": _wide_spread_down,
    "effort_to_rise": lambda a, p: _effort(a, p, up=True),
    "effort_to_fall": lambda a, p: _effort(a, p, up=False),
    "absorption": _absorption,
}
if tuple(RULES) != VSA_CLASSES:  # pragma: no cover - guards edits of this module
    raise RuntimeError("every VSA class needs exactly one rule, in VSA_CLASSES order")


def classify(a: Anatomy, p: VsaParams) -> dict[str, Flag]:
    """Flag and strength of every class, in VSA_CLASSES order."""
    return {name: RULES[name](a, p) for name in VSA_CLASSES}
