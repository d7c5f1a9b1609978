"""Higher-timeframe copies of a feature family, joined onto the base bars as of their close.

``mtf_family(candle, "4h", "1h")`` builds 4h bars from the 1h frame, computes ``candle``
on them and gives every 1h row the values of the latest 4h bar that had CLOSED by that
row's close: the 4h bar 00:00–04:00 is first visible on the 1h bar 03:00–04:00 (both
close at 04:00) and stays until the 1h bar 07:00–08:00 shows the next one. A 4h bar
still forming is never used, so the copy cannot look ahead.

Resampling is ``marketdata.resample.resample_bars``: buckets anchored at the epoch
(00:00 UTC for 4h and 1d) and COMPLETE buckets only. That is what makes the copy start
invariant: a frame cut in the middle of a bucket drops that first partial bucket rather
than building a 4h bar from three hours, so both frames see identical 4h bars from the
first whole bucket on. Buckets dropped for a hole in the data (or an unfinished one in
the middle) are put back on the higher-timeframe grid as NaN bars, so the inner family's
rolling windows still count time correctly and rows after a hole read "unknown" rather
than a stale value.

Only the bar columns (OHLC, volume, quote volume, trade count, taker buy volumes) can be
aggregated; an inner family needing anything else is refused when the copy is made.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from perptrader.core.timeframes import timeframe_ms
from perptrader.features.base import Family, FeatureContext, FeatureSpec
from perptrader.marketdata.dataset import TS_DTYPE
from perptrader.marketdata.resample import (
    BAR_COLUMNS,
    bucket_start,
    can_resample,
    resample_bars,
)


def mtf_warmup(inner_rows: int, ratio: int) -> int:
    """Base rows for ``inner_rows`` higher bars of history, worst-case alignment included.

    The first complete bucket starts at most ``ratio - 1`` rows into the frame, and the
    higher bar number j (0-based) becomes visible on the base row closing with it, the
    ``(j + 1) * ratio - 1``-th row after the bucket's start: (j + 2) * ratio - 2 rows.
    """
    return (inner_rows + 2) * ratio - 2


def higher_frame(frame: pd.DataFrame, base_tf: str, higher_tf: str) -> pd.DataFrame:
    """Complete ``higher_tf`` bars of ``frame``'s bar columns on a gap-free bucket grid.

    The grid runs from the first complete bucket to the last bucket that has closed by
    the close of the frame's last row; buckets that are incomplete (a hole) are NaN rows.
    """
    cols = [c for c in BAR_COLUMNS if c in frame.columns]
    bars = resample_bars(frame[cols], base_tf, higher_tf)
    if bars.empty:
        return bars
    step = pd.Timedelta(milliseconds=timeframe_ms(higher_tf))
    last_close = frame.index[-1] + pd.Timedelta(milliseconds=timeframe_ms(base_tf))
    # the last bucket that has closed by last_close is the one holding last_close - step
    last_start_us = bucket_start(pd.DatetimeIndex([last_close - step]), higher_tf)[0]
    last_start = pd.Timestamp(int(last_start_us), unit="us", tz="UTC")
    grid = pd.date_range(bars.index[0], last_start, freq=step, name="ts").astype(TS_DTYPE)
    return bars.reindex(grid)


def mtf_family(inner: Family, higher_tf: str, base_tf: str) -> Family:
    """``inner`` computed on complete ``higher_tf`` bars, joined as of their close.

    Column ``htf<higher_tf>_<inner column>``, family ``htf<higher_tf>_<inner.name>``.
    Raises ValueError when ``higher_tf`` is not a whole multiple of ``base_tf`` on the same
    bucket grid, or when ``inner`` needs a column that is not a bar column.
    """
    if timeframe_ms(higher_tf) <= timeframe_ms(base_tf) or not can_resample(base_tf, higher_tf):
        raise ValueError(f"cannot copy {inner.name!r} to {higher_tf}: not a whole multiple "
                         f"of {base_tf} above it on the same grid")
    other = [c for c in inner.requires if c not in BAR_COLUMNS]
    if other:
        raise ValueError(f"family {inner.name!r} needs {other}, which cannot be resampled "
                         f"from {base_tf} to {higher_tf} bars")
    ratio = timeframe_ms(higher_tf) // timeframe_ms(base_tf)
    prefix = f"htf{higher_tf}_"
    base_us = timeframe_ms(base_tf) * 1000
    higher_us = timeframe_ms(higher_tf) * 1000

    specs = tuple(
        FeatureSpec(
            name=prefix + s.name,
            formula=f"{s.formula}; on complete {higher_tf} bars, as of the {higher_tf} "
                    f"bar close",
            inputs=s.inputs,
            warmup=mtf_warmup(s.warmup, ratio),
            memory=None if s.memory is None else mtf_warmup(s.history, ratio),
        )
        for s in inner.specs
    )

    def check_timeframe(ctx: FeatureContext) -> None:
        if ctx.timeframe != base_tf:
            raise ValueError(f"{prefix}{inner.name} is built for {base_tf} bars, "
                             f"not {ctx.timeframe}")

    def available(frame: pd.DataFrame, ctx: FeatureContext) -> bool:
        if ctx.timeframe != base_tf:
            return False
        cols = [c for c in BAR_COLUMNS if c in frame.columns]
        return inner.is_available(frame[cols], replace(ctx, timeframe=higher_tf))

    def compute(frame: pd.DataFrame, ctx: FeatureContext) -> pd.DataFrame:
        check_timeframe(ctx)
        names = [s.name for s in specs]
        bars = higher_frame(frame, base_tf, higher_tf)
        if bars.empty:
            return pd.DataFrame(np.nan, index=frame.index, columns=names)
        values = inner.run(bars, replace(ctx, timeframe=higher_tf)).to_numpy("float64")
        higher_close = bars.index.as_unit("us").asi8 + higher_us
        base_close = frame.index.as_unit("us").asi8 + base_us
        # latest higher bar with close <= the base row's close; -1 where none has closed
        pos = np.searchsorted(higher_close, base_close, side="right") - 1
        joined = np.full((len(frame), len(names)), np.nan)
        seen = pos >= 0
        joined[seen] = values[pos[seen]]
        return pd.DataFrame(joined, index=frame.index, columns=names)

    return Family(
        name=f"htf{higher_tf}_{inner.name}",
        description=f"{inner.description} On complete {higher_tf} bars, joined as of their "
                    f"close.",
        requires=inner.requires,
        specs=specs,
        compute=compute,
        available=available,
        tags=(*inner.tags, "mtf"),
    )


#: higher-timeframe copies are made by the feature sets (``features.sets``), which pick
#: the inner families and timeframes; this module defines none of its own
FAMILIES: tuple[Family, ...] = ()
