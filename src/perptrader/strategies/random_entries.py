"""Seeded random entries and exits: the null baseline. A strategy that cannot beat
coin flips with the same costs and a similar time in the market has no edge."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numba import njit

from perptrader.strategies.base import PolicyBase


@njit(cache=True)
def _random_path(u: np.ndarray, p_entry: float, p_exit: float, long_only: bool) -> np.ndarray:
    """Markov chain over bars: flat -> enter with ``p_entry`` (side from ``u[:, 1]``),
    in a position -> exit with ``p_exit``. ``u`` holds pre-drawn uniforms per bar."""
    n = u.shape[0]
    out = np.zeros(n, dtype=np.float64)
    pos = 0.0
    for t in range(n):
        if pos == 0.0:
            if u[t, 0] < p_entry:
                pos = 1.0 if (long_only or u[t, 1] < 0.5) else -1.0
        elif u[t, 2] < p_exit:
            pos = 0.0
        out[t] = pos
    return out


@dataclass(frozen=True)
class RandomEntries(PolicyBase):
    seed: int = 42
    #: per-bar probability of entering when flat
    p_entry: float = 0.02
    #: per-bar probability of exiting when in a position (mean hold 1 / p_exit bars)
    p_exit: float = 0.05
    long_only: bool = False
    name = "random"

    def __post_init__(self) -> None:
        for key in ("p_entry", "p_exit"):
            value = getattr(self, key)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"random: {key} must be in (0, 1], got {value}")

    @property
    def params(self) -> dict[str, Any]:
        return {"seed": self.seed, "p_entry": self.p_entry, "p_exit": self.p_exit,
                "long_only": self.long_only}

    def targets(self, frame: pd.DataFrame) -> np.ndarray:
        """Bar t's draws are row t of ONE (n, 3) uniform matrix; numpy fills it row by
        row, so a shorter frame gets the same first rows (no look-ahead by length)."""
        u = np.random.default_rng(self.seed).random((len(frame), 3))
        return _random_path(u, self.p_entry, self.p_exit, self.long_only)
