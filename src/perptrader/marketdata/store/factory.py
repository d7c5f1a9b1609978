"""Open the store the settings name: embedded DuckDB by default, PostgreSQL by URL."""

from __future__ import annotations

from perptrader.config import Settings
from perptrader.core.errors import StoreError
from perptrader.marketdata.store.base import MarketStore


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
