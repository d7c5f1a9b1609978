"""Mark price and funding, open interest and liquidations; the embedded store opened per
batch (readers are not locked out); the CLI's status lines and --json report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from perptrader.core.errors import PerptraderError
from perptrader.marketdata.kinds import Kind
from perptrader.marketdata.store.duckdb_store import DuckDBStore
from perptrader.venues.collector import BatchStore, parse_streams
from venues.venue_fakes import BTC, START, minute_market, run_collector


def test_parse_streams() -> None:
    assert parse_streams("klines:5m,trades,book,mark,liquidations") == (
        ("klines", "trades", "book", "mark", "liquidations"),
        "5m",
    )
    assert parse_streams("bars,oi", "1h") == (("klines", "oi"), "1h")
    for bad in ("klines:7q", "gossip", "trades:1m", ""):
        with pytest.raises(PerptraderError):
            parse_streams(bad)


def test_mark_funding_open_interest_liquidations(store) -> None:
    """The clock crosses the 08:00 funding settlement: the stream announces it, the
    settled rate comes over REST; closed mark bars as the venue's markPriceKlines."""
    data = minute_market()
    collector, _ = run_collector(
        store,
        data,
        duration=3.0,
        speed=600.0,
        start_min=470,
        streams=("mark", "oi", "liquidations"),
    )
    mark = store.read(Kind.MARK, BTC, "1m")
    served = data.store.read(Kind.MARK, BTC, "1m")
    steps = np.diff(mark["ts"].to_numpy()).astype("timedelta64[s]").astype(int)
    assert set(steps) == {60} and mark["ts"].iloc[-1] >= START + pd.Timedelta(minutes=480)
    cols = ["ts", "open", "high", "low", "close"]
    want = served[served["ts"].isin(mark["ts"])][cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(mark[cols].reset_index(drop=True), want)
    funding = store.read(Kind.FUNDING, BTC)
    assert list(funding["ts"]) == [START, START + pd.Timedelta(hours=8)]
    assert collector.stats["BTCUSDT mark"].backfills >= 3
    oi = store.read(Kind.OPEN_INTEREST, BTC)
    assert len(oi) >= 3 and oi["ts"].is_unique and oi["oi_contracts"].notna().all()
    liq = store.read(Kind.LIQUIDATIONS, BTC)
    assert len(liq) >= 1 and set(liq["side"]) <= {"buy", "sell"}


def test_batch_store_lets_readers_in_and_keeps_rows_while_locked(tmp_path) -> None:
    """DuckDB: the collector opens the file per batch. While another process holds it,
    batches stay buffered; once it lets go they land, nothing lost or doubled."""
    path = tmp_path / "market.duckdb"
    first = DuckDBStore(path)
    first.migrate()
    first.close()
    store = BatchStore(lambda: DuckDBStore(path))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import duckdb, sys, time; c = duckdb.connect(sys.argv[1], read_only=True); "
                "print('held', flush=True); time.sleep(1.2)"
            ),
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    t0 = time.monotonic()
    try:
        collector, _ = run_collector(store, minute_market(), duration=3.0, streams=("trades",))
    finally:
        holder.wait(10)
    assert time.monotonic() - t0 > 1.0
    assert collector.store_errors >= 1  # it was locked out for a while ...
    reader = DuckDBStore(path, read_only=True)  # ... and the file is free afterwards
    try:
        ids = reader.read(Kind.TRADES, BTC)["trade_id"].to_numpy()
    finally:
        reader.close()
    assert len(ids) > 50 and set(ids) == set(range(5000, int(ids.max()) + 1))


def test_collect_command_json_status(monkeypatch) -> None:
    from typer.testing import CliRunner

    from perptrader.cli import app
    from perptrader.venues.fake import FakeExchangeThread
    from perptrader.venues.fake.server import FakeConfig

    monkeypatch.setattr("perptrader.core.logging._configured", None)
    config = FakeConfig(
        clock_start_ms=int(START.value // 1_000_000) + 200 * 60_000,
        clock_speed=60.0,
        stream_interval_s=0.02,
        weight_window_s=60.0,
    )
    with FakeExchangeThread(config, data=minute_market()) as fake:
        result = CliRunner().invoke(
            app,
            [
                "data",
                "collect",
                "--symbol",
                "BTCUSDT",
                "--streams",
                "klines:1m,trades,book",
                "--exchange-url",
                fake.url,
                "--duration",
                "2",
                "--status-interval",
                "0.5",
                "--flush-interval",
                "0.3",
                "--json",
            ],
        )
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")]
    statuses = [x["status"] for x in lines if "status" in x]
    final = lines[-1]["final"]
    assert statuses and {"messages_per_s", "lag_ms", "last_write"} <= set(statuses[-1])
    assert final["rows_written"] > 0 and final["books"]["BTCUSDT"]["in_sync"]
    assert final["streams"]["BTCUSDT klines"]["backfilled_rows"] >= 200


def test_sigterm_stops_the_collector_cleanly(tmp_path) -> None:
    """``data collect`` as a process: SIGTERM ends it with exit code 0, the buffered rows
    written and the final report printed (SIGINT goes to the same handler; one process
    start is enough for the test budget)."""
    from perptrader.venues.fake import FakeExchangeThread
    from perptrader.venues.fake.server import FakeConfig

    config = FakeConfig(
        clock_start_ms=int(START.value // 1_000_000) + 200 * 60_000,
        clock_speed=60.0,
        stream_interval_s=0.02,
        weight_window_s=60.0,
    )
    env = {**os.environ, "PERPTRADER__DATA_DIR": str(tmp_path / "data")}
    with FakeExchangeThread(config, data=minute_market()) as fake:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from perptrader.cli import app; app()",
                "data",
                "collect",
                "--symbol",
                "BTCUSDT",
                "--streams",
                "klines:1m,trades,book",
                "--exchange-url",
                fake.url,
                "--flush-interval",
                "60",
                "--status-interval",
                "0.2",
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert proc.stdout is not None
        first = proc.stdout.readline()  # a status line: it is running
        assert '"status"' in first, proc.stderr.read() if proc.stderr else first
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    final = json.loads(out.strip().splitlines()[-1])["final"]
    # nothing was flushed before the signal (60 s interval): all rows come from the
    # shutdown's flush
    assert final["rows_written"] > 0 and final["buffered_rows"] == 0
    store = DuckDBStore(tmp_path / "data" / "market.duckdb", read_only=True)
    try:
        assert len(store.read(Kind.TRADES, BTC)) > 0 and len(store.read(Kind.BOOK, BTC)) > 0
    finally:
        store.close()
