"""PostgresStore against the local PostgreSQL server, and its parity with DuckDBStore.

Every test works in a fresh schema (``?schema=...``) that is dropped afterwards, so the
tests neither see nor leave anything in the shared database. The module skips when the
server does not answer (set PERPTRADER_TEST_POSTGRES_URL to test another server).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import numpy as np
import pandas as pd
import pytest

from perptrader.core.errors import StoreError
from perptrader.core.instruments import Instrument
from perptrader.marketdata.dataset import Dataset, to_utc, validate
from perptrader.marketdata.kinds import Kind
from perptrader.marketdata.store import postgres_store
from perptrader.marketdata.store.base import MarketStore
from perptrader.marketdata.store.duckdb_store import DuckDBStore
from perptrader.marketdata.store.postgres_store import PostgresStore
from shared_data import real_file

pytestmark = pytest.mark.postgres

SERVER = os.environ.get("PERPTRADER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
BTC = Instrument.parse("BTCUSDT")
ETH_SPOT = Instrument("binance", "spot", "ETHUSDT")
H = 3_600_000
T0 = 1_700_000_000_000 // H * H


def _sql(query: str) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        con = await asyncpg.connect(SERVER, timeout=5)
        try:
            return await con.fetch(query)
        finally:
            await con.close()

    return asyncio.run(run())


@pytest.fixture(scope="module")
def server() -> str:
    """The server's URL, or skip the module's database tests saying why."""
    try:
        _sql("SELECT 1")
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL not reachable at {SERVER} ({exc}); "
                    "start it or set PERPTRADER_TEST_POSTGRES_URL")
    return SERVER


@pytest.fixture
def schema(server: str) -> Iterator[str]:
    name = f"pt_test_{uuid.uuid4().hex[:12]}"
    yield name
    _sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def pg(server: str, schema: str) -> Iterator[PostgresStore]:
    store = PostgresStore(f"{server}?schema={schema}")
    store.migrate()
    yield store
    store.close()


@pytest.fixture
def duck(tmp_path: Path) -> Iterator[DuckDBStore]:
    store = DuckDBStore(tmp_path / "market.duckdb")
    store.migrate()
    yield store
    store.close()


# ---------------------------------------------------------------------- inputs
def ms(offset_hours: float) -> pd.Series:
    return to_utc(np.asarray([T0 + int(h * H) for h in np.atleast_1d(offset_hours)]), "ms")


def bar_ds(n: int = 5, volume: float = 10.0, start: int = 0, close: float = 100.5,
           instrument: Instrument = BTC, kind: Kind = Kind.OHLCV, **extra: object) -> Dataset:
    frame = pd.DataFrame({
        "ts": ms(start + np.arange(n)),
        "open": 100.0, "high": 102.0, "low": 99.0, "close": close, "volume": volume, **extra,
    })
    return validate(Dataset(kind, instrument, frame, "1h", "test"))


def funding_ds(hours: list[int], mark_price: float | None = None, rate: float = 1e-4) -> Dataset:
    exchange_ts = ms(hours) + pd.Timedelta(milliseconds=3)  # raw exchange time, some missing
    exchange_ts[::2] = pd.NaT
    frame = pd.DataFrame({"ts": ms(hours), "rate": rate, "interval_hours": 8.0,
                          "exchange_ts": exchange_ts, "mark_price": mark_price})
    return validate(Dataset(Kind.FUNDING, BTC, frame, source="test"))


def trades_ds() -> Dataset:
    frame = pd.DataFrame({
        "ts": ms([0, 0, 0.5, 1.25]),
        "trade_id": [1, 2, 3, 4],
        "price": [100.0, 100.5, 101.0, 99.5],
        "qty": [0.1, 0.2, 0.3, 0.4],
        "side": ["buy", None, "sell", "buy"],
        "last_trade_id": pd.array([None, 7, None, 9], dtype="Int64"),
    })
    return validate(Dataset(Kind.TRADES, BTC, frame, source="test"))


def liquidations_ds() -> Dataset:
    # free-text strings that a CSV round trip could mangle: empty vs NULL, quotes, commas,
    # a newline, the word NULL, non-ASCII
    frame = pd.DataFrame({
        "ts": ms([0, 1, 2, 3, 4, 5]),
        "side": ["buy", "sell", "buy", "sell", "buy", "sell"],
        "price": [100.0, 101.0, 102.0, 103.0, 104.0, 105.0],
        "qty": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        "order_type": ["LIMIT", "", None, 'odd, "quoted"\nline', "NULL", "Ünïcode"],
    })
    return validate(Dataset(Kind.LIQUIDATIONS, BTC, frame, source="test"))


def book_ds() -> Dataset:
    frame = pd.DataFrame({
        "ts": ms([0, 0, 1, 1]),
        "level": [0, 1, 0, 1],
        "bid_price": [100.0, 99.9, 100.1, 100.0],
        "bid_qty": [1.0, 2.0, 1.5, None],
        "ask_price": [100.1, 100.2, 100.2, 100.3],
        "ask_qty": [1.0, 2.0, 1.0, 3.0],
        "update_id": pd.array([10, 10, None, 11], dtype="Int64"),
    })
    return validate(Dataset(Kind.BOOK, BTC, frame, source="test"))


def open_interest_ds() -> Dataset:
    frame = pd.DataFrame({"ts": ms(np.arange(0, 12, 0.5)), "oi_contracts": 1000.0,
                          "oi_value": np.linspace(1e6, 2e6, 24)})
    return validate(Dataset(Kind.OPEN_INTEREST, BTC, frame, source="test"))


def mixed_datasets() -> list[Dataset]:
    """Several kinds and instruments, including NULL-mixed columns and a gap in the bars."""
    gappy = bar_ds(n=24, volume=5.0, trade_count=pd.array([7] * 12 + [None] * 12, dtype="Int64"))
    gappy = Dataset(gappy.kind, gappy.instrument, gappy.frame.drop(index=range(5, 8)),
                    gappy.timeframe, gappy.source)
    return [
        validate(gappy),
        bar_ds(n=6, kind=Kind.MARK),
        bar_ds(n=4, instrument=ETH_SPOT, taker_buy_base=[1.0, None, 2.0, None]),
        funding_ds([0, 8, 16, 40]),
        open_interest_ds(),
        trades_ds(),
        liquidations_ds(),
        book_ds(),
    ]


def read_all(store: MarketStore) -> dict[tuple[Kind, Instrument, str | None], pd.DataFrame]:
    return {(info.kind, info.instrument, info.timeframe):
            store.read(info.kind, info.instrument,
                       info.timeframe if info.kind in (Kind.OHLCV, Kind.MARK, Kind.INDEX)
                       else None)
            for info in store.inventory()}


def counts(results: list) -> list[tuple[int, int]]:
    return [(r.rows_inserted, r.rows_updated) for r in results]


# ---------------------------------------------------------------------- tests
def test_migrate_twice_is_a_no_op(pg: PostgresStore, schema: str) -> None:
    assert pg.migrate() == "0001"
    assert pg.migrate() == "0001"
    tables = {r["table_name"] for r in _sql(
        f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{schema}'")}
    assert {"alembic_version", "bars", "funding", "trades", "book_snapshots"} <= tables
    assert len(_sql(f'SELECT * FROM "{schema}".alembic_version')) == 1
    # without TimescaleDB the tables get BRIN indexes on ts
    indexes = {r["indexname"] for r in _sql(
        f"SELECT indexname FROM pg_indexes WHERE schemaname = '{schema}'")}
    assert "brin_bars_ts" in indexes or "timescaledb" in {
        r["extname"] for r in _sql("SELECT extname FROM pg_extension")}


def test_url_forms_and_schema(server: str, schema: str) -> None:
    for prefix in ("postgres://", "postgresql+asyncpg://"):
        url = server.replace("postgresql://", prefix, 1) + f"?schema={schema}"
        with PostgresStore(url) as store:
            assert store.schema == schema
            assert store.backend == "postgresql"
            assert store.migrate() == "0001"
            assert store.inventory() == []


def test_unreachable_server_names_host_and_port() -> None:
    with pytest.raises(StoreError, match=r"127\.0\.0\.1:1\b"):
        PostgresStore("postgresql://postgres@127.0.0.1:1/test", connect_timeout=3)


def test_closed_store_refuses_work(pg: PostgresStore) -> None:
    pg.close()
    pg.close()  # twice is fine
    with pytest.raises(StoreError, match="closed"):
        pg.inventory()


def test_usable_from_inside_a_running_event_loop(server: str, schema: str) -> None:
    """As in a notebook or the live engine: the store's loop is its own."""

    async def main() -> list:
        with PostgresStore(f"{server}?schema={schema}") as store:
            store.migrate()
            store.write([bar_ds(n=3)])
            return store.inventory()

    [info] = asyncio.run(main())
    assert info.rows == 3


