"""Higher-timeframe bars from lower ones, without unfinished bars.

Buckets are anchored like Binance's klines: at the Unix epoch (so ``1h``, ``4h`` and
``1d`` buckets start at 00:00 UTC), except week-based timeframes, which start on Monday
00:00 UTC. A bucket is emitted only when every source bar of it is present (four 1h
bars for a 4h bar); a bucket with a hole, or one still forming at the end of the data,
is dropped rather than published with part of its interval missing.

Aggregation: open = first, high = max, low = min, close = last, and sums for
``volume``, ``quote_volume``, ``trade_count``, ``taker_buy_base`` and
``taker_buy_quote``. A sum is NaN as soon as one of its inputs is NaN: a bucket whose
quote volume is unknown for one source bar has an unknown quote volume, never an
understated one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from perptrader.core.timeframes import timeframe_ms
from perptrader.marketdata.dataset import TS_DTYPE

#: 1970-01-01 was a Thursday; Binance's weekly klines open on Monday 00:00 UTC.
_MONDAY_MS = 4 * 86_400_000
_WEEK_MS = 7 * 86_400_000

_SUMS = ("volume", "quote_volume", "trade_count", "taker_buy_base", "taker_buy_quote")
BAR_COLUMNS = ("open", "high", "low", "close", *_SUMS)


def anchor_ms(timeframe: str) -> int:
    """Offset of the bucket grid from the epoch in ms: Monday for week multiples, else 0."""
    return _MONDAY_MS if timeframe_ms(timeframe) % _WEEK_MS == 0 else 0


def bucket_start(ts: pd.Series | pd.DatetimeIndex, timeframe: str) -> np.ndarray:
    """Epoch-µs start of the ``timeframe`` bucket holding each timestamp."""
    us = _epoch_us(ts)
    size, off = timeframe_ms(timeframe) * 1000, anchor_ms(timeframe) * 1000
    return (us - off) // size * size + off


def can_resample(source_tf: str, target_tf: str) -> bool:
    """True when whole ``source_tf`` bars tile every ``target_tf`` bucket exactly."""
    src, dst = timeframe_ms(source_tf), timeframe_ms(target_tf)
    return dst >= src and dst % src == 0 and anchor_ms(target_tf) % src == 0


def resample_bars(frame: pd.DataFrame, source_tf: str, target_tf: str) -> pd.DataFrame:
    """Aggregate canonical bars of ``source_tf`` into complete ``target_tf`` bars.

    ``frame`` has a ``ts`` column (bar open time, UTC) or a DatetimeIndex, and any of
    the bar columns; the result has the same layout (``ts`` column or index), only the
    bar columns the input had, one row per complete bucket, sorted by time.
    ``result.attrs['incomplete_buckets']`` counts the buckets dropped because a source
    bar was missing or off the source grid (including one still forming at the end).

    Raises ValueError when ``target_tf`` is not a whole multiple of ``source_tf`` on
    the same anchor, or when the input has duplicate timestamps.
    """
    if not can_resample(source_tf, target_tf):
        raise ValueError(f"cannot build {target_tf} bars from {source_tf} bars: "
                         f"{target_tf} is not a whole multiple of {source_tf} on the same grid")
    as_index = "ts" not in frame.columns
    if as_index and not isinstance(frame.index, pd.DatetimeIndex):
        raise ValueError("bars need a 'ts' column or a DatetimeIndex")
    cols = [c for c in BAR_COLUMNS if c in frame.columns]
    missing = [c for c in ("open", "high", "low", "close") if c not in cols]
    if missing:
        raise ValueError(f"bars lack column(s) {missing}")
    stamps_in = frame.index if as_index else frame["ts"]
    us = _epoch_us(stamps_in)  # all arithmetic in epoch microseconds (canonical resolution)
    order = np.argsort(us, kind="stable")
    us = us[order]
    if len(us) > 1 and (np.diff(us) == 0).any():
        raise ValueError("bars have duplicate timestamps")

    src_us, dst_us = timeframe_ms(source_tf) * 1000, timeframe_ms(target_tf) * 1000
    off = anchor_ms(target_tf) * 1000
    bucket = (us - off) // dst_us * dst_us + off
    off_grid = ((us - off) % src_us != 0).astype(np.int64)

    # rows are sorted, so each bucket is one contiguous run starting at ``starts``
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]]) if len(us) else us
    counts = np.diff(np.r_[starts, len(us)])
    ends = starts + counts - 1
    complete = counts == dst_us // src_us
    if len(us):
        complete &= np.add.reduceat(off_grid, starts) == 0

    out: dict[str, np.ndarray] = {}
    for name in cols:
        values = _float(frame[name])[order]
        if not len(us):
            agg = values
        elif name == "open":
            agg = values[starts]
        elif name == "close":
            agg = values[ends]
        elif name == "high":
            agg = np.maximum.reduceat(values, starts)
        elif name == "low":
            agg = np.minimum.reduceat(values, starts)
        else:  # np.add propagates NaN: a sum with an unknown part stays unknown
            agg = np.add.reduceat(values, starts)
        out[name] = agg[complete]

    result = pd.DataFrame(out, columns=cols)
    if "trade_count" in result.columns:
        counts_f = pd.array(np.round(out["trade_count"]), dtype="Float64")
        result["trade_count"] = counts_f.astype("Int64")
    opens = bucket[starts][complete].astype(np.int64)
    stamps = pd.to_datetime(opens, unit="us", utc=True).astype(TS_DTYPE)
    if as_index:
        result.index = pd.DatetimeIndex(stamps, name=frame.index.name or "ts")
    else:
        result.insert(0, "ts", stamps)
    result.attrs["incomplete_buckets"] = int((~complete).sum())
    return result


def _epoch_us(ts: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    values = pd.DatetimeIndex(ts)
    if values.tz is None:
        values = values.tz_localize("UTC")
    return values.as_unit("us").asi8.astype(np.int64)


def _float(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
