"""From a URL (or nothing) to a SQLAlchemy engine for the trading database.

SQLite is the default: one file, ``<data_dir>/trading.sqlite``, shared by the engine
process and readers (the CLI, a dashboard) through WAL. Every connection sets:

- ``journal_mode=WAL``: readers never block the writer and the writer never blocks
  readers, so that a report can run while the engine trades;
- ``synchronous=FULL`` (default): each commit is fsynced before it returns. With WAL,
  NORMAL only risks losing the last commits on power loss or an OS crash, never
  corruption, but the engine commits an order's intent *before* sending it, and an
  intent lost after the order reached the venue is exactly what the journal is for. One
  fsync per commit (a few per bar) costs nothing at trading frequency; simulations that
  write thousands of commits per second may pass ``synchronous="NORMAL"``;
- ``busy_timeout``: a writer waits for another writer instead of failing at once;
- ``foreign_keys=ON`` (SQLite ignores foreign keys unless asked).

The driver's own transaction handling is switched off and the engine's ``begin``
issues ``BEGIN`` itself: ``BEGIN IMMEDIATE`` for write transactions, so that a
transaction that reads (the audit head, the next seq) and then writes holds the write
lock from its start; a deferred transaction upgrading to a writer would fail at once
with "database is locked" when another process wrote in between, busy_timeout or not.

PostgreSQL (``postgresql://...``) goes through psycopg 3. ``?schema=name`` puts the
tables in that schema (created when missing, set as the search_path), as the
market-data store does.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import sqlalchemy as sa
from sqlalchemy import event

from perptrader.core.secrets import mask_url
from perptrader.persistence.codec import dumps, loads
from perptrader.persistence.errors import TradingStateError

DEFAULT_FILENAME = "trading.sqlite"
BUSY_TIMEOUT_MS = 30_000
CONNECT_TIMEOUT_S = 10
#: the execution option that picks ``BEGIN`` / ``BEGIN IMMEDIATE`` on SQLite
BEGIN_OPTION = "perptrader_sqlite_begin"
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

Synchronous = Literal["FULL", "NORMAL"]


@dataclass(frozen=True)
class Target:
    """Where the trading database is. ``display`` names it in messages (no password)."""

    backend: Literal["sqlite", "postgresql"]
    url: sa.URL
    display: str
    path: Path | None = None
    schema: str | None = None


def parse_target(url: str | None, data_dir: Path | str) -> Target:
    """``None``/empty: ``<data_dir>/trading.sqlite``; ``sqlite:///path`` or a plain path: that
    file; ``postgresql://...`` (any driver suffix): PostgreSQL through psycopg."""
    if not url:
        return _sqlite_target(Path(data_dir) / DEFAULT_FILENAME)
    if "://" not in url:
        return _sqlite_target(Path(url))
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise TradingStateError(f"not a database URL: {_hide_password(url)!r}") from exc
    backend = parsed.drivername.split("+", 1)[0]
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise TradingStateError(
                "the trading database must be a file (sqlite:///path), not in memory")
        return _sqlite_target(Path(parsed.database))
    if backend in ("postgresql", "postgres"):
        schema = parsed.query.get("schema")
        if isinstance(schema, tuple):
            schema = schema[-1]
        if schema and not _SCHEMA_NAME.match(schema):
            raise TradingStateError(f"invalid schema name {schema!r} in the trading DB URL")
        driver_url = parsed.difference_update_query(["schema"]).set(
            drivername="postgresql+psycopg")
        display = parsed.set(drivername="postgresql").render_as_string(hide_password=True)
        return Target("postgresql", driver_url, display, schema=schema or None)
    raise TradingStateError(
        f"unknown trading DB URL {parsed.render_as_string(hide_password=True)!r}: "
        "use postgresql://..., sqlite:///path, or leave it unset for "
        f"<data_dir>/{DEFAULT_FILENAME}")


def _sqlite_target(path: Path) -> Target:
    path = path.expanduser()
    return Target("sqlite", sa.URL.create("sqlite+pysqlite", database=str(path)), str(path),
                  path=path)


def _hide_password(url: str) -> str:
    return mask_url(url)


def create_engine(target: Target, *, synchronous: Synchronous = "FULL") -> sa.Engine:
    if target.backend == "sqlite":
        return _sqlite_engine(target, synchronous)
    connect_args: dict[str, object] = {"connect_timeout": CONNECT_TIMEOUT_S,
                                       "application_name": "perptrader-trading"}
    if target.schema:
        connect_args["options"] = f"-c search_path={target.schema}"
    return sa.create_engine(target.url, connect_args=connect_args, pool_pre_ping=True,
                            json_serializer=dumps, json_deserializer=loads)


def _sqlite_engine(target: Target, synchronous: Synchronous) -> sa.Engine:
    if synchronous not in ("FULL", "NORMAL"):
        raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
    engine = sa.create_engine(
        target.url,
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
        json_serializer=dumps, json_deserializer=loads,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_con: sqlite3.Connection, _record: object) -> None:
        dbapi_con.isolation_level = None  # BEGIN is ours (see _on_begin)
        cur = dbapi_con.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute(f"PRAGMA synchronous = {synchronous}")
            cur.execute("PRAGMA foreign_keys = ON")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        mode = conn.get_execution_options().get(BEGIN_OPTION, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine
