"""Volatility family: Bollinger, ATR/NATR, Keltner, Donchian, ATR term structure.

Channel features are emitted as a position in the channel (0 at the lower band, 1 at
the upper band, outside [0, 1] on a breakout) and a width relative to the middle line,
both free of the price level. TA-Lib computes BBANDS, NATR, ATR, KC and DONCHIAN.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import talib

from perptrader.features.arrays import col, div
from perptrader.features.base import FeatureSpec
from perptrader.features.indicators_common import build_family, ema_memory, lookback, wilder_memory

INPUTS = ("high", "low", "close")
HLC = INPUTS
BB_PERIOD, BB_DEV = 20, 2.0
KC_PERIOD, KC_ATR, KC_MULT = 20, 10, 2.0
DONCHIAN = (20, 55)
ATR_SHORT, ATR_LONG = 14, 50


def _specs() -> tuple[FeatureSpec, ...]:
    bb_lb = lookback("BBANDS", timeperiod=BB_PERIOD)
    kc_lb = lookback("KC", timeperiod=KC_PERIOD, atrperiod=KC_ATR, nbdev=KC_MULT)
    kc_mem = max(ema_memory(KC_PERIOD), wilder_memory(KC_ATR))
    s = [
        FeatureSpec("volatility_bb_pctb",
                    f"%B = (close - lower) / (upper - lower), bands = SMA{BB_PERIOD}(close) "
                    f"+- {BB_DEV} population std{BB_PERIOD}(close)", ("close",), bb_lb),
        FeatureSpec("volatility_bb_width", "(upper - lower) / SMA20(close) (Bollinger 20, 2)",
                    ("close",), bb_lb),
        FeatureSpec("volatility_natr14", "NATR = 100 ATR(high, low, close, 14) / close", HLC,
                    lookback("NATR", timeperiod=14), wilder_memory(14)),
        FeatureSpec(f"volatility_atr_ratio_{ATR_SHORT}_{ATR_LONG}",
                    f"ATR({ATR_SHORT}) / ATR({ATR_LONG}) (Wilder; > 1 = volatility expanding)",
                    HLC, lookback("ATR", timeperiod=ATR_LONG), wilder_memory(ATR_LONG)),
        FeatureSpec("volatility_kc_pos",
                    f"(close - lower) / (upper - lower), Keltner = EMA{KC_PERIOD}(tp) +- "
                    f"{KC_MULT} ATR({KC_ATR}), tp = (h+l+c)/3", HLC, kc_lb, kc_mem),
        FeatureSpec("volatility_kc_width", "(upper - lower) / EMA20(tp) (Keltner 20, ATR10, 2)",
                    HLC, kc_lb, kc_mem),
        FeatureSpec("volatility_squeeze",
                    "1 when the Bollinger(20, 2) bands lie inside the Keltner(20, 10, 2) "
                    "channel (upper_bb < upper_kc and lower_bb > lower_kc), else 0", HLC,
                    max(bb_lb, kc_lb), kc_mem),
    ]
    for n in DONCHIAN:
        dc_lb = lookback("DONCHIAN", timeperiod=n)
        s += [
            FeatureSpec(f"volatility_dc{n}_pos",
                        f"(close - LL{n}) / (HH{n} - LL{n}), HH/LL over the last {n} bars "
                        "including t (0..1)", HLC, dc_lb),
            FeatureSpec(f"volatility_dc{n}_width", f"(HH{n} - LL{n}) / ((HH{n} + LL{n}) / 2)",
                        ("high", "low"), dc_lb),
        ]
    return tuple(s)


SPECS = _specs()


def _raw(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    h, lo, c = col(frame, "high"), col(frame, "low"), col(frame, "close")
    out: dict[str, np.ndarray] = {}
    bb_up, bb_mid, bb_lo = talib.BBANDS(c, BB_PERIOD, BB_DEV, BB_DEV, 0)
    out["volatility_bb_pctb"] = div(c - bb_lo, bb_up - bb_lo)
    out["volatility_bb_width"] = div(bb_up - bb_lo, bb_mid)
    out["volatility_natr14"] = talib.NATR(h, lo, c, 14)
    out[f"volatility_atr_ratio_{ATR_SHORT}_{ATR_LONG}"] = div(
        talib.ATR(h, lo, c, ATR_SHORT), talib.ATR(h, lo, c, ATR_LONG))
    kc_up, kc_mid, kc_lo = talib.KC(h, lo, c, KC_PERIOD, KC_ATR, KC_MULT)
    out["volatility_kc_pos"] = div(c - kc_lo, kc_up - kc_lo)
    out["volatility_kc_width"] = div(kc_up - kc_lo, kc_mid)
    squeeze = ((bb_up < kc_up) & (bb_lo > kc_lo)).astype(np.float64)
    squeeze[np.isnan(bb_up) | np.isnan(kc_up)] = np.nan
    out["volatility_squeeze"] = squeeze
    for n in DONCHIAN:
        dc_up, dc_mid, dc_lo = talib.DONCHIAN(h, lo, n)
        out[f"volatility_dc{n}_pos"] = div(c - dc_lo, dc_up - dc_lo)
        out[f"volatility_dc{n}_width"] = div(dc_up - dc_lo, dc_mid)
    return out


VOLATILITY = build_family(
    "volatility",
    "Bollinger %B/width, NATR, ATR short/long ratio, Keltner and Donchian position/width, "
    "BB-inside-KC squeeze flag.",
    INPUTS, SPECS, _raw)

FAMILIES = (VOLATILITY,)
