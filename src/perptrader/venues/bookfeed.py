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

This module is the hot path measured by ``bench/bench_collect.py``: one ``orjson``
parse and one ``apply_diff`` per message; top-N is only computed once per interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pandas as pd

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

    def __init__(self, depth: int = 20, interval_ms: int = 1000, max_buffer: int = 10_000) -> None:
        self.book = L2Book(max_buffer=max_buffer)
        self.sampler = DrainingSampler(self.book, depth=depth, interval_ms=interval_ms)
        self.stats = BookStats()
        self._row = 0
        self.last_event_ms: int | None = None

    def on_raw(self, text: str | bytes) -> None:
        """One websocket message (a depthUpdate, or a combined-stream wrapper of one)."""
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
        if len(book.gaps) != gaps:
            stats.gaps += 1
            if was_in_sync:
                sampler.flush()  # the state before the gap is complete: keep it
            if len(book.gaps) > 1000:  # a long run: keep the recent ones for reports
                del book.gaps[:-100]
        stats.stale += book.stale - stale  # repeated / older than the state: dropped
        return False

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
