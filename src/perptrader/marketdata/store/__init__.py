"""Market-data stores: one interface (``MarketStore``), an embedded DuckDB store by
default and a PostgreSQL/TimescaleDB store for production. ``open_store`` picks one
from the settings."""

from perptrader.marketdata.store.base import MarketStore, SeriesInfo, WriteResult
from perptrader.marketdata.store.factory import open_store, using_store

__all__ = ["MarketStore", "SeriesInfo", "WriteResult", "open_store", "using_store"]
