"""Path-dependent position keeping shared by event strategies (numba, one pass).

``hold_step`` is one bar of the rule; ``hold_positions`` runs it over a whole series
(the batch form) and a per-bar policy calls ``hold_step`` itself, so both forms share
one definition of the rule.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def hold_step(pos: float, left: int, long_sig: bool, short_sig: bool,
              hold_bars: int) -> tuple[float, int, float]:
    """One bar: (position, bars left) before it and its events -> (position, bars left,
    target of the bar). A long (short) event opens a long (short) position held for
    ``hold_bars`` bars including the signal bar; an opposite event flips it at once; a
    repeated event in the same direction restarts the count. Bars with both events are
    ignored (an ambiguous bar is no signal)."""
    lg = long_sig and not short_sig
    sh = short_sig and not long_sig
    if lg:
        pos, left = 1.0, hold_bars
    elif sh:
        pos, left = -1.0, hold_bars
    if left > 0:
        return pos, left - 1, pos
    return 0.0, left, 0.0


@njit(cache=True)
def hold_positions(long_sig: np.ndarray, short_sig: np.ndarray, hold_bars: int) -> np.ndarray:
    """Turn entry events into a position per bar (``hold_step`` over every bar)."""
    n = len(long_sig)
    out = np.zeros(n, dtype=np.float64)
    pos = 0.0
    left = 0
    for t in range(n):
        pos, left, out[t] = hold_step(pos, left, long_sig[t], short_sig[t], hold_bars)
    return out