def test_second_write_adds_nothing(pg: PostgresStore) -> None:
    first = pg.write(mixed_datasets())
    assert counts(first) == [(21, 0), (6, 0), (4, 0), (4, 0), (24, 0), (4, 0), (6, 0), (4, 0)]
    assert [r.rows_in for r in first] == [21, 6, 4, 4, 24, 4, 6, 4]
    second = pg.write(mixed_datasets())
    assert counts(second) == [(0, 0)] * 8
    # the inventory counts book snapshots (2 of 2 levels each), not book rows
    assert sum(info.rows for info in pg.inventory()) == 21 + 6 + 4 + 4 + 24 + 4 + 6 + 2


def test_bars_merge_larger_volume_wins(pg: PostgresStore) -> None:
    pg.write([bar_ds(volume=5.0, close=100.5)])  # saved while the candles were forming
    final = pg.write([bar_ds(volume=10.0, close=101.0)])[0]
    assert (final.rows_inserted, final.rows_updated) == (0, 5)
    back = pg.read(Kind.OHLCV, BTC, "1h")
    assert back["volume"].tolist() == [10.0] * 5
    assert back["close"].tolist() == [101.0] * 5

    # a smaller-volume duplicate changes nothing, even with other prices
    smaller = pg.write([bar_ds(volume=7.0, close=100.0)])[0]
    assert (smaller.rows_inserted, smaller.rows_updated) == (0, 0)
    pd.testing.assert_frame_equal(pg.read(Kind.OHLCV, BTC, "1h"), back)

    # ...but its extras fill the stored bar's missing ones, keeping the stored values
    filled = pg.write([bar_ds(volume=7.0, close=100.0, taker_buy_base=3.0)])[0]
    assert (filled.rows_inserted, filled.rows_updated) == (0, 5)
    after = pg.read(Kind.OHLCV, BTC, "1h")
    assert after["taker_buy_base"].tolist() == [3.0] * 5
    assert after["close"].tolist() == [101.0] * 5
    assert after["volume"].tolist() == [10.0] * 5


