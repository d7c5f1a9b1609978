"""A download from the fake exchange serving the real recorded files stores exactly the
rows that `data import` of those same files stores (BTCUSDT 1h, 2024-01..2024-06)."""

from __future__ import annotations

import pandas as pd
import pytest

from perptrader.core.instruments import Instrument
from perptrader.marketdata.download import SeriesRequest, download
from perptrader.marketdata.importer import import_paths
from perptrader.marketdata.kinds import Kind
from perptrader.marketdata.sources.base import ImportHints
from perptrader.marketdata.store.duckdb_store import DuckDBStore
from perptrader.venues.backfill import CcxtRestSource, SourceOptions
from perptrader.venues.calls import RetryPolicy
from perptrader.venues.fake import FakeExchangeThread
from perptrader.venues.fake.data import index_files
from perptrader.venues.fake.server import FakeConfig
from shared_data import shared_data_dir

pytestmark = pytest.mark.integration

BTC = Instrument("binance", "perp", "BTCUSDT")
START, END = pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-07-01", tz="UTC")
SERIES = [(Kind.OHLCV, "1h"), (Kind.MARK, "1h"), (Kind.FUNDING, None)]


@pytest.fixture(scope="module")
def data_dir():
    folder = shared_data_dir()
    if not (folder / "freqtrade" / "binance" / "futures").is_dir():
        pytest.skip(f"real data absent: {folder} (set PERPTRADER_SHARED_DATA)")
    return folder


def test_download_equals_import_of_the_same_files(data_dir, tmp_path) -> None:
    files = index_files(data_dir)
    paths = sorted({p for kind, tf in SERIES for p in files[("BTCUSDT", kind, tf)]})
    assert any(p.suffix == ".feather" for p in paths)
    imported = DuckDBStore(tmp_path / "imported.duckdb")
    downloaded = DuckDBStore(tmp_path / "downloaded.duckdb")
    try:
        imported.migrate()
        downloaded.migrate()
        reports = import_paths(paths, imported, ImportHints())
        assert {r.status for r in reports} == {"imported"}, [r.reason for r in reports]
        with FakeExchangeThread(FakeConfig(data_dir=data_dir)) as fake:
            source = CcxtRestSource("binanceusdm", SourceOptions(
                url=fake.url, policy=RetryPolicy(attempts=2, base_s=0.01)))
            requests = [SeriesRequest(BTC, kind, tf) for kind, tf in SERIES]
            done = download(source, downloaded, requests, START, END)
        assert [r.status for r in done] == ["done"] * 3
        for kind, tf in SERIES:
            want = imported.read(kind, BTC, tf, START, END)
            got = downloaded.read(kind, BTC, tf, START, END)
            assert len(want) > 500
            pd.testing.assert_frame_equal(got, want, check_exact=True)
        assert len(downloaded.read(Kind.OHLCV, BTC, "1h")) == 182 * 24
    finally:
        imported.close()
        downloaded.close()
