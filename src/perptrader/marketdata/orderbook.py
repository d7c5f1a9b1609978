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

The levels sit in dicts (price -> qty, O(1) per changed level) and each side keeps a
lazy heap of its prices, so the best price costs O(1) amortised instead of a scan of
the side, and ``top(n)`` pops n prices off the heap instead of sorting the side
(measured on a 5k-level-a-side BTCUSDT book: 9k diffs with 400k level changes apply in
~0.12 s; best bid/ask after each adds ~0.005 s against ~0.7 s for a max() scan; top 20
after each adds ~0.2 s against ~3.4 s for sorting). Prices are the floats parsed from
the exchange's decimal strings; the same string always gives the same float, so
comparisons with other streams are exact.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from perptrader.marketdata.dataset import to_utc

Level = Sequence[str | float]  # (price, qty): exchange strings or numbers

_INF = math.inf


class _Side:
    """One side of the book: price -> qty, plus a lazy heap that yields the best price.

    The heap holds ``sign * price`` (sign -1 for bids, so the largest bid is on top). A
    price is pushed when it enters the side; a removed price stays in the heap until it
    reaches the top and is found missing from the dict (lazy deletion), and the heap is
    rebuilt when stale entries outnumber live ones.
    """

    __slots__ = ("_heap", "_sign", "levels")

    def __init__(self, is_bid: bool) -> None:
        self.levels: dict[float, float] = {}
        self._heap: list[float] = []
        self._sign = -1.0 if is_bid else 1.0

    def clear(self) -> None:
        self.levels.clear()
        self._heap.clear()

    def apply(self, rows: Iterable[Level]) -> None:
        """Set each (price, qty); qty 0 deletes. ValueError on a bad number: the levels
        before it are already set, so callers treat that as fatal for the whole input."""
        levels, heap, sign = self.levels, self._heap, self._sign
        push = heapq.heappush
        for row in rows:
            price = float(row[0])
            qty = float(row[1])
            if not 0.0 < price < _INF:
                raise ValueError(f"price must be positive and finite, got {row[0]!r}")
            if not 0.0 <= qty < _INF:
                raise ValueError(f"quantity must be >= 0 and finite, got {row[1]!r}")
            if qty == 0.0:
                levels.pop(price, None)
            else:
                if price not in levels:
                    push(heap, sign * price)
                levels[price] = qty
        if len(heap) > 2 * len(levels) + 256:
            self._heap = [sign * p for p in levels]
            heapq.heapify(self._heap)

    def best(self) -> tuple[float, float] | None:
        heap, levels, sign = self._heap, self.levels, self._sign
        while heap:
            price = heap[0] * sign
            qty = levels.get(price)
            if qty is not None:
                return price, qty
            heapq.heappop(heap)
        return None

    def top(self, n: int) -> np.ndarray:
        """The n best levels as an (k, 2) array [price, qty], best first.

        Pops the heap until n live prices are out (dropping stale entries and repeats of
        a price for good) and pushes the live ones back: O((n + stale) log H), against
        O(L log L) for sorting the side (measured: ~10x faster at 5k levels a side).
        """
        heap, levels, sign = self._heap, self.levels, self._sign
        pop, push = heapq.heappop, heapq.heappush
        keys: list[float] = []
        seen: set[float] = set()
        while heap and len(keys) < n:
            key = pop(heap)
            if key in seen or key * sign not in levels:
                continue
            seen.add(key)
            keys.append(key)
        for key in keys:
            push(heap, key)
        out = np.empty((len(keys), 2), dtype="float64")
        if keys:
            prices = [k * sign for k in keys]
            out[:, 0] = prices
            out[:, 1] = [levels[p] for p in prices]
        return out


@dataclass(frozen=True)
class _Diff:
    first_id: int
    last_id: int
    prev_last_id: int | None
    bids: Sequence[Level]
    asks: Sequence[Level]
    ts: int | None


@dataclass(frozen=True)
class Gap:
    """A diff that did not continue the book: what was expected and what came."""

    expected: int  # the id the diff should have chained from (pu / U-1 / lastUpdateId)
    first_id: int
    last_id: int
    prev_last_id: int | None
    ts: int | None


class L2Book:
    """A Binance-style L2 book: snapshot + sequenced diffs, or plain level updates.

    ``spot`` selects the sequencing rule (see the module docstring). ``max_buffer`` bounds
    the diffs kept while the book waits for a snapshot, so a capture without one cannot
    grow memory without limit (the oldest are dropped first: a later snapshot would make
    them stale anyway).

    Formats without update ids (Tardis incremental L2, venue snapshots) use
    :meth:`replace` and :meth:`update_levels`, which skip the sequencing.
    """

    def __init__(self, *, spot: bool = False, max_buffer: int = 10_000) -> None:
        self.spot = spot
        self._bids = _Side(is_bid=True)
        self._asks = _Side(is_bid=False)
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

    # -- levels -------------------------------------------------------------------------

    @property
    def bids(self) -> dict[float, float]:
        """Bid levels, price -> qty (unordered; use :meth:`top` for an ordered view)."""
        return self._bids.levels

    @property
    def asks(self) -> dict[float, float]:
        return self._asks.levels

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
        bids: Iterable[Level],
        asks: Iterable[Level],
        ts: int | None = None,
        update_id: int | None = None,
    ) -> None:
        """Replace the whole book with these levels, without sequencing (a venue snapshot
        from a source that has no update ids)."""
        self._bids.clear()
        self._asks.clear()
        self._bids.apply(bids)
        self._asks.apply(asks)
        self.last_update_id = update_id
        self.last_ts = ts
        self.in_sync = True
        self._awaiting_first = False

    def update_levels(
        self, bids: Iterable[Level], asks: Iterable[Level], ts: int | None = None
    ) -> None:
        """Set levels without sequencing (qty 0 deletes); for sources without update ids."""
        self._bids.apply(bids)
        self._asks.apply(asks)
        if ts is not None:
            self.last_ts = ts

    # -- Binance sequencing -------------------------------------------------------------

    def apply_snapshot(
        self,
        last_update_id: int,
        bids: Iterable[Level],
        asks: Iterable[Level],
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
        self._bids.clear()
        self._asks.clear()
        self._bids.apply(bids)
        self._asks.apply(asks)
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
        bids: Sequence[Level],
        asks: Sequence[Level],
        ts: int | None = None,
    ) -> bool:
        """Apply one depth diff (``U``, ``u``, ``pu``; ``pu`` is None for spot).

        Returns True when applied. False means: buffered (no snapshot yet, or out of sync
        after a gap), dropped as stale (older than the state: normal just after a snapshot),
        or a gap was found now (recorded in :attr:`gaps`, :attr:`in_sync` turns False and
        the diff is buffered for the next snapshot).
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
        self._bids.apply(bids)
        self._asks.apply(asks)
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
    for i in range(n):
        b, a = bids[i][:depth], asks[i][:depth]
        bp[i, : len(b)] = b[:, 0]
        bq[i, : len(b)] = b[:, 1]
        ap[i, : len(a)] = a[:, 0]
        aq[i, : len(a)] = a[:, 1]
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