def test_other_kinds_fill_nulls_only(pg: PostgresStore) -> None:
    pg.write([funding_ds([0, 8], mark_price=None, rate=1e-4)])
    result = pg.write([funding_ds([0, 8, 16], mark_price=50_000.0, rate=2e-4)])[0]
    assert (result.rows_inserted, result.rows_updated) == (1, 2)
    back = pg.read(Kind.FUNDING, BTC)
    assert back["rate"].tolist() == [1e-4, 1e-4, 2e-4]
    assert back["mark_price"].tolist() == [50_000.0] * 3


def test_failing_dataset_leaves_nothing_written(pg: PostgresStore) -> None:
    pg.write([bar_ds(n=3, volume=5.0)])
    before = pg.read(Kind.OHLCV, BTC, "1h")
    bad = bar_ds(start=100)
    bad.frame["close"] = np.nan  # bypasses validation on purpose: NOT NULL must reject it
    with pytest.raises(StoreError, match=r"nothing was written.*dataset 3 of 4"):
        pg.write([bar_ds(n=3, volume=50.0), funding_ds([0, 8]), bad, trades_ds()])
    pd.testing.assert_frame_equal(pg.read(Kind.OHLCV, BTC, "1h"), before)
    assert [(i.kind, i.rows) for i in pg.inventory()] == [(Kind.OHLCV, 3)]
    # the connection is usable afterwards
    assert counts(pg.write([funding_ds([0, 8])])) == [(2, 0)]


