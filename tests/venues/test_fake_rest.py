"""The fake exchange's REST side: Binance's shapes, errors, weights, faults, admin API."""

from __future__ import annotations

import time

import ccxt
import pytest

from perptrader.venues.ccxt_client import create_exchange
from perptrader.venues.fake.faults import FaultConfigError, FaultInjector
from venues.venue_fakes import START, fake_exchange

T0 = int(START.value // 1_000_000)


@pytest.fixture(scope="module")
def fake():
    with fake_exchange(weight_window_s=60.0) as f:
        yield f


@pytest.fixture
def ex(fake):
    fake.admin("POST", "/_fake/reset")
    return create_exchange("binanceusdm", url=fake.url, timeout_ms=3000)


def test_markets_and_weight_header(ex, fake) -> None:
    markets = ex.load_markets()
    assert "BTC/USDT:USDT" in markets
    assert int(ex.last_response_headers["X-MBX-USED-WEIGHT-1M"]) >= 1
    info = ex.fapiPublicGetExchangeInfo()
    weight = next(r for r in info["rateLimits"] if r["rateLimitType"] == "REQUEST_WEIGHT")
    assert weight == {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE",
                      "intervalNum": 1, "limit": 2400}


def test_klines_shape_window_and_weight(ex) -> None:
    rows = ex.fapiPublicGetKlines({"symbol": "BTCUSDT", "interval": "1h", "startTime": T0,
                                   "limit": 3})
    assert [r[0] for r in rows] == [T0, T0 + 3_600_000, T0 + 7_200_000]
    assert rows[0][6] == T0 + 3_600_000 - 1 and len(rows[0]) == 12
    before = int(ex.last_response_headers["X-MBX-USED-WEIGHT-1M"])
    ex.fapiPublicGetKlines({"symbol": "BTCUSDT", "interval": "1h", "limit": 1000})
    assert int(ex.last_response_headers["X-MBX-USED-WEIGHT-1M"]) == before + 5
    # endTime only: the last rows up to it
    rows = ex.fapiPublicGetKlines({"symbol": "BTCUSDT", "interval": "1h",
                                   "endTime": T0 + 10 * 3_600_000, "limit": 2})
    assert [r[0] for r in rows] == [T0 + 9 * 3_600_000, T0 + 10 * 3_600_000]


def test_unified_methods(ex) -> None:
    ex.load_markets()
    mark = ex.fetch_ohlcv("BTC/USDT:USDT", "1h", since=T0, limit=2, params={"price": "mark"})
    assert len(mark) == 2 and mark[0][0] == T0
    funding = ex.fetch_funding_rate_history("BTC/USDT:USDT", since=T0, limit=3)
    assert [f["timestamp"] - T0 for f in funding] == [0, 8 * 3_600_000 + 1, 16 * 3_600_000 + 2]
    oi = ex.fetch_open_interest_history("BTC/USDT:USDT", "1h", since=T0, limit=2,
                                        params={"until": T0 + 3_600_000})
    assert [o["timestamp"] for o in oi] == [T0, T0 + 3_600_000]
    ratios = ex.fetch_long_short_ratio_history("BTC/USDT:USDT", "1h", since=T0, limit=3)
    assert len(ratios) == 3 and all(r["info"]["fakeGenerated"] for r in ratios)
    assert ex.last_response_headers["X-Fake-Generated"] == "true"
    again = ex.fetch_long_short_ratio_history("BTC/USDT:USDT", "1h", since=T0, limit=3)
    assert [r["longShortRatio"] for r in again] == [r["longShortRatio"] for r in ratios]
    premium = ex.fetch_funding_rate("BTC/USDT:USDT")  # premiumIndex, as of the clock
    assert premium["markPrice"] > 0 and premium["fundingRate"] is not None
    assert ex.fetch_open_interest("BTC/USDT:USDT")["openInterestAmount"] > 0
    book = ex.fetch_order_book("BTC/USDT:USDT", 5)
    assert book["nonce"] == 1000 and len(book["bids"]) == 5
    assert len(ex.fetch_trades("BTC/USDT:USDT", limit=5)) == 5


@pytest.mark.parametrize(("params", "code"), [
    ({"symbol": "NOPEUSDT", "interval": "1h"}, -1121),
    ({"symbol": "BTCUSDT", "interval": "7m"}, -1120),
    ({"symbol": "BTCUSDT", "interval": "1h", "startTime": T0 + 1, "endTime": T0}, -1128),
    ({"symbol": "BTCUSDT", "interval": "1h", "limit": 5000}, -1130),
])
def test_binance_error_codes(ex, params, code) -> None:
    with pytest.raises(ccxt.BaseError) as info:
        ex.fapiPublicGetKlines(params)
    assert f'"code": {code}' in str(info.value) or f'"code":{code}' in str(info.value)


def test_429_then_418_when_calling_during_back_off(fake, ex) -> None:
    fake.set_faults(rest=[{"kind": "rate_limit", "endpoint": "time", "retry_after_s": 30}])
    with pytest.raises(ccxt.DDoSProtection):
        ex.fapiPublicGetTime()
    assert ex.last_response_headers["Retry-After"] == "30"
    with pytest.raises(ccxt.DDoSProtection) as info:
        ex.fapiPublicGetTime()  # too early: banned
    assert "banned until" in str(info.value)
    assert fake.admin("GET", "/_fake/weight")["banned_s"] > 0


def test_real_weight_limit_gives_429(fake, ex) -> None:
    with fake_exchange(weight_limit=12, weight_window_s=60.0) as small:
        small_ex = create_exchange("binanceusdm", url=small.url)
        for _ in range(2):
            small_ex.fapiPublicGetKlines({"symbol": "BTCUSDT", "interval": "1h",
                                          "limit": 1000})
        with pytest.raises(ccxt.DDoSProtection):
            small_ex.fapiPublicGetKlines({"symbol": "BTCUSDT", "interval": "1h",
                                          "limit": 1000})
        assert int(small_ex.last_response_headers["Retry-After"]) >= 1


@pytest.mark.parametrize("status", [500, 503])
def test_status_fault(fake, ex, status) -> None:
    fake.set_faults(rest=[{"kind": "status", "endpoint": "ping", "status": status}])
    # ccxt maps Binance's -1001 to OperationFailed, not to "unavailable": venues/errors.py
    # classifies by status and body code instead (test_venue_calls.py)
    with pytest.raises((ccxt.ExchangeNotAvailable, ccxt.OperationFailed)):
        ex.fapiPublicGetPing()
    assert ex.fapiPublicGetPing() == {}  # times=1 by default


def test_timeout_and_latency_faults(fake, ex) -> None:
    ex.timeout = 300
    fake.set_faults(rest=[{"kind": "timeout_after", "endpoint": "ping", "delay_s": 1.0}])
    with pytest.raises(ccxt.RequestTimeout):
        ex.fapiPublicGetPing()
    fake.set_faults(rest=[{"kind": "latency", "endpoint": "ping", "delay_s": 0.1}])
    t = time.monotonic()
    ex.fapiPublicGetPing()
    assert time.monotonic() - t >= 0.1


def test_admin_rejects_bad_faults_and_steps_clock(fake) -> None:
    answer = fake.admin("POST", "/_fake/faults", {"rest": [{"kind": "explode"}]})
    assert "unknown REST fault kind" in answer["error"]
    before = fake.admin("GET", "/_fake/clock")["now_ms"]
    after = fake.admin("POST", "/_fake/clock", {"step_ms": 3_600_000})["now_ms"]
    assert after - before >= 3_600_000


def test_fault_rules_count_skip_and_probability() -> None:
    inj = FaultInjector(seed=3)
    inj.configure({"rest": [{"kind": "status", "endpoint": "klines", "skip": 1, "times": 2}]})
    fired = [bool(inj.for_request("klines")) for _ in range(5)]
    assert fired == [False, True, True, False, False]
    assert inj.for_request("fundingRate") == []
    with pytest.raises(FaultConfigError):
        inj.configure({"rest": [{"kind": "status", "bogus": 1}]})
    inj.configure({"seed": 7, "rest": [{"kind": "latency", "times": None, "probability": 0.5}]})
    draws = [bool(inj.for_request("x")) for _ in range(200)]
    assert 60 < sum(draws) < 140
