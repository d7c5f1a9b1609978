"""Classifying venue errors, pacing by weight, retrying: against the fake exchange."""

from __future__ import annotations

import socket
import time

import ccxt
import pytest

from perptrader.venues.calls import VenueClient
from perptrader.venues.ccxt_client import (
    Credentials,
    UnknownVenue,
    create_exchange,
    load_credentials,
)
from perptrader.venues.errors import (
    BadRequest,
    IpBanned,
    RateLimited,
    UnknownSymbol,
    VenueUnavailable,
    VenueUnreachable,
    classify,
)
from perptrader.venues.ratelimit import WeightBudget
from venues.venue_fakes import fake_exchange, fast_policy


@pytest.fixture(scope="module")
def fake():
    with fake_exchange(weight_window_s=60.0) as f:
        yield f


def client_for(fake, sleeps: list[float], timeout_ms: int = 2000, attempts: int = 4):
    ex = create_exchange("binanceusdm", url=fake.url, timeout_ms=timeout_ms)
    fake.admin("POST", "/_fake/reset")
    return VenueClient(ex, policy=fast_policy(attempts), sleep=sleeps.append)


def ping(client: VenueClient):
    return client.call("ping", client.ex.fapiPublicGetPing)


def test_classify_by_body_code_not_by_ccxt_class() -> None:
    # ccxt against another host: a plain ExchangeError carrying Binance's code
    exc = ccxt.ExchangeError('binanceusdm {"code":-1121,"msg":"Invalid symbol."}')
    err = classify(exc, status=400, body={"code": -1121, "msg": "Invalid symbol."},
                   headers={}, what="klines")
    assert isinstance(err, UnknownSymbol)
    err = classify(ccxt.OperationFailed("x"), status=503, body={"code": -1001, "msg": "busy"},
                   headers={}, what="klines")
    assert isinstance(err, VenueUnavailable) and err.retryable
    err = classify(ccxt.DDoSProtection("x"), status=429, body={"code": -1003, "msg": "slow"},
                   headers={"Retry-After": "7"}, what="klines")
    assert isinstance(err, RateLimited) and err.retry_after_s == 7
    err = classify(ccxt.DDoSProtection("x"), status=418, body={"code": -1003, "msg": "ban"},
                   headers={"Retry-After": "120"}, what="klines")
    assert isinstance(err, IpBanned) and not err.retryable
    assert "\n" not in str(err) and "banned" in str(err)
    err = classify(ccxt.BadRequest("x"), status=400, body={"retCode": 10001, "retMsg": "bad"},
                   headers={}, what="kline")
    assert isinstance(err, BadRequest)


def test_5xx_is_retried_with_backoff(fake) -> None:
    sleeps: list[float] = []
    client = client_for(fake, sleeps)
    fake.set_faults(rest=[{"kind": "status", "endpoint": "ping", "status": 503, "times": 2}])
    assert ping(client) == {}
    assert client.stats.retries == 2 and sleeps == [0.01, 0.02]


@pytest.mark.parametrize("kind", ["timeout_before", "timeout_after"])
def test_timeouts_are_retried(fake, kind) -> None:
    sleeps: list[float] = []
    client = client_for(fake, sleeps, timeout_ms=300)
    fake.set_faults(rest=[{"kind": kind, "endpoint": "ping", "delay_s": 0.8}])
    assert ping(client) == {}
    assert client.stats.retries == 1


def test_gives_up_after_attempts(fake) -> None:
    client = client_for(fake, [], attempts=3)
    fake.set_faults(rest=[{"kind": "status", "endpoint": "ping", "status": 500, "times": None}])
    with pytest.raises(VenueUnavailable, match="gave up after 3 attempts"):
        ping(client)


def test_429_waits_retry_after_and_is_never_banned(fake) -> None:
    sleeps: list[float] = []
    client = client_for(fake, [])

    def real_sleep(s: float) -> None:  # really wait: calling earlier would earn a 418
        sleeps.append(s)
        time.sleep(s)

    client.sleep = real_sleep
    fake.set_faults(rest=[{"kind": "rate_limit", "endpoint": "ping", "retry_after_s": 1}])
    assert ping(client) == {}
    assert sleeps == [1.0] and client.stats.rate_limited == 1
    assert fake.admin("GET", "/_fake/weight")["banned_s"] == 0


def test_418_stops_at_once_with_a_clear_message(fake) -> None:
    sleeps: list[float] = []
    client = client_for(fake, sleeps)
    fake.set_faults(rest=[{"kind": "ban", "endpoint": "ping", "retry_after_s": 120}])
    with pytest.raises(IpBanned) as info:
        ping(client)
    assert sleeps == [] and client.stats.calls == 1
    message = str(info.value)
    assert "banned this IP for 120 s (HTTP 418)" in message and "\n" not in message


def test_unreachable_host() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the call: nothing listens
    ex = create_exchange("binanceusdm", url=f"http://127.0.0.1:{port}", timeout_ms=500)
    client = VenueClient(ex, policy=fast_policy(2), sleep=lambda s: None)
    with pytest.raises(VenueUnreachable, match="cannot reach"):
        ping(client)


def test_budget_follows_the_weight_header() -> None:
    waits: list[float] = []
    clock = [100.0]
    budget = WeightBudget(limit=100, window_s=60, safety=0.9, sleep=waits.append,
                          now=lambda: clock[0])
    budget.acquire(5)
    budget.observe({"X-MBX-USED-WEIGHT-1M": "88"})  # someone else used weight too
    assert budget.used == 88
    budget.acquire(5)  # 93 > 90: wait for the next window
    assert len(waits) == 1 and waits[0] == pytest.approx(20.01)
    info = {"rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "SECOND",
                            "intervalNum": 10, "limit": 50}]}
    assert (WeightBudget.from_exchange_info(info).limit,
            WeightBudget.from_exchange_info(info).window_s) == (50, 10.0)


def test_client_paces_itself_under_a_small_limit() -> None:
    # a 3 s window: 12 calls of 186 kB answers must fit in one window even on a loaded
    # machine (with 1 s, slow calls let the window pass and no wait was needed)
    with fake_exchange(weight_limit=30, weight_window_s=3.0) as small:
        ex = create_exchange("binanceusdm", url=small.url)
        client = VenueClient(ex, policy=fast_policy(), budget=WeightBudget(
            limit=30, window_s=3.0))
        for _ in range(12):  # 60 weight: needs two windows, never a 429
            client.call("klines", ex.fapiPublicGetKlines,
                        {"symbol": "BTCUSDT", "interval": "1h", "limit": 1000}, weight=5)
        assert client.stats.rate_limited == 0 and client.budget.waited_s > 0


def test_credentials_from_env_and_file(tmp_path) -> None:
    env = {"PERPTRADER_BINANCEUSDM_API_KEY": "k", "PERPTRADER_BINANCEUSDM_API_SECRET": "s3"}
    creds = load_credentials("binanceusdm", env=env)
    assert creds == Credentials("k", "s3") and "s3" not in repr(creds)
    keys = tmp_path / "keys.json"
    keys.write_text('{"apiKey": "a", "secret": "b"}')
    assert load_credentials("bybit", env={"PERPTRADER_BYBIT_KEYS_FILE": str(keys)}).api_key == "a"
    assert load_credentials("bybit", env={}) is None
    ex = create_exchange("binanceusdm", url="http://127.0.0.1:1", credentials=creds)
    assert ex.options["fetchCurrencies"] is False
    assert ex.urls["api"]["fapiPrivateV2"] == "http://127.0.0.1:1/fapi/v2"
    with pytest.raises(UnknownVenue):
        create_exchange("kraken")
