"""Trend family: moving-average distances and slopes, MACD, ADX/DI, Supertrend, Ichimoku.

Every price-unit quantity is divided by ATR(14) (Wilder) so the features are comparable
across price levels and regimes; slopes are percent changes. TA-Lib computes everything it
has (SMA, EMA, ATR, MACD, ADX, PLUS_DI, MINUS_DI, SUPERTREND, MIDPRICE); only the
Ichimoku displacement is done here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import talib

from perptrader.features.arrays import col, div, shift
from perptrader.features.base import FeatureSpec
from perptrader.features.indicators_common import (
    build_family,
    ema_memory,
    lookback,
    pct_change,
    wilder_memory,
)

INPUTS = ("high", "low", "close")
HLC = INPUTS
MA_PERIODS = (10, 20, 50, 200)
SLOPE_BARS = 5
ATR_PERIOD = 14
ST_PERIOD, ST_MULT = 10, 3.0
#: Supertrend's ratchet (final bands) is path-dependent; on the real BTC 1h data and the
#: synthetic frames two starts agree once their ATRs have converged and one band reset
#: has happened, which takes well under this many extra rows (measured, not a bound).
ST_STATE_ROWS = 300
TENKAN, KIJUN, SENKOU_B, DISPLACE = 9, 26, 52, 26

ATR_LB = lookback("ATR", timeperiod=ATR_PERIOD)
ATR_MEM = wilder_memory(ATR_PERIOD)


def _specs() -> tuple[FeatureSpec, ...]:
    s: list[FeatureSpec] = []
    for n in MA_PERIODS:
        for kind, mem in (("sma", ATR_MEM), ("ema", max(ATR_MEM, ema_memory(n)))):
            lb = lookback(kind.upper(), timeperiod=n)
            s.append(FeatureSpec(
                f"trend_close_{kind}{n}_atr",
                f"(close - {kind.upper()}(close, {n})) / ATR(high, low, close, {ATR_PERIOD})",
                HLC, max(lb, ATR_LB), mem))
    for n in MA_PERIODS:
        for kind in ("sma", "ema"):
            lb = lookback(kind.upper(), timeperiod=n)
            mem = None if kind == "sma" else ema_memory(n) + SLOPE_BARS
            s.append(FeatureSpec(
                f"trend_{kind}{n}_slope{SLOPE_BARS}",
                f"{kind.upper()}(close, {n})_t / {kind.upper()}(close, {n})_(t-{SLOPE_BARS}) - 1",
                ("close",), lb + SLOPE_BARS, mem))
    for fast, slow, kind in ((20, 50, "ema"), (50, 200, "ema"), (50, 200, "sma")):
        lb = lookback(kind.upper(), timeperiod=slow)
        mem = ATR_MEM if kind == "sma" else max(ATR_MEM, ema_memory(slow))
        s.append(FeatureSpec(
            f"trend_{kind}{fast}_{kind}{slow}_atr",
            f"({kind.upper()}(close, {fast}) - {kind.upper()}(close, {slow})) / ATR(14)",
            HLC, max(lb, ATR_LB), mem))
    macd_lb = lookback("MACD")
    macd_mem = max(ATR_MEM, ema_memory(26) + ema_memory(9))
    for out, what in (("macd", "MACD line = EMA(close,12) - EMA(close,26)"),
                      ("macd_signal", "signal = EMA(MACD line, 9)"),
                      ("macd_hist", "histogram = MACD line - signal")):
        s.append(FeatureSpec(f"trend_{out}_atr", f"{what}, divided by ATR(14)", HLC,
                             max(macd_lb, ATR_LB), macd_mem))
    adx_mem = 2 * wilder_memory(14)
    s.append(FeatureSpec("trend_adx14", "ADX(high, low, close, 14) (Wilder, 0..100)", HLC,
                         lookback("ADX", timeperiod=14), adx_mem))
    s.append(FeatureSpec("trend_plus_di14", "+DI(high, low, close, 14) (Wilder, 0..100)", HLC,
                         lookback("PLUS_DI", timeperiod=14), wilder_memory(14)))
    s.append(FeatureSpec("trend_minus_di14", "-DI(high, low, close, 14) (Wilder, 0..100)", HLC,
                         lookback("MINUS_DI", timeperiod=14), wilder_memory(14)))
    st_lb = lookback("SUPERTREND", timeperiod=ST_PERIOD, multiplier=ST_MULT)
    st_mem = wilder_memory(ST_PERIOD) + ST_STATE_ROWS
    s.append(FeatureSpec(
        "trend_supertrend_dir",
        f"Supertrend({ST_PERIOD}, {ST_MULT}) direction: +1 up (line = final lower band "
        f"hl2 - {ST_MULT} ATR({ST_PERIOD}) ratcheted up), -1 down", HLC, st_lb, st_mem))
    s.append(FeatureSpec(
        "trend_supertrend_dist_atr",
        f"(close - Supertrend({ST_PERIOD}, {ST_MULT}) line) / ATR(14)", HLC,
        max(st_lb, ATR_LB), max(st_mem, ATR_MEM)))
    tk_lb = max(TENKAN, KIJUN) - 1
    cloud_lb = SENKOU_B - 1 + DISPLACE
    s += [
        FeatureSpec("trend_ichi_close_tenkan_atr",
                    f"(close - tenkan) / ATR(14), tenkan = (HH{TENKAN} + LL{TENKAN}) / 2",
                    HLC, max(TENKAN - 1, ATR_LB), ATR_MEM),
        FeatureSpec("trend_ichi_close_kijun_atr",
                    f"(close - kijun) / ATR(14), kijun = (HH{KIJUN} + LL{KIJUN}) / 2",
                    HLC, max(KIJUN - 1, ATR_LB), ATR_MEM),
        FeatureSpec("trend_ichi_tenkan_kijun_atr", "(tenkan - kijun) / ATR(14)", HLC,
                    max(tk_lb, ATR_LB), ATR_MEM),
        FeatureSpec("trend_ichi_cloud_pos_atr",
                    f"close above the cloud: (close - max(spanA, spanB)) / ATR(14); below: "
                    f"(close - min(spanA, spanB)) / ATR(14); inside: 0. spans as plotted "
                    f"at t, i.e. computed at t-{DISPLACE}: spanA = (tenkan + kijun)_(t-"
                    f"{DISPLACE}) / 2, spanB = (HH{SENKOU_B} + LL{SENKOU_B})_(t-{DISPLACE}) / 2",
                    HLC, cloud_lb, ATR_MEM),
        FeatureSpec("trend_ichi_cloud_thickness_atr",
                    "(spanA - spanB) / ATR(14) at t (signed: > 0 bullish cloud)", HLC,
                    cloud_lb, ATR_MEM),
    ]
    return tuple(s)


SPECS = _specs()


def ichimoku(high: np.ndarray, low: np.ndarray, close: np.ndarray,
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """tenkan, kijun and the two senkou spans *as plotted at t* (no chikou: it looks ahead).

    The spans drawn at bar t were computed DISPLACE bars earlier, so shifting them forward
    by DISPLACE uses only data up to t - DISPLACE; nothing from after t enters.
    """
    tenkan = talib.MIDPRICE(high, low, TENKAN)
    kijun = talib.MIDPRICE(high, low, KIJUN)
    span_a = shift((tenkan + kijun) / 2.0, DISPLACE)
    span_b = shift(talib.MIDPRICE(high, low, SENKOU_B), DISPLACE)
    return tenkan, kijun, span_a, span_b


def _raw(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    h, lo, c = col(frame, "high"), col(frame, "low"), col(frame, "close")
    atr = talib.ATR(h, lo, c, ATR_PERIOD)
    out: dict[str, np.ndarray] = {}
    ma = {}
    for n in MA_PERIODS:
        ma[("sma", n)] = talib.SMA(c, n)
        ma[("ema", n)] = talib.EMA(c, n)
    for (kind, n), m in ma.items():
        out[f"trend_close_{kind}{n}_atr"] = div(c - m, atr)
        out[f"trend_{kind}{n}_slope{SLOPE_BARS}"] = pct_change(m, SLOPE_BARS)
    for fast, slow, kind in ((20, 50, "ema"), (50, 200, "ema"), (50, 200, "sma")):
        out[f"trend_{kind}{fast}_{kind}{slow}_atr"] = div(ma[(kind, fast)] - ma[(kind, slow)], atr)
    macd, signal, hist = talib.MACD(c, 12, 26, 9)
    out["trend_macd_atr"] = div(macd, atr)
    out["trend_macd_signal_atr"] = div(signal, atr)
    out["trend_macd_hist_atr"] = div(hist, atr)
    out["trend_adx14"] = talib.ADX(h, lo, c, 14)
    out["trend_plus_di14"] = talib.PLUS_DI(h, lo, c, 14)
    out["trend_minus_di14"] = talib.MINUS_DI(h, lo, c, 14)
    line, direction = talib.SUPERTREND(h, lo, c, ST_PERIOD, ST_MULT)
    # TA-Lib reports trend 0 during its lookback; the warm-up mask turns that into NaN
    out["trend_supertrend_dir"] = direction.astype(np.float64)
    out["trend_supertrend_dist_atr"] = div(c - line, atr)
    tenkan, kijun, span_a, span_b = ichimoku(h, lo, c)
    out["trend_ichi_close_tenkan_atr"] = div(c - tenkan, atr)
    out["trend_ichi_close_kijun_atr"] = div(c - kijun, atr)
    out["trend_ichi_tenkan_kijun_atr"] = div(tenkan - kijun, atr)
    top, bottom = np.fmax(span_a, span_b), np.fmin(span_a, span_b)
    top[np.isnan(span_a) | np.isnan(span_b)] = np.nan
    bottom[np.isnan(top)] = np.nan
    pos = np.where(c > top, c - top, np.where(c < bottom, c - bottom, 0.0))
    pos[np.isnan(top)] = np.nan
    out["trend_ichi_cloud_pos_atr"] = div(pos, atr)
    out["trend_ichi_cloud_thickness_atr"] = div(span_a - span_b, atr)
    return out


TREND = build_family(
    "trend",
    "Moving-average distances/slopes, MACD, ADX/DI, Supertrend and Ichimoku in ATR units.",
    INPUTS, SPECS, _raw)

FAMILIES = (TREND,)
