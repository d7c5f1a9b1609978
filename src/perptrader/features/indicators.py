"""Technical indicators through TA-Lib as stationary ML features.

The families live in one module each (indicators_trend, _momentum, _volatility, _volume,
_pattern; shared plumbing in indicators_common); this module gathers them for the
registry. See indicators_common for the NaN-segment rule every family follows.
"""

from __future__ import annotations

from perptrader.features.base import Family
from perptrader.features.indicators_momentum import MOMENTUM
from perptrader.features.indicators_pattern import PATTERN
from perptrader.features.indicators_trend import TREND
from perptrader.features.indicators_volatility import VOLATILITY
from perptrader.features.indicators_volume import VOLUME

FAMILIES: tuple[Family, ...] = (TREND, MOMENTUM, VOLATILITY, VOLUME, PATTERN)

__all__ = ["FAMILIES", "MOMENTUM", "PATTERN", "TREND", "VOLATILITY", "VOLUME"]