def test_read_with_start_and_end(pg: PostgresStore) -> None:
    pg.write([bar_ds(n=10)])
    t = lambda h: pd.Timestamp(T0 + h * H, unit="ms", tz="UTC")  # noqa: E731
    part = pg.read(Kind.OHLCV, BTC, "1h", start=t(2), end=t(5))
    assert part["ts"].tolist() == [t(2), t(3), t(4)]  # end is exclusive
    assert len(pg.read(Kind.OHLCV, BTC, "1h", start=t(8))) == 2
    assert len(pg.read(Kind.OHLCV, BTC, "1h", end=t(1))) == 1
    naive = t(2).tz_localize(None).to_pydatetime()  # naive means UTC
    assert len(pg.read(Kind.OHLCV, BTC, "1h", start=naive)) == 8
    empty = pg.read(Kind.OHLCV, BTC, "1h", start=t(50))
    assert empty.empty and list(empty.columns) == list(part.columns)
    assert empty.dtypes.equals(part.dtypes)
    with pytest.raises(ValueError, match="timeframe"):
        pg.read(Kind.OHLCV, BTC)


def test_inventory_counts_rows_and_gaps(pg: PostgresStore) -> None:
    pg.write(mixed_datasets())
    info = {(i.kind_label, i.instrument.symbol): i for i in pg.inventory()}
    bars = info[("ohlcv", "BTCUSDT")]
    assert (bars.rows, bars.gaps, bars.timeframe) == (21, 1, "1h")
    assert bars.first == pd.Timestamp(T0, unit="ms", tz="UTC")
    assert bars.last == pd.Timestamp(T0 + 23 * H, unit="ms", tz="UTC")
    assert (info[("mark", "BTCUSDT")].rows, info[("mark", "BTCUSDT")].gaps) == (6, 0)
    assert info[("spot_ohlcv", "ETHUSDT")].rows == 4
    funding = info[("funding", "BTCUSDT")]
    assert (funding.rows, funding.gaps, funding.timeframe) == (4, 1, "8h")
    oi = info[("open_interest", "BTCUSDT")]
    assert (oi.rows, oi.gaps, oi.timeframe) == (24, 0, "30m")
    trades = info[("trades", "BTCUSDT")]
    assert (trades.rows, trades.gaps, trades.timeframe) == (4, None, None)
    book = info[("book", "BTCUSDT")]
    assert (book.rows, book.gaps) == (2, None)  # snapshots, not levels


