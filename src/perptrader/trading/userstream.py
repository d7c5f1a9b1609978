"""The venue's user data stream: order and account events as they happen.

Binance USD-M: a listen key from ``POST /fapi/v1/listenKey`` (signed with the API key),
kept alive with ``PUT`` (it lapses after 60 minutes without one), and a websocket at
``<ws base>/ws/<listenKey>`` carrying ORDER_TRADE_UPDATE, ACCOUNT_UPDATE and, when the
key lapsed anyway, ``listenKeyExpired``.

The stream runs on its own thread and asyncio loop (ccxt's async client for the key
calls, aiohttp for the socket) and only ever fills a queue: the engine drains it at its
own pace. Whenever the socket drops or the key expires the stream says so
(``connected`` false, ``reconnects`` counted) and reconnects with backoff under a fresh key;
meanwhile the engine asks over REST, which it does for every open order at every bar
anyway, so nothing depends on the stream being up: it makes fills arrive sooner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from perptrader.trading.venue import VenueTrade
from perptrader.venues.ccxt_client import Credentials, create_exchange, ws_url_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UserEvent:
    """``kind``: trade (a fill of an order), order (any other order change), account
    (balance/position change: fills, funding), expired (the listen key lapsed)."""

    kind: str
    client_order_id: str | None = None
    status: str | None = None
    trade: VenueTrade | None = None
    reason: str | None = None
    raw: Any = None


def parse_event(message: dict[str, Any]) -> UserEvent | None:
    """One user-stream message -> UserEvent (None for what the engine does not use)."""
    kind = message.get("e")
    if kind == "ORDER_TRADE_UPDATE":
        o = message.get("o") or {}
        status = str(o.get("X", "")).lower()
        trade = None
        if o.get("x") == "TRADE":
            trade = VenueTrade(trade_id=str(o.get("t")), venue_order_id=str(o.get("i")),
                               symbol=str(o.get("s")), side=str(o.get("S", "")).lower(),
                               qty=float(o.get("l") or 0.0), price=float(o.get("L") or 0.0),
                               fee=float(o.get("n") or 0.0),
                               liquidity="maker" if o.get("m") else "taker",
                               ts=int(o.get("T") or message.get("T") or 0))
        return UserEvent("trade" if trade else "order", client_order_id=o.get("c"),
                         status=status, trade=trade, raw=message)
    if kind == "ACCOUNT_UPDATE":
        return UserEvent("account", reason=(message.get("a") or {}).get("m"), raw=message)
    if kind == "listenKeyExpired":
        return UserEvent("expired", raw=message)
    return None


class UserStream:
    """``start()`` / ``stop()``; ``drain()`` returns the events received since the last
    call. ``events_seen``/``reconnects`` are counters for status lines and tests."""

    def __init__(self, exchange_id: str, *, url: str | None, credentials: Credentials,
                 keepalive_s: float = 1800.0, backoff_s: float = 0.5,
                 max_backoff_s: float = 30.0) -> None:
        self.exchange_id = exchange_id
        self.url = url
        self.credentials = credentials
        self.keepalive_s = keepalive_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.connected = threading.Event()
        self.events_seen = 0
        self.reconnects = 0
        self.expired = 0
        self._queue: queue.SimpleQueue[UserEvent] = queue.SimpleQueue()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="user-stream")
        self._task: Any = None
        self._main_task: asyncio.Task[None] | None = None
        self._ws_base = ws_url_for(url) if url else None

    # ---- engine side ---------------------------------------------------------------------
    def start(self) -> UserStream:
        self._thread.start()
        self._task = asyncio.run_coroutine_threadsafe(self._spawn(), self._loop)
        self._task.result(5)
        return self

    async def _spawn(self) -> None:
        self._main_task = asyncio.get_running_loop().create_task(self._main())

    def stop(self) -> None:
        """Cancel the stream task and wait for it to close its socket and client."""
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(3)

    async def _shutdown(self) -> None:
        task = self._main_task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def pending(self) -> bool:
        return not self._queue.empty()

    def drain(self) -> list[UserEvent]:
        out: list[UserEvent] = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out

    # ---- stream side ---------------------------------------------------------------------
    async def _main(self) -> None:
        ex = create_exchange(self.exchange_id, url=self.url, credentials=self.credentials,
                             asynchronous=True)
        delay = self.backoff_s
        try:
            async with aiohttp.ClientSession() as session:
                while True:
                    try:
                        key = (await ex.fapiPrivatePostListenKey())["listenKey"]
                        await self._listen(session, ex, key)
                        delay = self.backoff_s
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:  # any failure: say so, wait, reconnect
                        log.warning("user stream: %s: %s", type(exc).__name__, exc)
                        await asyncio.sleep(delay)
                        delay = min(self.max_backoff_s, delay * 2)
                    self.connected.clear()
                    self.reconnects += 1
        finally:
            with contextlib.suppress(Exception):
                await ex.close()

    async def _listen(self, session: aiohttp.ClientSession, ex: Any, key: str) -> None:
        base = self._ws_base or ex.urls["api"]["ws"]["linear"]
        keeper = asyncio.create_task(self._keepalive(ex, key))
        try:
            async with session.ws_connect(f"{base.rstrip('/')}/{key}", heartbeat=30) as ws:
                self.connected.set()
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        continue
                    event = parse_event(orjson.loads(msg.data))
                    if event is None:
                        continue
                    self.events_seen += 1
                    if event.kind == "expired":
                        self.expired += 1
                        self._queue.put(event)
                        return  # a new key and a new socket
                    self._queue.put(event)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await keeper

    async def _keepalive(self, ex: Any, key: str) -> None:
        while True:
            await asyncio.sleep(self.keepalive_s)
            await ex.fapiPrivatePutListenKey({"listenKey": key})
