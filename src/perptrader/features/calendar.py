"""Time features: where a bar sits in the day, the week and the standard funding grid.

Crypto trades around the clock, but its activity does not: volume and volatility follow
the Asian / European / US sessions, weekends are thinner, and perpetual prices drift
around funding settlements (positions are closed just before a settlement to avoid
paying it). One family:

* ``time`` reads nothing but the index. Hour of day and day of week are those of the
  bar's OPEN time (its index label). They are a property of the bar, known before it
  even starts, so they cannot leak; and "the 14:00 bar" is the 14:00–15:00 session
  interval whatever the timeframe, whereas its close time would put a 1h bar and a 4h
  bar starting at 14:00 in different hours. Cyclical sin/cos encodings keep 23:00 next
  to 00:00. The position in the funding cycle uses Binance's standard 8h UTC grid
  (settlements at 00:00, 08:00, 16:00) measured from the bar CLOSE — the moment a
  decision is taken — since what matters for a position opened then is how long until
  the next settlement it would pay or receive.

The symbol's OWN funding cycle (from the stored settlement time and interval, so 4h
and 1h intervals and interval changes are followed) is ``funding_phase`` and
``funding_hours_to_next`` of the ``funding`` family (``derivatives_funding.py``),
present only when funding data is stored.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from perptrader.core.timeframes import timeframe_ms
from perptrader.features.arrays import block_frame
from perptrader.features.base import Family, FeatureContext, FeatureSpec

_US_PER_HOUR = 3_600_000_000
_US_PER_DAY = 24 * _US_PER_HOUR
#: Binance's standard funding grid: every 8h from 00:00 UTC
GRID_HOURS = 8
_TWO_PI = 2.0 * np.pi


def _epoch_us(index: pd.Index) -> np.ndarray:
    if not isinstance(index, pd.DatetimeIndex):
        raise ValueError("time features need a DatetimeIndex of bar open times")
    if index.tz is None:
        raise ValueError("time features need a tz-aware (UTC) index")
    return index.tz_convert("UTC").as_unit("us").asi8.astype(np.int64)


def compute_time(frame: pd.DataFrame, ctx: FeatureContext) -> pd.DataFrame:
    opens = _epoch_us(frame.index)
    hour = (opens % _US_PER_DAY) / _US_PER_HOUR  # fractional: 13:30 -> 13.5
    # 1970-01-01 was a Thursday: Monday = 0 needs an offset of 3 days
    dow = ((opens // _US_PER_DAY) + 3) % 7
    closes = opens + timeframe_ms(ctx.timeframe) * 1000
    grid = GRID_HOURS * _US_PER_HOUR
    phase = (closes % grid) / grid
    out = {
        "time_hour_sin": np.sin(_TWO_PI * hour / 24.0),
        "time_hour_cos": np.cos(_TWO_PI * hour / 24.0),
        "time_dow_sin": np.sin(_TWO_PI * dow / 7.0),
        "time_dow_cos": np.cos(_TWO_PI * dow / 7.0),
        "time_weekend": (dow >= 5).astype("float64"),
        "time_grid_funding_phase": phase,
        "time_grid_hours_to_funding": (1.0 - phase) * GRID_HOURS,
    }
    return block_frame(frame, out)


TIME = Family(
    name="time",
    description="Hour of day and day of week of the bar open (sin/cos), weekend flag, and "
                "the position in the standard 8h UTC funding grid at the bar close.",
    requires=(),
    specs=(
        FeatureSpec("time_hour_sin", "sin(2 pi hour(open) / 24), hour fractional UTC", (), 0),
        FeatureSpec("time_hour_cos", "cos(2 pi hour(open) / 24), hour fractional UTC", (), 0),
        FeatureSpec("time_dow_sin", "sin(2 pi dow(open) / 7), Monday = 0, UTC", (), 0),
        FeatureSpec("time_dow_cos", "cos(2 pi dow(open) / 7), Monday = 0, UTC", (), 0),
        FeatureSpec("time_weekend", "1 if the bar opens on Saturday or Sunday (UTC) else 0",
                    (), 0),
        FeatureSpec("time_grid_funding_phase",
                    "((open + timeframe) mod 8h) / 8h: share of the standard 00/08/16 UTC "
                    "funding interval elapsed at the bar close, in [0, 1)", (), 0),
        FeatureSpec("time_grid_hours_to_funding",
                    "hours from the bar close to the next 00/08/16 UTC settlement, in (0, 8]",
                    (), 0),
    ),
    compute=compute_time,
    tags=("time",),
)

FAMILIES: tuple[Family, ...] = (TIME,)
