"""Binance USD-M's user data stream on the fake: listen keys and their websocket.

``POST /fapi/v1/listenKey`` (API key header only, no signature) answers the account's
key, the same one while it is valid, as Binance does; ``PUT`` extends it by 60 minutes
and ``DELETE`` closes it. Lifetimes are WALL time (a listen key is the client's session,
not market data). A connection at ``/ws/<listenKey>`` or ``/private/ws?listenKey=<key>``
(ccxt.pro's route) receives every ``ORDER_TRADE_UPDATE``, ``ALGO_UPDATE`` and
``ACCOUNT_UPDATE`` of the account, through the stream faults under the name ``user``,
and ``listenKeyExpired`` before it is closed when the key expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from perptrader.venues.fake.rest import ApiError
from perptrader.venues.fake.streams import Subscription

if TYPE_CHECKING:
    from perptrader.venues.fake.server import FakeBinance

VALIDITY_S = 3600.0


@dataclass
class ListenKey:
    key: str
    account: str
    expires: float  # wall time, seconds
    queues: list[asyncio.Queue[dict[str, Any]]] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return time.time() < self.expires


class UserStreams:
    """Listen keys of one venue and the connections that listen on them."""

    def __init__(self, venue: FakeBinance) -> None:
        self.venue = venue
        self.keys: dict[str, ListenKey] = {}
        venue.accounts.listeners.append(self.publish)

    def publish(self, account: str, event: dict[str, Any]) -> None:
        for lk in self.keys.values():
            if lk.account == account and lk.valid:
                for queue in lk.queues:
                    queue.put_nowait(event)

    def expire_all(self) -> int:
        for lk in self.keys.values():
            lk.expires = 0.0
        return len(self.keys)

    # -- REST -----------------------------------------------------------------------------
    def _account(self, request: web.Request) -> str:
        key = request.headers.get("X-MBX-APIKEY", "")
        if not key:
            raise ApiError(-2014, "API-key format invalid.", 401)
        if key not in self.venue.config.api_keys:
            raise ApiError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        return key

    def _current(self, account: str) -> ListenKey | None:
        return next((lk for lk in self.keys.values()
                     if lk.account == account and lk.valid), None)

    async def create(self, request: web.Request) -> web.Response:
        account = self._account(request)
        lk = self._current(account)
        if lk is None:
            lk = ListenKey(secrets.token_urlsafe(48), account, time.time() + VALIDITY_S)
            self.keys[lk.key] = lk
        else:
            lk.expires = time.time() + VALIDITY_S
        return web.json_response({"listenKey": lk.key})

    async def keepalive(self, request: web.Request) -> web.Response:
        lk = self._current(self._account(request))
        if lk is None:
            raise ApiError(-1125, "This listenKey does not exist.")
        lk.expires = time.time() + VALIDITY_S
        return web.json_response({"listenKey": lk.key})

    async def close(self, request: web.Request) -> web.Response:
        lk = self._current(self._account(request))
        if lk is not None:
            lk.expires = 0.0
        return web.json_response({})

    def routes(self) -> list[web.RouteDef]:
        path = "/fapi/v1/listenKey"
        return [web.post(path, self.create), web.put(path, self.keepalive),
                web.delete(path, self.close)]

    # -- websocket ------------------------------------------------------------------------
    async def handle(self, request: web.Request, key: str) -> web.StreamResponse:
        lk = self.keys.get(key)
        if lk is None or not lk.valid:
            return web.json_response({"code": -1125, "msg": "This listenKey does not exist."},
                                     status=400)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        lk.queues.append(queue)
        sub = Subscription(key, "", "user")  # carries the reorder buffer of the faults
        reader = asyncio.create_task(self._drain(ws))
        hub = self.venue.streams
        interval = self.venue.config.stream_interval_s
        try:
            while not ws.closed:
                if not lk.valid:
                    await ws.send_json({"e": "listenKeyExpired",
                                        "E": self.venue.clock.now_ms(), "listenKey": key})
                    await ws.close(code=1000, message=b"listenKey expired")
                    break
                try:
                    event = await asyncio.wait_for(queue.get(), interval)
                except TimeoutError:
                    continue
                if not await hub.deliver(ws, sub, event, request):
                    break
        finally:
            lk.queues.remove(queue)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        return ws

    @staticmethod
    async def _drain(ws: web.WebSocketResponse) -> None:
        async for _msg in ws:  # pings are answered by aiohttp; commands are ignored
            pass
