from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from perptrader.core.errors import DataFormatError
from perptrader.core.instruments import Instrument
from perptrader.marketdata.dataset import Dataset, to_utc, validate
from perptrader.marketdata.kinds import Kind
from perptrader.marketdata.store.duckdb_store import DuckDBStore

BTC = Instrument.parse("BTCUSDT")
H = 3_600_000
T0 = 1_700_000_000_000 // H * H


def bar_ds(n: int = 5, volume: float = 10.0, start: int = 0, **extra: object) -> Dataset:
    frame = pd.DataFrame({
        "ts": to_utc(T0 + (start + np.arange(n)) * H, "ms"),
        "open": 100.0, "high": 101.0, "low": 99.0, "close": 100.5, "volume": volume, **extra,
    })
    return validate(Dataset(Kind.OHLCV, BTC, frame, "1h", "test"))


def test_migrate_is_idempotent(store: DuckDBStore) -> None:
    assert store.migrate() == "0001"
    assert store.migrate() == "0001"


def test_second_write_adds_nothing(store: DuckDBStore) -> None:
    first = store.write([bar_ds()])[0]
    second = store.write([bar_ds()])[0]
    assert (first.rows_inserted, first.rows_updated) == (5, 0)
    assert (second.rows_inserted, second.rows_updated) == (0, 0)
    assert len(store.read(Kind.OHLCV, BTC, "1h")) == 5


def test_larger_volume_wins_and_extras_fill(store: DuckDBStore) -> None:
    store.write([bar_ds(volume=5.0)])  # a truncated download
    result = store.write([bar_ds(volume=10.0)])[0]
    assert result.rows_updated == 5
    smaller = store.write([bar_ds(volume=7.0)])[0]
    assert smaller.rows_updated == 0
    filled = store.write([bar_ds(volume=7.0, taker_buy_base=3.0)])[0]
    assert filled.rows_updated == 5
    back = store.read(Kind.OHLCV, BTC, "1h")
    assert back["volume"].tolist() == [10.0] * 5
    assert back["taker_buy_base"].tolist() == [3.0] * 5


def test_write_is_all_or_nothing(store: DuckDBStore) -> None:
    bad = bar_ds(start=100)
    bad.frame["close"] = np.nan  # bypasses validation on purpose: NOT NULL must reject it
    with pytest.raises(Exception):  # noqa: B017 - any database error
        store.write([bar_ds(), bad])
    assert store.inventory() == []


def test_read_range_and_inventory_gaps(store: DuckDBStore) -> None:
    store.write([bar_ds(n=5), bar_ds(n=3, start=10)])
    part = store.read(Kind.OHLCV, BTC, "1h", start=pd.Timestamp(T0 + H, unit="ms", tz="UTC"),
                      end=pd.Timestamp(T0 + 3 * H, unit="ms", tz="UTC"))
    assert len(part) == 2
    [info] = store.inventory()
    assert (info.rows, info.gaps, info.timeframe) == (8, 1, "1h")
    js = info.as_json()
    assert list(js) == ["symbol", "kind", "timeframe", "first", "last", "rows", "gaps"]
    assert js["first"].endswith("Z")


def test_validation_error_type() -> None:
    with pytest.raises(DataFormatError):
        bar_ds(volume=-1.0)


# ---- concurrency: readers share the file, writers hold it one transaction at a time ------

HOLD = """
import sys, time
from perptrader.config import load_settings
from perptrader.marketdata.store import open_store
from perptrader.marketdata.kinds import Kind
from perptrader.core.instruments import Instrument
store = open_store(load_settings(), read_only=sys.argv[1] == "ro")
print(len(store.read(Kind.OHLCV, Instrument.parse("BTCUSDT"), "1h")), flush=True)
time.sleep(float(sys.argv[2]))
store.close()
"""


def _holder(mode: str, seconds: float):
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", HOLD, mode, str(seconds)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line.isdigit(), proc.stderr.read() if proc.stderr else line
    return proc, int(line)


def _seeded_settings():
    from perptrader.config import load_settings

    cfg = load_settings()
    with DuckDBStore(cfg.embedded_store_path) as s:
        s.migrate()
        s.write([bar_ds(5)])
    return cfg


def test_two_read_only_sessions_share_the_file() -> None:
    """A second backtest / `data list` used to fail with 'Could not set lock'."""
    from perptrader.marketdata.store import open_store

    cfg = _seeded_settings()
    proc, rows = _holder("ro", 30)  # another process reading, e.g. a long backtest
    try:
        assert rows == 5
        with open_store(cfg, read_only=True) as mine:  # no lock wait: shared
            assert len(mine.read(Kind.OHLCV, BTC, "1h")) == 5
            assert [s.rows for s in mine.inventory()] == [5]
    finally:
        proc.kill()
        proc.wait(10)


def test_transient_writer_lets_readers_in_between_transactions() -> None:
    from perptrader.marketdata.store import open_store

    cfg = _seeded_settings()
    writer = open_store(cfg, transient=True)  # e.g. a long import, between two files
    try:
        writer.write([bar_ds(3, start=5)])
        proc, rows = _holder("ro", 0)  # a reader gets in while the writer is still open
        proc.wait(30)
        assert rows == 8 and proc.returncode == 0
        writer.write([bar_ds(2, start=8)])  # and the writer carries on afterwards
        assert len(writer.read(Kind.OHLCV, BTC, "1h")) == 10
    finally:
        writer.close()


def test_a_held_file_is_waited_for_then_refused_with_a_clear_message() -> None:
    from perptrader.core.errors import StoreError
    from perptrader.marketdata.store import open_store

    cfg = _seeded_settings()
    proc, _ = _holder("rw", 60)  # a writer holding the file
    try:
        with pytest.raises(StoreError, match="held by another process"):
            open_store(cfg, read_only=True, lock_timeout=0.3)
    finally:
        proc.kill()
        proc.wait(10)
    proc, _ = _holder("rw", 1.0)  # released after a second: a waiting reader gets in
    try:
        with open_store(cfg, read_only=True, lock_timeout=30) as reader:
            assert len(reader.read(Kind.OHLCV, BTC, "1h")) == 5
    finally:
        proc.wait(30)


def test_read_only_open_creates_and_migrates_a_missing_store(tmp_path) -> None:
    from perptrader.config import load_settings
    from perptrader.marketdata.store import open_store

    cfg = load_settings(data_dir=tmp_path / "fresh")
    with open_store(cfg, read_only=True) as store:
        assert store.inventory() == []
    reader = DuckDBStore(cfg.embedded_store_path, read_only=True)
    try:
        with pytest.raises(Exception):  # noqa: B017 - duckdb's own error class
            reader.write([bar_ds()])
    finally:
        reader.close()


def test_cli_readers_run_beside_another_reader() -> None:
    """`data list` (read-only) while another process reads the store."""
    import orjson
    from typer.testing import CliRunner

    from perptrader.cli import app

    _seeded_settings()
    proc, _ = _holder("ro", 30)
    try:
        res = CliRunner().invoke(app, ["data", "list", "--json"])
        assert res.exit_code == 0, res.output
        assert orjson.loads(res.stdout)[0]["rows"] == 5
    finally:
        proc.kill()
        proc.wait(10)
