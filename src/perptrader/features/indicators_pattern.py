"""Pattern family: every TA-Lib candlestick recogniser as a signed float column.

TA-Lib answers +100 (bullish), -100 (bearish), +-80 for the weaker variant some patterns
report (engulfing, harami) and +-200 for the Hikkake patterns once confirmed; dividing by
100 keeps those distinctions (+-1, +-0.8, +-2) while putting the common case at +-1.
TA-Lib returns 0 (not NaN) during a pattern's lookback; the family blanks those rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import talib

from perptrader.features.arrays import col
from perptrader.features.base import FeatureSpec
from perptrader.features.indicators_common import build_family, lookback

INPUTS = ("open", "high", "low", "close")
#: TA-Lib's candlestick functions (61 in TA-Lib 0.8.2), in TA-Lib's order
FUNCTIONS: tuple[str, ...] = tuple(talib.get_function_groups()["Pattern Recognition"])


def column_name(function: str) -> str:
    """``CDLENGULFING`` -> ``pattern_engulfing``."""
    return "pattern_" + function.removeprefix("CDL").lower()


def _spec(function: str) -> FeatureSpec:
    info = talib.abstract.Function(function).info
    params = ", ".join(f"{k}={v}" for k, v in info["parameters"].items())
    call = f"talib.{function}(open, high, low, close{', ' + params if params else ''})"
    return FeatureSpec(column_name(function),
                       f"{call} / 100: {info['display_name']} (+1 bullish, -1 bearish, 0 none)",
                       INPUTS, lookback(function))


SPECS = tuple(_spec(f) for f in FUNCTIONS)


def _raw(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    o, h, lo, c = (col(frame, k) for k in INPUTS)
    return {column_name(f): getattr(talib, f)(o, h, lo, c) / 100.0 for f in FUNCTIONS}


PATTERN = build_family(
    "pattern",
    "All TA-Lib candlestick patterns as -1/0/+1 (value / 100).",
    INPUTS, SPECS, _raw)

FAMILIES = (PATTERN,)
