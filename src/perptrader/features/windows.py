"""Trailing fixed-size windows on float64 arrays, for the families that used
``pd.Series(x).rolling(n, min_periods=n)``.

``trailing(x, n, "mean")`` IS ``pd.Series(x).rolling(n, min_periods=n).mean()
.to_numpy()``, bit for bit: it calls the same pandas kernels with the same window
bounds and the same input preparation (+-inf read as NaN), only without building a
Series, a Rolling object and a result Series around each call. On the live path (a
100-row tail, a dozen windows per family) that wrapping was most of a family's cost.
If this pandas lacks the kernels (they are internal), the public API is used instead:
slower, same numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

try:  # pandas' own rolling kernels (internal API; see the fallback below)
    from pandas._libs.window import aggregations as _kernels
except ImportError:  # pragma: no cover - depends on the pandas build
    _kernels = None

STATS = ("mean", "sum", "std", "var", "max", "min")


def _prep(x: np.ndarray) -> np.ndarray:
    """What pandas does to a float64 input before a kernel: +-inf becomes NaN."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    inf = np.isinf(x)
    return np.where(inf, np.nan, x) if inf.any() else x


def _bounds(n: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """pandas' FixedWindowIndexer bounds for a trailing (right-closed) window."""
    end = np.arange(1, n + 1, dtype=np.int64)
    return np.maximum(end - window, 0), end  # end - window <= n: no upper clip needed


def _fast(x: np.ndarray, window: int, how: str, ddof: int) -> np.ndarray:
    start, end = _bounds(len(x), window)
    with np.errstate(all="ignore"):
        if how == "mean":
            return np.asarray(_kernels.roll_mean(x, start, end, window))
        if how == "sum":
            return np.asarray(_kernels.roll_sum(x, start, end, window))
        if how == "max":
            return np.asarray(_kernels.roll_max(x, start, end, window))
        if how == "min":
            return np.asarray(_kernels.roll_min(x, start, end, window))
        var = np.asarray(_kernels.roll_var(x, start, end, window, ddof=ddof))
        if how == "var":
            return var
        std = np.sqrt(var)  # pandas' zsqrt: a negative rounding residue reads 0
        std[var < 0] = 0.0
        return std


def _public(x: np.ndarray, window: int, how: str, ddof: int) -> np.ndarray:
    r = pd.Series(x, copy=False).rolling(window, min_periods=window)
    out = r.std(ddof=ddof) if how == "std" else r.var(ddof=ddof) if how == "var" \
        else getattr(r, how)()
    return out.to_numpy(dtype=np.float64)


def trailing(x: np.ndarray, window: int, how: str, ddof: int = 1) -> np.ndarray:
    """Statistic ``how`` (one of STATS) of rows t-window+1..t; NaN until ``window``
    rows and on every window holding a NaN (pandas' ``min_periods=window``)."""
    if how not in STATS:
        raise ValueError(f"unknown rolling statistic {how!r}")
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    x = _prep(x)
    if not len(x):
        return x.copy()
    if _kernels is not None:
        try:
            return _fast(x, window, how, ddof)
        except (AttributeError, TypeError):  # pragma: no cover - another pandas
            pass
    return _public(x, window, how, ddof)


def trailing_cov(x: np.ndarray, y: np.ndarray, window: int, ddof: int = 1) -> np.ndarray:
    """``pd.Series(x).rolling(window, min_periods=window).cov(pd.Series(y))``, bit for
    bit (the caller masks the pairs: a NaN in either input at the same rows)."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    x, y = _prep(x), _prep(y)
    if not len(x):
        return x.copy()
    roll_cov = getattr(_kernels, "roll_cov", None)
    if roll_cov is not None:
        start, end = _bounds(len(x), window)
        try:
            with np.errstate(all="ignore"):
                return np.asarray(roll_cov(x, y, start, end, window, ddof))
        except TypeError:  # pragma: no cover - another pandas
            pass
    sx, sy = pd.Series(x, copy=False), pd.Series(y, copy=False)
    return sx.rolling(window, min_periods=window).cov(sy, ddof=ddof).to_numpy(np.float64)


def trailing_time(x: np.ndarray, times_us: np.ndarray, span_us: int, how: str,
                  ddof: int = 1) -> np.ndarray:
    """Statistic ``how`` (mean, sum, std, var) over the rows whose time lies in
    (t - span, t], for STRICTLY increasing epoch-µs ``times_us``: exactly
    ``pd.Series(x, index=<those times>).rolling(f"{span}").<how>()`` (pandas' time
    windows: right-closed, ``min_periods`` 1)."""
    if how not in ("mean", "sum", "std", "var"):
        raise ValueError(f"unknown time-window statistic {how!r}")
    x = _prep(x)
    t = np.asarray(times_us, dtype=np.int64)
    if len(t) != len(x):
        raise ValueError("values and times differ in length")
    if not len(x):
        return x.copy()
    if len(t) > 1 and not (np.diff(t) > 0).all():
        raise ValueError("times must be strictly increasing")
    if _kernels is not None:
        start = np.searchsorted(t, t - int(span_us), side="right").astype(np.int64)
        end = np.arange(1, len(t) + 1, dtype=np.int64)
        try:
            with np.errstate(all="ignore"):
                if how == "mean":
                    return np.asarray(_kernels.roll_mean(x, start, end, 1))
                if how == "sum":
                    return np.asarray(_kernels.roll_sum(x, start, end, 1))
                var = np.asarray(_kernels.roll_var(x, start, end, 1, ddof=ddof))
                if how == "var":
                    return var
                std = np.sqrt(var)
                std[var < 0] = 0.0
                return std
        except (AttributeError, TypeError):  # pragma: no cover - another pandas
            pass
    index = pd.DatetimeIndex(pd.to_datetime(t, unit="us", utc=True))
    r = pd.Series(x, index=index).rolling(pd.Timedelta(microseconds=int(span_us)))
    out = r.std(ddof=ddof) if how == "std" else r.var(ddof=ddof) if how == "var" \
        else getattr(r, how)()
    return out.to_numpy(dtype=np.float64)