@pytest.mark.parametrize("small_pieces", [False, True], ids=["whole", "small-pieces"])
def test_same_results_as_the_embedded_store(pg: PostgresStore, duck: DuckDBStore,
                                            small_pieces: bool,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    if small_pieces:  # COPY in and out in pieces that split rows: the streaming paths
        monkeypatch.setattr(postgres_store, "_CHUNK_ROWS", 3)
        monkeypatch.setattr(postgres_store._BinaryRows, "BATCH", 50)
    for batch in (mixed_datasets(),
                  [bar_ds(n=30, volume=20.0, taker_buy_base=4.0), funding_ds([0, 8, 16], 1.0)]):
        assert counts(pg.write(batch)) == counts(duck.write(batch))
    assert pg.inventory() == duck.inventory()
    pg_frames, duck_frames = read_all(pg), read_all(duck)
    assert pg_frames.keys() == duck_frames.keys()
    for key, frame in duck_frames.items():
        pd.testing.assert_frame_equal(pg_frames[key], frame, obj=str(key))
    liq = pg_frames[(Kind.LIQUIDATIONS, BTC, None)]["order_type"]
    assert liq.tolist()[:2] == ["LIMIT", ""] and pd.isna(liq.iloc[2])
    assert liq.tolist()[3:] == ['odd, "quoted"\nline', "NULL", "Ünïcode"]


def test_concurrent_writers_do_not_lose_rows(pg: PostgresStore, server: str,
                                             schema: str) -> None:
    with PostgresStore(f"{server}?schema={schema}") as other:
        batches = {pg: [bar_ds(n=40), funding_ds([0, 8, 16])],
                   other: [funding_ds([8, 16, 24]), bar_ds(n=40, start=20)]}
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda s: s.write(batches[s]), batches))
    inserted = sum(r.rows_inserted for rs in results for r in rs)
    assert inserted == 60 + 4
    info = {i.kind: i.rows for i in pg.inventory()}
    assert info == {Kind.OHLCV: 60, Kind.FUNDING: 4}


@pytest.mark.integration
def test_real_bars_in_both_stores(pg: PostgresStore, duck: DuckDBStore) -> None:
    path = real_file("freqtrade/binance/futures/BTC_USDT_USDT-1h-futures.feather")
    raw = pd.read_feather(path)
    frame = raw.rename(columns={"date": "ts"})[["ts", "open", "high", "low", "close", "volume"]]
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    ds = validate(Dataset(Kind.OHLCV, Instrument.parse("BTCUSDT"), frame, "1h",
                          source=str(path)))
    assert counts(pg.write([ds])) == counts(duck.write([ds])) == [(21888, 0)]
    assert counts(pg.write([ds])) == [(0, 0)]
    assert pg.inventory() == duck.inventory()
    [info] = pg.inventory()
    assert info.rows == 21888
    pd.testing.assert_frame_equal(pg.read(Kind.OHLCV, BTC, "1h"), duck.read(Kind.OHLCV, BTC, "1h"))


# ---------------------------------------------------------------------- TimescaleDB
# The extension cannot be installed on this server: the detection is tested on the real
# catalogue (not available -> plain tables), with a fake connection standing in for a
# server where it appears later, and with the real server told it is available (the
# CREATE EXTENSION then fails and the open must survive it).

ALL = [t.table for t in postgres_store.ALL_TABLES]


class FakeTimescaleServer:
    """Answers ``timescale_state``'s catalogue queries and records every statement."""

    def __init__(self, available: bool, installed: bool = False,
                 hypertables: set[str] | None = None, fail_on: str | None = None) -> None:
        self.available, self.installed = available, installed
        self.hyper = set(hypertables or ())
        self.fail_on = fail_on
        self.executed: list[str] = []

    async def fetchval(self, query: str, *args: object) -> object:
        if "pg_available_extensions" in query:
            return 1 if self.available else None
        if "pg_extension" in query:
            return "public" if self.installed else None
        raise AssertionError(query)

    async def fetch(self, query: str, *args: object) -> list[tuple[str]]:
        if "pg_class" in query:
            return [(t,) for t in ALL]
        if "timescaledb_information.hypertables" in query:
            return [(t,) for t in sorted(self.hyper)]
        raise AssertionError(query)

    async def execute(self, query: str, *args: object) -> str:
        if self.fail_on and self.fail_on in query:
            raise asyncpg.FeatureNotSupportedError("timescaledb must be preloaded")
        self.executed.append(query)
        if query.startswith("CREATE EXTENSION"):
            self.installed = True
        if "create_hypertable('" in query:
            self.hyper.add(query.split("create_hypertable('")[1].split("'")[0])
        return "OK"

    def transaction(self) -> object:
        class Tx:
            async def __aenter__(self) -> None:
                return None

            async def __aexit__(self, *exc: object) -> bool:
                return False

        return Tx()


