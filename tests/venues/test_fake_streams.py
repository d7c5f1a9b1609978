"""The fake exchange's websocket streams: ccxt.pro subscribes and parses them; faults
drop, duplicate, reorder, break the depth chain and close the connection."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import aiohttp
import orjson

from perptrader.venues.ccxt_client import create_exchange
from perptrader.venues.fake import FakeExchange
from perptrader.venues.fake.server import FakeConfig
from venues.venue_fakes import START, synthetic_market

T0 = int(START.value // 1_000_000)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def config(**kw: Any) -> FakeConfig:
    kw.setdefault("clock_start_ms", T0 + 5 * 3_600_000)
    kw.setdefault("clock_speed", 1000.0)
    kw.setdefault("stream_interval_s", 0.02)
    kw.setdefault("replay", "per_connection")
    return FakeConfig(**kw)


def test_ccxt_pro_watches_every_stream() -> None:
    async def main() -> None:
        async with FakeExchange(config(), data=synthetic_market()) as fake:
            ex = create_exchange("binanceusdm", url=fake.url, pro=True)
            try:
                bars = await ex.watch_ohlcv("BTC/USDT:USDT", "1h")
                assert bars[-1][0] % 3_600_000 == 0 and bars[-1][0] >= T0 + 5 * 3_600_000
                book = await ex.watch_order_book("BTC/USDT:USDT")
                assert book["bids"][0][0] < book["asks"][0][0]
                trades = await ex.watch_trades("BTC/USDT:USDT")
                assert trades[0]["id"] == "5000"
                mark = await ex.watch_mark_price("BTC/USDT:USDT")
                assert mark["markPrice"] > 0
                liq = await ex.watch_liquidations("BTC/USDT:USDT")
                assert liq[0]["side"] in ("buy", "sell")
            finally:
                await ex.close()

    run(main())


async def collect(fake: FakeExchange, stream: str, n: int,
                  path: str = "/public/ws/0") -> tuple[list[dict[str, Any]], Any]:
    """Subscribe with a raw client; return up to n events and the close code (if any)."""
    events: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(
            fake.ws_url.removesuffix("/ws") + path) as ws:
        await ws.send_str(orjson.dumps({"method": "SUBSCRIBE", "params": [stream],
                                        "id": 1}).decode())
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = orjson.loads(msg.data)
            if "e" in data:
                events.append(data)
            if len(events) >= n:
                break
        return events, ws.close_code


def test_depth_diffs_chain_and_gap_fault() -> None:
    async def main() -> None:
        async with FakeExchange(config(clock_speed=1.0), data=synthetic_market()) as fake:
            events, _ = await collect(fake, "btcusdt@depth@100ms", 5)
            assert events[0]["U"] <= 1001 <= events[0]["u"]  # joins the REST snapshot
            assert all(b["pu"] == a["u"] for a, b in itertools.pairwise(events))
            fake.venue.faults.configure({"streams": [{"kind": "gap", "stream": "depth",
                                                      "skip": 2}]})
            events, _ = await collect(fake, "btcusdt@depth@100ms", 5)
            breaks = [b["pu"] != a["u"] for a, b in itertools.pairwise(events)]
            assert breaks.count(True) == 1

    run(main())


def test_trade_faults_drop_duplicate_reorder() -> None:
    async def main() -> None:
        async with FakeExchange(config(), data=synthetic_market()) as fake:
            fake.venue.faults.configure({"streams": [
                {"kind": "drop", "stream": "aggTrade", "skip": 1},
                {"kind": "duplicate", "stream": "aggTrade", "skip": 3},
                {"kind": "reorder", "stream": "aggTrade", "skip": 5}]})
            events, _ = await collect(fake, "btcusdt@aggTrade", 8, "/market/ws/0")
            ids = [e["a"] for e in events]
            assert ids == [5000, 5002, 5003, 5003, 5004, 5006, 5005, 5007]

    run(main())


def test_close_codes() -> None:
    async def main() -> None:
        async with FakeExchange(config(), data=synthetic_market()) as fake:
            for code in (1000, 1006):
                fake.venue.faults.configure({"streams": [
                    {"kind": "close", "stream": "aggTrade", "skip": 2, "close_code": code}]})
                events, close = await collect(fake, "btcusdt@aggTrade", 50, "/market/ws/0")
                assert len(events) == 2 and close == code

    run(main())
