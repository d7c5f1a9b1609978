"""Candle shape and range-based volatility: what one bar and its recent neighbours say.

Two families:

* ``candle``: returns over several horizons, the bar's range, true range, shadows and
  body as shares of its range, the gap from the previous close, the signed streak of
  up/down closes, and the rolling skew/kurtosis of log returns.
* ``rangevol``: realised volatility and the range-based estimators (Parkinson,
  Garman–Klass, Rogers–Satchell, Yang–Zhang), vol-of-vol and short/long vol ratios.
  Range estimators use the high and low, which carry more information about the
  bar's dispersion than its close alone (Parkinson's estimator is about 5x as
  efficient as close-to-close for a driftless diffusion), so they react faster after a
  volatility shock at the same window length.

Every rolling statistic comes from one numba kernel (``rolling_moments``): running sums
about a shift, recomputed from scratch once per window, so it is O(n) and a value
depends on its own window only (to ~1e-14, whatever the frame start); a NaN inside a
window makes that window NaN instead of leaking into later sums. All values
are per bar (not annualised): a model sees the same scale whatever the window.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numba import njit

from perptrader.features.arrays import block_frame, col
from perptrader.features.arrays import div as safe_div
from perptrader.features.arrays import safe_log as _log
from perptrader.features.arrays import shift as _shift
from perptrader.features.base import Family, FeatureContext, FeatureSpec

RETURN_HORIZONS = (1, 2, 4, 8, 24, 72)
MOMENT_WINDOWS = (24, 72)
#: the streak count stops at this many bars: beyond it a longer run says little more,
#: and a cap bounds the history a value depends on (start invariance after CAP + 1 rows)
STREAK_CAP = 10
RV_WINDOWS = (24, 72, 168)
RANGE_WINDOWS = (24, 72)
VOV_WINDOW = 72

_OHLC = ("open", "high", "low", "close")


# --------------------------------------------------------------------------- kernels


@njit(cache=True)
def _resync(x: np.ndarray, lo: int, hi: int, order: int) -> tuple[float, float, float, float,
                                                                  float, int]:
    """Shift K (the window's mean) and sums of (x - K)^1..4 over x[lo:hi], from scratch."""
    total = 0.0
    bad = 0
    for j in range(lo, hi):
        v = x[j]
        if np.isnan(v):
            bad += 1
        else:
            total += v
    good = hi - lo - bad
    k = total / good if good > 0 else 0.0
    s1 = s2 = s3 = s4 = 0.0
    for j in range(lo, hi):
        v = x[j]
        if np.isnan(v):
            continue
        d = v - k
        s1 += d
        if order >= 2:
            d2 = d * d
            s2 += d2
            if order >= 3:
                s3 += d2 * d
                s4 += d2 * d2
    return k, s1, s2, s3, s4, bad


@njit(cache=True)
def rolling_moments(x: np.ndarray, window: int, order: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean and central moments m2, m3, m4 (divided by ``window``) of each window.

    O(n): running sums of (x - K)^p are updated as a value enters and leaves, with the
    shift K set to the window mean and every sum recomputed from scratch once per
    ``window`` rows. The shift avoids the cancellation of raw power sums; the resync
    stops a rounding residue (say from an outlier that entered and left) from living
    on, so a value depends on its window to ~1e-14 relative whatever the frame start.
    ``order`` 1 gives the mean only, 2 adds m2, 3 or 4 add m3 and m4. A window holding
    a NaN, or shorter than ``window``, gives NaN.
    """
    n = x.shape[0]
    mean = np.full(n, np.nan)
    m2 = np.full(n, np.nan)
    m3 = np.full(n, np.nan)
    m4 = np.full(n, np.nan)
    w = float(window)
    k = 0.0
    s1 = s2 = s3 = s4 = 0.0
    bad = 0
    for i in range(n):
        if i >= window - 1 and (i - window + 1) % window == 0:
            k, s1, s2, s3, s4, bad = _resync(x, i - window + 1, i + 1, order)
        else:
            v = x[i]
            if np.isnan(v):
                bad += 1
            else:
                d = v - k
                s1 += d
                if order >= 2:
                    d2 = d * d
                    s2 += d2
                    if order >= 3:
                        s3 += d2 * d
                        s4 += d2 * d2
            if i >= window:
                v = x[i - window]
                if np.isnan(v):
                    bad -= 1
                else:
                    d = v - k
                    s1 -= d
                    if order >= 2:
                        d2 = d * d
                        s2 -= d2
                        if order >= 3:
                            s3 -= d2 * d
                            s4 -= d2 * d2
        if i < window - 1 or bad > 0:
            continue
        a = s1 / w  # mean of (x - K)
        mean[i] = k + a
        if order >= 2:
            c2 = s2 / w - a * a
            m2[i] = c2 if c2 > 0.0 else 0.0
            if order >= 3:
                a2 = a * a
                m3[i] = s3 / w - 3.0 * a * s2 / w + 2.0 * a2 * a
                m4[i] = s4 / w - 4.0 * a * s3 / w + 6.0 * a2 * s2 / w - 3.0 * a2 * a2
    return mean, m2, m3, m4


def rolling_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` values; NaN when the window is short or holds a NaN."""
    return rolling_moments(np.ascontiguousarray(x, dtype=np.float64), window, 1)[0]


def rolling_std(x: np.ndarray, window: int, ddof: int) -> np.ndarray:
    """Standard deviation of the last ``window`` values with ``ddof`` (1 = sample)."""
    m2 = rolling_moments(np.ascontiguousarray(x, dtype=np.float64), window, 2)[1]
    return np.sqrt(m2 * (window / (window - ddof)))


def rolling_skew_kurt(x: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Bias-corrected sample skewness G1 and excess kurtosis G2 over each window.

    The same estimators as ``pandas.Series.rolling(w).skew()/.kurt()`` and
    ``scipy.stats.skew/kurtosis(bias=False)``; NaN when the window has no dispersion
    (a standard deviation below 1e-14 of |mean|: a constant up to rounding).
    """
    mean, m2, m3, m4 = rolling_moments(np.ascontiguousarray(x, dtype=np.float64), window, 4)
    w = float(window)
    flat = ~(m2 > 1e-28 * mean * mean) | (m2 == 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        g1 = m3 / m2**1.5
        g2 = m4 / (m2 * m2) - 3.0
    skew = np.sqrt(w * (w - 1.0)) / (w - 2.0) * g1
    kurt = (w - 1.0) / ((w - 2.0) * (w - 3.0)) * ((w + 1.0) * g2 + 6.0)
    skew[flat] = np.nan
    kurt[flat] = np.nan
    return skew, kurt


@njit(cache=True)
def signed_streak(ret: np.ndarray, cap: int) -> np.ndarray:
    """+n after n consecutive rising closes, -n after n falling ones, capped at ``cap``.

    A flat close resets to 0; a NaN return gives NaN and restarts the count.
    """
    n = ret.shape[0]
    out = np.full(n, np.nan)
    run = 0
    for i in range(n):
        r = ret[i]
        if np.isnan(r):
            run = 0
            continue
        if r > 0.0:
            run = run + 1 if run > 0 else 1
        elif r < 0.0:
            run = run - 1 if run < 0 else -1
        else:
            run = 0
        out[i] = min(run, cap) if run > 0 else max(run, -cap)
    return out


# --------------------------------------------------------------------------- helpers


def _ohlc(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return tuple(col(frame, c) for c in _OHLC)





def _sqrt(x: np.ndarray) -> np.ndarray:
    """Square root, NaN for a negative variance estimate (only from broken bars)."""
    out = np.full(x.shape, np.nan)
    np.sqrt(x, out=out, where=x >= 0)
    return out


def log_returns(close: np.ndarray) -> np.ndarray:
    """ln(close_t / close_{t-1}); NaN on the first row."""
    return _log(safe_div(close, _shift(close, 1)))


# --------------------------------------------------------------------------- candle


def _candle_specs() -> tuple[FeatureSpec, ...]:
    specs: list[FeatureSpec] = []
    for h in RETURN_HORIZONS:
        specs.append(FeatureSpec(f"candle_ret_{h}", f"close_t / close_(t-{h}) - 1",
                                 ("close",), h))
    for h in RETURN_HORIZONS:
        specs.append(FeatureSpec(f"candle_logret_{h}", f"ln(close_t / close_(t-{h}))",
                                 ("close",), h))
    specs += [
        FeatureSpec("candle_range", "(high - low) / close", ("high", "low", "close"), 0),
        FeatureSpec("candle_true_range",
                    "max(high, close_(t-1)) - min(low, close_(t-1)), / close",
                    ("high", "low", "close"), 1),
        FeatureSpec("candle_upper_shadow", "(high - max(open, close)) / (high - low); "
                    "NaN when high == low", _OHLC, 0),
        FeatureSpec("candle_lower_shadow", "(min(open, close) - low) / (high - low); "
                    "NaN when high == low", _OHLC, 0),
        FeatureSpec("candle_body", "(close - open) / (high - low), signed in [-1, 1]; "
                    "NaN when high == low", _OHLC, 0),
        FeatureSpec("candle_gap_bps", "(open_t / close_(t-1) - 1) * 1e4", ("open", "close"), 1),
        FeatureSpec("candle_streak",
                    f"signed count of consecutive rising (+) / falling (-) closes, "
                    f"capped at +-{STREAK_CAP}; a flat close resets to 0",
                    ("close",), 1, STREAK_CAP + 1),
    ]
    for w in MOMENT_WINDOWS:
        specs.append(FeatureSpec(f"candle_skew_{w}",
                                 f"bias-corrected sample skewness G1 of ln(close/close_(t-1)) "
                                 f"over {w} bars", ("close",), w))
        specs.append(FeatureSpec(f"candle_kurt_{w}",
                                 f"bias-corrected sample excess kurtosis G2 of "
                                 f"ln(close/close_(t-1)) over {w} bars", ("close",), w))
    return tuple(specs)


def compute_candle(frame: pd.DataFrame, ctx: FeatureContext) -> pd.DataFrame:
    o, h, low, c = _ohlc(frame)
    prev_c = _shift(c, 1)
    out: dict[str, np.ndarray] = {}
    for k in RETURN_HORIZONS:
        out[f"candle_ret_{k}"] = safe_div(c, _shift(c, k)) - 1.0
    for k in RETURN_HORIZONS:
        out[f"candle_logret_{k}"] = _log(safe_div(c, _shift(c, k)))
    rng = h - low
    out["candle_range"] = safe_div(rng, c)
    # np.fmax would ignore a NaN previous close; the first row must stay NaN instead
    tr = np.maximum(h, prev_c) - np.minimum(low, prev_c)
    out["candle_true_range"] = safe_div(tr, c)
    out["candle_upper_shadow"] = safe_div(h - np.maximum(o, c), rng)
    out["candle_lower_shadow"] = safe_div(np.minimum(o, c) - low, rng)
    out["candle_body"] = safe_div(c - o, rng)
    out["candle_gap_bps"] = (safe_div(o, prev_c) - 1.0) * 1e4
    r1 = log_returns(c)
    out["candle_streak"] = signed_streak(r1, STREAK_CAP)
    for w in MOMENT_WINDOWS:
        out[f"candle_skew_{w}"], out[f"candle_kurt_{w}"] = rolling_skew_kurt(r1, w)
    return block_frame(frame, out)


# --------------------------------------------------------------------------- rangevol


def yang_zhang_k(n: int) -> float:
    """Yang & Zhang (2000) weight k = 0.34 / (1.34 + (n+1)/(n-1)) for an n-bar window."""
    return 0.34 / (1.34 + (n + 1) / (n - 1))


def _rangevol_specs() -> tuple[FeatureSpec, ...]:
    specs: list[FeatureSpec] = []
    for w in RV_WINDOWS:
        specs.append(FeatureSpec(f"rangevol_rv_{w}",
                                 f"sample std (ddof=1) of r_t = ln(close_t/close_(t-1)) "
                                 f"over {w} bars", ("close",), w))
    hl, co = "ln(high/low)", "ln(close/open)"
    for w in RANGE_WINDOWS:
        specs += [
            FeatureSpec(f"rangevol_parkinson_{w}",
                        f"Parkinson (1980): sqrt(mean_{w}({hl}^2) / (4 ln 2))",
                        ("high", "low"), w - 1),
            FeatureSpec(f"rangevol_gk_{w}",
                        f"Garman-Klass (1980): sqrt(mean_{w}(0.5 {hl}^2 - (2 ln 2 - 1) "
                        f"{co}^2))", _OHLC, w - 1),
            FeatureSpec(f"rangevol_rs_{w}",
                        f"Rogers-Satchell (1991): sqrt(mean_{w}(ln(high/close) ln(high/open)"
                        f" + ln(low/close) ln(low/open)))", _OHLC, w - 1),
            FeatureSpec(f"rangevol_yz_{w}",
                        f"Yang-Zhang (2000): sqrt(var_{w}(ln(open/close_(t-1))) + k "
                        f"var_{w}({co}) + (1-k) RS^2_{w}), var with ddof=1, "
                        f"k = 0.34/(1.34 + (n+1)/(n-1)) = {yang_zhang_k(w):.6f}",
                        _OHLC, w),
        ]
    specs += [
        FeatureSpec("rangevol_vov_72",
                    f"vol-of-vol: std_{VOV_WINDOW}(rangevol_rv_24) / "
                    f"mean_{VOV_WINDOW}(rangevol_rv_24) (coefficient of variation)",
                    ("close",), 24 + VOV_WINDOW - 1),
        FeatureSpec("rangevol_ratio_rv_24_168", "rangevol_rv_24 / rangevol_rv_168",
                    ("close",), 168),
        FeatureSpec("rangevol_ratio_yz_24_72", "rangevol_yz_24 / rangevol_yz_72", _OHLC, 72),
    ]
    return tuple(specs)


def realised_vol(close: np.ndarray, window: int) -> np.ndarray:
    """Sample std (ddof=1) of the last ``window`` 1-bar log returns."""
    return rolling_std(log_returns(close), window, 1)


def parkinson(high: np.ndarray, low: np.ndarray, window: int) -> np.ndarray:
    """Parkinson (1980): sqrt(mean(ln(H/L)^2) / (4 ln 2))."""
    hl = _log(safe_div(high, low))
    return _sqrt(rolling_mean(hl * hl / (4.0 * np.log(2.0)), window))


def garman_klass(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
                 window: int) -> np.ndarray:
    """Garman & Klass (1980): sqrt(mean(0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2))."""
    hl, co = _log(safe_div(high, low)), _log(safe_div(close, open_))
    return _sqrt(rolling_mean(0.5 * hl * hl - (2.0 * np.log(2.0) - 1.0) * co * co, window))


def _rs_term(open_: np.ndarray, high: np.ndarray, low: np.ndarray,
             close: np.ndarray) -> np.ndarray:
    hc, ho = _log(safe_div(high, close)), _log(safe_div(high, open_))
    lc, lo = _log(safe_div(low, close)), _log(safe_div(low, open_))
    return hc * ho + lc * lo


def rogers_satchell(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
                    window: int) -> np.ndarray:
    """Rogers & Satchell (1991): sqrt(mean(ln(H/C) ln(H/O) + ln(L/C) ln(L/O)))."""
    return _sqrt(rolling_mean(_rs_term(open_, high, low, close), window))


def yang_zhang(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
               window: int) -> np.ndarray:
    """Yang & Zhang (2000): sqrt(σ_o² + k σ_c² + (1 − k) σ_rs²).

    σ_o² = sample variance (ddof=1) of the overnight return ln(O_t / C_(t−1)), σ_c² of
    the open-to-close return ln(C_t / O_t), σ_rs² the Rogers–Satchell mean, all over
    ``window`` bars; k = 0.34 / (1.34 + (n+1)/(n−1)) minimises the estimator's variance.
    On a 24/7 market the "overnight" return is the bar-to-bar gap, usually ~0.
    """
    k = yang_zhang_k(window)
    var_o = rolling_std(_log(safe_div(open_, _shift(close, 1))), window, 1) ** 2
    var_c = rolling_std(_log(safe_div(close, open_)), window, 1) ** 2
    var_rs = rolling_mean(_rs_term(open_, high, low, close), window)
    return _sqrt(var_o + k * var_c + (1.0 - k) * var_rs)


def compute_rangevol(frame: pd.DataFrame, ctx: FeatureContext) -> pd.DataFrame:
    o, h, low, c = _ohlc(frame)
    out: dict[str, np.ndarray] = {}
    for w in RV_WINDOWS:
        out[f"rangevol_rv_{w}"] = realised_vol(c, w)
    for w in RANGE_WINDOWS:
        out[f"rangevol_parkinson_{w}"] = parkinson(h, low, w)
        out[f"rangevol_gk_{w}"] = garman_klass(o, h, low, c, w)
        out[f"rangevol_rs_{w}"] = rogers_satchell(o, h, low, c, w)
        out[f"rangevol_yz_{w}"] = yang_zhang(o, h, low, c, w)
    rv24 = out["rangevol_rv_24"]
    out["rangevol_vov_72"] = safe_div(rolling_std(rv24, VOV_WINDOW, 1),
                                      rolling_mean(rv24, VOV_WINDOW))
    out["rangevol_ratio_rv_24_168"] = safe_div(rv24, out["rangevol_rv_168"])
    out["rangevol_ratio_yz_24_72"] = safe_div(out["rangevol_yz_24"], out["rangevol_yz_72"])
    return block_frame(frame, out)


CANDLE = Family(
    name="candle",
    description="Returns over 1-72 bars, range, true range, shadows, body, gap, up/down "
                "streak and rolling skew/kurtosis of log returns.",
    requires=_OHLC,
    specs=_candle_specs(),
    compute=compute_candle,
    tags=("bars",),
)

RANGEVOL = Family(
    name="rangevol",
    description="Realised volatility and Parkinson, Garman-Klass, Rogers-Satchell and "
                "Yang-Zhang range estimators, vol-of-vol and short/long vol ratios.",
    requires=_OHLC,
    specs=_rangevol_specs(),
    compute=compute_rangevol,
    tags=("bars", "volatility"),
)

FAMILIES: tuple[Family, ...] = (CANDLE, RANGEVOL)
