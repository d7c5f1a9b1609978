"""The collector's order book: raw Binance USD-M depth diffs through the project's
:class:`~perptrader.marketdata.orderbook.L2Book`, sampled into top-N snapshots.

ccxt.pro's ``watch_order_book`` keeps its own book and hides the update ids, so the
collector reads the ``<symbol>@depth@<speed>`` stream itself and applies each diff with
the sequencing rules of ``orderbook.py`` (futures: the first diff after a snapshot has
``U <= lastUpdateId <= u``, then every ``pu`` equals the previous ``u``). A broken chain
(a lost message, a reconnect) makes the book report a gap; the feed then asks for a REST
snapshot (:meth:`BookFeed.wants_snapshot`), the book buffers diffs until it comes and
catches up from them. Stored states are those of :class:`BookSampler`: the book after the
last change of each ``interval_ms`` of exchange time, stamped with that change's time and
update id, taken only while the book is in sync, so every stored row is a state the venue's
book really had.

This module is the hot path measured by ``bench/bench_collect.py``. A message is read
by :func:`~perptrader.marketdata.book_kernels.scan_depth` (numba, no Python object per
level) into two reused (m, 2) float64 arrays, and applied with
:meth:`L2Book.apply_diff_checked` (one kernel call for both sides); only the header
fields reach Python. A message that reader does not take (an unusual shape or number
format) goes through ``orjson`` and :meth:`L2Book.apply_diff` instead, with the same
result. top-N is only computed once per interval; the kept snapshots are columnar
arrays turned into one frame per drain (one store write per flush).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd

from perptrader.marketdata.book_kernels import DEPTH, HEADER_SIZE, OTHER, scan_depth
from perptrader.marketdata.orderbook import BookSampler, L2Book


class DrainingSampler(BookSampler):
    """A :class:`BookSampler` whose kept states can be taken out in batches (so memory
    stays bounded over a long run)."""

    def drain(self) -> pd.DataFrame:
        frame = self.frame()
        self._ts, self._ids, self._rows = [], [], []
        self._bids, self._asks = [], []
        return frame


@dataclass
class BookStats:
    messages: int = 0
    applied: int = 0
    stale: int = 0
    gaps: int = 0
    snapshots: int = 0
    level_changes: int = 0


class BookFeed:
    """One symbol's depth stream -> L2Book -> sampled snapshots."""

    def __init__(
        self,
        depth: int = 20,
        interval_ms: int = 1000,
        max_buffer: int = 10_000,
        book: Any = None,
    ) -> None:
        #: ``book``: another book with L2Book's methods (the bench's reference book);
        #: only an L2Book gets the array fast path
        self.book = L2Book(max_buffer=max_buffer) if book is None else book
        self.sampler = DrainingSampler(self.book, depth=depth, interval_ms=interval_ms)
        self.stats = BookStats()
        self._row = 0
        self.last_event_ms: int | None = None
        self._fast = isinstance(self.book, L2Book)
        self._hdr = np.zeros(HEADER_SIZE, dtype=np.int64)
        self._scratch(4096)

    def _scratch(self, nbytes: int) -> None:
        """Level arrays big enough for any message of ``nbytes`` (a level takes >= 9)."""
        cap = nbytes // 9 + 2
        self._cap = cap
        self._bids = np.empty((cap, 2), dtype=np.float64)
        self._asks = np.empty((cap, 2), dtype=np.float64)

    def on_raw(self, text: str | bytes) -> None:
        """One websocket message (a depthUpdate, or a combined-stream wrapper of one)."""
        if self._fast:
            raw = text.encode() if isinstance(text, str) else text
            if len(raw) // 9 + 2 > self._cap:
                self._scratch(2 * len(raw))
            code = scan_depth(np.frombuffer(raw, dtype=np.uint8), self._bids, self._asks, self._hdr)
            if code == DEPTH:
                self._on_arrays()
                return
            if code == OTHER:
                return
        msg = orjson.loads(text)
        data = msg.get("data", msg)
        if data.get("e") == "depthUpdate":
            self.on_diff(data)

    def on_diff(self, d: dict[str, Any]) -> bool:
        """Apply one parsed diff; True when the book moved on."""
        book, sampler = self.book, self.sampler
        stats = self.stats
        stats.messages += 1
        ts = d["E"]
        self.last_event_ms = ts
        bids, asks = d["b"], d["a"]
        sampler.before(ts)
        was_in_sync = book.in_sync
        gaps, stale = len(book.gaps), book.stale
        if book.apply_diff(d["U"], d["u"], d["pu"], bids, asks, ts):
            stats.applied += 1
            stats.level_changes += len(bids) + len(asks)
            self._row += 1
            sampler.mark(self._row)
            return True
        self._missed(gaps, stale, was_in_sync)
        return False

    def _on_arrays(self) -> bool:
        """:meth:`on_diff` for the message scan_depth just read into the scratch arrays."""
        book, sampler = self.book, self.sampler
        stats = self.stats
        stats.messages += 1
        ts, first, last, prev, nb, na = self._hdr[:6].tolist()
        self.last_event_ms = ts
        sampler.before(ts)
        was_in_sync = book.in_sync
        gaps, stale = len(book.gaps), book.stale
        if book.apply_diff_checked(first, last, prev, self._bids[:nb], self._asks[:na], ts):
            stats.applied += 1
            stats.level_changes += nb + na
            self._row += 1
            sampler.mark(self._row)
            return True
        self._missed(gaps, stale, was_in_sync)
        return False

    def _missed(self, gaps: int, stale: int, was_in_sync: bool) -> None:
        book, stats = self.book, self.stats
        if len(book.gaps) != gaps:
            stats.gaps += 1
            if was_in_sync:
                self.sampler.flush()  # the state before the gap is complete: keep it
            if len(book.gaps) > 1000:  # a long run: keep the recent ones for reports
                del book.gaps[:-100]
        stats.stale += book.stale - stale  # repeated / older than the state: dropped

    def wants_snapshot(self) -> bool:
        """The book has no valid state (start, or a gap): a REST snapshot is needed."""
        return not self.book.in_sync

    def on_snapshot(self, snap: dict[str, Any]) -> None:
        """A REST depth answer (``lastUpdateId``, ``bids``, ``asks``); the diffs buffered
        meanwhile are applied on top of it."""
        book = self.book
        before = book.snapshots
        ts = snap.get("T") or snap.get("E") or None
        book.apply_snapshot(int(snap["lastUpdateId"]), snap["bids"], snap["asks"], ts=ts)
        if book.snapshots != before:
            self.stats.snapshots += 1
            if book.in_sync and book.last_ts:
                self.sampler.before(book.last_ts)
                self._row += 1
                self.sampler.mark(self._row)

    def drain(self) -> pd.DataFrame:
        """Snapshots kept since the last drain (a canonical BOOK frame)."""
        return self.sampler.drain()

    def finish(self) -> pd.DataFrame:
        """At shutdown: the pending state too."""
        self.sampler.flush()
        return self.sampler.drain()


def warm() -> None:
    """Load (or compile, on a first run) every book kernel now, with the argument types
    the book and the collector use: a live process calls this before its streams start,
    so the ~0.5-1 s it takes does not stall an event loop at the first depth message."""
    feed = BookFeed()
    feed.on_snapshot({"lastUpdateId": 10, "bids": [["1", "1"]], "asks": [["2", "1"]]})
    feed.on_raw(b'{"e":"depthUpdate","E":5,"U":9,"u":12,"pu":8,"b":[["1.5","3"]],"a":[]}')
    feed.book.top(5)
