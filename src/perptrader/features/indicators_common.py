"""Shared plumbing for the TA-Lib indicator families (trend, momentum, volatility, volume,
pattern): input extraction, memory estimates for recursive smoothers, guarded division,
warm-up masking and the NaN-segment rule.

Why a NaN-segment rule: TA-Lib handles a NaN inside its input inconsistently. Running-sum
and recursive functions (SMA, SUM, EMA, ATR, ...) return NaN for every later row, some
(RSI, MAX) silently skip it and give wrong values, and the candlestick functions return 0.
The real OHLCV has no NaN, so instead of inventing fills each family treats a bar whose
required inputs hold a NaN as a *break*: that row is NaN and the indicators restart on the
rows after it, exactly as if the frame started there (so the usual warm-up applies again).
Values before the break are untouched, which keeps the no-look-ahead property.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import talib
import talib.abstract
from numba import njit

from perptrader.features.arrays import col, column_index, div, shift
from perptrader.features.base import Compute, Family, FeatureContext, FeatureSpec

#: start-dependence a recursive smoother must have decayed to before ``memory`` rows
#: (the discrepancy at the start can be ~20 x the feature value when a price-level EMA is
#: divided by an ATR, so 1e-11 leaves room below the 1e-9 contract)
MEMORY_TOL = 1e-11

Raw = Callable[[pd.DataFrame], dict[str, np.ndarray]]


def ema_memory(period: int) -> int:
    """Rows until an EMA (alpha = 2 / (period + 1)) forgets its seed to MEMORY_TOL."""
    return math.ceil(math.log(MEMORY_TOL) / math.log(1.0 - 2.0 / (period + 1))) + period


def wilder_memory(period: int) -> int:
    """Rows until a Wilder smoother (alpha = 1 / period: ATR, RSI, ADX) forgets its seed.

    Wilder smoothing forgets about twice as slowly as an EMA of the same period, so the
    usual "12 x period" is not enough here (it leaves ~6e-6); this is about 25 x period.
    """
    return math.ceil(math.log(MEMORY_TOL) / math.log(1.0 - 1.0 / period)) + period


def lookback(name: str, **params: float) -> int:
    """TA-Lib's own lookback (rows of NaN it emits) for function ``name`` with ``params``."""
    fn = talib.abstract.Function(name)
    if params:
        fn.set_parameters(params)
    return int(fn.lookback)





def pct_change(x: np.ndarray, k: int) -> np.ndarray:
    """x_t / x_{t-k} - 1 (NaN where x_{t-k} is 0 or undefined)."""
    return div(x, shift(x, k)) - 1.0


@njit(cache=True)
def window_level_zscore(increments: np.ndarray, window: int) -> np.ndarray:
    """z-score of a cumulative series' last value within each trailing ``window``.

    A cumulative indicator (OBV, A/D, VPT, log NVI) depends on where the frame starts only
    through an additive constant, which a z-score over a window cancels. Rebuilding the
    level inside each window from the per-bar increments (the first level of the window is
    0) removes the constant exactly instead of subtracting two large cumulative sums, so
    the result does not drift with the frame's start or length. Row t reads the
    increments of rows t-window+2 .. t; any NaN among them gives NaN; zero spread gives NaN.
    """
    n = increments.shape[0]
    out = np.full(n, np.nan)
    levels = np.empty(window)
    for t in range(window - 1, n):
        lvl = 0.0
        levels[0] = 0.0
        total = 0.0
        for i in range(1, window):
            lvl += increments[t - window + 1 + i]
            levels[i] = lvl
            total += lvl
        if np.isnan(total):
            continue
        mean = total / window
        ss = 0.0
        for i in range(window):
            d = levels[i] - mean
            ss += d * d
        sd = math.sqrt(ss / window)
        if sd > 0.0:
            out[t] = (levels[window - 1] - mean) / sd
    return out


def _compute_block(raw: Raw, frame: pd.DataFrame, specs: tuple[FeatureSpec, ...]) -> np.ndarray:
    """Run ``raw`` on one NaN-free stretch and blank each column's declared warm-up."""
    values = raw(frame)
    n = len(frame)
    block = np.empty((len(specs), n))  # one contiguous row per column, (n, k) view out
    for j, spec in enumerate(specs):
        v = values[spec.name]
        if np.shape(v) != (n,):
            raise ValueError(f"{spec.name}: computed {np.shape(v)}, expected ({n},)")
        block[j] = v
        # TA-Lib's candle functions and SUPERTREND's trend output emit 0, not NaN, during
        # their lookback; the declared warm-up is authoritative for every column.
        block[j, : spec.warmup] = np.nan
    return block.T


def segmented(raw: Raw, specs: tuple[FeatureSpec, ...], inputs: tuple[str, ...]) -> Compute:
    """A Family ``compute`` that applies the NaN-segment rule of this module's docstring."""

    def compute(frame: pd.DataFrame, ctx: FeatureContext) -> pd.DataFrame:
        names = [s.name for s in specs]
        missing = [c for c in inputs if c not in frame.columns]
        if missing:
            raise KeyError(f"indicator inputs missing from the frame: {missing}")
        bad = np.zeros(len(frame), dtype=bool)
        for name in inputs:
            bad |= np.isnan(col(frame, name))
        if not bad.any():
            block = _compute_block(raw, frame, specs)
        else:
            block = np.full((len(frame), len(specs)), np.nan)
            good = np.flatnonzero(~bad)
            # maximal runs of consecutive good rows: [starts[i], ends[i])
            cuts = np.flatnonzero(np.diff(good) != 1) + 1
            for run in np.split(good, cuts):
                if len(run):
                    a, b = int(run[0]), int(run[-1]) + 1
                    block[a:b] = _compute_block(raw, frame.iloc[a:b], specs)
        return pd.DataFrame(block, index=frame.index, columns=column_index(names),
                            copy=False)

    return compute


def build_family(name: str, description: str, inputs: tuple[str, ...],
                 specs: tuple[FeatureSpec, ...], raw: Raw,
                 tags: tuple[str, ...] = ("indicators",)) -> Family:
    """A Family whose columns all come from ``raw`` under the NaN-segment rule."""
    bad = [s.name for s in specs if not s.name.startswith(f"{name}_")]
    if bad:
        raise ValueError(f"family {name!r}: columns without the family prefix: {bad}")
    return Family(name=name, description=description, requires=inputs, specs=specs,
                  compute=segmented(raw, specs, inputs), tags=tags)
