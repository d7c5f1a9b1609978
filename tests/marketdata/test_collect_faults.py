"""The collector under injected faults: it stays up, stores no duplicate and no gap, and
a 429 never turns into a 418. One test per fault (REST time-outs, 5xx, 429; websocket
drops; duplicated and reordered messages; a depth gap), plus a restart."""

from __future__ import annotations

import asyncio

import numpy as np

from perptrader.marketdata.kinds import Kind
from perptrader.venues.backfill import CcxtRestSource, SourceOptions
from perptrader.venues.collector import Collector, CollectorOptions
from perptrader.venues.fake import FakeExchange
from perptrader.venues.fake.server import FakeConfig
from venues.venue_fakes import (
    BTC,
    T0_MS,
    check_bars,
    check_book,
    fast_policy,
    minute_market,
    run_collector,
    synthetic_capture,
)

ALL = ("klines", "trades", "book")


def check_trades(store, first_id: int = 5000) -> np.ndarray:
    """Stored trade ids: unique and without a hole."""
    ids = store.read(Kind.TRADES, BTC)["trade_id"].to_numpy()
    assert len(ids) and len(set(ids)) == len(ids), "a duplicate trade"
    assert set(ids) == set(range(first_id, int(ids.max()) + 1)), "a lost trade"
    return ids


def test_rest_timeouts(store) -> None:
    data = minute_market()
    faults = {
        "rest": [
            {"kind": "timeout_before", "endpoint": "klines", "delay_s": 1.0},
            {"kind": "timeout_before", "endpoint": "depth", "delay_s": 1.0},
        ]
    }
    collector, venue = run_collector(store, data, duration=2.0, faults=faults, timeout_ms=300)
    assert venue.requests.count("klines") >= 2 and venue.requests.count("depth") >= 2
    check_bars(store, data)
    check_book(collector, data.capture("BTCUSDT"), store)
    check_trades(store)


def test_rest_5xx(store) -> None:
    data = minute_market()
    faults = {
        "rest": [
            {"kind": "status", "endpoint": "klines", "status": 503, "times": 2},
            {"kind": "status", "endpoint": "depth", "status": 502, "times": 2},
        ]
    }
    collector, venue = run_collector(store, data, duration=2.0, faults=faults)
    assert venue.requests.count("klines") >= 3 and venue.requests.count("depth") >= 3
    assert collector._rest.client.stats.retries >= 4
    check_bars(store, data)
    check_book(collector, data.capture("BTCUSDT"), store)


def test_rest_429_waits_and_never_earns_a_418(store) -> None:
    data = minute_market()
    faults = {
        "rest": [
            {"kind": "rate_limit", "endpoint": "klines", "retry_after_s": 1},
            {"kind": "rate_limit", "endpoint": "depth", "retry_after_s": 1},
        ]
    }
    collector, venue = run_collector(store, data, duration=3.0, faults=faults)
    stats = collector._rest.client.stats
    assert stats.rate_limited == 2 and stats.waited_s >= 2
    assert venue.ledger.banned_until == 0, "a call inside the 429 back-off (418)"
    check_bars(store, data)
    check_book(collector, data.capture("BTCUSDT"), store)


def test_websocket_drops(store) -> None:
    data = minute_market()
    faults = {
        "streams": [
            {"kind": "close", "stream": "kline", "skip": 30},
            {"kind": "close", "stream": "depth", "skip": 20},
            {"kind": "close", "stream": "aggTrade", "skip": 15, "close_code": 1000},
        ]
    }
    collector, _ = run_collector(store, data, duration=3.0, faults=faults)
    for stream in ("klines", "book", "trades"):
        assert collector.stats[f"BTCUSDT {stream}"].reconnects >= 1, stream
    assert collector.stats["BTCUSDT trades"].backfilled_rows > 0  # lost while down
    check_bars(store, data)
    check_book(collector, data.capture("BTCUSDT"), store)
    assert collector.books["BTCUSDT"].stats.snapshots >= 2  # resynced after the drop
    check_trades(store)


def test_duplicated_and_reordered_messages(store) -> None:
    data = minute_market()
    faults = {
        "seed": 3,
        "streams": [
            {"kind": "duplicate", "stream": "aggTrade", "times": None, "probability": 0.3},
            {"kind": "reorder", "stream": "aggTrade", "times": 5, "skip": 3},
            {"kind": "duplicate", "stream": "depth", "times": None, "probability": 0.3},
            {"kind": "reorder", "stream": "depth", "times": 2, "skip": 10},
            {"kind": "duplicate", "stream": "kline", "times": None},
        ],
    }
    collector, _ = run_collector(store, data, duration=2.0, faults=faults)
    check_bars(store, data)
    check_book(collector, data.capture("BTCUSDT"), store)
    ids = check_trades(store)
    assert len(ids) > 50


def test_depth_gap_resyncs_from_a_snapshot(store) -> None:
    data = minute_market()
    faults = {
        "streams": [
            {"kind": "gap", "stream": "depth", "skip": 10, "times": 1},
            {"kind": "gap", "stream": "depth", "skip": 40, "times": 1},
        ]
    }
    collector, _ = run_collector(store, data, duration=2.0, faults=faults, streams=("book",))
    feed = collector.books["BTCUSDT"]
    assert feed.stats.gaps >= 2 and feed.stats.snapshots >= 3
    # every stored snapshot is a state the true book had: none from a broken book
    check_book(collector, data.capture("BTCUSDT"), store)


def test_restart_backfills_bars_and_trades(store) -> None:
    """Stop, stay away while the venue goes on, start again: no hole in bars or trades."""
    data = minute_market(capture=synthetic_capture(300, step_ms=1000, seed=7))

    async def main() -> list[Collector]:
        config = FakeConfig(
            clock_start_ms=T0_MS + 200 * 60_000,
            clock_speed=60.0,
            stream_interval_s=0.02,
            weight_window_s=60.0,
        )
        runs = []
        async with FakeExchange(config, data=data) as fake:
            clock = fake.venue.clock.now_ms
            for _ in range(2):
                collector = Collector(
                    "binanceusdm",
                    ["BTCUSDT"],
                    store,
                    CollectorOptions(
                        streams=("klines", "trades"),
                        timeframe="1m",
                        url=fake.url,
                        rest=lambda: CcxtRestSource(
                            "binanceusdm",
                            SourceOptions(url=fake.url, policy=fast_policy(), now_ms=clock),
                        ),
                        now_ms=clock,
                        backoff_s=0.05,
                        flush_interval_s=0.2,
                    ),
                )
                await collector.run(1.0)
                runs.append(collector)
                await asyncio.sleep(0.5)  # down: ~30 trades and 30 s of bars go by
        return runs

    _, second = asyncio.run(asyncio.wait_for(main(), 30))
    assert second.stats["BTCUSDT trades"].backfilled_rows > 0
    assert second.stats["BTCUSDT klines"].backfilled_rows >= 0
    check_bars(store, data)
    check_trades(store)
