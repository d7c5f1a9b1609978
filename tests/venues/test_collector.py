"""The live collector against the fake exchange: closed bars with no hole despite a
dropped connection (REST backfill), trades once each despite duplicates, liquidations,
sampled books."""

from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd

from perptrader.marketdata.kinds import Kind
from perptrader.venues.backfill import CcxtRestSource, SourceOptions
from perptrader.venues.collector import Collector, CollectorOptions
from perptrader.venues.fake import FakeExchange
from perptrader.venues.fake.server import FakeConfig
from venues.venue_fakes import BTC, START, fast_policy, synthetic_market

T0 = int(START.value // 1_000_000)


def test_collector_survives_faults_and_leaves_no_gap(store) -> None:
    async def main() -> dict:
        config = FakeConfig(clock_start_ms=T0 + 100 * 3_600_000, clock_speed=3600.0,
                            stream_interval_s=0.02, weight_window_s=60.0)
        async with FakeExchange(config, data=synthetic_market()) as fake:
            fake.venue.faults.configure({"streams": [
                {"kind": "close", "stream": "kline", "skip": 40, "close_code": 1006},
                {"kind": "duplicate", "stream": "aggTrade", "times": None},
                {"kind": "duplicate", "stream": "trade", "times": None}]})
            clock = fake.venue.clock.now_ms

            def rest() -> CcxtRestSource:
                return CcxtRestSource("binanceusdm", SourceOptions(
                    url=fake.url, policy=fast_policy(), now_ms=clock))

            collector = Collector("binanceusdm", ["BTCUSDT"], store, CollectorOptions(
                streams=("klines", "trades", "book", "liquidations"), timeframe="1h",
                url=fake.url, rest=rest, now_ms=clock, backoff_s=0.05, flush_interval_s=0.2,
                book_interval_s=0.1))
            stats = await collector.run(duration_s=3.0)
            served = fake.venue.data.store.read(Kind.OHLCV, BTC, "1h")
            return {"stats": stats, "served": served}

    out = asyncio.run(main())
    stats = out["stats"]
    assert stats["BTCUSDT klines"].reconnects >= 1 and stats["BTCUSDT klines"].backfills >= 2
    bars = store.read(Kind.OHLCV, BTC, "1h")
    hours = np.diff(bars["ts"].to_numpy()).astype("timedelta64[h]").astype(int)
    assert bars["ts"].iloc[0] == START and set(hours) == {1}  # no hole
    assert bars["ts"].iloc[-1] >= START + pd.Timedelta(hours=102)
    cols = ["ts", "open", "high", "low", "close", "volume"]
    want = out["served"][cols].iloc[:len(bars)].reset_index(drop=True)
    pd.testing.assert_frame_equal(bars[cols], want)
    trades = store.read(Kind.TRADES, BTC)
    assert len(trades) == 40 and trades["trade_id"].is_unique  # duplicates stored once
    book = store.read(Kind.BOOK, BTC)
    assert len(book) and (book["bid_price"] < book["ask_price"]).all()
    assert stats["BTCUSDT liquidations"].messages >= 1
    assert len(store.read(Kind.LIQUIDATIONS, BTC)) >= 1


def test_collect_command_runs_for_a_duration(monkeypatch) -> None:
    from typer.testing import CliRunner

    from perptrader.cli import app
    from perptrader.config import load_settings
    from perptrader.marketdata.store import open_store
    from perptrader.venues.fake import FakeExchangeThread

    monkeypatch.setattr("perptrader.core.logging._configured", None)
    config = FakeConfig(clock_start_ms=T0 + 10 * 3_600_000, clock_speed=600.0,
                        stream_interval_s=0.05, weight_window_s=60.0)
    with FakeExchangeThread(config, data=synthetic_market()) as fake:
        result = CliRunner().invoke(app, [
            "data", "collect", "--symbol", "BTCUSDT", "--timeframe", "1h",
            "--streams", "klines:1h,trades", "--exchange-url", fake.url, "--duration", "2"])
    assert result.exit_code == 0, result.output
    assert "BTCUSDT trades" in result.stdout, result.stdout
    with open_store(load_settings()) as store:
        kinds = {s.kind.value: s.rows for s in store.inventory()}
    assert kinds["trades"] == 40 and kinds["ohlcv"] >= 10


def test_collect_command_rejects_bad_input() -> None:
    from typer.testing import CliRunner

    from perptrader.cli import app

    result = CliRunner().invoke(app, ["data", "collect", "--symbol", "BTCUSDT",
                                      "--streams", "bars,gossip", "--duration", "1"])
    assert result.exit_code == 1 and "unknown stream(s) ['gossip']" in result.stderr
