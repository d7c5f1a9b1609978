"""Does the rebuilt book agree with the exchange's own best bid/ask?

Binance's bookTicker stream pushes the best bid/ask (price and quantity) with the update
id ``u`` that produced it. A depth diff covers the update ids ``U..u`` and leaves the book
as it stood after ``u``. So whenever a bookTicker's ``u`` equals the ``u`` of a diff the
rebuilt book has just applied, both describe the same state and must agree exactly.
Comparing by update id, not by arrival time, makes the check independent of how the two
streams were delayed relative to each other: a ticker that arrives before its diff
waits for it.

A ticker whose ``u`` falls strictly inside a diff's ``U..u`` range describes a state the
diff stream never shows (a diff aggregates all updates in its window: with
``depth@100ms`` most do), so it cannot be checked; such tickers are counted as unmatched
with their reason, as are those before the book was first in sync, during a gap, and
after the last diff of the capture.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from perptrader.core.errors import DataFormatError
from perptrader.core.instruments import SPOT
from perptrader.marketdata.orderbook import L2Book
from perptrader.marketdata.sources.depth_capture import (
    CaptureListener,
    ReplayInfo,
    detect_market,
    read_capture_bytes,
    replay_binance_capture,
    seed_from_previous,
)

#: reasons a ticker could not be compared
BEFORE_SYNC = "before_first_sync"
INSIDE_DIFF = "inside_diff_range"
OUT_OF_SYNC = "book_out_of_sync"
AFTER_LAST_DIFF = "after_last_diff"


@dataclass
class Mismatch:
    row: int  # line of the bookTicker in the capture
    update_id: int
    ticker_bid: tuple[float, float]
    ticker_ask: tuple[float, float]
    book_bid: tuple[float, float] | None
    book_ask: tuple[float, float] | None


@dataclass
class BookCheckReport:
    """Result of :func:`check_book_against_ticker`; :meth:`as_dict` / :meth:`as_json`."""

    path: str
    symbol: str | None
    market: str
    tickers: int = 0  # bookTicker messages in the capture
    checks: int = 0  # tickers compared (their u was a state of the rebuilt book)
    agreements: int = 0
    mismatches_total: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)  # the first few
    unmatched: dict[str, int] = field(default_factory=dict)  # reason -> tickers
    snapshots: int = 0  # snapshots applied (the first sync and any resyncs)
    resyncs: int = 0  # snapshots applied after the first
    gaps: int = 0
    diffs: int = 0
    diffs_applied: int = 0
    seeded_from: list[str] = field(default_factory=list)
    in_sync_at_end: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def agreement_rate(self) -> float | None:
        """agreements / checks; None when nothing could be checked."""
        return self.agreements / self.checks if self.checks else None

    @property
    def unmatched_total(self) -> int:
        return sum(self.unmatched.values())

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["agreement_rate"] = self.agreement_rate
        out["unmatched_total"] = self.unmatched_total
        return out

    def as_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.as_dict(), indent=indent)


class _Checker(CaptureListener):
    wants_tickers = True

    def __init__(self, report: BookCheckReport, book: L2Book, keep: int) -> None:
        self.report = report
        self.book = book
        self.keep = keep
        self.waiting: deque[tuple[int, int, dict[str, Any]]] = deque()  # (u, row, data)
        #: the book has held a valid state (a snapshot or a seeded, in-sync book)
        self.synced_once = book.in_sync

    def _unmatched(self, reason: str) -> None:
        self.report.unmatched[reason] = self.report.unmatched.get(reason, 0) + 1

    def drain(self, older: str | None = None) -> None:
        """Settle the tickers whose update id the book has reached or passed: compare the
        one equal to the book's id, count the older ones as unmatched (``older`` names
        the reason; by default told from the book's state)."""
        book = self.book
        last = book.last_update_id
        if last is None:
            return
        waiting = self.waiting
        while waiting and waiting[0][0] <= last:
            u, row, d = waiting.popleft()
            if u == last and self.synced_once:
                self._compare(u, row, d)
            elif older is not None:
                self._unmatched(older)
            elif not self.synced_once:
                self._unmatched(BEFORE_SYNC)
            elif not book.in_sync:
                self._unmatched(OUT_OF_SYNC)
            else:
                self._unmatched(INSIDE_DIFF)

    def _compare(self, u: int, row: int, d: dict[str, Any]) -> None:
        rep = self.report
        try:
            tb = (float(d["b"]), float(d["B"]))
            ta = (float(d["a"]), float(d["A"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataFormatError(f"bad bookTicker: {exc}", path=rep.path, row=row) from None
        bb, ba = self.book.best_bid(), self.book.best_ask()
        rep.checks += 1
        if bb == tb and ba == ta:
            rep.agreements += 1
            return
        rep.mismatches_total += 1
        if len(rep.mismatches) < self.keep:
            rep.mismatches.append(Mismatch(row, u, tb, ta, bb, ba))

    def on_ticker(self, d: dict[str, Any], row: int) -> None:
        u = d.get("u")
        if type(u) is not int:
            raise DataFormatError(
                f"not an integer: {u!r}", path=self.report.path, row=row, field="u"
            )
        self.waiting.append((u, row, d))
        last = self.book.last_update_id
        if last is not None and u <= last:
            # the diff for this id was applied before the ticker arrived
            self.drain(older=None if self.synced_once else BEFORE_SYNC)

    def after_snapshot(self, book: L2Book, row: int) -> None:
        older = OUT_OF_SYNC if self.synced_once else BEFORE_SYNC
        self.synced_once = True
        # tickers older than the (re)seeded state were never a state of this book
        self.drain(older=older)

    def after_diff(self, book: L2Book, applied: bool, was_in_sync: bool, row: int) -> None:
        if applied:
            self.drain()


def check_book_against_ticker(
    path: Path | str,
    *,
    chain_previous: bool = True,
    max_chain: int = 3,
    keep_mismatches: int = 10,
    unseeded: bool = False,
) -> BookCheckReport:
    """Replay a Binance capture and compare the rebuilt book's best bid/ask (price and
    quantity) with every bookTicker that carries an update id the book reached.

    ``chain_previous`` seeds a capture without a snapshot from the previous days' files
    beside it (see :mod:`perptrader.marketdata.sources.depth_capture`); the replayed
    files' tickers are not checked.

    ``unseeded`` is a diagnostic for captures that cannot be seeded at all: the book
    starts *empty* just before the first diff, so it only knows levels that changed
    during the capture. A level that never changed is missing, so disagreements are
    expected (mostly early on); the report says so in its notes. Never use such a book
    as data.
    """
    path = Path(path)
    data = read_capture_bytes(path)
    market = detect_market(data, path)
    book = L2Book(spot=market == SPOT)
    report = BookCheckReport(path=str(path), symbol=None, market=market)
    info = ReplayInfo()
    if chain_previous and b'"lastUpdateId"' not in data:
        report.seeded_from = seed_from_previous(path, book, max_chain)
        if report.seeded_from and not book.in_sync:
            report.notes.append("the previous captures left the book out of sync")
    if unseeded and not book.in_sync and b'"lastUpdateId"' not in data:
        first = _first_diff_id(data)
        if first is not None:
            # an empty "snapshot" that the first diff continues under either rule
            book.apply_snapshot(first - 1 if book.spot else first, [], [])
            report.notes.append(
                "UNSEEDED diagnostic: the book started empty at the first "
                "diff and only knows levels that changed since; "
                "disagreements are expected where an unchanged level is "
                "the best"
            )
    checker = _Checker(report, book, keep_mismatches)
    snapshots_before, gaps_before, applied_before = book.snapshots, len(book.gaps), book.applied
    try:
        replay_binance_capture(path, book, checker, data, info)
    except DataFormatError as exc:
        raise exc.with_path(path) from None
    end_reason = (
        BEFORE_SYNC if not checker.synced_once else AFTER_LAST_DIFF if book.in_sync else OUT_OF_SYNC
    )
    for _ in checker.waiting:
        checker._unmatched(end_reason)
    report.symbol = info.symbol
    report.tickers = info.tickers
    report.diffs = info.diffs
    report.diffs_applied = book.applied - applied_before
    report.snapshots = book.snapshots - snapshots_before
    report.resyncs = max(0, report.snapshots - (0 if report.seeded_from else 1))
    report.gaps = len(book.gaps) - gaps_before
    report.in_sync_at_end = book.in_sync
    if report.seeded_from:
        report.notes.append("book seeded by replaying " + ", ".join(report.seeded_from))
    if not checker.synced_once:
        report.notes.append(
            "the book was never in sync (no snapshot in the capture, and no "
            "previous day's capture beside it that joins up): nothing to check"
        )
    return report


def _first_diff_id(data: bytes) -> int | None:
    """``U`` of the first depth diff in a capture, or None."""
    for line in data.split(b"\n"):
        if b'"depthUpdate"' in line:
            msg = orjson.loads(line[line.find(b" ") + 1 :])
            d = msg.get("data", msg)
            first = d.get("U")
            return first if type(first) is int else None
    return None
