"""The embedded default store: one DuckDB file under the data directory.

Why DuckDB: it needs no server, ingests a DataFrame/Arrow table with vectorised
INSERT ... SELECT (hundreds of thousands of rows per second with primary-key upserts)
and returns a million bars to pandas in a fraction of a second, columnar, which is
the access pattern of research and backtests. SQLite would need per-row Python
conversion on read (seconds per million rows). Writers are one process at a time;
the trading state (orders, fills, audit) lives elsewhere (persistence/).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from duckdb_engine import ConnectionWrapper

from perptrader.core.errors import StoreError
from perptrader.core.instruments import Instrument
from perptrader.marketdata.dataset import Dataset
from perptrader.marketdata.kinds import ALL_TABLES, PRICE_TYPE, TABLES, Kind, frame_columns
from perptrader.marketdata.store import sql
from perptrader.marketdata.store.base import MarketStore, SeriesInfo, WriteResult
from perptrader.marketdata.store.common import (
    canonical_frame,
    read_params,
    series_info,
    staged_frame,
    staged_table,
    timeframe_lengths,
    write_spec,
)
from perptrader.marketdata.store.migrate import upgrade_to_head

T = TypeVar("T")


def _held(fn: Callable[..., T]) -> Callable[..., T]:
    """A transient store opens the file for the call and lets it go afterwards."""

    @functools.wraps(fn)
    def call(self: DuckDBStore, *args: Any, **kwargs: Any) -> T:
        if self._con is not None:
            return fn(self, *args, **kwargs)
        if not self.transient:
            raise StoreError(f"the embedded store {self.path} is closed")
        self._con = self._connect()
        try:
            return fn(self, *args, **kwargs)
        finally:
            con, self._con = self._con, None
            con.close()

    return call


class DuckDBStore(MarketStore):
    backend = "duckdb"

    def __init__(self, path: Path | str, *, read_only: bool = False, transient: bool = False,
                 lock_timeout: float = 0.0) -> None:
        """``read_only``: share the file with other read-only processes (DuckDB allows
        many readers OR one writer per file). ``transient``: hold the file only during each
        call (read, write, inventory...), so a long-running process does not lock others
        out between its transactions. ``lock_timeout``: seconds to keep retrying while
        another process holds the file (0: fail at once)."""
        self.path = Path(path)
        self.read_only = read_only
        self.transient = transient
        self.lock_timeout = lock_timeout
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con: duckdb.DuckDBPyConnection | None = None
        con = self._connect()
        if transient:
            con.close()
        else:
            self._con = con

    def _connect(self) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.05
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=self.read_only)
                break
            except duckdb.Error as exc:
                if self.read_only and "different configuration" in str(exc):
                    # this very process holds the file read-write (a test, a notebook):
                    # share that instance; no other process can hold it meanwhile
                    con = duckdb.connect(str(self.path))
                    break
                held = "lock" in str(exc).lower()
                if held and time.monotonic() + delay < deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 1.0)
                    continue
                if held:
                    raise StoreError(
                        f"the embedded store {self.path} is held by another process "
                        f"({exc}). Commands that only read open it read-only and share it; "
                        f"writers hold it for one transaction at a time, so retry shortly "
                        f"(docs/data.md: concurrency)") from exc
                raise StoreError(f"cannot open the embedded store {self.path}: {exc}") from exc
        if _has_icu(con):
            con.execute("SET TimeZone = 'UTC'").fetchall()
        return con

    @_held
    def migrate(self) -> str:
        con = self._con
        # Alembic runs on a cursor of the store's own connection: a second connection to
        # the same file from this process would not see uncommitted state consistently.
        engine = sa.create_engine("duckdb:///:memory:",
                                  creator=lambda: ConnectionWrapper(con.cursor()),
                                  poolclass=sa.pool.StaticPool)
        try:
            with engine.begin() as connection:
                return upgrade_to_head(connection)
        finally:
            engine.dispose()

    @_held
    def write(self, datasets: Sequence[Dataset]) -> list[WriteResult]:
        staged = [_staged(ds) for ds in datasets]
        try:
            # rows with new keys (a collector's, nearly always): plain inserts, which
            # DuckDB plans and runs faster than ON CONFLICT. A key stored already makes
            # one fail; the transaction is rolled back whole, and the write is redone
            # with the merge below.
            return self._write(datasets, staged, all_new=True)
        except duckdb.ConstraintException:
            return self._write(datasets, staged, all_new=False)

    def _write(self, datasets: Sequence[Dataset], staged: list[pa.Table | pd.DataFrame],
               *, all_new: bool) -> list[WriteResult]:
        con = self._con.cursor()
        results: list[WriteResult] = []
        con.execute("BEGIN TRANSACTION")
        try:
            for ds, rows in zip(datasets, staged, strict=True):
                spec = write_spec(ds)
                # (on an error the cursor, and with it this registration, goes away:
                # an aborted transaction refuses even the unregister)
                con.register("staged", rows)
                changed = 0
                if all_new:
                    inserted = _scalar(con, sql.insert(spec))
                else:
                    # new keys go in first; only when some keys were stored already are
                    # those rows compared and merged. Counted after the insert, a row
                    # just inserted meets itself, which changes nothing, so both counts
                    # are what they were before the write.
                    inserted = _scalar(con, sql.insert_new(spec))
                    if inserted < len(ds.frame):
                        changed = _scalar(con, sql.count_changed(spec))
                        if changed:
                            con.execute(sql.upsert(spec)).fetchall()
                con.unregister("staged")
                results.append(WriteResult(ds.kind, ds.instrument, ds.timeframe, ds.rows,
                                           int(inserted), int(changed)))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            con.close()
        return results

    @_held
    def read(
        self,
        kind: Kind,
        instrument: Instrument,
        timeframe: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pd.DataFrame:
        spec = TABLES[kind]
        query = sql.select(spec, frame_columns(kind), bars=kind in PRICE_TYPE,
                           start=start is not None, end=end is not None)
        params = _naive_utc_params(instrument, kind, timeframe, start, end)
        raw = self._con.cursor().execute(query, params).df()
        return canonical_frame(kind, raw)

    @_held
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
        spec = TABLES[kind]
        flags = {"bars": kind in PRICE_TYPE, "start": start is not None, "end": end is not None}
        params = _naive_utc_params(instrument, kind, timeframe, start, end)
        con = self._con.cursor()
        try:
            con.execute("BEGIN TRANSACTION")
            try:
                rows = int(con.execute(sql.delete(spec, count_only=True, **flags),
                                       params).fetchall()[0][0])
                if rows and not dry_run:
                    con.execute(sql.delete(spec, **flags), params).fetchall()
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        finally:
            con.close()
        return rows

    @_held
    def inventory(self) -> list[SeriesInfo]:
        out: list[SeriesInfo] = []
        con = self._con.cursor()
        for spec in ALL_TABLES:
            timeframes: dict[str, int] = {}
            if spec.table == "bars":
                rows = con.execute("SELECT DISTINCT timeframe FROM bars").fetchall()
                timeframes = timeframe_lengths([r[0] for r in rows])
            query = sql.inventory(spec, "epoch_ms({})", timeframes)
            cur = con.execute(query)
            names = [d[0] for d in cur.description]
            for row in cur.fetchall():
                out.append(series_info(spec.table, dict(zip(names, row, strict=True))))
        return out

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


def _staged(ds: Dataset) -> pa.Table | pd.DataFrame:
    """The rows to register as ``staged``: an Arrow table (columnar, no per-row Python
    objects); a frame Arrow cannot type (an unvalidated one) goes as the pandas frame."""
    try:
        return staged_table(ds)
    except (pa.ArrowException, TypeError, ValueError):
        return staged_frame(ds)


def _scalar(con: duckdb.DuckDBPyConnection, query: str) -> int:
    return int(con.execute(query).fetchall()[0][0])


def _has_icu(con: duckdb.DuckDBPyConnection) -> bool:
    try:
        return bool(_scalar(
            con, "SELECT count(*) FROM duckdb_extensions() WHERE extension_name = 'icu' AND loaded"
        ))
    except duckdb.Error:
        return False


def _naive_utc_params(instrument: Instrument, kind: Kind, timeframe: str | None,
                      start: datetime | None, end: datetime | None) -> list:
    """``read_params`` with times as naive UTC (DuckDB's TIMESTAMP columns)."""
    return [p.tz_convert("UTC").tz_localize(None) if isinstance(p, pd.Timestamp) else p
            for p in read_params(instrument, kind, timeframe, start, end)]
