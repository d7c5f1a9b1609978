"""The production store: PostgreSQL (TimescaleDB hypertables when the extension exists).

The interface is synchronous like every MarketStore; underneath, the store owns one
asyncpg connection living on a private event loop in a background thread. A thread
(rather than ``loop.run_until_complete`` on the caller's thread) keeps the store usable
from code that already runs an event loop, e.g. a notebook or the live engine.

Writes stage each dataset in a TEMPORARY table ``staged`` (LIKE the target, ON COMMIT
DROP) filled by a binary COPY built with numpy, then run the shared statements of
``store/sql.py`` (count_new, count_changed, upsert), so the merge rules are the same as
the embedded store's. All datasets of one ``write`` share one transaction, which locks
the tables it writes against other writers (not readers) so that the counts are exact.
When no staged key is stored yet, a plain INSERT replaces the upsert (same result,
twice as fast).

Reads run the shared SELECT as ``COPY (...) TO STDOUT``: in binary at a fixed row width
(NULLs replaced by markers) for tables without text columns, parsed with numpy while it
arrives; in CSV parsed by pyarrow otherwise. Either is an order of magnitude faster than
fetching records.

A URL may carry ``?schema=name``: the store then works in that schema (created when
missing, and set as the connection's only search_path entry) so that several stores,
or tests, can share one database without seeing each other.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import AsyncIterator, Awaitable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import asyncpg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from perptrader.core.errors import StoreError
from perptrader.core.instruments import Instrument
from perptrader.core.logging import get_logger
from perptrader.core.secrets import mask_url
from perptrader.marketdata.dataset import Dataset
from perptrader.marketdata.kinds import (
    ALL_TABLES,
    INSTRUMENT_COLUMNS,
    PRICE_TYPE,
    TABLES,
    Column,
    Kind,
    TableSpec,
    frame_columns,
)
from perptrader.marketdata.store import sql
from perptrader.marketdata.store.base import MarketStore, SeriesInfo, WriteResult
from perptrader.marketdata.store.common import (
    canonical_frame,
    read_params,
    series_info,
    staged_frame,
    timeframe_lengths,
    write_spec,
)
from perptrader.marketdata.store.migrate import upgrade_to_head

T = TypeVar("T")

#: PostgreSQL's dialect of sql.inventory's epoch-milliseconds template
EPOCH_MS = "(extract(epoch from {}) * 1000)::bigint"
#: staged tables smaller than this are not ANALYZEd (the planner guesses well enough)
_ANALYZE_FROM_ROWS = 5_000
_CONNECT_TIMEOUT_S = 10.0
_SERIES_ORDER = (*INSTRUMENT_COLUMNS, "timeframe", "price_type")
_SERVER_SETTINGS = {"TimeZone": "UTC", "DateStyle": "ISO, YMD", "application_name": "perptrader"}


class PostgresStore(MarketStore):
    backend = "postgresql"

    def __init__(self, url: str, *, connect_timeout: float = _CONNECT_TIMEOUT_S) -> None:
        self.url = url
        self._target = _Target.parse(url)
        self._timeout = connect_timeout
        self._loop = _LoopThread()
        self._con: asyncpg.Connection | None = None
        #: what the last TimescaleDB check found and did (``ensure_timescale``)
        self.timescale: TimescaleStatus | None = None
        try:
            self._con = self._loop.run(self._open(create_schema=True))
        except BaseException:
            self._loop.close()
            raise

    # ------------------------------------------------------------------ interface
    @property
    def schema(self) -> str | None:
        return self._target.schema

    def migrate(self) -> str:
        revision = self._loop.run(self._migrate())
        # every open (open_store migrates) looks for TimescaleDB again, so installing it
        # later converts the existing tables then (docs/data.md)
        self.timescale = self._loop.run(ensure_timescale(self._connection()))
        return revision

    def write(self, datasets: Sequence[Dataset]) -> list[WriteResult]:
        return self._loop.run(self._write(list(datasets)))

    def read(
        self,
        kind: Kind,
        instrument: Instrument,
        timeframe: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pd.DataFrame:
        params = read_params(instrument, kind, timeframe, start, end)
        return self._loop.run(self._read(kind, params, start is not None, end is not None))

    def inventory(self) -> list[SeriesInfo]:
        return self._loop.run(self._inventory())

    def delete(
        self,
        kind: Kind,
        instrument: Instrument,
        timeframe: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        dry_run: bool = False,
    ) -> int:
        params = read_params(instrument, kind, timeframe, start, end)
        flags = {"bars": kind in PRICE_TYPE, "start": start is not None, "end": end is not None}
        return self._loop.run(self._delete(TABLES[kind], params, flags, dry_run))

    async def _delete(self, spec: TableSpec, params: list[object], flags: dict[str, bool],
                      dry_run: bool) -> int:
        con = self._connection()
        try:
            async with con.transaction():
                rows = int(await con.fetchval(
                    sql.delete(spec, count_only=True, placeholder="$", **flags), *params))
                if rows and not dry_run:
                    await con.execute(sql.delete(spec, placeholder="$", **flags), *params)
        except asyncpg.PostgresError as exc:
            raise StoreError(f"deleting from the PostgreSQL store failed: {exc}") from exc
        return rows

    def close(self) -> None:
        if self._loop.closed:
            return
        try:
            if self._con is not None and not self._con.is_closed():
                self._loop.run(_close(self._con))
        finally:
            self._con = None
            self._loop.close()

    # ------------------------------------------------------------------ async side
    async def _open(self, *, create_schema: bool = False) -> asyncpg.Connection:
        t = self._target
        settings = dict(_SERVER_SETTINGS)
        if t.schema:
            settings["search_path"] = _ident(t.schema)
        try:
            con = await asyncpg.connect(t.dsn, timeout=self._timeout, server_settings=settings)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            reason = str(exc) or type(exc).__name__
            raise StoreError(
                f"cannot connect to PostgreSQL at {t.where} (database {t.database!r}, "
                f"user {t.user!r}): {reason}"
            ) from exc
        if create_schema and t.schema:
            try:
                exists = await con.fetchval(
                    "SELECT 1 FROM pg_namespace WHERE nspname = $1", t.schema)
                if not exists:
                    await con.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(t.schema)}")
            except asyncpg.UniqueViolationError:
                pass  # created concurrently by another connection
            except asyncpg.PostgresError as exc:
                await con.close()
                raise StoreError(f"cannot create schema {t.schema!r} at {t.where}: {exc}") from exc
        return con

    async def _migrate(self) -> str:
        # SQLAlchemy with the asyncpg driver; our own connect() so that the server
        # settings (search_path, time zone) are exactly the store's.
        engine = create_async_engine("postgresql+asyncpg://", async_creator=self._open,
                                     poolclass=sa.pool.NullPool)
        try:
            async with engine.begin() as conn:
                # two processes migrating the same schema at once wait for each other
                await conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                                   {"key": f"perptrader.migrate.{self._target.schema or ''}"})
                return await conn.run_sync(upgrade_to_head)
        except sa.exc.DBAPIError as exc:
            raise StoreError(f"migrating the PostgreSQL store at {self._target.where} "
                             f"failed: {exc.orig}") from exc
        finally:
            await engine.dispose()

    async def _write(self, datasets: list[Dataset]) -> list[WriteResult]:
        con = self._connection()
        results: list[WriteResult] = []
        try:
            async with con.transaction():
                # One writer per table at a time (readers are not blocked), so that the
                # counts below stay true until the upsert, and the tables are locked in
                # one order, so that two writers cannot deadlock.
                tables = sorted({TABLES[ds.kind].table for ds in datasets})
                if tables:
                    await con.execute(f"LOCK TABLE {', '.join(tables)} "
                                      "IN SHARE ROW EXCLUSIVE MODE")
                for ds in datasets:
                    results.append(await self._write_one(con, ds))
        except asyncpg.PostgresError as exc:
            hint = " (run the migrations first)" if isinstance(
                exc, asyncpg.UndefinedTableError) else ""
            raise StoreError(f"writing to the PostgreSQL store failed, nothing was written "
                             f"({_describe(datasets, len(results))}): {exc}{hint}") from exc
        return results

    async def _write_one(self, con: asyncpg.Connection, ds: Dataset) -> WriteResult:
        spec = write_spec(ds)
        staged = staged_frame(ds)
        # On an error the whole transaction rolls back, and the temporary table with it.
        await con.execute(f"CREATE TEMPORARY TABLE staged (LIKE {spec.table}) ON COMMIT DROP")
        if len(staged):
            await con.copy_to_table("staged", source=copy_binary(staged, spec),
                                    columns=sql.all_columns(spec), format="binary")
        if len(staged) >= _ANALYZE_FROM_ROWS:
            await con.execute("ANALYZE staged")
        inserted = int(await con.fetchval(sql.count_new(spec)))
        if inserted == len(staged):
            # none of these keys is stored yet, so nothing can merge: a plain INSERT does
            # what the upsert would, without its per-row conflict check (twice as fast)
            changed = 0
            if inserted:
                cols = ", ".join(sql.all_columns(spec))
                await con.execute(f"INSERT INTO {spec.table} ({cols}) SELECT {cols} FROM staged")
        else:
            changed = int(await con.fetchval(sql.count_changed(spec)))
            if inserted or changed:
                await con.execute(sql.upsert(spec))
        await con.execute("DROP TABLE staged")  # the next dataset may stage another table
        return WriteResult(ds.kind, ds.instrument, ds.timeframe, ds.rows, inserted, changed)

    async def _read(self, kind: Kind, params: list[object], start: bool,
                    end: bool) -> pd.DataFrame:
        spec = TABLES[kind]
        columns = frame_columns(kind)
        specs = [_column(spec, c) for c in columns]
        fixed = _FixedRead(specs) if _FixedRead.supports(specs) else None
        query = sql.select(spec, fixed.select if fixed else columns, bars=kind in PRICE_TYPE,
                           start=start, end=end, placeholder="$")
        chunks: list[bytes] = []

        async def collect(data: bytes) -> None:
            chunks.append(data)

        rows = fixed.parser() if fixed else None
        try:
            await self._connection().copy_from_query(
                query, *params, output=rows.sink if rows else collect,
                **({"format": "binary"} if rows else {"format": "csv", "header": True}))
        except asyncpg.PostgresError as exc:
            raise StoreError(f"reading {kind.value} from the PostgreSQL store failed: "
                             f"{exc}") from exc
        raw = rows.frame() if rows else _parse_csv(b"".join(chunks), specs)
        return canonical_frame(kind, raw)

    async def _inventory(self) -> list[SeriesInfo]:
        con = self._connection()
        out: list[SeriesInfo] = []
        for spec in ALL_TABLES:
            timeframes: dict[str, int] = {}
            if spec.table == "bars":
                rows = await con.fetch("SELECT DISTINCT timeframe FROM bars")
                timeframes = timeframe_lengths([r[0] for r in rows])
            found = [dict(r) for r in await con.fetch(sql.inventory(spec, EPOCH_MS, timeframes))]
            # the same (code point) order as the embedded store, whatever the collation
            found.sort(key=lambda r: tuple(r[c] or "" for c in _SERIES_ORDER))
            out.extend(series_info(spec.table, r) for r in found)
        return out

    def _connection(self) -> asyncpg.Connection:
        if self._con is None:
            raise StoreError("the PostgreSQL store is closed")
        return self._con


# ---------------------------------------------------------------------- TimescaleDB
#: tables that grow fastest: 1-day chunks and a retention policy (the rest: 30 days)
FAST_GROWING = ("book_snapshots", "trades")
_TS_LOCK = "perptrader.timescale"


@dataclass
class TimescaleStatus:
    """What ``ensure_timescale`` found: whether the extension can be / is installed,
    which tables were already hypertables, which it converted, and why it could not."""

    available: bool = False
    installed: bool = False
    hypertables: list[str] = field(default_factory=list)
    converted: list[str] = field(default_factory=list)
    error: str | None = None


def timescale_plan(available: bool, installed: bool, ext_schema: str | None,
                   tables: Sequence[str], hypertables: set[str]) -> list[str]:
    """The statements that make every existing plain ``tables`` entry a hypertable on
    ``ts`` (with the same chunking, compression and retention as migration 0001), and
    create the extension first when it is available but not installed yet. Empty when the
    extension is not available or everything is converted already."""
    if not available:
        return []
    out = [] if installed else ["CREATE EXTENSION IF NOT EXISTS timescaledb SCHEMA public"]
    fn = f"{_ident(ext_schema or 'public')}."
    for name in tables:
        if name in hypertables:
            continue
        chunk = "1 day" if name in FAST_GROWING else "30 days"
        out += [
            f"SELECT {fn}create_hypertable('{name}', 'ts', chunk_time_interval => "
            f"INTERVAL '{chunk}', migrate_data => true, if_not_exists => true)",
            f"ALTER TABLE {name} SET (timescaledb.compress, "
            f"timescaledb.compress_segmentby = 'exchange, market, symbol')",
            f"SELECT {fn}add_compression_policy('{name}', INTERVAL '7 days', "
            f"if_not_exists => true)",
        ]
        if name in FAST_GROWING:
            out.append(f"SELECT {fn}add_retention_policy('{name}', INTERVAL '365 days', "
                       f"if_not_exists => true)")
    return out


async def timescale_state(con: Any) -> tuple[bool, bool, str | None, list[str], set[str]]:
    """(available, installed, extension schema, our existing tables, hypertables among
    them) for the connection's current schema."""
    available = await con.fetchval(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'") is not None
    ext_schema = await con.fetchval(
        "SELECT extnamespace::regnamespace::text FROM pg_extension "
        "WHERE extname = 'timescaledb'")
    names = [t.table for t in ALL_TABLES]
    rows = await con.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') "
        "AND c.relname = ANY($1::text[])", names)
    tables = [n for n in names if n in {r[0] for r in rows}]
    hyper: set[str] = set()
    if ext_schema is not None:
        rows = await con.fetch(
            "SELECT hypertable_name FROM timescaledb_information.hypertables "
            "WHERE hypertable_schema = current_schema()")
        hyper = {r[0] for r in rows}
    return available, ext_schema is not None, ext_schema, tables, hyper


