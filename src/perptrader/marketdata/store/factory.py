"""Open the store the settings name: embedded DuckDB by default, PostgreSQL by URL."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from perptrader.config import Settings, load_settings
from perptrader.core.errors import StoreError
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


def open_store(settings: Settings, *, migrate: bool = True) -> MarketStore:
    url = settings.store.url
    if not url or url.startswith("duckdb"):
        from perptrader.marketdata.store.duckdb_store import DuckDBStore

        path = url.split("///", 1)[1] if url and "///" in url else settings.embedded_store_path
        store: MarketStore = DuckDBStore(path)
    elif url.startswith(("postgresql", "postgres")):
        from perptrader.marketdata.store.postgres_store import PostgresStore

        store = PostgresStore(url)
    else:
        raise StoreError(f"unknown store URL {url!r}: use postgresql://... or leave it unset")
    if migrate:
        store.migrate()
    return store
