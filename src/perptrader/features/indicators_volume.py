"""Volume family: OBV, A/D, VPT and NVI in origin-free forms, Chaikin oscillator and money
flow, rolling and day-anchored VWAP distances, relative volume.

OBV, A/D, VPT and NVI are cumulative from wherever the frame starts, so their raw level
is not a feature (TA-Lib's OBV/AD/PVT/NVI return exactly that level, and a NaN poisons it
for good). They are emitted through their per-bar increments instead: a rolling slope
(sum of increments over N bars relative to volume) and a z-score of the level inside a
trailing window, which the increments determine without any origin. TA-Lib supplies
ADOSC, CMF, SUM, SMA, STDDEV and ATR. TA-Lib's VWAP is cumulative from the first row, so
the rolling and the UTC-day-anchored VWAP are computed here.

Convention kept from TA-Lib: a bar with high == low adds nothing to A/D (and to CMF).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import talib
from numba import njit

from perptrader.features.arrays import col, div
from perptrader.features.base import FeatureSpec
from perptrader.features.indicators_common import (
    build_family,
    ema_memory,
    lookback,
    wilder_memory,
    window_level_zscore,
)

INPUTS = ("high", "low", "close", "volume")
Z_WINDOW = 50
SLOPE_BARS = 20
VWAP_BARS = 20
#: the first (partial) UTC day of a frame is NaN for the day-anchored VWAP; at 1h that is
#: at most 23 rows. Finer timeframes have more rows per day (see DAY_MEMORY).
DAY_WARMUP_1H = 23
#: rows after which the day-anchored VWAP no longer depends on the frame start, for any
#: timeframe down to 1m (one full day of 1m bars)
DAY_MEMORY = 1440
ATR_LB, ATR_MEM = lookback("ATR", timeperiod=14), wilder_memory(14)

_CUMS = {
    "obv": "OBV increment = sign(close - close_(t-1)) volume",
    "ad": "A/D increment = volume ((close - low) - (high - close)) / (high - low)",
    "vpt": "VPT increment = volume (close / close_(t-1) - 1)",
    "nvi": "log NVI increment = log(close / close_(t-1)) if volume < volume_(t-1) else 0",
}


def _specs() -> tuple[FeatureSpec, ...]:
    s: list[FeatureSpec] = []
    for name, inc in _CUMS.items():
        s.append(FeatureSpec(
            f"volume_{name}_z{Z_WINDOW}",
            f"z-score of the cumulative level L over the last {Z_WINDOW} bars: (L_t - mean "
            f"L) / std L (population), L rebuilt from increments inside the window; {inc}",
            INPUTS, Z_WINDOW - 1))
    s += [
        FeatureSpec(f"volume_obv_slope{SLOPE_BARS}",
                    f"(OBV_t - OBV_(t-{SLOPE_BARS})) / sum{SLOPE_BARS}(volume) (-1..1)",
                    ("close", "volume"), SLOPE_BARS),
        FeatureSpec(f"volume_vpt_slope{SLOPE_BARS}",
                    f"(VPT_t - VPT_(t-{SLOPE_BARS})) / sum{SLOPE_BARS}(volume): volume-weighted "
                    "mean return", ("close", "volume"), SLOPE_BARS),
        FeatureSpec(f"volume_nvi_roc{SLOPE_BARS}",
                    f"log(NVI_t / NVI_(t-{SLOPE_BARS})): return earned on falling-volume bars",
                    ("close", "volume"), SLOPE_BARS),
        FeatureSpec("volume_adosc_rel",
                    "Chaikin oscillator EMA3(A/D) - EMA10(A/D), divided by SMA20(volume)",
                    INPUTS, max(lookback("ADOSC"), lookback("SMA", timeperiod=20)),
                    ema_memory(10)),
        FeatureSpec("volume_cmf20",
                    "CMF = sum20(volume (2 close - high - low) / (high - low)) / sum20(volume)",
                    INPUTS, lookback("CMF", timeperiod=20)),
        FeatureSpec(f"volume_vwap{VWAP_BARS}_dist_atr",
                    f"(close - VWAP{VWAP_BARS}) / ATR(14), VWAP{VWAP_BARS} = sum(tp volume) / "
                    f"sum(volume) over the last {VWAP_BARS} bars, tp = (h+l+c)/3", INPUTS,
                    max(VWAP_BARS - 1, ATR_LB), ATR_MEM),
        FeatureSpec("volume_vwap_day_dist_atr",
                    "(close - VWAP since 00:00 UTC of the bar's day) / ATR(14), VWAP = "
                    "sum(tp volume) / sum(volume); the frame's first partial day is NaN "
                    f"(warm-up {DAY_WARMUP_1H} rows at 1h, one day of bars in general)",
                    INPUTS, max(DAY_WARMUP_1H, ATR_LB), max(DAY_MEMORY, ATR_MEM)),
        FeatureSpec("volume_rel20", "volume / SMA20(volume)", ("volume",),
                    lookback("SMA", timeperiod=20)),
        FeatureSpec(f"volume_z{Z_WINDOW}",
                    f"(volume - SMA{Z_WINDOW}(volume)) / std{Z_WINDOW}(volume) (population)",
                    ("volume",), lookback("STDDEV", timeperiod=Z_WINDOW)),
    ]
    return tuple(s)


SPECS = _specs()


def increments(high: np.ndarray, low: np.ndarray, close: np.ndarray,
               volume: np.ndarray) -> dict[str, np.ndarray]:
    """Per-bar increments of OBV, A/D, VPT and log NVI (NaN where the prior bar is needed
    but absent, i.e. row 0 for all but A/D)."""
    prev_c = np.concatenate(([np.nan], close[:-1]))
    prev_v = np.concatenate(([np.nan], volume[:-1]))
    rng = high - low
    clv = np.zeros_like(close)
    np.divide((close - low) - (high - close), rng, out=clv, where=rng > 0)
    logret = np.log(div(close, prev_c))
    nvi = np.where(volume < prev_v, logret, 0.0)
    nvi[np.isnan(prev_v) | np.isnan(logret)] = np.nan
    return {
        "obv": np.sign(close - prev_c) * volume,
        "ad": clv * volume,
        "vpt": (div(close, prev_c) - 1.0) * volume,
        "nvi": nvi,
    }


@njit(cache=True)
def anchored_vwap(tpv: np.ndarray, vol: np.ndarray, new_anchor: np.ndarray) -> np.ndarray:
    """sum(tp volume) / sum(volume) since the last row where ``new_anchor`` is True.

    The sums restart at each anchor instead of differencing one long cumulative sum, so
    the value does not carry rounding from bars before the anchor. Zero volume -> NaN.
    """
    n = tpv.shape[0]
    out = np.full(n, np.nan)
    num = 0.0
    den = 0.0
    for t in range(n):
        if new_anchor[t]:
            num = 0.0
            den = 0.0
        num += tpv[t]
        den += vol[t]
        if den > 0.0:
            out[t] = num / den
    return out


def day_anchor(index: pd.Index) -> tuple[np.ndarray, np.ndarray]:
    """(new UTC day flags, mask of the frame's first partial day) for a bar-open index."""
    if not isinstance(index, pd.DatetimeIndex):
        raise TypeError("the day-anchored VWAP needs a DatetimeIndex of bar open times")
    day = index.tz_convert("UTC").floor("D") if index.tz is not None else index.floor("D")
    day_codes = day.asi8
    new = np.ones(len(index), dtype=np.bool_)
    new[1:] = day_codes[1:] != day_codes[:-1]
    partial = np.zeros(len(index), dtype=np.bool_)
    if len(index) and index[0] != day[0]:
        partial = day_codes == day_codes[0]
    return new, partial


def _raw(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    h, lo, c, v = (col(frame, k) for k in INPUTS)
    atr = talib.ATR(h, lo, c, 14)
    inc = increments(h, lo, c, v)
    out = {f"volume_{k}_z{Z_WINDOW}": window_level_zscore(inc[k], Z_WINDOW) for k in _CUMS}
    vsum = talib.SUM(v, SLOPE_BARS)
    out[f"volume_obv_slope{SLOPE_BARS}"] = div(talib.SUM(inc["obv"], SLOPE_BARS), vsum)
    out[f"volume_vpt_slope{SLOPE_BARS}"] = div(talib.SUM(inc["vpt"], SLOPE_BARS), vsum)
    out[f"volume_nvi_roc{SLOPE_BARS}"] = talib.SUM(inc["nvi"], SLOPE_BARS)
    out["volume_adosc_rel"] = div(talib.ADOSC(h, lo, c, v, 3, 10), talib.SMA(v, 20))
    out["volume_cmf20"] = talib.CMF(h, lo, c, v, 20)
    tpv = (h + lo + c) / 3.0 * v
    vwap = div(talib.SUM(tpv, VWAP_BARS), talib.SUM(v, VWAP_BARS))
    out[f"volume_vwap{VWAP_BARS}_dist_atr"] = div(c - vwap, atr)
    new_day, partial = day_anchor(frame.index)
    day_vwap = anchored_vwap(tpv, v, new_day)
    day_vwap[partial] = np.nan
    out["volume_vwap_day_dist_atr"] = div(c - day_vwap, atr)
    out["volume_rel20"] = div(v, talib.SMA(v, 20))
    out[f"volume_z{Z_WINDOW}"] = div(v - talib.SMA(v, Z_WINDOW), talib.STDDEV(v, Z_WINDOW))
    return out


VOLUME = build_family(
    "volume",
    "OBV/A-D/VPT/NVI z-scores and slopes, Chaikin oscillator, CMF, rolling and day VWAP "
    "distance in ATR, relative volume.",
    INPUTS, SPECS, _raw)

FAMILIES = (VOLUME,)
