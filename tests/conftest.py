"""Shared fixtures: where the real data lives, and a fresh embedded store."""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from perptrader.marketdata.store.duckdb_store import DuckDBStore


@pytest.fixture
def store(tmp_path: Path):
    s = DuckDBStore(tmp_path / "market.duckdb")
    s.migrate()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the developer's perptrader.toml or writes to ./user_data."""
    monkeypatch.setenv("PERPTRADER_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("PERPTRADER__DATA_DIR", str(tmp_path / "user_data"))
    for key in list(os.environ):
        if key.startswith("PERPTRADER__") and key != "PERPTRADER__DATA_DIR":
            monkeypatch.delenv(key)


#: the real BTCUSDT perp files that make up the 1h research frame (bars, mark, funding)
REAL_BTC_1H_FILES = (
    "freqtrade/binance/futures/BTC_USDT_USDT-1h-futures.feather",
    "freqtrade/binance/futures/BTC_USDT_USDT-1h-mark.feather",
    "freqtrade/binance/futures/BTC_USDT_USDT-8h-funding_rate.feather",
    "binance_vision/futures_um/BTCUSDT-1h-futures.csv",
    "binance_vision/futures_um/BTCUSDT-funding.csv",
)


@pytest.fixture(scope="session")
def real_btc_1h(tmp_path_factory: pytest.TempPathFactory):
    """``load('BTCUSDT', '1h')`` over the real files above (skips when they are absent)."""
    from perptrader.marketdata.importer import import_paths
    from perptrader.marketdata.loader import load
    from perptrader.marketdata.sources.base import ImportHints
    from shared_data import real_file

    paths = [real_file(name) for name in REAL_BTC_1H_FILES]
    s = DuckDBStore(tmp_path_factory.mktemp("btc1h") / "market.duckdb")
    s.migrate()
    try:
        import_paths(paths, s, ImportHints())
        return load("BTCUSDT", "1h", store=s)
    finally:
        s.close()


@pytest.fixture(scope="session")
def real_btc_1h_ml(real_btc_1h):
    """The ML research table (default features + labels) of the real BTCUSDT 1h frame."""
    from perptrader.ml.dataset import build_ml_frame

    return build_ml_frame(real_btc_1h, symbol="BTCUSDT", timeframe="1h")


#: the PostgreSQL server of the tests (PERPTRADER_TEST_POSTGRES_URL names another one)
PG_SERVER = os.environ.get("PERPTRADER_TEST_POSTGRES_URL",
                           "postgresql://postgres@127.0.0.1:5432/test")

@functools.cache
def pg_unreachable() -> str | None:
    """Why the PostgreSQL server cannot be used (None when it can); asked once."""
    try:
        with psycopg.connect(PG_SERVER, connect_timeout=3) as con:
            con.execute("SELECT 1")
    except (OSError, psycopg.Error) as exc:
        return f"PostgreSQL not reachable at {PG_SERVER} ({str(exc).strip().splitlines()[0]}); " \
               "start it or set PERPTRADER_TEST_POSTGRES_URL"
    return None


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A trading-DB URL in a fresh schema of the test server (dropped afterwards)."""
    reason = pg_unreachable()
    if reason:
        pytest.skip(reason)
    schema = f"pt_test_{uuid.uuid4().hex[:12]}"
    yield f"{PG_SERVER}{'&' if '?' in PG_SERVER else '?'}schema={schema}"
    with psycopg.connect(PG_SERVER, autocommit=True) as con:
        con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


