"""Running the fake exchange: in-process for tests (an async context manager, or a
background thread for synchronous code such as the ccxt REST client and the CLI), or
in the foreground from ``perptrader fake-exchange``. Port 0 picks a free port."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import aiohttp
from aiohttp import web

from perptrader.venues.fake.data import MarketData
from perptrader.venues.fake.server import FakeBinance, FakeConfig

HOST = "127.0.0.1"


class FakeExchange:
    """``async with FakeExchange(config) as fake: fake.url`` -> ``http://127.0.0.1:PORT``."""

    def __init__(self, config: FakeConfig | None = None, *, data: MarketData | None = None,
                 port: int = 0) -> None:
        self.venue = FakeBinance(config, data)
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}/ws"

    async def start(self) -> None:
        # handlers hanging on purpose (timeout faults) are cancelled on shutdown
        self._runner = web.AppRunner(self.venue.app(), shutdown_timeout=0.5,
                                     handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, self.port)
        await site.start()
        server = site._server
        if self.port == 0 and server is not None and server.sockets:  # type: ignore[union-attr]
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeExchange:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class FakeExchangeThread:
    """The fake on its own event loop in a daemon thread: ``with FakeExchangeThread(...)
    as fake:`` for synchronous clients. Admin helpers talk to it over HTTP like a user."""

    def __init__(self, config: FakeConfig | None = None, *, data: MarketData | None = None,
                 port: int = 0) -> None:
        self.fake = FakeExchange(config, data=data, port=port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="fake-exchange")

    @property
    def url(self) -> str:
        return self.fake.url

    @property
    def ws_url(self) -> str:
        return self.fake.ws_url

    @property
    def venue(self) -> FakeBinance:
        return self.fake.venue

    def _run(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> FakeExchangeThread:
        self._thread.start()
        self._run(self.fake.start())
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._run(self.fake.stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()

    def __enter__(self) -> FakeExchangeThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        """Call an admin endpoint (``/_fake/...``) and return its JSON."""

        async def call() -> Any:
            async with aiohttp.ClientSession() as session, session.request(
                    method, self.url + path, json=body) as resp:
                return await resp.json()

        return self._run(call())

    def account(self, api_key: str = "fake-key") -> Any:
        """One account's ground truth (``GET /_fake/account``): balance, positions, every
        order, trade and income record."""
        return self.admin("GET", "/_fake/account")["accounts"][api_key]

    def expire_listen_keys(self) -> Any:
        return self.admin("POST", "/_fake/listenkey/expire")

    def set_faults(self, rest: list[dict[str, Any]] | None = None,
                   streams: list[dict[str, Any]] | None = None) -> Any:
        return self.admin("POST", "/_fake/faults", {"rest": rest or [], "streams": streams or []})


def serve_forever(config: FakeConfig, port: int) -> None:
    """Foreground server for the CLI (Ctrl-C stops it)."""
    venue = FakeBinance(config)
    web.run_app(venue.app(), host=HOST, port=port, print=None, access_log=None,
                shutdown_timeout=0.5, handler_cancellation=True)
