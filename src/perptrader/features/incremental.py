"""The live path: features of one new bar, from a bounded buffer of recent bars.

Why a buffer and not per-indicator running state: every family keeps the
start-invariance contract (``base.py``): after ``history`` rows a value no longer
depends on where the data starts. So recomputing the batch code on the last
``history + margin`` bars gives the batch value of the newest bar to float precision,
with ONE implementation of every formula.

Why each family gets ITS OWN tail: histories range from 0 rows (calendar) to thousands
(a slow EMA on daily bars); running every family on the longest one made the short
families pay for it (some are O(rows) in Python-level work). Families with the same
history share one slice. The buffer keeps NO ``attrs``: pandas deep-copies a non-empty
``attrs`` on every operation (every slice, every column read: ~100 per bar), so the one
family check that reads them (the frame's timeframe against the context's) is made here,
once for the history and once per bar, instead.

Why higher-timeframe copies are cached: ``htf4h_x`` on 1h bars shows the values of the
latest CLOSED 4h bar (``features.mtf``), so its row changes only on the bar that closes
a 4h bucket; on the other bars the previous row is the batch value (the buffer only
grows by appending, so the 4h bars it was computed from are the same).

Why a ``features.shared`` context around each bar: the tails are suffixes of one buffer,
so the families read each input column once (read-only slices of it) and the copies at
one higher timeframe share one resample, instead of each family paying pandas' per-call
overhead for the same work (most of a bar's cost on 100-row tails).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from perptrader.core.timeframes import timeframe_ms
from perptrader.features.base import Family, FeatureContext
from perptrader.features.compare import Difference, differences
from perptrader.features.pipeline import compute_features
from perptrader.features.shared import register, shared_frame
from perptrader.marketdata.resample import anchor_ms

#: extra rows kept beyond each family's history
MARGIN_ROWS = 64
#: the name ``features.mtf.mtf_family`` gives a higher-timeframe copy
_MTF_NAME = re.compile(r"^htf(?P<tf>[0-9]+[mhdwM])_")


class IncrementalFeatures:
    """Feed bars one at a time (as they close); get that bar's features."""

    def __init__(self, families: Sequence[Family], ctx: FeatureContext,
                 history: pd.DataFrame, *, buffer_rows: int | None = None) -> None:
        self.families = tuple(families)
        self.ctx = ctx
        need = max((f.history for f in self.families), default=0) + MARGIN_ROWS
        self.buffer_rows = max(buffer_rows or 0, need)
        _check_timeframe(history, ctx)
        self._frame = _light(history.iloc[-self.buffer_rows:].copy())
        self.names = [n for f in self.families for n in f.names]
        self._index = pd.Index(self.names)  # built once: a 375-label index costs 0.15 ms
        # (tail rows, [(family, its first column position)]) per distinct history
        groups: dict[int, list[tuple[Family, int]]] = {}
        at = 0
        for family in self.families:
            groups.setdefault(family.history + MARGIN_ROWS, []).append((family, at))
            at += len(family.names)
        self._groups = sorted(groups.items())
        #: family name -> (higher bucket its cached row shows, that row)
        self._mtf_cache: dict[str, tuple[int, np.ndarray]] = {}
        #: family name -> the higher timeframe of a copy (None for other families)
        self._higher: dict[str, str | None] = {}

    @property
    def frame(self) -> pd.DataFrame:
        return self._frame

    def update(self, bar: pd.DataFrame | pd.Series, *, book: pd.DataFrame | None = None,
                trades: pd.DataFrame | None = None) -> pd.Series:
        """Append one closed bar (a one-row frame, or a Series named by its open time)
        and return its features. ``book``/``trades``: the L2 snapshots and trades seen
        during that bar, for families that read them; without them those families show
        NaN for the bar, exactly as the batch path does for a bar with no events."""
        row = bar.to_frame().T if isinstance(bar, pd.Series) else bar
        if len(row) != 1:
            raise ValueError(f"update takes one bar, got {len(row)} rows")
        ts = row.index[0]
        if len(self._frame) and ts <= self._frame.index[-1]:
            raise ValueError(f"bar {ts} is not after the last buffered bar "
                             f"{self._frame.index[-1]}")
        _check_timeframe(row, self.ctx)
        # a new frame on the same (copy-on-write) data WITHOUT the attrs: copying the
        # loader's provenance alone took ~0.1-0.5 ms, and every later operation would too
        row = pd.DataFrame(row)
        if len(self._frame) and not row.dtypes.equals(self._frame.dtypes):
            row = row.astype(self._frame.dtypes.to_dict())
        self._frame = pd.concat([self._frame.iloc[-(self.buffer_rows - 1):], row])
        if book is not None or trades is not None:
            self.ctx = _append_events(self.ctx, self._frame.index[0], book, trades)
        return pd.Series(self.last_row(), index=self._index, name=ts, dtype="float64",
                         copy=False)

    def last_row(self) -> np.ndarray:
        """Every family's value on the newest buffered bar, each computed on its own
        tail (the columns of ``names``)."""
        with shared_frame(self._frame):  # columns read, higher bars resampled, once
            return self._last_row()

    def _last_row(self) -> np.ndarray:
        out = np.empty(len(self.names), dtype=np.float64)
        close_ms = None  # the newest bar's close (epoch ms), read once for every copy
        if self.ctx.timeframe and len(self._frame):
            close_ms = (self._frame.index[-1].value // 1_000_000
                        + timeframe_ms(self.ctx.timeframe))
        for rows, members in self._groups:
            tail = None
            for family, at in members:
                bucket = self._closed_bucket(family, close_ms)
                cached = self._mtf_cache.get(family.name)
                if bucket is not None and cached is not None and cached[0] == bucket:
                    values = cached[1]
                else:
                    if tail is None:
                        tail = register(self._frame.iloc[-rows:])  # a buffer suffix
                    values = family.run(tail, self.ctx).to_numpy(np.float64)[-1]
                    if bucket is not None:
                        self._mtf_cache[family.name] = (bucket, values)
                out[at:at + len(family.names)] = values
        return out

    def _closed_bucket(self, family: Family, close_ms: int | None = None) -> int | None:
        """For a higher-timeframe copy: how many higher buckets had closed (since the
        grid's anchor) by the close of the newest bar (``close_ms``, epoch ms; read from
        the buffer when not given); None for other families."""
        if family.name not in self._higher:
            found = _MTF_NAME.match(family.name) if "mtf" in family.tags else None
            self._higher[family.name] = None if found is None else found["tf"]
        higher = self._higher[family.name]
        if higher is None or not self.ctx.timeframe:
            return None
        if close_ms is None:
            close_ms = (self._frame.index[-1].value // 1_000_000
                        + timeframe_ms(self.ctx.timeframe))
        return (close_ms - anchor_ms(higher)) // timeframe_ms(higher)


