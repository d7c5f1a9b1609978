"""`data download` logic on synthetic data served by the fake exchange (no ../shared/data
needed): exact rows, pagination, resume, idempotence, faults, weight pacing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from perptrader.marketdata.download import SeriesRequest, download, resume_point
from perptrader.marketdata.kinds import Kind
from perptrader.venues.errors import IpBanned, VenueUnavailable
from venues.venue_fakes import BTC, HOURS, START, fake_exchange, source_for

END = START + pd.Timedelta(hours=HOURS)
REQUESTS = [SeriesRequest(BTC, Kind.OHLCV, "1h"), SeriesRequest(BTC, Kind.MARK, "1h"),
            SeriesRequest(BTC, Kind.FUNDING, None),
            SeriesRequest(BTC, Kind.OPEN_INTEREST, "1h")]


def served(fake, req: SeriesRequest) -> pd.DataFrame:
    return fake.venue.data.store.read(req.kind, BTC, req.timeframe if req.kind in (
        Kind.OHLCV, Kind.MARK) else None, START, END)


def stored(store, req: SeriesRequest) -> pd.DataFrame:
    return store.read(req.kind, BTC, req.timeframe if req.kind in (
        Kind.OHLCV, Kind.MARK) else None, START, END)


def test_download_stores_exactly_what_the_venue_serves(store) -> None:
    with fake_exchange(weight_window_s=60.0) as fake:
        reports = download(source_for(fake), store, REQUESTS, START, END)
        assert [r.status for r in reports] == ["done"] * 4
        assert reports[0].pages == 3 and reports[0].rows_inserted == HOURS
        for req in REQUESTS:
            pd.testing.assert_frame_equal(stored(store, req), served(fake, req))
        # a second run: complete bar series are up to date, the others (which may have
        # rows after their last one) ask again from there and store nothing new
        again = download(source_for(fake), store, REQUESTS, START, END)
        assert [r.status for r in again[:2]] == ["up-to-date"] * 2
        assert sum(r.rows_inserted + r.rows_updated for r in again) == 0


def test_refetch_changes_nothing(store) -> None:
    with fake_exchange(weight_window_s=60.0) as fake:
        source = source_for(fake)
        download(source, store, REQUESTS[:1], START, END)
        pages = list(source.fetch(Kind.OHLCV, BTC, "1h", START, END))
        results = store.write(pages)
        assert sum(r.rows_inserted + r.rows_updated for r in results) == 0


def test_resume_after_interruption_no_duplicate_no_gap(store) -> None:
    req = REQUESTS[0]
    with fake_exchange(weight_window_s=60.0) as fake:
        fake.set_faults(rest=[{"kind": "status", "endpoint": "klines", "status": 500,
                               "skip": 2, "times": None}])
        with pytest.raises(VenueUnavailable, match="gave up"):
            download(source_for(fake, attempts=2), store, [req], START, END)
        partial = stored(store, req)
        assert len(partial) == 2000  # two whole pages, each in its own transaction
        assert resume_point(store, req, START, END) == START + pd.Timedelta(hours=2000)
        fake.set_faults()
        (report,) = download(source_for(fake), store, [req], START, END)
        assert report.resumed_from == (START + pd.Timedelta(hours=2000)).isoformat()
        assert (report.rows_inserted, report.rows_updated) == (HOURS - 2000, 0)
        full = stored(store, req)
        steps = np.diff(full["ts"].to_numpy()).astype("timedelta64[h]").astype(int)
        assert len(full) == HOURS and set(steps) == {1}
        pd.testing.assert_frame_equal(full, served(fake, req))


def test_418_stops_the_run_and_keeps_stored_pages(store) -> None:
    with fake_exchange(weight_window_s=60.0) as fake:
        fake.set_faults(rest=[{"kind": "ban", "endpoint": "klines", "skip": 1,
                               "retry_after_s": 300}])
        with pytest.raises(IpBanned, match="HTTP 418"):
            download(source_for(fake), store, REQUESTS, START, END)
        assert len(stored(store, REQUESTS[0])) == 1000
        assert stored(store, REQUESTS[1]).empty  # the run stopped: nothing after the ban


def test_faults_during_download_do_not_change_the_result(store) -> None:
    sleeps: list[float] = []
    with fake_exchange(weight_window_s=60.0) as fake:
        fake.set_faults(rest=[
            {"kind": "timeout_before", "endpoint": "klines", "delay_s": 0.6},
            {"kind": "timeout_after", "endpoint": "markPriceKlines", "delay_s": 0.6},
            {"kind": "status", "endpoint": "fundingRate", "status": 503},
            {"kind": "rate_limit", "endpoint": "openInterestHist", "retry_after_s": 1},
        ])
        source = source_for(fake, timeout_ms=300, sleeps=sleeps)
        reports = download(source, store, REQUESTS, START, END)
        assert [r.status for r in reports] == ["done"] * 4
        assert source.client.stats.retries == 3 and source.client.stats.rate_limited == 1
        assert 1.0 in sleeps  # waited Retry-After, and so was never banned
        assert fake.admin("GET", "/_fake/weight")["banned_s"] == 0
        for req in REQUESTS:
            pd.testing.assert_frame_equal(stored(store, req), served(fake, req))


def test_weight_headers_pace_the_download(store) -> None:
    # the fake publishes 12 weight per second in exchangeInfo; klines pages weigh 5
    with fake_exchange(weight_limit=12, weight_window_s=1.0) as fake:
        source = source_for(fake)
        download(source, store, REQUESTS[:2], START, END)
        assert source.client.budget.limit == 12
        assert source.client.stats.rate_limited == 0 and source.client.budget.waited_s > 0
        assert len(stored(store, REQUESTS[1])) == HOURS


def test_forming_bar_is_not_stored(store) -> None:
    with fake_exchange(weight_window_s=60.0) as fake:
        source = source_for(fake)
        cut = START + pd.Timedelta(hours=10, minutes=30)
        source.opts.now_ms = lambda: int(cut.value // 1_000_000)
        download(source, store, REQUESTS[:1], START, END)
        assert stored(store, REQUESTS[0])["ts"].max() == START + pd.Timedelta(hours=9)