def test_timescale_plan() -> None:
    assert postgres_store.timescale_plan(False, False, None, ALL, set()) == []
    plan = postgres_store.timescale_plan(True, False, None, ALL, set())
    assert plan[0] == "CREATE EXTENSION IF NOT EXISTS timescaledb SCHEMA public"
    hyper = [s for s in plan if "create_hypertable" in s]
    assert len(hyper) == len(ALL)
    assert any("'trades'" in s and "INTERVAL '1 day'" in s for s in hyper)
    assert any("'bars'" in s and "INTERVAL '30 days'" in s for s in hyper)
    assert sum("add_retention_policy" in s for s in plan) == 2  # book snapshots, trades
    # installed, some tables converted already: only the rest, no CREATE EXTENSION
    plan = postgres_store.timescale_plan(True, True, "ext", ALL, set(ALL) - {"bars"})
    assert [s for s in plan if "create_hypertable" in s] == [
        "SELECT \"ext\".create_hypertable('bars', 'ts', chunk_time_interval => "
        "INTERVAL '30 days', migrate_data => true, if_not_exists => true)"]
    assert postgres_store.timescale_plan(True, True, "public", ALL, set(ALL)) == []


def test_extension_appearing_later_converts_the_existing_tables() -> None:
    fake = FakeTimescaleServer(available=False)
    status = asyncio.run(postgres_store.ensure_timescale(fake))
    assert not status.available and fake.executed == []  # plain tables, nothing done
    fake.available = True  # the administrator installs the package; the next open ...
    status = asyncio.run(postgres_store.ensure_timescale(fake))
    assert status.installed and sorted(status.converted) == sorted(ALL)
    assert fake.executed[1].startswith("CREATE EXTENSION")
    assert fake.hyper == set(ALL)
    fake.executed.clear()  # ... and every later open finds nothing left to do
    status = asyncio.run(postgres_store.ensure_timescale(fake))
    assert status.converted == [] and fake.executed == []
    assert status.hypertables == sorted(ALL)


def test_extension_that_cannot_be_created_does_not_fail_the_open() -> None:
    fake = FakeTimescaleServer(available=True, fail_on="CREATE EXTENSION")
    status = asyncio.run(postgres_store.ensure_timescale(fake))
    assert status.available and not status.installed and status.converted == []
    assert "preloaded" in (status.error or "")


def test_every_open_checks_for_timescale(server: str, schema: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"{server}?schema={schema}"
    with PostgresStore(url) as store:
        store.migrate()
        assert store.timescale is not None and not store.timescale.installed
        assert store.timescale.converted == []
        store.write([bar_ds()])
    # now pretend the server lists the extension: the open tries to enable it, the real
    # server refuses (it is not installed here), the store opens anyway with plain tables
    real_state = postgres_store.timescale_state

    async def listed(con: object) -> tuple:
        _, installed, ext, tables, hyper = await real_state(con)
        return True, installed, ext, tables, hyper

    monkeypatch.setattr(postgres_store, "timescale_state", listed)
    with PostgresStore(url) as store:
        store.migrate()
        assert store.timescale.available and store.timescale.error
        assert len(store.read(Kind.OHLCV, BTC, "1h")) == 5


def test_url_password_is_masked_in_errors() -> None:
    from perptrader.config import load_settings
    from perptrader.marketdata.store import open_store

    with pytest.raises(StoreError) as err:
        open_store(load_settings(store={"url": "mysql://root:hunter2@db:3306/x"}))
    assert "hunter2" not in str(err.value) and "root:***@db" in str(err.value)
    with pytest.raises(StoreError) as err:
        PostgresStore("postgresql://u:hunter2@127.0.0.1:1/x", connect_timeout=1)
    assert "hunter2" not in str(err.value)
