"""The real BTCUSDT 1h data of ../shared/data in a temporary store, for the benchmarks.

Benchmarks are run as scripts (``python bench/x.py``), so this sibling module is
importable as ``real_data``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SHARED = Path(os.environ.get("PERPTRADER_SHARED_DATA",
                             Path(__file__).resolve().parents[2] / "shared" / "data"))
BTC_1H_FILES = ("freqtrade/binance/futures/BTC_USDT_USDT-1h-futures.feather",
                "freqtrade/binance/futures/BTC_USDT_USDT-8h-funding_rate.feather",
                "freqtrade/binance/futures/BTC_USDT_USDT-1h-mark.feather")


def have_btc_1h() -> bool:
    return all((SHARED / f).exists() for f in BTC_1H_FILES)


@contextmanager
def btc_1h_store() -> Iterator[object]:
    """A temporary DuckDB store holding BTCUSDT 1h bars, marks and funding."""
    from perptrader.marketdata.importer import import_paths
    from perptrader.marketdata.sources.base import ImportHints
    from perptrader.marketdata.store.duckdb_store import DuckDBStore

    with tempfile.TemporaryDirectory() as tmp:
        store = DuckDBStore(Path(tmp) / "market.duckdb")
        store.migrate()
        try:
            import_paths([SHARED / f for f in BTC_1H_FILES], store, ImportHints())
            yield store
        finally:
            store.close()
