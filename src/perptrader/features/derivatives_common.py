"""Small rolling-window helpers shared by the derivatives and microstructure families.

Why a module of its own: every family here needs the same guarded arithmetic (a zero
denominator gives NaN, never +-inf; a window with a missing value gives NaN, never a
value from fewer rows) and the same bar-close clock. Rolling statistics go through
pandas' O(n) C windows (no Python loop over bars); their online add/remove updates
depend on where a frame starts only at float rounding level (~1e-16 relative), which
keeps the start-invariance contract (1e-8).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from perptrader.core.timeframes import timeframe_delta
from perptrader.features.arrays import block_frame, div
from perptrader.features.base import FeatureContext
from perptrader.features.windows import trailing, trailing_cov

#: a rolling standard deviation at or below this fraction of |mean| is treated as zero
#: (a constant window): the z-score is then undefined (NaN), not a rounding artefact
REL_STD_FLOOR = 1e-9






def rolling_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` rows (NaN unless all of them are defined)."""
    return trailing(x, window, "mean")


def rolling_sum(x: np.ndarray, window: int) -> np.ndarray:
    return trailing(x, window, "sum")


def rolling_std(x: np.ndarray, window: int) -> np.ndarray:
    """Sample standard deviation (ddof=1) of the last ``window`` rows."""
    return trailing(x, window, "std")


def zscore(x: np.ndarray, window: int) -> np.ndarray:
    """(x - rolling mean) / rolling sample std over the last ``window`` rows, current
    row included; NaN where the window is constant (std ~ 0)."""
    mean = rolling_mean(x, window)
    std = rolling_std(x, window)
    flat = ~(std > REL_STD_FLOOR * np.abs(mean))
    return div(x - mean, np.where(flat, np.nan, std))


def rolling_cov_var(x: np.ndarray, y: np.ndarray,
                    window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rolling sample covariance of (x, y) and the variances of x and y.

    A row where either input is NaN makes every window holding it NaN (both inputs are
    masked together, so the three moments always describe the same pairs).
    """
    bad = np.isnan(x) | np.isnan(y)
    x = np.where(bad, np.nan, x)
    y = np.where(bad, np.nan, y)
    cov = trailing_cov(x, y, window)
    vx = trailing(x, window, "var")
    vy = trailing(y, window, "var")
    return cov, vx, vy


def rolling_corr(x: np.ndarray, y: np.ndarray, window: int) -> np.ndarray:
    """Rolling Pearson correlation; NaN where either side is constant in the window."""
    cov, vx, vy = rolling_cov_var(x, y, window)
    vx = np.where(vx > 0, vx, np.nan)
    vy = np.where(vy > 0, vy, np.nan)
    return np.clip(div(cov, np.sqrt(vx * vy)), -1.0, 1.0)


def bar_closes(frame: pd.DataFrame, ctx: FeatureContext) -> np.ndarray:
    """Bar close times (open + timeframe) as int64 microseconds since the epoch.

    The timeframe comes from ``ctx``; a frame that says (``attrs['timeframe']``) it has
    another one is refused, because every as-of comparison here is against the close.
    """
    own = frame.attrs.get("timeframe")
    if own is not None and own != ctx.timeframe:
        raise ValueError(f"frame timeframe {own!r} differs from the context's "
                         f"{ctx.timeframe!r}")
    return index_us(frame.index) + timeframe_delta(ctx.timeframe) // pd.Timedelta(1, "us")


def index_us(index: pd.Index) -> np.ndarray:
    """A datetime index as int64 microseconds since the epoch (UTC)."""
    return pd.DatetimeIndex(index).as_unit("us").asi8


def times_us(values: pd.Series) -> np.ndarray:
    """A datetime column as int64 microseconds (NaT -> INT64 min, test with ``< 0``)."""
    idx = pd.DatetimeIndex(values)
    if idx.tz is None:
        idx = idx.tz_localize("UTC")
    return idx.as_unit("us").asi8


def frame_of(frame: pd.DataFrame, columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """The output block: float64 columns in the given order, indexed like ``frame``."""
    return block_frame(frame, columns)
