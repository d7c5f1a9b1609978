"""The fake exchange's aiohttp application: venue endpoints behind one middleware that
does what every Binance response does (weight accounting and its headers) and what the
injected faults say; admin endpoints under ``/_fake/`` steer it.

Admin API (JSON):
  GET/POST/DELETE /_fake/faults   read / replace / clear the fault rules (faults.py)
  GET/POST        /_fake/clock    read; ``{"step_ms": n}`` or ``{"start_ms": t, "speed": x}``
  GET             /_fake/weight   the weight ledger; POST /_fake/reset clears it and faults
  GET             /_fake/account  every account (balance, positions, orders, trades,
                                  income): the ground truth of trading tests
  POST            /_fake/account/reset   fresh accounts, ids from 1
  POST            /_fake/account/config  ``{"partial_fill_parts": n, "slippage_bps": x,
                                  "taker_fee": f, "maker_fee": f}`` (matching options)
  POST            /_fake/listenkey/expire  expire every listen key now
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from perptrader.venues.fake.account import Accounts
from perptrader.venues.fake.bybit import BybitApi
from perptrader.venues.fake.clock import FakeClock
from perptrader.venues.fake.data import MarketData
from perptrader.venues.fake.faults import FaultConfigError, FaultInjector, RestFault, StreamFault
from perptrader.venues.fake.private import PrivateApi
from perptrader.venues.fake.rest import ApiError, RestApi
from perptrader.venues.fake.streams import StreamHub
from perptrader.venues.fake.userstream import UserStreams
from perptrader.venues.fake.weights import WeightLedger, request_weight

log = logging.getLogger(__name__)

WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"
_VENUE_PREFIXES = ("/fapi/", "/futures/data/", "/v5/")


@dataclass
class FakeConfig:
    """Everything a fake exchange is built from (CLI flags and test arguments)."""

    data_dir: Path | None = None
    seed: int = 0
    weight_limit: int = 2400
    weight_window_s: float = 60.0
    ban_s: float = 120.0
    clock_start_ms: int | None = None
    clock_speed: float = 1.0
    rest_faults: list[RestFault] = field(default_factory=list)
    stream_faults: list[StreamFault] = field(default_factory=list)
    stream_interval_s: float = 0.1  # how often streams look at the clock
    #: "shared": a symbol's capture (depth diffs, trades) runs on ONE timeline from the
    #: first subscription, as a venue's stream does: a client that reconnects misses what
    #: was sent meanwhile, REST ``depth`` answers the book as of the clock and
    #: ``aggTrades`` the trades up to it. "per_connection": every subscription replays the
    #: capture from its start (and REST serves the capture's own snapshot and times).
    replay: str = "shared"
    # -- private side (accounts and trading; account.py, private.py, userstream.py) ----
    api_keys: dict[str, str] = field(default_factory=lambda: {"fake-key": "fake-secret"})
    initial_balance: float = 10_000.0  # USDT per account
    default_leverage: int = 20
    taker_fee: float = 0.0005
    maker_fee: float = 0.0002
    slippage_bps: float = 0.0  # market orders fill at open x (1 +- bps/1e4)
    fill_timeframe: str | None = None  # bars that price fills; None: finest stored
    partial_fill_parts: int = 1  # a crossing bar fills 1/n of a resting limit order
    order_limit_10s: int = 300
    order_limit_1m: int = 1200


class FakeBinance:
    """One fake venue: its data, clock, faults and weight ledger, and the app."""

    def __init__(self, config: FakeConfig | None = None, data: MarketData | None = None) -> None:
        self.config = config or FakeConfig()
        self.data = data if data is not None else MarketData(self.config.data_dir)
        self.clock = FakeClock(self.config.clock_start_ms, self.config.clock_speed)
        self.faults = FaultInjector(self.config.rest_faults, self.config.stream_faults,
                                    seed=self.config.seed)
        self.ledger = WeightLedger(self.config.weight_limit, self.config.weight_window_s,
                                   self.config.ban_s)
        self.rest = RestApi(self.data, self.clock.now_ms, seed=self.config.seed)
        self.bybit = BybitApi(self.data, self.clock.now_ms, seed=self.config.seed)
        self.accounts = Accounts(self.config, self.data, self.clock.now_ms)
        self.private = PrivateApi(self)
        self._publish_weight_limit()
        self.requests: list[str] = []  # endpoints served, in order (tests read it)
        self.streams = StreamHub(self)
        self.userstreams = UserStreams(self)
        self._matcher: asyncio.Task[None] | None = None
        if self.config.replay not in ("shared", "per_connection"):
            raise ValueError("replay must be 'shared' or 'per_connection'")
        self.rest.timeline = self.streams.timeline if self.config.replay == "shared" else None

    def _publish_weight_limit(self) -> None:
        """exchangeInfo states the limit this fake enforces, as Binance states its own."""
        window = self.config.weight_window_s
        minutes = window / 60
        interval, num = ("MINUTE", int(minutes)) if minutes.is_integer() else (
            "SECOND", max(1, round(window)))
        rule = {"rateLimitType": "REQUEST_WEIGHT", "interval": interval, "intervalNum": num,
                "limit": self.config.weight_limit}
        others = [r for r in self.data.info.get("rateLimits", [])
                  if r.get("rateLimitType") != "REQUEST_WEIGHT"]
        self.data.info["rateLimits"] = [rule, *others]

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.on_startup.append(self._start_matcher)
        app.on_cleanup.append(self._stop_matcher)
        app.add_routes(self.private.routes())
        app.add_routes(self.userstreams.routes())
        app.add_routes(self.rest.routes())
        app.add_routes(self.bybit.routes())
        app.add_routes([
            web.get("/_fake/faults", self._get_faults),
            web.post("/_fake/faults", self._post_faults),
            web.delete("/_fake/faults", self._delete_faults),
            web.get("/_fake/clock", self._get_clock),
            web.post("/_fake/clock", self._post_clock),
            web.get("/_fake/weight", self._get_weight),
            web.post("/_fake/reset", self._reset),
            web.get("/_fake/account", self._get_account),
            web.post("/_fake/account/reset", self._reset_account),
            web.post("/_fake/account/config", self._config_account),
            web.post("/_fake/listenkey/expire", self._expire_listen_keys),
        ])
        # ccxt.pro turns ``ws.linear = <base>/ws`` into <base>/market/ws/<n> (klines, mark
        # price, liquidations), <base>/public/ws/<n> (depth, trades), <base>/private/ws
        category = "{category:market|public|private}"
        app.add_routes([web.get(path, self.streams.handle) for path in (
            "/ws", "/ws/{tail:.*}", f"/{category}/ws", f"/{category}/ws/{{tail:.*}}")])
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not request.path.startswith(_VENUE_PREFIXES):
            return await handler(request)
        bybit = request.path.startswith("/v5/")
        endpoint = request.path.rsplit("/", 1)[-1]
        self.requests.append(endpoint)
        rules = self.faults.for_request(endpoint)
        for rule in rules:
            if rule.kind == "latency":
                await asyncio.sleep(rule.delay_s)
            elif rule.kind == "timeout_before":
                await asyncio.sleep(rule.delay_s)  # the client has given up by now
                return self._error(503, -1001, "Internal error; timed out before processing.")
        for rule in rules:
            if rule.kind == "rate_limit":
                wait = self.ledger.force_back_off(rule.retry_after_s)
                return self._limited(429, wait, bybit)
            if rule.kind == "ban":
                wait = self.ledger.force_ban(rule.retry_after_s)
                return self._limited(418, wait, bybit)
            if rule.kind == "status":
                return self._error(rule.status, -1001 if rule.status >= 500 else -1000,
                                   "Internal error; unable to process your request. "
                                   "Please try again." if rule.status >= 500
                                   else "An unknown error occurred while processing the request.")
        weight = 1 if bybit else request_weight(endpoint, dict(request.query), request.method)
        verdict = self.ledger.charge(weight)
        if verdict.status != 200:
            return self._limited(verdict.status, verdict.retry_after_s, bybit)
        try:
            response = await handler(request)
        except ApiError as exc:
            response = exc.response()
        except web.HTTPException as exc:  # unknown path or method: still a venue answer
            response = web.json_response({"code": -1000, "msg": exc.reason},
                                         status=exc.status)
        self._usage_headers(response, verdict.used, bybit)
        if any(rule.kind == "timeout_after" for rule in rules):
            hang = max(r.delay_s for r in rules if r.kind == "timeout_after")
            await asyncio.sleep(hang)  # processed and charged; the answer comes too late
        return response

    def _usage_headers(self, response: web.StreamResponse, used: int, bybit: bool) -> None:
        """Binance: weight used in the window; Bybit: its X-Bapi-Limit-* trio."""
        if bybit:
            reset = self.ledger.window_end_s()
            response.headers["X-Bapi-Limit"] = str(self.ledger.limit)
            response.headers["X-Bapi-Limit-Status"] = str(max(0, self.ledger.limit - used))
            response.headers["X-Bapi-Limit-Reset-Timestamp"] = str(int(reset * 1000))
        else:
            response.headers[WEIGHT_HEADER] = str(used)

    def _error(self, status: int, code: int, msg: str) -> web.Response:
        resp = web.json_response({"code": code, "msg": msg}, status=status)
        resp.headers[WEIGHT_HEADER] = str(self.ledger.used())
        return resp

    def _limited(self, status: int, retry_after: int, bybit: bool = False) -> web.Response:
        if bybit:
            # Bybit: a rate limit is HTTP 200 with retCode 10006 and the reset time; an
            # IP ban is HTTP 403 "access too frequent"
            if status == 418:
                resp = web.Response(status=403, text="access too frequent. Try again later.")
            else:
                resp = web.json_response({"retCode": 10006, "retMsg": "Too many visits!",
                                          "result": {}, "retExtInfo": {},
                                          "time": self.clock.now_ms()})
            resp.headers["X-Bapi-Limit-Reset-Timestamp"] = str(
                int((time.time() + retry_after) * 1000))
            resp.headers["X-Bapi-Limit-Status"] = "0"
            return resp
        if status == 418:
            until = self.clock.now_ms() + retry_after * 1000
            msg = f"Way too many requests; IP(127.0.0.1) banned until {until}. " \
                  "Please use the websocket for live updates to avoid bans."
        else:
            msg = "Too many requests; current limit of IP(127.0.0.1) is " \
                  f"{self.ledger.limit} requests per minute. Please use the websocket for " \
                  "live updates to avoid polling the API."
        resp = self._error(status, -1003, msg)
        resp.headers["Retry-After"] = str(retry_after)
        return resp

    # -- background matching ----------------------------------------------------------
    async def _start_matcher(self, app: web.Application) -> None:
        self._matcher = asyncio.create_task(self._match_loop())

    async def _stop_matcher(self, app: web.Application) -> None:
        if self._matcher is not None:
            self._matcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._matcher

    async def _match_loop(self) -> None:
        """Resting orders fill and funding is paid as the clock moves, also while no
        client asks (the user stream then tells them)."""
        while True:
            await asyncio.sleep(self.config.stream_interval_s)
            try:
                self.accounts.run()
            except Exception:  # a bad bar must not stop the loop; the next request shows it
                log.exception("fake exchange matching failed")

    # -- admin ------------------------------------------------------------------------
    async def _get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.faults.as_json())

    async def _post_faults(self, request: web.Request) -> web.Response:
        try:
            self.faults.configure(await request.json())
        except (FaultConfigError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(self.faults.as_json())

    async def _delete_faults(self, request: web.Request) -> web.Response:
        self.faults.clear()
        return web.json_response(self.faults.as_json())

    async def _get_clock(self, request: web.Request) -> web.Response:
        return web.json_response(self.clock.as_json())

    async def _post_clock(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            if "step_ms" in body:
                self.clock.step(int(body["step_ms"]))
            if "start_ms" in body or "speed" in body:
                self.clock.set(start_ms=body.get("start_ms"), speed=body.get("speed"))
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(self.clock.as_json())

    async def _get_weight(self, request: web.Request) -> web.Response:
        return web.json_response(self.ledger.as_json())

    async def _get_account(self, request: web.Request) -> web.Response:
        self.accounts.run()
        return web.json_response({"accounts": {k: a.as_json() for k, a in
                                               self.accounts.accounts.items()}})

    async def _reset_account(self, request: web.Request) -> web.Response:
        self.accounts.reset()
        self.userstreams.keys.clear()
        return web.json_response({"ok": True})

    async def _config_account(self, request: web.Request) -> web.Response:
        allowed = {"partial_fill_parts": int, "slippage_bps": float, "taker_fee": float,
                   "maker_fee": float}
        try:
            body = await request.json()
            unknown = set(body) - set(allowed)
            if unknown:
                raise ValueError(f"unknown field(s) {sorted(unknown)}")
            for name, value in body.items():
                setattr(self.config, name, allowed[name](value))
        except (ValueError, TypeError, AttributeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({name: getattr(self.config, name) for name in allowed})

    async def _expire_listen_keys(self, request: web.Request) -> web.Response:
        return web.json_response({"expired": self.userstreams.expire_all()})

    async def _reset(self, request: web.Request) -> web.Response:
        self.ledger.reset()
        self.faults.clear()
        return web.json_response({"ok": True})
