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

from functools import lru_cache

import numpy as np
import pandas as pd

from perptrader.core.timeframes import timeframe_ms

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
    # bars come sorted (strictly increasing: no duplicates either) in the live path and
    # almost everywhere else: no reordering to do then (~per column, on every call)
    order = None if len(us) < 2 or bool((us[1:] > us[:-1]).all()) else np.argsort(
        us, kind="stable")
    if order is not None:
        us = us[order]
        if (np.diff(us) == 0).any():
            raise ValueError("bars have duplicate timestamps")

    values = {}
    for name in cols:
        values[name] = _float(frame[name]) if order is None else _float(frame[name])[order]
    opens, out, incomplete = _aggregate(us, values, source_tf, target_tf)

    if "trade_count" in out:
        result = pd.DataFrame(out, columns=cols)
        counts_f = pd.array(np.round(out["trade_count"]), dtype="Float64")
        result["trade_count"] = counts_f.astype("Int64")
    else:  # all float64: one block (a frame from a dict costs a block per column)
        block = np.empty((len(opens), len(cols)))
        for i, name in enumerate(cols):
            block[:, i] = out[name]
        result = pd.DataFrame(block, columns=_labels(tuple(cols)), copy=False)
    stamps = pd.DatetimeIndex(opens.view("M8[us]")).tz_localize("UTC")
    if as_index:
        result.index = stamps.rename(frame.index.name or "ts")
    else:
        result.insert(0, "ts", stamps)
    result.attrs["incomplete_buckets"] = incomplete
    return result


def resample_sorted(us: np.ndarray, columns: dict[str, np.ndarray], source_tf: str,
                    target_tf: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``resample_bars`` on arrays: ``us`` the bars' open times in epoch microseconds,
    STRICTLY increasing (checked), ``columns`` float64 bar columns by name. Returns the
    complete buckets' open times (epoch µs) and their aggregated columns, the values
    ``resample_bars`` gives (its frame, without building one per call)."""
    if not can_resample(source_tf, target_tf):
        raise ValueError(f"cannot build {target_tf} bars from {source_tf} bars: "
                         f"{target_tf} is not a whole multiple of {source_tf} on the same grid")
    if len(us) > 1 and not bool((us[1:] > us[:-1]).all()):
        raise ValueError("resample_sorted needs strictly increasing open times")
    opens, out, _ = _aggregate(np.asarray(us, dtype=np.int64), columns, source_tf,
                               target_tf)
    return opens, out


def _aggregate(us: np.ndarray, columns: dict[str, np.ndarray], source_tf: str,
               target_tf: str) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
    """(open µs of the complete buckets, their aggregates by column, buckets dropped as
    incomplete) of sorted bars ``us`` (epoch µs) with float64 ``columns`` in that order."""
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
    for name, values in columns.items():
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
    opens = bucket[starts][complete].astype(np.int64)
    return opens, out, int((~complete).sum())


@lru_cache(maxsize=256)
def _labels(names: tuple[str, ...]) -> pd.Index:
    """Column labels, built once per set (pandas builds a str Index from a list on every
    frame)."""
    return pd.Index(names)


def _epoch_us(ts: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    if isinstance(ts, pd.DatetimeIndex) and ts.tz is not None:  # no conversion to make
        return ts.as_unit("us").asi8.astype(np.int64)
    values = pd.DatetimeIndex(ts)
    if values.tz is None:
        values = values.tz_localize("UTC")
    return values.as_unit("us").asi8.astype(np.int64)


def _float(values: pd.Series) -> np.ndarray:
    if values.dtype == np.float64:  # already numbers, NaN already NaN
        return values.to_numpy()
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
