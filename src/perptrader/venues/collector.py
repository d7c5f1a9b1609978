"""The live collector: venue streams into the store, with no hole left by a reconnect.

Streams (``--streams``, per symbol; one asyncio task each):

- ``klines[:TF]`` (ccxt.pro ``watch_ohlcv``): only CLOSED candles are stored (closed once
  a newer one arrives or its close time has passed). On start and after every
  reconnect the gap since the last stored bar is backfilled over REST
  (``CcxtRestSource``, the ``data download`` path, which also brings the kline extras).
- ``trades`` (``watch_trades`` on ``@aggTrade``): stored as ``data import`` stores
  aggTrades files (``trade_id`` = first trade id, ``last_trade_id``). After a reconnect
  or restart the trades between the last stored one and the first one the new
  subscription sees are fetched over REST ``aggTrades`` (by time windows, filtered by
  id), so a dropped socket loses none.
- ``book``: the raw ``@depth@100ms`` diffs through the project's ``L2Book``
  (``venues/bookfeed.py``): sequence-checked with ``U``/``u``/``pu``, resynchronised
  from a REST snapshot on a gap; stored as top-``book_depth`` snapshots, one per
  ``book_interval_s`` of exchange time, each with its update id (docs/data.md).
- ``mark`` (``watch_mark_price``, the ``markPrice`` stream, which carries mark price and
  funding): each closed bar of mark price and each funding settlement the stream
  announces (``T``, next funding time, passes) is stored from REST
  (``markPriceKlines``, ``fundingRate``: the venue's exact values), with the same
  backfill on start/reconnect.
- ``liquidations`` (``watch_liquidations``, ``forceOrder``): every event once.
- ``oi``: open interest polled over REST every ``oi_interval_s`` (no Binance stream).

Rows are buffered and written every ``flush_interval_s`` in ONE ``store.write`` (one
transaction) through the same ``validate`` as every other path; upserts make a
duplicated message store nothing twice. If the store cannot be opened (DuckDB locked by a
reader) the batch stays buffered and is retried; buffers are bounded
(``max_buffer_rows``: the oldest book snapshots go first, counted in ``dropped_rows``).

All REST calls share one ``VenueClient`` (one weight budget) behind one lock: a 429's
``Retry-After`` wait blocks every other call, so no call lands inside the back-off (that
is what earns a 418). A network error or a broken stream ends the current watch; the task
waits an exponential backoff (reset after a message) and subscribes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import ccxt
import pandas as pd

from perptrader.core.errors import PerptraderError, StoreError
from perptrader.core.instruments import Instrument
from perptrader.core.timeframes import timeframe_ms
from perptrader.marketdata.dataset import Dataset, validate
from perptrader.marketdata.download import SeriesRequest, download_series
from perptrader.marketdata.kinds import Kind
from perptrader.marketdata.store.base import MarketStore
from perptrader.venues.backfill import CcxtRestSource, SourceOptions
from perptrader.venues.bookfeed import BookFeed
from perptrader.venues.ccxt_client import VENUES, check_venue, create_exchange

log = logging.getLogger(__name__)

STREAMS = ("klines", "trades", "book", "mark", "liquidations", "oi")
_ALIASES = {
    "bars": "klines",
    "ohlcv": "klines",
    "depth": "book",
    "funding": "mark",
    "open_interest": "oi",
    "forceorder": "liquidations",
}
DEFAULT_STREAMS = "klines,trades,book,mark,liquidations"


def parse_streams(text: str, timeframe: str | None = None) -> tuple[tuple[str, ...], str]:
    """``klines:1m,trades,book`` -> (('klines', 'trades', 'book'), '1m'); ``bars`` is
    ``klines``; the timeframe of ``klines:TF`` wins over ``timeframe`` (default 1m)."""
    names: list[str] = []
    tf = timeframe
    for raw in (p.strip() for p in text.split(",")):
        if not raw:
            continue
        name, _, arg = raw.partition(":")
        name = _ALIASES.get(name.lower(), name.lower())
        if name not in STREAMS:
            raise PerptraderError(
                f"unknown stream(s) [{raw!r}]: choose from "
                f"{','.join(STREAMS)} (klines:TF sets the timeframe)"
            )
        if arg:
            if name != "klines":
                raise PerptraderError(f"stream {name} takes no argument (got {raw!r})")
            try:
                timeframe_ms(arg)
            except ValueError:
                raise PerptraderError(f"not a timeframe: {raw!r} (e.g. klines:1m)") from None
            if timeframe and timeframe != arg:
                raise PerptraderError(f"--timeframe {timeframe} contradicts {raw}")
            tf = arg
        if name not in names:
            names.append(name)
    if not names:
        raise PerptraderError("no stream chosen")
    return tuple(names), tf or "1m"


@dataclass
class CollectorOptions:
    streams: tuple[str, ...] = ("klines", "trades", "book", "mark", "liquidations")
    timeframe: str = "1m"
    book_depth: int = 20
    book_interval_s: float = 1.0
    book_speed: str = "100ms"
    flush_interval_s: float = 1.0
    status_interval_s: float = 10.0
    oi_interval_s: float = 60.0
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    #: bars fetched on a fresh store; trades looked back for on a restart
    fresh_bars: int = 1000
    trades_lookback_s: float = 3600.0
    max_buffer_rows: int = 2_000_000
    url: str | None = None
    #: REST source for backfills and snapshots (default: one for the same venue and URL)
    rest: Callable[[], CcxtRestSource] | None = None
    now_ms: Callable[[], int] = field(default=lambda: int(time.time() * 1000))
    #: called with a status dict every ``status_interval_s`` (the CLI prints it)
    on_status: Callable[[dict[str, Any]], None] | None = None


@dataclass
class StreamStats:
    messages: int = 0
    rows_written: int = 0
    reconnects: int = 0
    backfills: int = 0
    backfilled_rows: int = 0
    last_event_ms: int | None = None
    last_error: str = ""


class Collector:
    """Collect ``symbols`` from ``exchange_id`` into ``store`` until stopped."""

    def __init__(
        self,
        exchange_id: str,
        symbols: list[str],
        store: MarketStore,
        options: CollectorOptions | None = None,
    ) -> None:
        self.exchange_id = check_venue(exchange_id)
        self.opts = options or CollectorOptions()
        unknown = set(self.opts.streams) - set(STREAMS)
        if unknown:
            raise PerptraderError(
                f"unknown stream(s) {sorted(unknown)}: choose from {','.join(STREAMS)}"
            )
        if "book" in self.opts.streams and self.exchange_id != "binanceusdm":
            raise PerptraderError("the book stream is implemented for binanceusdm only")
        try:
            timeframe_ms(self.opts.timeframe)
        except ValueError:
            raise PerptraderError(f"not a timeframe: {self.opts.timeframe!r}") from None
        self.symbols = [Instrument.parse(s).symbol for s in symbols]
        self.store = store
        self._store_lock = threading.Lock()
        self._rest_lock = threading.Lock()
        self.stats: dict[str, StreamStats] = defaultdict(StreamStats)
        #: (kind, symbol, timeframe) -> rows (dicts; book: frames)
        self._buffers: dict[tuple[Kind, str, str | None], list[Any]] = defaultdict(list)
        self._buffered = 0
        self.dropped_rows = 0
        self.store_errors = 0
        self.last_write_ms: int | None = None
        self.rows_written = 0
        self._stop = asyncio.Event()
        self.ex: Any = None
        self._rest: CcxtRestSource | None = None
        self._last_bar: dict[str, int] = {}
        self._last_trade: dict[str, tuple[int, int]] = {}  # symbol -> (ts ms, trade id)
        self.books: dict[str, BookFeed] = {}
        self._trade_ids: dict[str, tuple[set[int], deque[int]]] = defaultdict(
            lambda: (set(), deque())
        )
        self._unified: dict[str, str] = {}
        self._session: aiohttp.ClientSession | None = None
        self._started = time.monotonic()

    # -- lifecycle --------------------------------------------------------------------------
    async def run(self, duration_s: float | None = None) -> dict[str, StreamStats]:
        """Collect until :meth:`stop` or ``duration_s``; flushes what is buffered."""
        self.ex = create_exchange(self.exchange_id, url=self.opts.url, pro=True)
        self._session = aiohttp.ClientSession()
        self._started = time.monotonic()
        try:
            await self.ex.load_markets()
            markets = {
                m["id"]: m["symbol"]
                for m in self.ex.markets.values()
                if m.get("swap") and m.get("linear")
            }
            missing = [s for s in self.symbols if s not in markets]
            if missing:
                raise PerptraderError(
                    f"{self.exchange_id} lists no linear perpetual {', '.join(missing)}"
                )
            self._unified = {sym: markets[sym] for sym in self.symbols}
            if "book" in self.opts.streams:
                # the book's numba kernels load now, not at the first depth message
                # (that would stall every stream of this event loop for ~0.5-1 s)
                from perptrader.venues.bookfeed import warm

                warm()
            flusher = asyncio.create_task(self._flush_loop())
            tasks = [asyncio.create_task(self._status_loop())]
            for sym in self.symbols:
                for stream in self.opts.streams:
                    watch = getattr(self, f"_watch_{stream}")
                    tasks.append(
                        asyncio.create_task(
                            self._supervise(f"{sym} {stream}", watch, sym, markets[sym])
                        )
                    )
            try:
                if duration_s is not None:
                    await asyncio.wait_for(self._stop.wait(), duration_s)
                else:
                    await self._stop.wait()
            except TimeoutError:
                pass
            finally:
                self._stop.set()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                # the flusher is not cancelled: a write in flight completes (a batch taken
                # out of the buffers and cancelled mid-write would be lost)
                await asyncio.gather(flusher, return_exceptions=True)
                self._drain_trade_caches()
                for symbol, feed in self.books.items():
                    self._add_book(symbol, feed.finish())
                await self.flush()
        finally:
            await self.ex.close()
            await self._session.close()
        return dict(self.stats)

    def stop(self) -> None:
        self._stop.set()

    async def _supervise(
        self, name: str, watch: Callable[..., Any], symbol: str, unified: str
    ) -> None:
        """Run one watch loop forever, re-subscribing after errors with backoff."""
        delay = self.opts.backoff_s
        while True:
            before = self.stats[name].messages
            try:
                await watch(name, symbol, unified)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the collector stays up, whatever it is
                expected = (
                    ccxt.NetworkError,
                    ccxt.ExchangeError,
                    PerptraderError,
                    aiohttp.ClientError,
                    TimeoutError,
                    ConnectionError,
                )
                if not isinstance(exc, expected):
                    log.exception("%s: unexpected error", name)
                stats = self.stats[name]
                stats.reconnects += 1
                text = str(exc).splitlines()[0][:200] if str(exc) else ""
                stats.last_error = text or type(exc).__name__
                if stats.messages > before:
                    delay = self.opts.backoff_s  # it worked for a while: start over
                log.warning("%s: %s; resubscribing in %.2f s", name, stats.last_error, delay)
                await asyncio.sleep(delay)
                delay = min(self.opts.max_backoff_s, delay * 2)

    def _seen(self, name: str, event_ms: int | None) -> StreamStats:
        stats = self.stats[name]
        stats.messages += 1
        if event_ms is not None:
            stats.last_event_ms = int(event_ms)
        return stats

    # -- status -------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Messages/s, lag (clock - newest event time) per stream, last write, books."""
        now = self.opts.now_ms()
        elapsed = max(1e-9, time.monotonic() - self._started)
        streams = {}
        for name, st in sorted(self.stats.items()):
            streams[name] = {
                "messages": st.messages,
                "messages_per_s": round(st.messages / elapsed, 2),
                "lag_ms": None if st.last_event_ms is None else now - st.last_event_ms,
                "rows_written": st.rows_written,
                "reconnects": st.reconnects,
                "backfills": st.backfills,
                "backfilled_rows": st.backfilled_rows,
                "last_error": st.last_error or None,
            }
        books = {
            sym: {
                "update_id": f.book.last_update_id,
                "in_sync": f.book.in_sync,
                "gaps": f.stats.gaps,
                "snapshots": f.stats.snapshots,
                "applied": f.stats.applied,
            }
            for sym, f in self.books.items()
        }
        total = sum(st.messages for st in self.stats.values())
        return {
            "time": pd.Timestamp(now, unit="ms", tz="UTC").isoformat(),
            "uptime_s": round(elapsed, 3),
            "messages": total,
            "messages_per_s": round(total / elapsed, 2),
            "lag_ms": max(
                (s["lag_ms"] for s in streams.values() if s["lag_ms"] is not None), default=None
            ),
            "last_write": None
            if self.last_write_ms is None
            else pd.Timestamp(self.last_write_ms, unit="ms", tz="UTC").isoformat(),
            "rows_written": self.rows_written,
            "buffered_rows": self._buffered,
            "dropped_rows": self.dropped_rows,
            "store_errors": self.store_errors,
            "streams": streams,
            "books": books,
        }

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(self.opts.status_interval_s)
            if self.opts.on_status is not None:
                self.opts.on_status(self.status())

    # -- storage ------------------------------------------------------------------------------
    def _write(self, datasets: list[Dataset]) -> list[Any]:
        with self._store_lock:
            checked = [validate(ds) for ds in datasets]
            return self.store.write(checked)

    def _add(self, kind: Kind, symbol: str, rows: list[Any], tf: str | None = None) -> None:
        if not rows:
            return
        self._buffers[(kind, symbol, tf)].extend(rows)
        self._buffered += len(rows)
        self._bound()

    def _add_book(self, symbol: str, frame: pd.DataFrame) -> None:
        if len(frame):
            self._buffers[(Kind.BOOK, symbol, None)].append(frame)
            self._buffered += len(frame)
            self._bound()

    def _bound(self) -> None:
        """Bounded memory: past ``max_buffer_rows`` the oldest book snapshots go."""
        while self._buffered > self.opts.max_buffer_rows:
            books = [k for k in self._buffers if k[0] is Kind.BOOK and self._buffers[k]]
            if not books:
                return
            oldest = self._buffers[books[0]].pop(0)
            self._buffered -= len(oldest)
            self.dropped_rows += len(oldest)

    async def flush(self) -> None:
        """Write every buffer in one transaction; on a store error keep them for later."""
        for symbol, feed in self.books.items():
            self._add_book(symbol, feed.drain())
        buffers = {k: v for k, v in self._buffers.items() if v}
        if not buffers:
            return
        # taken out before the (threaded) write: rows arriving meanwhile go to new lists
        taken = self._buffered
        self._buffers = defaultdict(list)
        self._buffered = 0
        datasets, names = [], []
        for (kind, symbol, tf), rows in buffers.items():
            frame = pd.concat(rows, ignore_index=True) if kind is Kind.BOOK else pd.DataFrame(rows)
            frame.index = pd.RangeIndex(1, len(frame) + 1)
            datasets.append(
                Dataset(kind, self._instrument(symbol), frame, tf, f"{self.exchange_id} stream")
            )
            names.append(f"{symbol} {_STREAM_OF[kind]}")
        try:
            results = await asyncio.to_thread(self._write, datasets)
        except StoreError as exc:
            self.store_errors += 1
            for key, rows in buffers.items():  # back in front of what came meanwhile
                self._buffers[key][:0] = rows
            self._buffered += taken
            self._bound()
            log.warning(
                "store unavailable (%s); %d rows kept for the next flush",
                str(exc).splitlines()[0][:200],
                self._buffered,
            )
            return
        except PerptraderError as exc:
            # a refused batch would be refused again: report it and move on
            log.error("%d buffered rows refused: %s", taken, exc)
            results = []
        for name, res in zip(names, results, strict=False):
            written = res.rows_inserted + res.rows_updated
            self.stats[name].rows_written += written
            self.rows_written += written
        self.last_write_ms = self.opts.now_ms()

    async def _flush_loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.opts.flush_interval_s)
            await self.flush()

    def _instrument(self, symbol: str) -> Instrument:
        return Instrument(VENUES[self.exchange_id], "perp", symbol)

    # -- REST ---------------------------------------------------------------------------------
    def _rest_source(self) -> CcxtRestSource:
        if self._rest is None:
            self._rest = (
                self.opts.rest()
                if self.opts.rest
                else CcxtRestSource(
                    self.exchange_id, SourceOptions(url=self.opts.url, now_ms=self.opts.now_ms)
                )
            )
        return self._rest

    def _rest_call(self, what: str, fn_name: str, *args: Any, weight: int = 1) -> Any:
        """One REST call under the shared lock, budget and retry rules (thread)."""
        with self._rest_lock:
            src = self._rest_source()
            src.open()
            return src.client.call(what, getattr(src.ex, fn_name), *args, weight=weight)

    def _backfill_series(
        self, symbol: str, kind: Kind, timeframe: str | None, until_ms: int, lookback_ms: int
    ) -> int:
        """REST: from the last stored row (else ``until - lookback``) up to ``until_ms``
        (exclusive), stored page by page; returns rows stored."""
        req = SeriesRequest(self._instrument(symbol), kind, timeframe)
        store = _LockedStore(self.store, self._store_lock)
        start = pd.Timestamp(until_ms - lookback_ms, unit="ms", tz="UTC")
        with store.lock:
            last = self.store.read(
                kind,
                req.instrument,
                timeframe if timeframe and kind in (Kind.OHLCV, Kind.MARK, Kind.INDEX) else None,
                start,
            )
        if not last.empty:
            start = pd.Timestamp(last["ts"].max())
        end = pd.Timestamp(until_ms, unit="ms", tz="UTC")
        if start >= end:
            return 0
        with self._rest_lock:
            report = download_series(self._rest_source(), store, req, start, end)
        return report.rows_inserted + report.rows_updated

    # -- klines ---------------------------------------------------------------------------
    async def _watch_klines(self, name: str, symbol: str, unified: str) -> None:
        tf = self.opts.timeframe
        step = timeframe_ms(tf)
        backfilled = False
        while True:
            candles = await self.ex.watch_ohlcv(unified, tf)
            newest = max(int(c[0]) for c in candles)
            stats = self._seen(name, newest)
            if not backfilled:
                # everything before the first bar this subscription saw comes over REST
                n = await asyncio.to_thread(
                    self._backfill_series,
                    symbol,
                    Kind.OHLCV,
                    tf,
                    newest,
                    self.opts.fresh_bars * step,
                )
                stats.backfills += 1
                stats.backfilled_rows += n
                backfilled = True
            now = self.opts.now_ms()
            done = self._last_bar.get(symbol, -1)
            rows = []
            for c in sorted(candles, key=lambda c: c[0]):
                t = int(c[0])
                if t <= done or not (t < newest or t + step <= now):
                    continue
                rows.append(
                    {
                        "ts": pd.Timestamp(t, unit="ms", tz="UTC"),
                        "open": c[1],
                        "high": c[2],
                        "low": c[3],
                        "close": c[4],
                        "volume": c[5],
                    }
                )
                done = t
            self._last_bar[symbol] = done
            self._add(Kind.OHLCV, symbol, rows, tf)

    # -- trades ---------------------------------------------------------------------------
    async def _watch_trades(self, name: str, symbol: str, unified: str) -> None:
        seen = self._trade_ids[symbol][0]
        head: tuple[int, int] | None = None  # first trade of this subscription
        pending = self.exchange_id == "binanceusdm"  # the REST backfill, until done
        params = {"name": "aggTrade"} if self.exchange_id == "binanceusdm" else {}
        while True:
            trades = await self.ex.watch_trades(unified, None, None, params)
            if not trades:
                continue
            stats = self._seen(name, max(int(t["timestamp"]) for t in trades))
            rows = self._new_trades(symbol, trades)
            if not rows:
                continue
            self._add(Kind.TRADES, symbol, rows)
            if head is None:
                first = min(rows, key=lambda r: r["trade_id"])
                head = (int(first["ts"].value // 1_000_000), first["trade_id"])
            if pending:
                try:
                    if symbol not in self._last_trade:
                        await asyncio.to_thread(self._load_last_trade, symbol)
                except StoreError as exc:  # locked by a reader: try again next message
                    log.info("%s: store busy (%s); trade backfill postponed", name, exc)
                else:
                    pending = False
                    last = self._last_trade.get(symbol)
                    if last is not None and last[1] < head[1]:
                        got = await asyncio.to_thread(self._backfill_trades, symbol, last, head)
                        stats.backfills += 1
                        stats.backfilled_rows += len(got)
                        self._add(
                            Kind.TRADES, symbol, [r for r in got if r["trade_id"] not in seen]
                        )
            if not pending:  # (while pending, the last trade before this one is wanted)
                tail = max(rows, key=lambda r: r["trade_id"])
                self._last_trade[symbol] = (int(tail["ts"].value // 1_000_000), tail["trade_id"])

    def _new_trades(self, symbol: str, trades: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """ccxt trades -> rows, each trade id once (the last 100k ids are remembered)."""
        seen, order = self._trade_ids[symbol]
        rows = []
        for tr in trades:
            info = tr.get("info") or {}
            tid = int(info.get("f", tr["id"]))
            if tid in seen:
                continue
            seen.add(tid)
            order.append(tid)
            rows.append(
                _trade_row(
                    int(tr["timestamp"]), tid, info.get("l"), tr["price"], tr["amount"], tr["side"]
                )
            )
        while len(order) > 100_000:
            seen.discard(order.popleft())
        return rows

    def _drain_trade_caches(self) -> None:
        """At shutdown: trades ccxt.pro received after the last ``watch_trades`` returned
        (it hands them out with the next message, which will not come)."""
        if "trades" not in self.opts.streams or self.ex is None:
            return
        cached = getattr(self.ex, "trades", None) or {}
        for symbol, unified in self._unified.items():
            cache = cached.get(unified) if hasattr(cached, "get") else None
            if cache:
                self._add(Kind.TRADES, symbol, self._new_trades(symbol, list(cache)))

    def _load_last_trade(self, symbol: str) -> None:
        """On (re)start: the newest stored trade within ``trades_lookback_s``."""
        since = pd.Timestamp(
            self.opts.now_ms() - int(self.opts.trades_lookback_s * 1000), unit="ms", tz="UTC"
        )
        with self._store_lock:
            frame = self.store.read(Kind.TRADES, self._instrument(symbol), None, since)
        if not frame.empty:
            row = frame.loc[frame["trade_id"].idxmax()]
            self._last_trade[symbol] = (
                int(pd.Timestamp(row["ts"]).value // 1_000_000),
                int(row["trade_id"]),
            )

    def _backfill_trades(
        self, symbol: str, last: tuple[int, int], head: tuple[int, int]
    ) -> list[dict[str, Any]]:
        """REST aggTrades strictly between the last stored trade and the first one the
        new subscription saw: time windows (at most 1 h each, Binance's rule) from the
        last trade's time, kept by id."""
        (since_ms, since_id), (until_ms, until_id) = last, head
        out: list[dict[str, Any]] = []
        cursor = since_ms
        while cursor <= until_ms:
            end = min(until_ms, cursor + 3_600_000 - 1)
            page = (
                self._rest_call(
                    f"aggTrades {symbol}",
                    "fapiPublicGetAggTrades",
                    {"symbol": symbol, "startTime": cursor, "endTime": end, "limit": 1000},
                    weight=20,
                )
                or []
            )
            for r in page:
                first_id = int(r["f"])
                if since_id < first_id < until_id:
                    out.append(
                        _trade_row(
                            int(r["T"]),
                            first_id,
                            r.get("l"),
                            float(r["p"]),
                            float(r["q"]),
                            "sell" if r["m"] else "buy",
                        )
                    )
            if len(page) >= 1000 and int(page[-1]["T"]) > cursor:
                cursor = int(page[-1]["T"])  # same-ms neighbours come again: kept by id
            else:
                cursor = end + 1
        unique = {r["trade_id"]: r for r in out}
        return [unique[k] for k in sorted(unique)]

    # -- book -----------------------------------------------------------------------------
    def _ws_base(self) -> str:
        return str(self.ex.urls["api"]["ws"]["linear"]).rstrip("/")

    async def _watch_book(self, name: str, symbol: str, unified: str) -> None:
        feed = self.books.get(symbol)
        if feed is None:
            feed = self.books[symbol] = BookFeed(
                self.opts.book_depth, int(self.opts.book_interval_s * 1000)
            )
        url = f"{self._ws_base()}/{symbol.lower()}@depth@{self.opts.book_speed}"
        assert self._session is not None
        snapshot: asyncio.Task[None] | None = None
        try:
            async with self._session.ws_connect(url, heartbeat=30, autoping=True) as ws:
                async for msg in ws:
                    if msg.type is not aiohttp.WSMsgType.TEXT:
                        break
                    stats = self.stats[name]
                    feed.on_raw(msg.data)
                    stats.messages += 1
                    stats.last_event_ms = feed.last_event_ms
                    if feed.wants_snapshot() and (snapshot is None or snapshot.done()):
                        if snapshot is not None and snapshot.exception() is not None:
                            raise snapshot.exception()  # type: ignore[misc]
                        snapshot = asyncio.create_task(self._snapshot(name, symbol, feed))
                raise ccxt.NetworkError(f"depth stream closed ({ws.close_code})")
        finally:
            if snapshot is not None and not snapshot.done():
                snapshot.cancel()
                with contextlib.suppress(BaseException):
                    await snapshot

    async def _snapshot(self, name: str, symbol: str, feed: BookFeed) -> None:
        snap = await asyncio.to_thread(
            self._rest_call,
            f"depth {symbol}",
            "fapiPublicGetDepth",
            {"symbol": symbol, "limit": 1000},
            weight=20,
        )
        feed.on_snapshot(snap)
        self.stats[name].backfills += 1
        if feed.wants_snapshot():
            # the snapshot is older than every buffered diff's chain: ask again soon
            await asyncio.sleep(self.opts.backoff_s)

    # -- mark price and funding ----------------------------------------------------------------
    async def _watch_mark(self, name: str, symbol: str, unified: str) -> None:
        tf = self.opts.timeframe
        step = timeframe_ms(tf)
        bucket: int | None = None
        settle: int | None = None
        while True:
            ev = await self.ex.watch_mark_price(unified)
            info = ev.get("info") or {}
            t = int(ev.get("timestamp") or info.get("E") or self.opts.now_ms())
            stats = self._seen(name, t)
            nxt = int(info.get("T") or 0) or None
            jobs = []
            if bucket is None or t // step > bucket:
                jobs.append((Kind.MARK, tf, t // step * step, self.opts.fresh_bars * step))
                bucket = t // step
            if settle is None or (nxt is not None and nxt > settle and t >= settle):
                jobs.append((Kind.FUNDING, None, t + 1, 30 * 86_400_000))
                settle = nxt
            for kind, kind_tf, until, lookback in jobs:
                n = await asyncio.to_thread(
                    self._backfill_series, symbol, kind, kind_tf, until, lookback
                )
                stats.backfills += 1
                stats.backfilled_rows += n

    # -- liquidations, open interest -----------------------------------------------------------
    async def _watch_liquidations(self, name: str, symbol: str, unified: str) -> None:
        while True:
            events = await self.ex.watch_liquidations(unified)
            self._seen(name, max((int(e["timestamp"]) for e in events), default=None))
            self._add(
                Kind.LIQUIDATIONS,
                symbol,
                [
                    {
                        "ts": pd.Timestamp(int(ev["timestamp"]), unit="ms", tz="UTC"),
                        "side": ev["side"],
                        "price": ev["price"],
                        "qty": ev["contracts"],
                        "order_type": _order_type(ev.get("info")),
                    }
                    for ev in events
                ],
            )

    async def _watch_oi(self, name: str, symbol: str, unified: str) -> None:
        while True:
            oi = await asyncio.to_thread(
                self._rest_call, f"open interest {symbol}", "fetch_open_interest", unified
            )
            t = int(oi.get("timestamp") or self.opts.now_ms())
            self._seen(name, t)
            self._add(
                Kind.OPEN_INTEREST,
                symbol,
                [
                    {
                        "ts": pd.Timestamp(t, unit="ms", tz="UTC"),
                        "oi_contracts": oi.get("openInterestAmount"),
                        "oi_value": oi.get("openInterestValue"),
                    }
                ],
            )
            await asyncio.sleep(self.opts.oi_interval_s)


def _order_type(info: Any) -> str | None:
    """forceOrder's order type ("LIMIT"), from ccxt's raw info (the order or the event)."""
    info = info or {}
    inner = info.get("o")
    value = inner.get("o") if isinstance(inner, dict) else inner
    return str(value).lower() if value else None


def _trade_row(
    ts: int, trade_id: int, last_id: Any, price: float, qty: float, side: str | None
) -> dict[str, Any]:
    return {
        "ts": pd.Timestamp(ts, unit="ms", tz="UTC"),
        "trade_id": trade_id,
        "price": float(price),
        "qty": float(qty),
        "side": side,
        "last_trade_id": int(last_id) if last_id not in (None, "") else pd.NA,
    }


_STREAM_OF = {
    Kind.OHLCV: "klines",
    Kind.TRADES: "trades",
    Kind.BOOK: "book",
    Kind.LIQUIDATIONS: "liquidations",
    Kind.OPEN_INTEREST: "oi",
    Kind.MARK: "mark",
    Kind.FUNDING: "mark",
}


class _LockedStore(MarketStore):
    """The collector's store as seen from a REST backfill thread: one call at a time."""

    backend = "locked"

    def __init__(self, inner: MarketStore, lock: threading.Lock) -> None:
        self.inner, self.lock = inner, lock
        self.backend = inner.backend

    def migrate(self) -> str:
        with self.lock:
            return self.inner.migrate()

    def write(self, datasets: Any) -> Any:
        with self.lock:
            return self.inner.write(datasets)

    def read(self, *args: Any, **kwargs: Any) -> pd.DataFrame:
        with self.lock:
            return self.inner.read(*args, **kwargs)

    def inventory(self) -> Any:
        with self.lock:
            return self.inner.inventory()

    def close(self) -> None:  # the collector owns the store
        return None


class BatchStore(MarketStore):
    """An embedded (DuckDB) store opened only for each batch: ``opener()`` opens it,
    the call runs, and it is closed again, so other processes (``data list``, a
    backtest, a notebook) can open the file between the collector's flushes. When the
    file is held by another process the open fails with a StoreError and the collector
    keeps the batch for the next flush."""

    def __init__(self, opener: Callable[[], MarketStore]) -> None:
        self.opener = opener
        probe = opener()  # fail early on a bad path; also runs the migrations
        self.backend = probe.backend
        probe.close()

    def _with(self, fn: Callable[[MarketStore], Any]) -> Any:
        try:
            store = self.opener()
        except StoreError:
            raise
        except Exception as exc:  # duckdb's lock error and friends
            raise StoreError(f"cannot open the store: {exc}") from exc
        try:
            return fn(store)
        finally:
            store.close()

    def migrate(self) -> str:
        return str(self._with(lambda s: s.migrate()))

    def write(self, datasets: Any) -> Any:
        return self._with(lambda s: s.write(datasets))

    def read(self, *args: Any, **kwargs: Any) -> pd.DataFrame:
        return self._with(lambda s: s.read(*args, **kwargs))

    def inventory(self) -> Any:
        return self._with(lambda s: s.inventory())

    def close(self) -> None:
        return None


def collect(
    exchange_id: str,
    symbols: list[str],
    store: MarketStore,
    options: CollectorOptions,
    duration_s: float | None,
) -> Collector:
    """Run a collector in its own event loop; SIGINT/SIGTERM stop it cleanly, with what
    is buffered written. Returns the finished collector (stats, status())."""
    import signal

    collector: Collector | None = None

    async def main() -> None:
        nonlocal collector
        collector = Collector(exchange_id, symbols, store, options)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            # not possible off the main thread (tests): those stop by duration
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, collector.stop)
        await collector.run(duration_s)

    asyncio.run(main())
    assert collector is not None
    return collector


def status_line(status: dict[str, Any]) -> str:
    """The one-line human status: messages/s, lag, last write, rows."""
    lag = status["lag_ms"]
    books = " ".join(
        f"{s}@{b['update_id']}{'' if b['in_sync'] else '(resync)'}"
        for s, b in status["books"].items()
    )
    return (
        f"{status['time']} {status['messages_per_s']:.1f} msg/s, lag "
        f"{'-' if lag is None else f'{lag / 1000:.1f} s'}, last write "
        f"{status['last_write'] or '-'}, {status['rows_written']:,} rows written, "
        f"{status['buffered_rows']:,} buffered" + (f", book {books}" if books else "")
    )


__all__ = [
    "STREAMS",
    "BatchStore",
    "Collector",
    "CollectorOptions",
    "StreamStats",
    "collect",
    "parse_streams",
    "status_line",
]
