"""An L2 order book rebuilt from a depth snapshot plus depth diffs.

Binance publishes depth as a REST snapshot (``lastUpdateId``) and a websocket stream of
diffs, each covering the update ids ``U..u``. A diff carries the *new absolute quantity*
of every level it touches (quantity 0 removes the level), so a book is only correct when
it started from a snapshot and no diff in between was lost. Binance's documented rules:

* USD-M futures: drop diffs with ``u < lastUpdateId``; the first diff applied must have
  ``U <= lastUpdateId <= u``; after that each diff's ``pu`` must equal the previous
  diff's ``u``.
* Spot: drop diffs with ``u <= lastUpdateId``; the first diff applied must have
  ``U <= lastUpdateId + 1 <= u``; after that each diff's ``U`` must be the previous
  ``u + 1``.

When a rule is broken the book reports a gap and stops applying diffs (it keeps them in
a bounded buffer) until a new snapshot arrives; the buffer lets a snapshot that was
taken *after* the stream started be caught up, which is how a capture begins.

Each side is a sorted float64 array pair (best level last, so changes near the top move
few entries), changed by a numba kernel that takes a diff's levels as one (m, 2) array
per side (:mod:`~perptrader.marketdata.book_kernels`); best price is O(1) and ``top(n)``
is a slice. Levels given as exchange strings are parsed with ``float`` semantics (numpy
parses them the same way), so the same string always gives the same float and
comparisons with other streams are exact. The collector reads depth messages straight
into such arrays (``scan_depth``) and calls :meth:`L2Book.apply_diff_checked`.
The pure-Python dict+heap book this replaced is kept, for the bench and the agreement
tests only, in :mod:`~perptrader.marketdata.orderbook_reference`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from perptrader.marketdata.book_kernels import (
    ROOM,
    S_HI,
    S_LIVE,
    S_LO,
    apply_levels,
    relayout,
    top_levels,
)
from perptrader.marketdata.dataset import to_utc

Level = Sequence[str | float]  # (price, qty): exchange strings or numbers

_INF = math.inf
_EMPTY = np.empty((0, 2), dtype=np.float64)
_EMPTY.flags.writeable = False


def levels_array(rows: Iterable[Level] | np.ndarray) -> np.ndarray:
    """Levels as an (m, 2) float64 array [price, qty], checked: ValueError unless every
    price is positive and finite and every quantity is >= 0 and finite. Strings are
    parsed as ``float`` parses them (so equal strings give equal prices)."""
    if isinstance(rows, np.ndarray):
        arr = rows
        if arr.dtype != np.float64:
            try:
                arr = arr.astype(np.float64)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"bad level in {rows!r}: {exc}") from None
    else:
        rows = rows if isinstance(rows, Sequence) else list(rows)
        if not rows:
            return _EMPTY
        try:
            arr = np.array(rows, dtype=np.float64)
        except (TypeError, ValueError):
            # ragged rows (extra fields): take price and quantity, as the rows say
            try:
                arr = np.array([(float(r[0]), float(r[1])) for r in rows], dtype=np.float64)
            except (TypeError, ValueError, IndexError) as exc:
                raise ValueError(f"bad level: {exc}") from None
    if arr.size == 0:
        return _EMPTY
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ValueError(f"levels must be (price, qty) rows, got shape {arr.shape}")
    if arr.shape[1] != 2:
        arr = arr[:, :2]
    p, q = arr[:, 0], arr[:, 1]
    bad_p = ~((p > 0.0) & (p < _INF))
    if bad_p.any():
        raise ValueError(f"price must be positive and finite, got {p[bad_p][0]!r}")
    bad_q = ~((q >= 0.0) & (q < _INF))
    if bad_q.any():
        raise ValueError(f"quantity must be >= 0 and finite, got {q[bad_q][0]!r}")
    return np.ascontiguousarray(arr)


class _Side:
    """One side of the book in two float64 arrays (see
    :mod:`~perptrader.marketdata.book_kernels`): entries ``lo..hi`` sorted ascending by
    key (price for bids, -price for asks), best LAST, free room at both ends so an insert
    moves the shorter run of entries; a deleted level inside the run is left as a
    tombstone (qty 0) because prices come back, and the ends are always live levels.
    Tombstones are bounded (at most live + 256 before a relayout drops them), so memory
    stays proportional to the book's depth."""

    __slots__ = ("keys", "qtys", "sign", "st")

    def __init__(self, is_bid: bool) -> None:
        self.sign = 1.0 if is_bid else -1.0
        self.clear()

    def clear(self) -> None:
        self.keys = np.empty(1024, dtype=np.float64)
        self.qtys = np.empty(1024, dtype=np.float64)
        self.st = np.array([512, 512, 0, 0], dtype=np.int64)  # lo, hi, live, dead

    def relayout(self, m: int) -> None:
        self.keys, self.qtys = relayout(self.keys, self.qtys, self.st, m)

    @property
    def n(self) -> int:
        return int(self.st[S_LIVE])

    def best(self) -> tuple[float, float] | None:
        lo, hi = int(self.st[S_LO]), int(self.st[S_HI])
        if hi <= lo:
            return None
        return float(self.sign * self.keys[hi - 1]), float(self.qtys[hi - 1])

    def top(self, k: int) -> np.ndarray:
        """The k best levels as a (min(k, n), 2) array [price, qty], best first."""
        out = np.empty((max(0, min(k, self.n)), 2), dtype=np.float64)
        if len(out):
            top_levels(self.keys, self.qtys, self.st, len(out), self.sign, out)
        return out

    def as_dict(self) -> dict[float, float]:
        lo, hi = int(self.st[S_LO]), int(self.st[S_HI])
        q = self.qtys[lo:hi]
        keep = q != 0.0
        prices = self.keys[lo:hi][keep] * self.sign
        return dict(zip(prices.tolist(), q[keep].tolist(), strict=True))