def _light(frame: pd.DataFrame) -> pd.DataFrame:
    frame.attrs = {}
    return frame


def _check_timeframe(frame: pd.DataFrame, ctx: FeatureContext) -> None:
    """What ``derivatives_common.bar_closes`` checks on a frame that carries ``attrs``."""
    own = frame.attrs.get("timeframe")
    if own is not None and own != ctx.timeframe:
        raise ValueError(f"frame timeframe {own!r} differs from the context's "
                         f"{ctx.timeframe!r}")


def _append_events(ctx: FeatureContext, first: pd.Timestamp, book: pd.DataFrame | None,
                   trades: pd.DataFrame | None) -> FeatureContext:
    """The context with the new events added and those before the buffer dropped."""
    def merged(old: pd.DataFrame | None, new: pd.DataFrame | None) -> pd.DataFrame | None:
        if new is None:
            return old
        events = new if old is None else pd.concat([old, new], ignore_index=True)
        return events[pd.to_datetime(events["ts"], utc=True) >= first]

    return FeatureContext(symbol=ctx.symbol, timeframe=ctx.timeframe,
                          book=merged(ctx.book, book), trades=merged(ctx.trades, trades))


@dataclass
class IncrementalReport:
    bars: int
    n_features: int
    buffer_rows: int
    differences: list[Difference] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences

    def as_json(self) -> dict[str, object]:
        return {"ok": self.ok, "bars": self.bars, "n_features": self.n_features,
                "buffer_rows": self.buffer_rows,
                "differing_features": [d.column for d in self.differences],
                "details": [d.as_json() for d in self.differences]}


def incremental_check(frame: pd.DataFrame, families: Sequence[Family], ctx: FeatureContext,
                      *, bars: int = 200, progress: object | None = None
                      ) -> IncrementalReport:
    """Batch features of the last ``bars`` rows versus feeding them one at a time."""
    if bars >= len(frame):
        raise ValueError(f"need more than {bars} rows for an incremental check, "
                         f"got {len(frame)}")
    batch = compute_features(frame, families, ctx).iloc[-bars:]
    live = IncrementalFeatures(families, ctx, frame.iloc[:-bars])
    rows = []
    for i in range(bars):
        rows.append(live.update(frame.iloc[[len(frame) - bars + i]]))
        if callable(progress):
            progress(i + 1, bars)
    incremental = pd.DataFrame(rows, index=batch.index, columns=batch.columns)
    return IncrementalReport(bars=bars, n_features=batch.shape[1],
                             buffer_rows=live.buffer_rows,
                             differences=differences(batch, incremental))
