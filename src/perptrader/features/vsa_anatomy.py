"""Bar anatomy for Volume Spread Analysis: how wide, how busy, where it closed, against
which background.

VSA reads each bar against the bars before it, so every "relative" measure here divides
by the average of the *preceding* ``avg_window`` bars, never a window that holds the bar
itself: an ultra-high-volume bar would otherwise raise its own yardstick and look
smaller the shorter the window. All arithmetic is whole-array numpy / pandas rolling
(C loops), no Python loop over bars.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from perptrader.features.arrays import col, shift
from perptrader.features.arrays import div as safe_div
from perptrader.features.vsa_params import VsaParams
from perptrader.features.windows import trailing

#: frame columns VSA reads; nothing else is needed
VSA_INPUTS: tuple[str, ...] = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class Anatomy:
    """Per-bar measures (float64 arrays of the frame's length; NaN where undefined).

    The first block is emitted as features; the second is context the class rules use.
    """

    spread_rel: np.ndarray      # spread / mean spread of the preceding avg_window bars
    spread_z: np.ndarray        # (spread - that mean) / that std
    close_loc: np.ndarray       # (close - low) / (high - low), 0..1
    body: np.ndarray            # (close - open) / (high - low), -1..1
    volume_rel: np.ndarray      # volume / mean volume of the preceding avg_window bars
    volume_z: np.ndarray        # (volume - that mean) / that std
    progress_rel: np.ndarray    # |close - prev close| / its mean over the preceding bars
    effort_result: np.ndarray   # (volume_rel - progress_rel) / (volume_rel + progress_rel)
    trend: np.ndarray           # net move over trend_window in (mean spread * sqrt(n))
    range_pos: np.ndarray       # close within the preceding range_window high-low range
    bar_dir: np.ndarray         # sign(close - prev close)

    trend_prev: np.ndarray      # trend at t-1: the background the bar arrives in
    new_high: np.ndarray        # high > highest high of the preceding range_window bars
    new_low: np.ndarray         # low < lowest low of the preceding range_window bars
    hh_prev: np.ndarray         # that highest high (resistance)
    ll_prev: np.ndarray         # that lowest low (support)
    close: np.ndarray
    low: np.ndarray
    volume: np.ndarray
    vol_prev1: np.ndarray       # volume at t-1
    vol_prev2: np.ndarray       # volume at t-2
    low_prev1: np.ndarray       # low at t-1
    mean_abs_change_prev: np.ndarray  # mean |close change| of the preceding avg_window bars
    mean_volume_prev: np.ndarray      # mean volume of the preceding avg_window bars




def rolling(x: np.ndarray, n: int, how: str) -> np.ndarray:
    """Trailing window statistic over rows t-n+1..t; NaN until n values (or any NaN).

    pandas' rolling kernels update sums as rows enter and leave the window, so a value
    depends on where the frame starts only at rounding level (start invariance).
    ``windows.trailing`` runs those kernels without the Series around them.
    """
    if how not in ("mean", "std", "max", "min"):
        raise ValueError(f"unknown rolling statistic {how!r}")
    return trailing(x, n, how, ddof=1)


def _prior(x: np.ndarray, n: int, how: str) -> np.ndarray:
    """Statistic of the n bars *before* t (rows t-n..t-1)."""
    return shift(rolling(x, n, how), 1)


def ohlcv_arrays(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The five input columns as float64 arrays, or a clear error naming what is missing."""
    missing = [c for c in VSA_INPUTS if c not in frame.columns]
    if missing:
        raise KeyError(f"VSA needs columns {list(VSA_INPUTS)}; the frame lacks {missing}")
    return {c: col(frame, c) for c in VSA_INPUTS}


def compute_anatomy(frame: pd.DataFrame, p: VsaParams) -> Anatomy:
    """Every per-bar measure of the frame (see the field comments for the formulas)."""
    a = ohlcv_arrays(frame)
    open_, high, low, close, volume = (a[c] for c in VSA_INPUTS)
    n = p.avg_window

    spread = high - low
    spread_mean = _prior(spread, n, "mean")
    spread_std = _prior(spread, n, "std")
    vol_mean = _prior(volume, n, "mean")
    vol_std = _prior(volume, n, "std")

    change = close - shift(close, 1)
    abs_change = np.abs(change)
    abs_change_mean = _prior(abs_change, n, "mean")
    volume_rel = safe_div(volume, vol_mean)
    progress_rel = safe_div(abs_change, abs_change_mean)

    # trend: net close change over the window in units of a random walk's typical
    # excursion (mean bar range * sqrt(bars)), so thresholds carry across volatility.
    m = p.trend_window
    trend = safe_div(close - shift(close, m), rolling(spread, m, "mean") * np.sqrt(m))

    hh_prev = _prior(high, p.range_window, "max")
    ll_prev = _prior(low, p.range_window, "min")
    range_pos = 2.0 * safe_div(close - ll_prev, hh_prev - ll_prev) - 1.0

    defined = ~np.isnan(hh_prev)
    return Anatomy(
        spread_rel=safe_div(spread, spread_mean),
        spread_z=safe_div(spread - spread_mean, spread_std),
        close_loc=safe_div(close - low, spread),
        body=safe_div(close - open_, spread),
        volume_rel=volume_rel,
        volume_z=safe_div(volume - vol_mean, vol_std),
        progress_rel=progress_rel,
        effort_result=safe_div(volume_rel - progress_rel, volume_rel + progress_rel),
        trend=trend,
        range_pos=range_pos,
        bar_dir=np.sign(change),
        trend_prev=shift(trend, 1),
        new_high=np.where(defined & ~np.isnan(high), high > hh_prev, np.nan),
        new_low=np.where(defined & ~np.isnan(low), low < ll_prev, np.nan),
        hh_prev=hh_prev,
        ll_prev=ll_prev,
        close=close,
        low=low,
        volume=volume,
        vol_prev1=shift(volume, 1),
        vol_prev2=shift(volume, 2),
        low_prev1=shift(low, 1),
        mean_abs_change_prev=abs_change_mean,
        mean_volume_prev=vol_mean,
    )
