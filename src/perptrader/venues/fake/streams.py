"""Websocket streams of the fake exchange, as ccxt.pro's binanceusdm subscribes to them:
it connects anywhere under ``/ws`` and sends ``{"method": "SUBSCRIBE", "params":
["btcusdt@kline_1h", ...], "id": n}``; events then arrive as raw JSON objects.

Streams follow the fake clock, checked every ``stream_interval_s``:
  ``<s>@kline_<tf>``    the recorded bar at the clock (``x`` true once it closed)
  ``<s>@markPrice[@1s]`` the recorded mark (or trade) close and last funding rate
  ``<s>@aggTrade``, ``<s>@trade``  the capture's trades (one trade per aggregate), times
                        shifted
  ``<s>@depth[@100ms|@500ms]`` the capture's diffs merged per tick: ``U`` first, ``u``
                        last, ``pu`` the previous message's ``u``, as Binance sends them
  ``<s>@forceOrder``    GENERATED liquidations (``fakeGenerated``: true)
A connection to ``/ws/<listenKey>`` or ``/private/ws?listenKey=<key>`` is the user data
stream instead (userstream.py).
Captures are mapped onto the clock from the first subscription to the symbol (replay
"shared", the default: one timeline per symbol, so a reconnecting client misses what was
sent while it was away, and REST ``depth``/``aggTrades`` answer as of the same timeline)
or from each subscription (replay "per_connection"); ids and prices are the recorded
ones, so the REST depth snapshot and the diff chain join as on Binance.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from aiohttp import web

from perptrader.core.timeframes import timeframe_ms
from perptrader.marketdata.dataset import epoch_us
from perptrader.marketdata.kinds import Kind
from perptrader.venues.fake import generated
from perptrader.venues.fake.rest import KLINE_INTERVALS, _num

if TYPE_CHECKING:
    from perptrader.venues.fake.server import FakeBinance


@dataclass
class Subscription:
    """One stream of one connection and where its replay stands."""

    name: str  # e.g. btcusdt@kline_1h
    symbol: str
    kind: str  # kline | markPrice | aggTrade | depth | forceOrder
    arg: str = ""  # kline timeframe
    started_ms: int = 0
    cursor_ms: int = 0
    index: int = 0  # next capture element
    last_u: int | None = None
    last_bar: int | None = None
    held: list[dict[str, Any]] = field(default_factory=list)  # reordered messages
    from_ms: int = 0  # capture items timed before this (clock ms) are not sent


def parse_stream(name: str, now_ms: int) -> Subscription | None:
    """``btcusdt@kline_1h`` -> Subscription; None for streams the fake does not serve."""
    symbol, _, rest = name.partition("@")
    kind, _, arg = rest.partition("_")
    kind = kind.split("@", 1)[0]
    if kind == "kline" and arg not in KLINE_INTERVALS:
        return None
    if kind not in ("kline", "markPrice", "aggTrade", "trade", "depth", "forceOrder"):
        return None
    return Subscription(name, symbol.upper(), kind, arg, now_ms, now_ms, from_ms=now_ms)


class StreamHub:
    """Serves websocket connections for one fake venue."""

    def __init__(self, venue: FakeBinance) -> None:
        self.venue = venue
        self.connections = 0
        self._timelines: dict[tuple[str, str], int] = {}

    def timeline(self, symbol: str, family: str) -> int | None:
        """Clock ms at which the symbol's capture ``family`` (depth | trades) started,
        None before anyone subscribed (replay "shared")."""
        return self._timelines.get((symbol, family))

    def _start(self, sub: Subscription) -> Subscription:
        family = {"depth": "depth", "aggTrade": "trades", "trade": "trades"}.get(sub.kind)
        if family and self.venue.config.replay == "shared":
            sub.started_ms = self._timelines.setdefault((sub.symbol, family), sub.started_ms)
        return sub

    async def handle(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info.get("tail", "")
        listen_key = request.query.get("listenKey") or (
            tail if tail and "@" not in tail and tail in self.venue.userstreams.keys else "")
        if listen_key:  # /ws/<listenKey> or /private/ws?listenKey=<key>: the user stream
            return await self.venue.userstreams.handle(request, listen_key)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.connections += 1
        subs: dict[str, Subscription] = {}
        path_streams = request.query.get("streams", "")
        for name in [*filter(None, path_streams.split("/")), *([tail] if "@" in tail else [])]:
            sub = parse_stream(name, self.venue.clock.now_ms())
            if sub:
                subs[name] = self._start(sub)
        sender = asyncio.create_task(self._send_loop(ws, subs, request))
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                await self._command(ws, subs, msg.data)
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
        return ws

    async def _command(self, ws: web.WebSocketResponse, subs: dict[str, Subscription],
                       text: str) -> None:
        try:
            cmd = orjson.loads(text)
            method, params, ident = cmd.get("method"), cmd.get("params", []), cmd.get("id")
        except (orjson.JSONDecodeError, AttributeError):
            await ws.send_str('{"error":{"code":3,"msg":"Invalid JSON"}}')
            return
        if method == "SUBSCRIBE":
            for name in params:
                sub = parse_stream(name, self.venue.clock.now_ms())
                if sub is None or not self.venue.data.listed(sub.symbol):
                    await ws.send_json({"error": {"code": 2, "msg": f"Invalid request: "
                                                  f"unknown stream {name}"}, "id": ident})
                    return
                subs[name] = self._start(sub)
            await ws.send_json({"result": None, "id": ident})
        elif method == "UNSUBSCRIBE":
            for name in params:
                subs.pop(name, None)
            await ws.send_json({"result": None, "id": ident})
        elif method == "LIST_SUBSCRIPTIONS":
            await ws.send_json({"result": list(subs), "id": ident})
        else:
            await ws.send_json({"error": {"code": 1, "msg": "Invalid method"}, "id": ident})

    async def _send_loop(self, ws: web.WebSocketResponse, subs: dict[str, Subscription],
                         request: web.Request) -> None:
        interval = self.venue.config.stream_interval_s
        while not ws.closed:
            await asyncio.sleep(interval)
            now = self.venue.clock.now_ms()
            for sub in list(subs.values()):
                for msg in self._due(sub, now):
                    if not await self.deliver(ws, sub, msg, request):
                        return
                sub.cursor_ms = now

    async def deliver(self, ws: web.WebSocketResponse, sub: Subscription,
                      msg: dict[str, Any], request: web.Request) -> bool:
        """Send one message through the faults (stream name ``sub.kind``; the user data
        stream's is ``user``); False when the connection was closed."""
        rules = self.venue.faults.for_message(sub.kind)
        out = [msg]
        for rule in rules:
            if rule.kind == "close":
                if rule.close_code == 1006 and request.transport is not None:
                    request.transport.abort()  # no close frame: the client sees 1006
                else:
                    await ws.close(code=rule.close_code, message=b"fake close")
                return False
            if rule.kind == "drop" or (rule.kind == "gap" and sub.kind == "depth"):
                out = []
            elif rule.kind == "duplicate":
                out = [msg, msg]
            elif rule.kind == "reorder":
                sub.held.append(msg)
                out = []
        if out and sub.held:
            out, sub.held = out + sub.held, []
        for m in out:
            await ws.send_str(orjson.dumps(m).decode())
        return True

    # -- what each stream has due -------------------------------------------------------
    def _due(self, sub: Subscription, now: int) -> Iterator[dict[str, Any]]:
        if sub.kind == "kline":
            yield from self._kline(sub, now)
        elif sub.kind == "markPrice":
            if now // 1000 > sub.cursor_ms // 1000 or sub.last_bar is None:
                sub.last_bar = now
                yield self._mark(sub, now)
        elif sub.kind in ("aggTrade", "trade"):
            yield from self._trades(sub, now)
        elif sub.kind == "depth":
            yield from self._depth(sub, now)
        elif sub.kind == "forceOrder":
            yield from self._liquidations(sub, now)

    def _kline(self, sub: Subscription, now: int) -> Iterator[dict[str, Any]]:
        step = timeframe_ms(sub.arg)
        open_ms = now // step * step
        frame = self.venue.data.frame((sub.symbol, Kind.OHLCV, sub.arg),
                                      open_ms - step, open_ms)
        bars = {int(t): r for t, r in zip(epoch_us(frame["ts"]) // 1000,
                                          frame.itertuples(index=False), strict=True)}
        if sub.last_bar is not None and sub.last_bar != open_ms and sub.last_bar in bars:
            yield self._kline_msg(sub, sub.last_bar, bars[sub.last_bar], step, now, True)
        sub.last_bar = open_ms
        if open_ms in bars:
            yield self._kline_msg(sub, open_ms, bars[open_ms], step, now, False)

    def _kline_msg(self, sub: Subscription, open_ms: int, bar: Any, step: int, now: int,
                   closed: bool) -> dict[str, Any]:
        return {"e": "kline", "E": now, "s": sub.symbol, "k": {
            "t": open_ms, "T": open_ms + step - 1, "s": sub.symbol, "i": sub.arg,
            "f": 0, "L": 0, "o": _num(bar.open), "c": _num(bar.close), "h": _num(bar.high),
            "l": _num(bar.low), "v": _num(bar.volume),
            "n": 0 if bar.trade_count is None or str(bar.trade_count) == "<NA>"
            else int(bar.trade_count),
            "x": closed, "q": _num(bar.quote_volume), "V": _num(bar.taker_buy_base),
            "Q": _num(bar.taker_buy_quote), "B": "0"}}

    def _mark(self, sub: Subscription, now: int) -> dict[str, Any]:
        premium = self.venue.rest.premium(sub.symbol)
        return {"e": "markPriceUpdate", "E": now, "s": sub.symbol, "p": premium["markPrice"],
                "i": premium["indexPrice"], "P": premium["estimatedSettlePrice"],
                "r": premium["lastFundingRate"], "T": premium["nextFundingTime"]}

    def _shift(self, sub: Subscription, first_ms: int) -> int:
        """Capture time -> clock time: the capture starts when the stream was opened."""
        return sub.started_ms - first_ms

    def _trades(self, sub: Subscription, now: int) -> Iterator[dict[str, Any]]:
        cap = self.venue.data.capture(sub.symbol)
        if cap is None or not cap.trades:
            return
        shift = self._shift(sub, cap.trades[0]["T"])
        while sub.index < len(cap.trades) and cap.trades[sub.index]["T"] + shift <= now:
            tr = cap.trades[sub.index]
            sub.index += 1
            if tr["T"] + shift < sub.from_ms:
                continue  # sent before this subscription (shared timeline)
            tid = tr.get("t", tr.get("a"))
            t = tr["T"] + shift
            if sub.kind == "trade":
                yield {"e": "trade", "E": t, "T": t, "s": sub.symbol, "t": tid, "p": tr["p"],
                       "q": tr["q"], "X": "MARKET", "m": tr["m"]}
            else:
                yield {"e": "aggTrade", "E": t, "s": sub.symbol, "a": tid, "p": tr["p"],
                       "q": tr["q"], "f": tid, "l": tid, "T": t, "m": tr["m"]}

    def _depth(self, sub: Subscription, now: int) -> Iterator[dict[str, Any]]:
        cap = self.venue.data.capture(sub.symbol)
        if cap is None or not cap.diffs:
            return
        shift = self._shift(sub, cap.diffs[0]["E"])
        batch: list[dict[str, Any]] = []
        while sub.index < len(cap.diffs) and cap.diffs[sub.index]["E"] + shift <= now:
            if cap.diffs[sub.index]["E"] + shift >= sub.from_ms:
                batch.append(cap.diffs[sub.index])
            sub.index += 1
        if not batch:
            return
        bids: dict[str, str] = {}
        asks: dict[str, str] = {}
        for d in batch:
            bids.update(dict(d["b"]))
            asks.update(dict(d["a"]))
        last = batch[-1]
        yield {"e": "depthUpdate", "E": last["E"] + shift, "T": last.get("T", last["E"]) + shift,
               "s": sub.symbol, "U": batch[0]["U"], "u": last["u"], "pu": batch[0]["pu"],
               "b": [list(x) for x in bids.items()], "a": [list(x) for x in asks.items()]}

    def _liquidations(self, sub: Subscription, now: int) -> Iterator[dict[str, Any]]:
        premium = self.venue.rest.premium(sub.symbol)
        price = float(premium["markPrice"] or 0) or 100.0
        for ev in generated.liquidations(self.venue.config.seed, sub.symbol,
                                         sub.cursor_ms + 1, now + 1, price):
            yield {"e": "forceOrder", "E": ev["T"], "fakeGenerated": True, "o": {
                "s": sub.symbol, "S": ev["side"], "o": "LIMIT", "f": "IOC", "q": repr(ev["q"]),
                "p": repr(ev["p"]), "ap": repr(ev["p"]), "X": "FILLED", "l": repr(ev["q"]),
                "z": repr(ev["q"]), "T": ev["T"]}}
