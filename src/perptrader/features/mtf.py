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

Several copies at one higher timeframe (4h vsa, candle, rangevol, momentum) share ONE
resample inside ``features.shared.shared_frame(base)``: the pipeline opens it around a
build (every family gets the same frame) and the live path around a bar (every family
gets a registered suffix of its buffer, its own tail). A copy given a suffix of ``base``
takes the higher bars whose buckets lie wholly inside the suffix, which are exactly the
bars ``higher_frame`` builds from the suffix itself (a bucket's bar depends only on its
own source rows).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from perptrader.core.timeframes import timeframe_ms
from perptrader.features import shared
from perptrader.features.arrays import block_frame, col, column_index
from perptrader.features.base import Family, FeatureContext, FeatureSpec
from perptrader.marketdata.dataset import TS_DTYPE
from perptrader.marketdata.resample import (
    BAR_COLUMNS,
    anchor_ms,
    bucket_start,
    can_resample,
    resample_bars,
    resample_sorted,
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
    return _grid_bars(frame, base_tf, higher_tf)[0]


def _grid_bars(frame: pd.DataFrame, base_tf: str, higher_tf: str
               ) -> tuple[pd.DataFrame, np.ndarray]:
    """``higher_frame`` and which of its rows are complete buckets (not grid holes)."""
    # resample_bars reads only the bar columns (no copy of them needed)
    bars = resample_bars(frame, base_tf, higher_tf)
    if bars.empty:
        return bars, np.zeros(0, dtype=bool)
    step = pd.Timedelta(milliseconds=timeframe_ms(higher_tf))
    last_close = frame.index[-1] + pd.Timedelta(milliseconds=timeframe_ms(base_tf))
    # the last bucket that has closed by last_close is the one holding last_close - step
    last_start_us = bucket_start(pd.DatetimeIndex([last_close - step]), higher_tf)[0]
    starts_us = bars.index.as_unit("us").asi8
    slots = (int(last_start_us) - int(starts_us[0])) // (timeframe_ms(higher_tf) * 1000) + 1
    if len(bars) == slots and bars.index.name == "ts":
        # no hole: the complete buckets ARE the grid (they all start on it, none after
        # the last closed one), so the reindex would change nothing
        return bars, np.ones(len(bars), dtype=bool)
    last_start = pd.Timestamp(int(last_start_us), unit="us", tz="UTC")
    grid = pd.date_range(bars.index[0], last_start, freq=step, name="ts").astype(TS_DTYPE)
    present = np.isin(grid.as_unit("us").asi8, starts_us)
    return bars.reindex(grid), present


def _higher_bars(frame: pd.DataFrame, base_tf: str, higher_tf: str,
                 columns: tuple[str, ...] | None) -> pd.DataFrame:
    """``higher_frame(frame, ...)``, shared where it can be (``_suffix_bars``)."""
    return _suffix_bars(frame, base_tf, higher_tf, columns)[0]


def _suffix_bars(frame: pd.DataFrame, base_tf: str, higher_tf: str,
                 columns: tuple[str, ...] | None) -> tuple[pd.DataFrame, tuple | None]:
    """``higher_frame(frame, ...)``: sliced from the shared resample of the base when
    ``frame`` is a registered suffix of it (``features.shared``), and there holding
    only ``columns`` when given (each bar column is aggregated on its own, so the
    columns kept have the same values); without ``attrs`` (pandas would deep-copy them
    on every operation of the inner family). Also the key of that shared resample
    (None when not shared): the bars are a suffix of it."""
    n = shared.suffix_rows(frame)
    if n is None or n == 0:
        bars = higher_frame(frame, base_tf, higher_tf)
        bars.attrs = {}
        return bars, None
    key = ("mtf", base_tf, higher_tf, columns)
    bars, present = _shared_grid(key)
    # buckets starting before the suffix are partial in it (dropped); its grid starts
    # at its first complete bucket
    starts = bars.index.as_unit("us").asi8
    first = int(np.searchsorted(starts, frame.index[:1].as_unit("us").asi8[0]))
    complete = np.flatnonzero(present[first:])
    if not len(complete):
        return bars.iloc[:0], key
    return bars.iloc[first + int(complete[0]):], key


def _shared_grid(key: tuple) -> tuple[pd.DataFrame, np.ndarray]:
    """The shared resample ``key`` (``_suffix_bars``) of the open context's base."""
    _, base_tf, higher_tf, columns = key
    return shared.derived(key, lambda base: _shared_bars(base, base_tf, higher_tf, columns))


def _shared_bars(base: pd.DataFrame, base_tf: str, higher_tf: str,
                 columns: tuple[str, ...] | None) -> tuple[pd.DataFrame, np.ndarray]:
    if columns is not None:  # resample_bars' cost is per column (and trade_count's Int64)
        arrays = {c: col(base, c) for c in columns}
        fast = _hole_free_bars(base, arrays, base_tf, higher_tf)
        if fast is not None:
            return fast, np.ones(len(fast), dtype=bool)
        base = block_frame(base, arrays)
    bars, present = _grid_bars(base, base_tf, higher_tf)
    bars.attrs = {}
    return bars, present


def _hole_free_bars(base: pd.DataFrame, arrays: dict[str, np.ndarray], base_tf: str,
                    higher_tf: str) -> pd.DataFrame | None:
    """``_grid_bars`` of the float64 bar columns ``arrays`` of ``base`` in the common
    case (sorted bars, at least one complete bucket, no hole on the grid): the same bars
    built straight from ``resample_sorted``'s arrays as one float64 block, without the
    intermediate frames (most of a resample's cost on a live buffer). None otherwise
    (``_grid_bars`` then does the general work)."""
    if not isinstance(base.index, pd.DatetimeIndex) or base.index.tz is None or not len(base):
        return None
    us = base.index.as_unit("us").asi8
    if len(us) > 1 and not bool((us[1:] > us[:-1]).all()):
        return None
    opens, out = resample_sorted(us, arrays, base_tf, higher_tf)
    if not len(opens):
        return None
    higher_us = timeframe_ms(higher_tf) * 1000
    last_close = int(us[-1]) + timeframe_ms(base_tf) * 1000
    # the last bucket that has closed by last_close is the one holding last_close - step
    off = anchor_ms(higher_tf) * 1000
    last_start = (last_close - higher_us - off) // higher_us * higher_us + off
    if len(opens) != (last_start - int(opens[0])) // higher_us + 1:
        return None  # a hole (or an unfinished bucket) inside: the grid's NaN rows
    block = np.empty((len(opens), len(arrays)))
    for i, name in enumerate(arrays):
        block[:, i] = out[name]
    index = pd.DatetimeIndex(opens.view("M8[us]"), name="ts").tz_localize("UTC")
    return pd.DataFrame(block, index=index, columns=column_index(tuple(arrays)), copy=False)


#: the columns most inner families read: their copies share a resample of these alone
_OHLCV = ("open", "high", "low", "close", "volume")


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
    # the higher bars need only what the inner family reads
    columns = _OHLCV if set(inner.requires) <= set(_OHLCV) else None
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
        bars, key = _suffix_bars(frame, base_tf, higher_tf, columns)
        if bars.empty:
            return pd.DataFrame(np.nan, index=frame.index, columns=column_index(names))
        higher_ctx = replace(ctx, timeframe=higher_tf)
        if key is None:
            values = inner.run(bars, higher_ctx).to_numpy("float64")
        else:
            # ``bars`` is a suffix of the shared resample: the copies at this timeframe
            # read its columns once (``features.shared``), not once per copy
            with shared.derived_frame(key, lambda _: _shared_grid(key)[0]):
                values = inner.run(shared.register(bars), higher_ctx).to_numpy("float64")
        higher_close = bars.index.as_unit("us").asi8 + higher_us
        base_close = frame.index.as_unit("us").asi8 + base_us
        # latest higher bar with close <= the base row's close; -1 where none has closed
        pos = np.searchsorted(higher_close, base_close, side="right") - 1
        joined = np.full((len(frame), len(names)), np.nan)
        seen = pos >= 0
        joined[seen] = values[pos[seen]]
        return pd.DataFrame(joined, index=frame.index, columns=column_index(names),
                            copy=False)

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