async def ensure_timescale(con: Any) -> TimescaleStatus:
    """Detect TimescaleDB and convert the plain tables when it has appeared since they
    were created. Never fails the open: a server where the extension is listed but cannot
    be created (not in shared_preload_libraries, no privilege) keeps plain tables and the
    reason is logged and kept in the status."""
    available, installed, ext_schema, tables, hyper = await timescale_state(con)
    status = TimescaleStatus(available=available, installed=installed,
                             hypertables=sorted(hyper))
    plan = timescale_plan(available, installed, ext_schema, tables, hyper)
    if not plan:
        return status
    log = get_logger(__name__)
    try:
        async with con.transaction():
            await con.execute("SELECT pg_advisory_xact_lock(hashtext($1))", _TS_LOCK)
            # another process may have converted them meanwhile: look again under the lock
            available, installed, ext_schema, tables, hyper = await timescale_state(con)
            for stmt in timescale_plan(available, installed, ext_schema, tables, hyper):
                await con.execute(stmt)
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        status.error = str(exc)
        log.warning("timescaledb available but not enabled; tables stay plain",
                    error=str(exc))
        return status
    status.installed = True
    status.converted = [t for t in tables if t not in hyper]
    status.hypertables = sorted(set(hyper) | set(status.converted))
    if status.converted:
        log.info("timescaledb detected: tables converted to hypertables",
                 tables=status.converted)
    return status


