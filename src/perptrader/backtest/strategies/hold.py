"""Path-dependent position keeping shared by event strategies (numba, one pass)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def hold_positions(long_sig: np.ndarray, short_sig: np.ndarray, hold_bars: int) -> np.ndarray:
    """Turn entry events into a position per bar.

    A long (short) event opens a long (short) position held for ``hold_bars`` bars
    including the signal bar; an opposite event flips it at once; a repeated event in
    the same direction restarts the count. Bars with both events are ignored (an
    ambiguous bar is no signal).
    """
    n = len(long_sig)
    out = np.zeros(n, dtype=np.float64)
    pos = 0.0
    left = 0
    for t in range(n):
        lg = long_sig[t] and not short_sig[t]
        sh = short_sig[t] and not long_sig[t]
        if lg:
            pos, left = 1.0, hold_bars
        elif sh:
            pos, left = -1.0, hold_bars
        if left > 0:
            out[t] = pos
            left -= 1
        else:
            pos = 0.0
    return out
