"""Open the store the settings name: embedded DuckDB by default, PostgreSQL by URL."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from perptrader.config import Settings, load_settings
from perptrader.core.errors import StoreError
from perptrader.core.secrets import mask_url
from perptrader.marketdata.store.base import MarketStore


@contextlib.contextmanager
def using_store(store: MarketStore | None = None,
                settings: Settings | None = None) -> Iterator[MarketStore]:
    """The caller's open store as is, or one opened from ``settings`` (default
    ``load_settings()``) and closed again: for library functions that take either."""
    if store is not None:
        yield store
        return
    opened = open_store(settings or load_settings())
    try:
        yield opened
    finally:
        opened.close()


def open_store(settings: Settings, *, migrate: bool = True, read_only: bool = False,
               transient: bool = False, lock_timeout: float = 0.0) -> MarketStore:
    """The store the settings name.

    Embedded (DuckDB) only, see docs/data.md "Concurrency": ``read_only`` opens the file
    shared with other readers (backtests, ``data list``, predictions run side by side);
    it is created or migrated first by a brief writable open when needed. ``transient``
    holds the file only during each call, so a long writer (an import) lets readers in
    between its transactions. ``lock_timeout``: seconds to wait while another process
    holds the file. PostgreSQL ignores the three (the server arbitrates).
    """
    url = settings.store.url
    if not url or url.startswith("duckdb"):
        from perptrader.marketdata.store.duckdb_store import DuckDBStore

        path = url.split("///", 1)[1] if url and "///" in url else settings.embedded_store_path
        if read_only:
            if migrate and not _duckdb_at_head(path, lock_timeout):
                DuckDBStore(path, transient=True, lock_timeout=lock_timeout).migrate()
            return DuckDBStore(path, read_only=True, transient=transient,
                               lock_timeout=lock_timeout)
        store: MarketStore = DuckDBStore(path, transient=transient, lock_timeout=lock_timeout)
    elif url.startswith(("postgresql", "postgres")):
        from perptrader.marketdata.store.postgres_store import PostgresStore

        store = PostgresStore(url)
    else:
        raise StoreError(f"unknown store URL {mask_url(url)!r}: use postgresql://... or leave "
                         f"it unset for the embedded store")
    if migrate:
        store.migrate()
    return store


def _duckdb_at_head(path: str | Path, lock_timeout: float) -> bool:
    """Whether the file exists with the newest schema (checked without writing)."""
    from alembic.script import ScriptDirectory

    from perptrader.marketdata.store.duckdb_store import DuckDBStore
    from perptrader.marketdata.store.migrate import alembic_config

    if not Path(path).exists():
        return False
    head = ScriptDirectory.from_config(alembic_config(None)).get_current_head()  # type: ignore[arg-type]
    probe = DuckDBStore(path, read_only=True, lock_timeout=lock_timeout)
    try:
        con = probe._con
        assert con is not None
        try:
            rows = con.execute("SELECT version_num FROM alembic_version").fetchall()
        except Exception:  # no version table yet
            return False
        return bool(rows) and rows[0][0] == head
    finally:
        probe.close()