def _apply(bids: _Side, asks: _Side, b: np.ndarray, a: np.ndarray) -> None:
    """Checked level arrays -> both sides, in one kernel call (two when a side must be
    relaid out first)."""
    mb, ma = len(b), len(a)
    while (
        apply_levels(bids.keys, bids.qtys, bids.st, b, mb, asks.keys, asks.qtys, asks.st, a, ma)
        == ROOM
    ):
        bids.relayout(mb)
        asks.relayout(ma)


@dataclass(frozen=True)
class _Diff:
    first_id: int
    last_id: int
    prev_last_id: int | None
    bids: Sequence[Level] | np.ndarray
    asks: Sequence[Level] | np.ndarray
    ts: int | None


@dataclass(frozen=True)
class Gap:
    """A diff that did not continue the book: what was expected and what came."""

    expected: int  # the id the diff should have chained from (pu / U-1 / lastUpdateId)
    first_id: int
    last_id: int
    prev_last_id: int | None
    ts: int | None


class _BookSide(Protocol):
    """What :class:`SequencedBook` reads from a side; the storage is the subclass's."""

    def __init__(self, is_bid: bool) -> None: ...
    def best(self) -> tuple[float, float] | None: ...
    def top(self, k: int) -> np.ndarray: ...
    def as_dict(self) -> dict[float, float]: ...


class SequencedBook:
    """The Binance sequencing of a book (see the module docstring), written once: snapshot
    + U/u/pu-checked diffs, buffering before a snapshot and after a gap, or plain level
    updates. A subclass brings the storage: ``_side_type`` (built once per side, with
    ``best``, ``top`` and ``as_dict``) and the two level hooks :meth:`_set_levels` and
    :meth:`_update_levels`. Subclasses: :class:`L2Book` (numba arrays) and the reference
    ``orderbook_reference.PyL2Book`` (dicts and heaps).

    ``spot`` selects the sequencing rule. ``max_buffer`` bounds the diffs kept while the
    book waits for a snapshot, so a capture without one cannot grow memory without limit
    (the oldest are dropped first: a later snapshot would make them stale anyway).
    """

    _side_type: type[_BookSide]

    def __init__(self, *, spot: bool = False, max_buffer: int = 10_000) -> None:
        self.spot = spot
        self._bids = self._side_type(is_bid=True)
        self._asks = self._side_type(is_bid=False)
        self._buffer: deque[_Diff] = deque(maxlen=max_buffer)
        #: update id of the current state (snapshot lastUpdateId or last diff's u)
        self.last_update_id: int | None = None
        #: exchange time of the current state in the caller's unit (ms for Binance)
        self.last_ts: int | None = None
        #: True while every diff since the last snapshot chained correctly
        self.in_sync = False
        self._awaiting_first = False
        # counters, for reports
        self.snapshots = 0  # snapshots applied
        self.snapshots_ignored = 0  # older than the in-sync state: nothing to do
        self.applied = 0  # diffs applied
        self.stale = 0  # diffs dropped as older than the state
        self.gaps: list[Gap] = []

    # -- storage hooks ------------------------------------------------------------------

    def _set_levels(
        self, bids: Iterable[Level] | np.ndarray, asks: Iterable[Level] | np.ndarray
    ) -> None:
        """Make these the only levels of both sides (checked; ValueError on a bad one)."""
        raise NotImplementedError

    def _update_levels(
        self, bids: Iterable[Level] | np.ndarray, asks: Iterable[Level] | np.ndarray
    ) -> None:
        """Set these levels on both sides, qty 0 deleting (checked; ValueError on a bad one)."""
        raise NotImplementedError

    # -- levels -------------------------------------------------------------------------

    @property
    def bids(self) -> dict[float, float]:
        """Bid levels, price -> qty, as the side's ``as_dict`` gives them (:class:`L2Book`:
        a COPY built on each call, O(levels); use :meth:`top` or :meth:`best_bid` on a hot
        path. ``PyL2Book``: its live dict, unordered)."""
        return self._bids.as_dict()

    @property
    def asks(self) -> dict[float, float]:
        """Ask levels, price -> qty (as :attr:`bids`)."""
        return self._asks.as_dict()

    def best_bid(self) -> tuple[float, float] | None:
        """(price, qty) of the highest bid, or None when the side is empty."""
        return self._bids.best()

    def best_ask(self) -> tuple[float, float] | None:
        return self._asks.best()

    def top(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The n best levels per side: two (k, 2) arrays of [price, qty], best first
        (bids descending, asks ascending); k < n when a side is shallower."""
        return self._bids.top(n), self._asks.top(n)

    def replace(
        self,
        bids: Iterable[Level] | np.ndarray,
        asks: Iterable[Level] | np.ndarray,
        ts: int | None = None,
        update_id: int | None = None,
    ) -> None:
        """Replace the whole book with these levels, without sequencing (a venue snapshot
        from a source that has no update ids)."""
        self._set_levels(bids, asks)
        self.last_update_id = update_id
        self.last_ts = ts
        self.in_sync = True
        self._awaiting_first = False

    def update_levels(
        self,
        bids: Iterable[Level] | np.ndarray,
        asks: Iterable[Level] | np.ndarray,
        ts: int | None = None,
    ) -> None:
        """Set levels without sequencing (qty 0 deletes); for sources without update ids."""
        self._update_levels(bids, asks)
        if ts is not None:
            self.last_ts = ts

    # -- Binance sequencing -------------------------------------------------------------

    def apply_snapshot(
        self,
        last_update_id: int,
        bids: Iterable[Level] | np.ndarray,
        asks: Iterable[Level] | np.ndarray,
        ts: int | None = None,
    ) -> None:
        """Seed (or re-seed) the book from a REST depth snapshot, then catch up with the
        diffs buffered while waiting for it.

        A snapshot older than a book that is already in sync is ignored: the diffs have
        taken the book past it, and re-seeding would make every later diff look like a gap.
        """
        if (
            self.in_sync
            and self.last_update_id is not None
            and last_update_id <= self.last_update_id
        ):
            self.snapshots_ignored += 1
            return
        self._set_levels(bids, asks)
        self.last_update_id = int(last_update_id)
        self.last_ts = ts
        self.in_sync = True
        self._awaiting_first = True
        self.snapshots += 1
        pending = list(self._buffer)
        self._buffer.clear()
        for d in pending:
            self.apply_diff(d.first_id, d.last_id, d.prev_last_id, d.bids, d.asks, d.ts)

    def continues(self, first_id: int, last_id: int, prev_last_id: int | None) -> bool:
        """Whether this diff would be applied now (pure check, changes nothing)."""
        if not self.in_sync or self.last_update_id is None:
            return False
        last = self.last_update_id
        if self._awaiting_first:
            if self.spot:
                return first_id <= last + 1 <= last_id
            return first_id <= last <= last_id
        if self.spot:
            return first_id == last + 1
        return prev_last_id == last

    def apply_diff(
        self,
        first_id: int,
        last_id: int,
        prev_last_id: int | None,
        bids: Sequence[Level] | np.ndarray,
        asks: Sequence[Level] | np.ndarray,
        ts: int | None = None,
    ) -> bool:
        """Apply one depth diff (``U``, ``u``, ``pu``; ``pu`` is None for spot).

        Returns True when applied. False means: buffered (no snapshot yet, or out of sync
        after a gap), dropped as stale (older than the state: normal just after a snapshot),
        or a gap was found now (recorded in :attr:`gaps`, :attr:`in_sync` turns False and
        the diff is buffered for the next snapshot). The levels are only read (and
        checked) when the diff is applied; a buffered array is kept as given, so pass
        one the caller will not reuse.
        """
        if not self.spot and prev_last_id is None:
            raise ValueError("a USD-M futures diff needs pu (the previous diff's u)")
        if not self.in_sync or self.last_update_id is None:
            self._buffer.append(_Diff(first_id, last_id, prev_last_id, bids, asks, ts))
            return False
        last = self.last_update_id
        if self._awaiting_first:
            # Diffs the snapshot already contains are dropped (spot: u <= L; futures: u < L).
            if last_id < last or (self.spot and last_id == last):
                self.stale += 1
                return False
        elif last_id <= last and not self.continues(first_id, last_id, prev_last_id):
            self.stale += 1  # a repeated or older message: the state is already past it
            return False
        if not self.continues(first_id, last_id, prev_last_id):
            expected = last if (self._awaiting_first or not self.spot) else last + 1
            self.gaps.append(Gap(expected, first_id, last_id, prev_last_id, ts))
            self.in_sync = False
            self._buffer.append(_Diff(first_id, last_id, prev_last_id, bids, asks, ts))
            return False
        self._update_levels(bids, asks)
        self.last_update_id = int(last_id)
        if ts is not None:
            self.last_ts = ts
        self._awaiting_first = False
        self.applied += 1
        return True

    @property
    def buffered(self) -> int:
        """Diffs waiting for a snapshot."""
        return len(self._buffer)


class L2Book(SequencedBook):
    """A Binance-style L2 book: snapshot + sequenced diffs, or plain level updates.

    ``spot`` selects the sequencing rule (see the module docstring). ``max_buffer`` bounds
    the diffs kept while the book waits for a snapshot, so a capture without one cannot
    grow memory without limit (the oldest are dropped first: a later snapshot would make
    them stale anyway).

    Formats without update ids (Tardis incremental L2, venue snapshots) use
    :meth:`replace` and :meth:`update_levels`, which skip the sequencing.

    Levels may be given as rows of exchange strings or numbers, or as an (m, 2) float64
    array [price, qty]; either way they are checked (ValueError: nothing of that call is
    applied).

    The sequencing is :class:`SequencedBook`'s; this class brings the array sides and
    the collector's fast path :meth:`apply_diff_checked`.
    """

    _side_type = _Side
    _bids: _Side
    _asks: _Side

    def _set_levels(
        self, bids: Iterable[Level] | np.ndarray, asks: Iterable[Level] | np.ndarray
    ) -> None:
        b, a = levels_array(bids), levels_array(asks)  # checked before anything changes
        self._bids.clear()
        self._asks.clear()
        _apply(self._bids, self._asks, b, a)

    def _update_levels(
        self, bids: Iterable[Level] | np.ndarray, asks: Iterable[Level] | np.ndarray
    ) -> None:
        _apply(self._bids, self._asks, levels_array(bids), levels_array(asks))

    def depth(self) -> tuple[int, int]:
        """Number of (bid, ask) levels."""
        return self._bids.n, self._asks.n

    def apply_diff_checked(
        self,
        first_id: int,
        last_id: int,
        prev_last_id: int,
        bids: np.ndarray,
        asks: np.ndarray,
        ts: int | None,
    ) -> bool:
        """:meth:`apply_diff` for a USD-M diff whose levels are (m, 2) float64 arrays
        already checked (positive finite prices, finite quantities >= 0), e.g. read by
        :func:`~perptrader.marketdata.book_kernels.scan_depth`: the collector's hot path.
        The arrays may be scratch buffers: they are copied when the diff must be kept."""
        if (
            self.in_sync
            and not self._awaiting_first
            and not self.spot
            and prev_last_id == self.last_update_id
        ):
            _apply(self._bids, self._asks, bids, asks)  # the common case: it chains on
            self.last_update_id = last_id
            if ts is not None:
                self.last_ts = ts
            self.applied += 1
            return True
        return self.apply_diff(first_id, last_id, prev_last_id, bids.copy(), asks.copy(), ts)


class BookSampler:
    """Top-N snapshots of a book, at most one per ``interval_ms`` of exchange time.

    For every interval bucket in which the book changed while in sync, the state after
    the *last* change in that bucket is kept, stamped with that change's exchange time
    and update id. So each row is a state the book really had (no grid times made up for
    quiet periods), and a state is only kept once the stream proved it complete: when the
    next change falls in a later bucket, the stream ends, or a gap is found (a gap leaves
    the levels as they were, so the state before it can still be taken).
    ``interval_ms <= 0`` keeps every state. ``ts_unit`` is the unit of the times the
    book is given (``book.last_ts``): ms for Binance, µs for Tardis.

    Protocol for the replaying code: call :meth:`before` with the exchange time of each
    change *before* making it, :meth:`mark` after a change that left the book in sync,
    and :meth:`flush` when the book goes out of sync and at the end.
    """

    def __init__(
        self, book: L2Book, depth: int = 20, interval_ms: int = 1000, ts_unit: str = "ms"
    ) -> None:
        if depth <= 0:
            raise ValueError("depth must be positive")
        per_ms = {"ms": 1, "us": 1_000, "ns": 1_000_000}
        if ts_unit not in per_ms:
            raise ValueError(f"ts_unit must be one of {sorted(per_ms)}")
        self.book = book
        self.depth = depth
        self.ts_unit = ts_unit
        self._step = max(0, interval_ms) * per_ms[ts_unit]
        self._pending_row: int | None = None
        self._bucket: int | None = None
        self._ts: list[int] = []
        self._ids: list[int | None] = []
        self._rows: list[int] = []
        self._bids: list[np.ndarray] = []
        self._asks: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self._ts)

    def before(self, ts: int | None) -> None:
        """A change at exchange time ``ts`` is coming: keep the pending state if that
        change falls in a later bucket (``ts=None``: keep it whatever the time)."""
        if self._pending_row is None:
            return
        if ts is None or self._step == 0 or ts // self._step != self._bucket:
            self._capture()

    def mark(self, row: int) -> None:
        """The book changed (at ``book.last_ts``) and is in sync; ``row`` is the source row
        that made the change, kept as the frame index for messages."""
        book = self.book
        if not book.in_sync or book.last_ts is None:
            return
        self._pending_row = row
        if self._step:
            self._bucket = book.last_ts // self._step
        else:
            self._capture()

    def flush(self) -> None:
        if self._pending_row is not None:
            self._capture()

    def _capture(self) -> None:
        book = self.book
        assert book.last_ts is not None and self._pending_row is not None
        bids, asks = book.top(self.depth)
        self._ts.append(book.last_ts)
        self._ids.append(book.last_update_id)
        self._rows.append(self._pending_row)
        self._bids.append(bids)
        self._asks.append(asks)
        self._pending_row = None

    def frame(self) -> pd.DataFrame:
        """The kept states as a canonical BOOK frame (index: source rows)."""
        return book_frame(
            self._ts,
            self._ids,
            self._bids,
            self._asks,
            self.depth,
            rows=self._rows,
            ts_unit=self.ts_unit,
        )


def book_frame(
    ts: Sequence[int],
    update_ids: Sequence[int | None],
    bids: Sequence[np.ndarray],
    asks: Sequence[np.ndarray],
    depth: int,
    rows: Sequence[int] | None = None,
    ts_unit: str = "ms",
) -> pd.DataFrame:
    """Build a BOOK frame from per-snapshot (k, 2) level arrays, best first.

    One row per level that either side has (levels 0..depth-1); a side shallower than
    the other leaves its columns empty. Arrays are filled per snapshot and then
    flattened, so the frame is built in one go rather than row by row.
    """
    n = len(ts)
    shape = (n, depth)
    bp, bq, ap, aq = (np.full(shape, np.nan) for _ in range(4))
    for side, price, qty in ((bids, bp, bq), (asks, ap, aq)):
        # all snapshots' levels in one array, then scattered into their rows at once
        parts = [levels[:depth] for levels in side]
        if not parts:
            continue
        counts = np.fromiter((len(p) for p in parts), dtype=np.int64, count=n)
        flat = np.concatenate(parts).reshape(-1, 2)
        row = np.repeat(np.arange(n), counts)
        level = np.arange(len(flat)) - np.repeat(np.cumsum(counts) - counts, counts)
        price[row, level] = flat[:, 0]
        qty[row, level] = flat[:, 1]
    keep = ~(np.isnan(bp) & np.isnan(ap)).ravel()
    id_values = np.array([0 if u is None else int(u) for u in update_ids], dtype="int64")
    id_missing = np.array([u is None for u in update_ids], dtype=bool)
    index = np.repeat(np.asarray(rows if rows is not None else np.arange(n), dtype="int64"), depth)[
        keep
    ]
    stamps = to_utc(np.repeat(np.asarray(ts, dtype="int64"), depth)[keep], unit=ts_unit)
    frame = pd.DataFrame(
        {
            "ts": stamps.array,
            "level": np.tile(np.arange(depth, dtype="int64"), n)[keep],
            "bid_price": bp.ravel()[keep],
            "bid_qty": bq.ravel()[keep],
            "ask_price": ap.ravel()[keep],
            "ask_qty": aq.ravel()[keep],
            "update_id": pd.arrays.IntegerArray(
                np.repeat(id_values, depth)[keep], np.repeat(id_missing, depth)[keep]
            ),
        },
        index=pd.Index(index, dtype="int64"),
    )
    return frame
