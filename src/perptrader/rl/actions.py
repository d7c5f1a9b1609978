"""The agent's ten actions and which of them are valid in a given position.

An action changes the TARGET exposure (signed notional / equity, decided at a bar's
close); the accounting core fills the change at the next bar's open, exactly as a
backtest target would. Opening is only allowed from flat (reverse = close, then open),
so every action has one plain meaning; increase/reduce move the exposure by ``STEP``.
Invalid actions are masked for MaskablePPO; an unmasked policy that still picks one gets
a hold (counted in the episode info), never an error mid-rollout.
"""

from __future__ import annotations

import numpy as np
from numba import njit

HOLD, LONG_05, LONG_1, LONG_2, SHORT_05, SHORT_1, SHORT_2, CLOSE, INCREASE, REDUCE = range(10)
N_ACTIONS = 10
ACTION_NAMES = ("hold", "long_0.5x", "long_1x", "long_2x", "short_0.5x", "short_1x",
                "short_2x", "close", "increase", "reduce")
#: exposure of the six opening actions (index = action)
OPEN_SIZE = np.array([0.0, 0.5, 1.0, 2.0, -0.5, -1.0, -2.0], dtype=np.float64)
#: exposure added / removed by increase / reduce
STEP = 0.5
_EPS = 1e-9


@njit(cache=True)
def action_valid(target: float, action: int, max_exposure: float) -> bool:
    """Whether ``action`` means something at the current ``target`` exposure."""
    if action == HOLD:
        return True
    flat = abs(target) < _EPS
    if action <= SHORT_2:
        return flat and abs(OPEN_SIZE[action]) <= max_exposure + _EPS
    if flat:
        return False
    if action == CLOSE:
        return True
    if action == INCREASE:
        return abs(target) + STEP <= max_exposure + _EPS
    if action == REDUCE:
        return abs(target) - STEP >= STEP - _EPS
    return False


@njit(cache=True)
def next_target(target: float, action: int) -> float:
    """The target after a VALID ``action``."""
    if action == HOLD:
        return target
    if action <= SHORT_2:
        return OPEN_SIZE[action]
    if action == CLOSE:
        return 0.0
    side = 1.0 if target > 0.0 else -1.0
    if action == INCREASE:
        return target + side * STEP
    return target - side * STEP  # REDUCE


@njit(cache=True)
def trade_direction(target: float, action: int) -> float:
    """+1 / -1 when the action opens or adds to a long / short, else 0 (for the VSA and
    expert-agreement terms, which reward or punish TAKING risk in a direction)."""
    if LONG_05 <= action <= LONG_2:
        return 1.0
    if SHORT_05 <= action <= SHORT_2:
        return -1.0
    if action == INCREASE:
        return 1.0 if target > 0.0 else -1.0
    return 0.0


@njit(cache=True)
def fill_mask(target: float, max_exposure: float, out: np.ndarray) -> None:
    for a in range(N_ACTIONS):
        out[a] = action_valid(target, a, max_exposure)


def action_mask(target: float, max_exposure: float) -> np.ndarray:
    """Boolean mask (N_ACTIONS,) of the valid actions at ``target``."""
    out = np.zeros(N_ACTIONS, dtype=np.bool_)
    fill_mask(float(target), float(max_exposure), out)
    return out
