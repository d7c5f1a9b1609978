"""The fake's Bybit v5 face: ccxt's bybit loads markets and pages through it; a download
over it stores the same bars and funding as over the Binance face (same recordings)."""

from __future__ import annotations

import time

import ccxt
import pandas as pd
import pytest

from perptrader.core.instruments import Instrument
from perptrader.marketdata.download import SeriesRequest, download
from perptrader.marketdata.kinds import Kind
from perptrader.venues.backfill import CcxtRestSource, SourceOptions
from perptrader.venues.calls import VenueClient
from perptrader.venues.ccxt_client import create_exchange
from perptrader.venues.errors import IpBanned
from venues.venue_fakes import BTC, START, fake_exchange, fast_policy

T0 = int(START.value // 1_000_000)
END = START + pd.Timedelta(hours=1500)
BYBIT_BTC = Instrument("bybit", "perp", "BTCUSDT")


@pytest.fixture(scope="module")
def fake():
    with fake_exchange(weight_window_s=60.0) as f:
        yield f


def test_bybit_protocol(fake) -> None:
    fake.admin("POST", "/_fake/reset")
    ex = create_exchange("bybit", url=fake.url)
    assert list(ex.load_markets()) == ["BTC/USDT:USDT"]
    bars = ex.fetch_ohlcv("BTC/USDT:USDT", "1h", since=T0, limit=3,
                          params={"until": T0 + 10 * 3_600_000})
    # Bybit answers with the NEWEST rows of the window
    assert [b[0] for b in bars] == [T0 + h * 3_600_000 for h in (8, 9, 10)]
    assert "Bybit" in ex.last_response_headers["X-Fake-Source"]
    with pytest.raises(ccxt.BaseError, match="10001"):
        ex.publicGetV5MarketKline({"category": "linear", "symbol": "NOPE", "interval": "60"})


def test_bybit_download_matches_the_binance_face(fake, store, tmp_path) -> None:
    fake.admin("POST", "/_fake/reset")
    source = CcxtRestSource("bybit", SourceOptions(url=fake.url, policy=fast_policy()))
    kinds = [(Kind.OHLCV, "1h"), (Kind.MARK, "1h"), (Kind.FUNDING, None),
             (Kind.OPEN_INTEREST, "1h"), (Kind.LONG_SHORT, "1h")]
    reports = download(source, store, [SeriesRequest(BYBIT_BTC, k, tf) for k, tf in kinds],
                       START, END)
    assert [r.status for r in reports] == ["done"] * 5
    served = fake.venue.data.store
    for kind, tf in kinds[:3]:
        got = store.read(kind, BYBIT_BTC, tf, START, END)
        want = served.read(kind, BTC, tf, START, END)
        cols = ["ts", "open", "high", "low", "close", "volume"] if kind is not Kind.FUNDING \
            else ["ts", "rate", "exchange_ts"]
        pd.testing.assert_frame_equal(got[cols], want[cols])
    oi = store.read(Kind.OPEN_INTEREST, BYBIT_BTC, None, START, END)
    assert len(oi) == 1500 and oi["oi_value"].isna().all()  # Bybit gives no OI value
    assert len(store.read(Kind.LONG_SHORT, BYBIT_BTC, None, START, END)) == 1500


def test_bybit_rate_limit_and_ban(fake) -> None:
    fake.admin("POST", "/_fake/reset")
    ex = create_exchange("bybit", url=fake.url)
    waits: list[float] = []

    def sleep(s: float) -> None:
        waits.append(s)
        time.sleep(s)

    client = VenueClient(ex, policy=fast_policy(), sleep=sleep)
    fake.set_faults(rest=[{"kind": "rate_limit", "endpoint": "time", "retry_after_s": 1}])
    client.call("time", ex.publicGetV5MarketTime)
    assert client.stats.rate_limited == 1 and 0 < waits[0] <= 1.0
    fake.set_faults(rest=[{"kind": "ban", "endpoint": "time", "retry_after_s": 60}])
    with pytest.raises(IpBanned, match="HTTP 403"):
        client.call("time", ex.publicGetV5MarketTime)