# ---------------------------------------------------------------------- helpers
class _Target:
    """Where to connect: the asyncpg DSN, the schema and the host for messages."""

    def __init__(self, dsn: str, host: str, port: int, database: str, user: str,
                 schema: str | None) -> None:
        self.dsn, self.host, self.port = dsn, host, port
        self.database, self.user, self.schema = database, user, schema

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, url: str) -> _Target:
        try:
            parsed = sa.engine.make_url(url)
        except sa.exc.ArgumentError as exc:
            raise StoreError(f"not a PostgreSQL URL: {mask_url(url)!r}") from exc
        backend = parsed.drivername.split("+", 1)[0]
        if backend not in ("postgresql", "postgres"):
            raise StoreError(f"not a PostgreSQL URL: {parsed.render_as_string()!r}")
        schema = parsed.query.get("schema")
        if isinstance(schema, tuple):
            schema = schema[-1]
        plain = parsed.difference_update_query(["schema"]).set(drivername="postgresql")
        return cls(
            dsn=plain.render_as_string(hide_password=False),
            host=parsed.host or "localhost",
            port=parsed.port or 5432,
            database=parsed.database or parsed.username or "postgres",
            user=parsed.username or "",
            schema=schema or None,
        )


class _LoopThread:
    """A private event loop running in a daemon thread; ``run`` blocks on a coroutine."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name="perptrader-postgres", daemon=True)
        self._thread.start()
        # one statement at a time on the store's single connection
        self._lock = threading.Lock()
        self.closed = False

    def run(self, coro: Coroutine[Any, Any, T] | Awaitable[T]) -> T:
        if self.closed:
            if asyncio.iscoroutine(coro):
                coro.close()
            raise StoreError("the PostgreSQL store is closed")
        with self._lock:
            finished = threading.Event()
            future = asyncio.run_coroutine_threadsafe(_tracked(coro, finished), self._loop)
            try:
                return future.result()
            except BaseException:
                # interrupted (Ctrl-C): cancel the task, and wait while an open
                # transaction rolls back, so the connection is usable afterwards
                if not future.done():
                    future.cancel()
                    finished.wait(timeout=10)
                raise

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            # inside the loop's own thread: the caller's thread may be running a loop
            asyncio.run_coroutine_threadsafe(_shutdown(), self._loop).result(timeout=15)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()


async def _shutdown() -> None:
    """Cancel what is left on the private loop, then close its generators and executor."""
    loop = asyncio.get_running_loop()
    tasks = [t for t in asyncio.all_tasks(loop) if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await loop.shutdown_asyncgens()
    await loop.shutdown_default_executor()


async def _tracked(awaitable: Awaitable[T], finished: threading.Event) -> T:
    try:
        return await awaitable
    finally:
        finished.set()


async def _close(con: asyncpg.Connection) -> None:
    try:
        await con.close(timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        con.terminate()  # the server is gone or does not answer: just drop the socket


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _describe(datasets: list[Dataset], done: int) -> str:
    if done >= len(datasets):
        return f"{len(datasets)} dataset(s)"
    ds = datasets[done]
    name = f"{ds.kind.value} {ds.instrument.display}" + (f" {ds.timeframe}" if ds.timeframe else "")
    return f"dataset {done + 1} of {len(datasets)}: {name}" + (f" from {ds.source}" if ds.source
                                                                 else "")


def _column(spec: TableSpec, name: str) -> Column:
    return next(c for c in spec.columns if c.name == name)


# ---------------------------------------------------------------------- COPY in, binary
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z, PostgreSQL's binary epoch
_NAT = np.iinfo(np.int64).min  # NaT, and PostgreSQL's binary '-infinity' timestamp
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_COPY_TRAILER = b"\xff\xff"
_FIXED = {"float64": ">f8", "int64": ">i8", "timestamp": ">i8", "bool": "?"}
_CHUNK_ROWS = 32_768


class _Field:
    """One column prepared for encoding: big-endian fixed-width values + validity, or
    strings as codes into their distinct values."""

    def __init__(self, col: Column, series: pd.Series) -> None:
        self.fixed = col.dtype != "string"
        self.layout: np.ndarray | None = None  # per row, an index into the layouts
        if self.fixed:
            values, self.valid = _fixed_values(col, series)
            self.dtype = np.dtype(_FIXED[col.dtype])
            self.values = values.astype(self.dtype)
            if 0 < int(self.valid.sum()) < len(self.valid):
                self.layout = self.valid.astype(np.int64)
                self.n_layouts = 2
            else:
                self.n_layouts = 1
        else:
            self.codes, uniques = pd.factorize(series, use_na_sentinel=True)
            self.encoded = [str(u).encode("utf-8") for u in uniques]
            # the length of each distinct value, NULL (code -1) last as -1
            self.lengths = np.array([len(b) for b in self.encoded] + [-1], dtype=np.int64)
            # every distinct value occurs (factorize); NULL only where a code is -1
            has_null = bool((self.codes < 0).any())
            distinct = np.unique(self.lengths if has_null else self.lengths[:-1])
            self.n_layouts = len(distinct)
            if self.n_layouts > 1:  # per row, through the small per-value table
                self.layout = np.searchsorted(distinct, self.lengths)[self.codes]


def _fixed_values(col: Column, s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    if col.dtype == "timestamp":
        if isinstance(s.dtype, pd.DatetimeTZDtype):
            s = s.dt.tz_convert("UTC").dt.tz_localize(None)
        ts = s.astype("datetime64[us]")
        valid = ts.notna().to_numpy()
        values = ts.to_numpy().view(np.int64) - _PG_EPOCH_US
        return values, valid
    if col.dtype == "float64":
        values = s.to_numpy(dtype="float64", na_value=np.nan)
        return values, ~np.isnan(values)
    if col.dtype == "int64":
        return s.to_numpy(dtype="int64", na_value=0), s.notna().to_numpy()
    if col.dtype == "bool":
        return s.to_numpy(dtype="bool", na_value=False), s.notna().to_numpy()
    raise AssertionError(col.dtype)


def copy_binary(frame: pd.DataFrame, spec: TableSpec) -> AsyncIterator[memoryview | bytes]:
    """The frame (columns sql.all_columns(spec)) as PostgreSQL binary COPY data.

    Rows are grouped by their byte layout (which fields are NULL, how long each string
    is); within a group every row has the same layout, so a slice of a group is one
    numpy structured array: a template row broadcast, then the varying fields assigned.
    Groups are few (usually one), and COPY does not care about row order.
    """
    columns = [_column(spec, c) if c in spec.column_names else Column(c, "string", True)
               for c in sql.all_columns(spec)]
    fields = [_Field(col, frame[col.name]) for col in columns]
    n = len(frame)
    signature: np.ndarray | None = None
    radix = 1
    for f in fields:
        if f.layout is not None:
            signature = f.layout * radix if signature is None else signature + f.layout * radix
            radix *= f.n_layouts
            if radix > 1 << 40:  # keep it small: renumber the combinations seen so far
                _, signature = np.unique(signature, return_inverse=True)
                radix = int(signature.max()) + 1
    if signature is None:
        groups: list[np.ndarray | None] = [None]
    else:
        _, inverse = np.unique(signature, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        groups = list(np.split(order, np.cumsum(np.bincount(inverse))[:-1]))

    async def chunks() -> AsyncIterator[memoryview | bytes]:
        # encoded a slice at a time while the server takes in the previous one: no
        # second full-size copy of the data in memory
        yield _COPY_HEADER
        for group in groups:
            size = n if group is None else len(group)
            for start in range(0, size, _CHUNK_ROWS):
                stop = min(start + _CHUNK_ROWS, size)
                rows = slice(start, stop) if group is None else group[start:stop]
                yield memoryview(_encode_rows(fields, rows, stop - start).view(np.uint8))
        yield _COPY_TRAILER

    return chunks()


def _encode_rows(fields: list[_Field], rows: np.ndarray | slice, count: int) -> np.ndarray:
    """Rows of one layout (``rows``, ``count`` of them) as one structured array."""
    first = int(rows.start) if isinstance(rows, slice) else int(rows[0])
    layout: list[tuple[str, object]] = [("n", ">i2")]
    constant: dict[str, object] = {"n": len(fields)}
    varying: list[tuple[str, np.ndarray]] = []
    for i, f in enumerate(fields):
        layout.append((f"l{i}", ">i4"))
        if f.fixed:
            if f.valid[first]:
                layout.append((f"v{i}", f.dtype))
                constant[f"l{i}"] = f.dtype.itemsize
                varying.append((f"v{i}", f.values[rows]))
            else:
                constant[f"l{i}"] = -1
            continue
        code = int(f.codes[first])
        length = int(f.lengths[code])
        constant[f"l{i}"] = length
        if length <= 0:
            continue
        layout.append((f"v{i}", f"S{length}"))
        if len(f.encoded) == 1:
            constant[f"v{i}"] = f.encoded[0]
        else:  # several values of this length: the other lengths' rows are not in rows
            table = np.array([b[:length] for b in f.encoded], dtype=f"S{length}")
            varying.append((f"v{i}", table[f.codes[rows]]))
    dtype = np.dtype(layout)
    template = np.zeros(1, dtype=dtype)
    for name, value in constant.items():
        template[name] = value
    out = np.empty(count, dtype=dtype)
    out.view(np.uint8).reshape(count, dtype.itemsize)[:] = template.view(np.uint8)
    for name, values in varying:
        out[name] = values
    return out


# ---------------------------------------------------------------------- COPY out
_ARROW = {"float64": pa.float64(), "int64": pa.int64(), "string": pa.string(),
          "timestamp": pa.timestamp("us", tz="UTC"), "bool": pa.bool_()}


class _FixedRead:
    """Reading columns without strings through binary COPY at a fixed row width.

    NULLs would make rows variable in length, so the SELECT replaces them: float NULL ->
    NaN (missing in pandas anyway), timestamp NULL -> '-infinity' (the bit pattern of
    NaT), and a nullable integer comes with a second, boolean column saying NULL. Every
    row then has the same layout, so any run of whole rows is a numpy structured array.
    """

    def __init__(self, columns: list[Column]) -> None:
        self.columns = columns
        self.select: list[str] = []
        layout: list[tuple[str, str]] = [("n", ">i2")]
        for col in columns:
            name = col.name
            if col.required:
                self.select.append(name)
            elif col.dtype == "float64":
                self.select.append(f"COALESCE({name}, 'NaN'::float8) AS {name}")
            elif col.dtype == "timestamp":
                self.select.append(f"COALESCE({name}, '-infinity'::timestamptz) AS {name}")
            elif col.dtype == "int64":
                self.select += [f"COALESCE({name}, 0) AS {name}", f"{name} IS NULL AS {name}__null"]
            else:
                raise AssertionError(col.dtype)
        for expr in self.select:
            name = expr.rsplit(" ", 1)[-1]
            dtype = ">?" if name.endswith("__null") else _FIXED[_by_name(columns, name).dtype]
            layout += [(f"{name}__len", ">i4"), (name, dtype)]
        self.dtype = np.dtype(layout)

    @staticmethod
    def supports(columns: list[Column]) -> bool:
        return all(c.dtype in ("float64", "int64", "timestamp") for c in columns)

    def parser(self) -> _BinaryRows:
        return _BinaryRows(self)


class _BinaryRows:
    """Parses the fixed-width binary COPY output batch by batch while it arrives, so that
    the client's work overlaps the server's."""

    BATCH = 4 << 20

    def __init__(self, read: _FixedRead) -> None:
        self.dtype = read.dtype
        self.n_fields = len(read.select)
        self.columns = read.columns
        self.names = [n for n in read.dtype.names if n != "n" and not n.endswith("__len")]
        self.parts: dict[str, list[np.ndarray]] = {n: [] for n in self.names}
        self.pending: list[bytes] = []
        self.size = 0
        self.started = False

    async def sink(self, data: bytes) -> None:
        self.pending.append(data)
        self.size += len(data)
        if self.size >= self.BATCH:
            self._consume()

    def _consume(self) -> None:
        buf = self.pending[0] if len(self.pending) == 1 else b"".join(self.pending)
        offset = 0
        if not self.started:
            header = len(_COPY_HEADER)
            if len(buf) < header or buf[:header - 4] != _COPY_HEADER[:header - 4]:
                raise StoreError("unexpected COPY output from PostgreSQL (no binary header)")
            offset = header + int.from_bytes(buf[header - 4:header], "big")  # + extension
            self.started = True
        count = (len(buf) - offset) // self.dtype.itemsize
        rows = np.frombuffer(buf, dtype=self.dtype, count=count, offset=offset)
        if count and (rows["n"] != self.n_fields).any():
            raise StoreError("unexpected COPY output from PostgreSQL (field count)")
        for name in self.names:
            native = bool if name.endswith("__null") else rows.dtype[name].newbyteorder("=")
            self.parts[name].append(rows[name].astype(native))
        rest = buf[offset + count * self.dtype.itemsize:]
        self.pending, self.size = ([rest], len(rest)) if rest else ([], 0)

    def frame(self) -> pd.DataFrame:
        self._consume()
        if self.pending != [_COPY_TRAILER]:
            raise StoreError("unexpected COPY output from PostgreSQL (row width)")

        def joined(name: str) -> np.ndarray:
            parts = self.parts[name]
            return parts[0] if len(parts) == 1 else np.concatenate(parts)

        out: dict[str, object] = {}
        for col in self.columns:
            values = joined(col.name)
            if col.dtype == "timestamp":
                ts = np.where(values == _NAT, _NAT, values + _PG_EPOCH_US).view("datetime64[us]")
                out[col.name] = pd.DatetimeIndex(ts).tz_localize("UTC")
            elif col.dtype == "int64" and not col.required:
                out[col.name] = pd.arrays.IntegerArray(values, joined(f"{col.name}__null"))
            else:
                out[col.name] = values
        return pd.DataFrame(out)


def _by_name(columns: list[Column], name: str) -> Column:
    return next(c for c in columns if c.name == name)


def _parse_csv(data: bytes, columns: list[Column]) -> pd.DataFrame:
    """COPY ... (FORMAT csv, HEADER) output -> DataFrame typed from the column specs.

    PostgreSQL writes NULL as an empty unquoted field and an empty string as ``""``;
    only the former is read as missing."""
    names = [c.name for c in columns]
    if not data:
        data = (",".join(names) + "\n").encode()
    table = pacsv.read_csv(
        io.BytesIO(data),
        convert_options=pacsv.ConvertOptions(
            column_types={c.name: _ARROW[c.dtype] for c in columns},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )
    return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
