"""Momentum family: bounded oscillators and rates of change, all straight from TA-Lib.

Oscillators keep TA-Lib's native scale (RSI, Stochastic, MFI, ADX-style 0..100; Williams
%R -100..0; CCI unbounded around 0) because that is the scale a quant checks them in;
price-unit outputs (MOM, APO) are divided by ATR(14). Where TA-Lib meets a zero range
(high == low) it returns 0 rather than dividing (BOP, Williams %R, Stochastic); that
convention is kept and cannot produce infinities.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import talib

from perptrader.features.arrays import col, div
from perptrader.features.base import FeatureSpec
from perptrader.features.indicators_common import build_family, ema_memory, lookback, wilder_memory

INPUTS = ("open", "high", "low", "close", "volume")
HLC = ("high", "low", "close")
ROC_PERIODS = (1, 5, 10, 20, 50)
ATR_LB, ATR_MEM = lookback("ATR", timeperiod=14), wilder_memory(14)


def _specs() -> tuple[FeatureSpec, ...]:
    s = [FeatureSpec(f"momentum_rsi{n}", f"RSI(close, {n}) (Wilder, 0..100)", ("close",),
                     lookback("RSI", timeperiod=n), wilder_memory(n)) for n in (14, 28)]
    # TA-Lib aligns %K with %D: both start after the %D lookback
    stoch_lb = lookback("STOCH", fastk_period=14, slowk_period=3, slowd_period=3)
    s += [
        FeatureSpec("momentum_stoch_k",
                    "slow %K = SMA3(100 (close - LL14) / (HH14 - LL14)) (0..100)", HLC,
                    stoch_lb),
        FeatureSpec("momentum_stoch_d", "slow %D = SMA3(slow %K) (0..100)", HLC, stoch_lb),
    ]
    srsi_lb = lookback("STOCHRSI", timeperiod=14, fastk_period=14, fastd_period=3)
    s += [
        FeatureSpec("momentum_stochrsi_k",
                    "StochRSI %K = 100 (RSI14 - min14 RSI14) / (max14 RSI14 - min14 RSI14)",
                    ("close",), srsi_lb, wilder_memory(14) + 16),
        FeatureSpec("momentum_stochrsi_d", "StochRSI %D = SMA3(StochRSI %K)", ("close",),
                    srsi_lb, wilder_memory(14) + 16),
        FeatureSpec("momentum_willr14", "Williams %R = -100 (HH14 - close) / (HH14 - LL14)",
                    HLC, lookback("WILLR", timeperiod=14)),
        FeatureSpec("momentum_cci20",
                    "CCI = (tp - SMA20(tp)) / (0.015 mean|tp - SMA20(tp)|), tp = (h+l+c)/3",
                    HLC, lookback("CCI", timeperiod=20)),
        FeatureSpec("momentum_mfi14",
                    "MFI = 100 - 100 / (1 + sum14 pos. money flow / sum14 neg. money flow), "
                    "money flow = tp * volume signed by the change of tp",
                    ("high", "low", "close", "volume"), lookback("MFI", timeperiod=14)),
    ]
    s += [FeatureSpec(f"momentum_roc{n}", f"ROC = 100 (close / close_(t-{n}) - 1)", ("close",),
                      lookback("ROC", timeperiod=n)) for n in ROC_PERIODS]
    s += [
        FeatureSpec("momentum_mom10_atr", "(close - close_(t-10)) / ATR(14)", HLC,
                    max(lookback("MOM", timeperiod=10), ATR_LB), ATR_MEM),
        FeatureSpec("momentum_ultosc",
                    "Ultimate Oscillator(7, 14, 28) = 100 (4 A7 + 2 A14 + A28) / 7, "
                    "A_n = sum_n buying pressure / sum_n true range", HLC,
                    lookback("ULTOSC")),
        FeatureSpec("momentum_ppo", "PPO = 100 (EMA12(close) - EMA26(close)) / EMA26(close)",
                    ("close",), lookback("PPO", matype=1), ema_memory(26)),
        FeatureSpec("momentum_apo_atr", "APO = (EMA12(close) - EMA26(close)) / ATR(14)", HLC,
                    max(lookback("APO", matype=1), ATR_LB), max(ema_memory(26), ATR_MEM)),
        FeatureSpec("momentum_aroonosc14",
                    "Aroon up(14) - Aroon down(14), bars since 14-bar high/low (-100..100)",
                    ("high", "low"), lookback("AROONOSC", timeperiod=14)),
        FeatureSpec("momentum_bop", "balance of power = (close - open) / (high - low)",
                    ("open", "high", "low", "close"), lookback("BOP")),
        FeatureSpec("momentum_cmo14",
                    "CMO = 100 (sum up-moves - sum down-moves) / (sum up + sum down), Wilder 14",
                    ("close",), lookback("CMO", timeperiod=14), wilder_memory(14)),
    ]
    return tuple(s)


SPECS = _specs()


def _raw(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    o, h, lo = col(frame, "open"), col(frame, "high"), col(frame, "low")
    c, v = col(frame, "close"), col(frame, "volume")
    atr = talib.ATR(h, lo, c, 14)
    out = {f"momentum_rsi{n}": talib.RSI(c, n) for n in (14, 28)}
    out["momentum_stoch_k"], out["momentum_stoch_d"] = talib.STOCH(h, lo, c, 14, 3, 0, 3, 0)
    out["momentum_stochrsi_k"], out["momentum_stochrsi_d"] = talib.STOCHRSI(c, 14, 14, 3, 0)
    out["momentum_willr14"] = talib.WILLR(h, lo, c, 14)
    out["momentum_cci20"] = talib.CCI(h, lo, c, 20)
    out["momentum_mfi14"] = talib.MFI(h, lo, c, v, 14)
    for n in ROC_PERIODS:
        out[f"momentum_roc{n}"] = talib.ROC(c, n)
    out["momentum_mom10_atr"] = div(talib.MOM(c, 10), atr)
    out["momentum_ultosc"] = talib.ULTOSC(h, lo, c, 7, 14, 28)
    out["momentum_ppo"] = talib.PPO(c, 12, 26, 1)
    out["momentum_apo_atr"] = div(talib.APO(c, 12, 26, 1), atr)
    out["momentum_aroonosc14"] = talib.AROONOSC(h, lo, 14)
    out["momentum_bop"] = talib.BOP(o, h, lo, c)
    out["momentum_cmo14"] = talib.CMO(c, 14)
    return out


MOMENTUM = build_family(
    "momentum",
    "RSI, Stochastic, StochRSI, Williams %R, CCI, MFI, ROC, MOM/ATR, ULTOSC, PPO/APO, "
    "Aroon, BOP, CMO (TA-Lib).",
    INPUTS, SPECS, _raw)

FAMILIES = (MOMENTUM,)
