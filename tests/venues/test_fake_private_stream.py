"""The fake exchange's user data stream: listen keys, ORDER_TRADE_UPDATE and
ACCOUNT_UPDATE after a fill, listenKeyExpired, the "user" stream faults, and ccxt.pro's
watch_orders on the /private/ws route."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from perptrader.venues.ccxt_client import Credentials, create_exchange
from perptrader.venues.fake import FakeExchange
from perptrader.venues.fake.server import FakeConfig
from venues.venue_fakes import START, synthetic_market

T0 = int(START.value // 1_000_000)
KEY = {"X-MBX-APIKEY": "fake-key"}
CREDS = Credentials("fake-key", "fake-secret")


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))


def config() -> FakeConfig:
    return FakeConfig(clock_start_ms=T0 + 5 * 3_600_000 + 1000, clock_speed=0.0,
                      stream_interval_s=0.02)


async def listen_key(session: aiohttp.ClientSession, fake: FakeExchange) -> str:
    async with session.post(fake.url + "/fapi/v1/listenKey", headers=KEY) as resp:
        return (await resp.json())["listenKey"]


async def read(ws: aiohttp.ClientWebSocketResponse, n: int,
               timeout: float = 3.0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while len(out) < n:
        msg = await asyncio.wait_for(ws.receive(), timeout)
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
        out.append(orjson.loads(msg.data))
    return out


def test_listen_key_lifecycle_and_events_after_a_market_order() -> None:
    async def main() -> None:
        async with FakeExchange(config(), data=synthetic_market(200)) as fake, \
                aiohttp.ClientSession() as session:
            key = await listen_key(session, fake)
            assert await listen_key(session, fake) == key  # the same key while valid
            async with session.put(fake.url + "/fapi/v1/listenKey", headers=KEY) as resp:
                assert resp.status == 200
            async with session.post(fake.url + "/fapi/v1/listenKey") as resp:
                assert resp.status == 401 and (await resp.json())["code"] == -2014
            ex = create_exchange("binanceusdm", url=fake.url, credentials=CREDS,
                                 asynchronous=True)
            try:
                async with session.ws_connect(f"{fake.url}/ws/{key}") as ws:
                    await asyncio.sleep(0.05)
                    await ex.load_markets()
                    await ex.create_order("BTC/USDT:USDT", "market", "buy", 0.01,
                                          params={"clientOrderId": "ws-1"})
                    events = await read(ws, 3)
            finally:
                await ex.close()
            new, account, trade = events
            assert new["e"] == "ORDER_TRADE_UPDATE" and new["o"]["x"] == "NEW"
            assert new["o"]["c"] == "ws-1" and new["o"]["X"] == "NEW"
            assert account["e"] == "ACCOUNT_UPDATE" and account["a"]["m"] == "ORDER"
            assert account["a"]["P"][0]["pa"] == "0.01" and account["a"]["P"][0]["ps"] == "BOTH"
            assert account["a"]["B"][0]["a"] == "USDT"
            o = trade["o"]
            assert (o["x"], o["X"], o["l"], o["z"], o["N"], o["m"]) == (
                "TRADE", "FILLED", "0.01", "0.01", "USDT", False)
            assert float(o["L"]) == float(o["ap"]) > 0 and float(o["n"]) > 0
            assert isinstance(o["t"], int) and o["rp"] == "0"

    run(main())


def test_listen_key_expired_event_then_close() -> None:
    async def main() -> None:
        async with FakeExchange(config(), data=synthetic_market(200)) as fake, \
                aiohttp.ClientSession() as session:
            key = await listen_key(session, fake)
            async with session.ws_connect(
                    f"{fake.url}/private/ws?listenKey={key}") as ws:
                await asyncio.sleep(0.05)
                async with session.post(fake.url + "/_fake/listenkey/expire") as resp:
                    assert (await resp.json())["expired"] == 1
                [event] = await read(ws, 1)
                assert event["e"] == "listenKeyExpired" and event["listenKey"] == key
                closing = await asyncio.wait_for(ws.receive(), 3)
                assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert await listen_key(session, fake) != key  # a new key after expiry
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await session.ws_connect(f"{fake.url}/private/ws?listenKey={key}")
            assert info.value.status == 400

    run(main())


def test_user_stream_duplicate_fault() -> None:
    async def main() -> None:
        async with FakeExchange(config(), data=synthetic_market(200)) as fake, \
                aiohttp.ClientSession() as session:
            fake.venue.faults.configure({"streams": [{"kind": "duplicate", "stream": "user"}]})
            key = await listen_key(session, fake)
            ex = create_exchange("binanceusdm", url=fake.url, credentials=CREDS,
                                 asynchronous=True)
            try:
                async with session.ws_connect(f"{fake.url}/ws/{key}") as ws:
                    await asyncio.sleep(0.05)
                    await ex.load_markets()
                    await ex.create_order("BTC/USDT:USDT", "market", "buy", 0.01)
                    events = await read(ws, 4)
            finally:
                await ex.close()
            assert events[0] == events[1] and events[0]["o"]["x"] == "NEW"
            assert [e["e"] for e in events[2:]] == ["ACCOUNT_UPDATE", "ORDER_TRADE_UPDATE"]

    run(main())


def test_ccxt_pro_watch_orders() -> None:
    async def main() -> None:
        async with FakeExchange(config(), data=synthetic_market(200)) as fake:
            ex = create_exchange("binanceusdm", url=fake.url, credentials=CREDS, pro=True)
            try:
                await ex.load_markets()
                watcher = asyncio.create_task(ex.watch_orders("BTC/USDT:USDT"))
                await asyncio.sleep(0.3)  # listenKey fetched, socket open
                await ex.create_order("BTC/USDT:USDT", "market", "buy", 0.01,
                                      params={"clientOrderId": "pro-1"})
                orders = await asyncio.wait_for(watcher, 5)
                assert orders[-1]["clientOrderId"] == "pro-1"
                assert "listenKey" in fake.venue.requests
            finally:
                await ex.close()

    run(main())
