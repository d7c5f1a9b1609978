"""The fake exchange's private REST side through ccxt's binanceusdm with keys: signed
requests, order placement and matching on the recorded bars, fees, positions, funding,
Binance's refusals, the order-rate limit and the "outcome unknown" timeout."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import ccxt
import pytest

from perptrader.marketdata.dataset import epoch_us
from perptrader.marketdata.kinds import Kind
from perptrader.venues.ccxt_client import Credentials, create_exchange
from venues.venue_fakes import START, fake_exchange, synthetic_market

T0 = int(START.value // 1_000_000)
H = 3_600_000
S = "BTC/USDT:USDT"
CLOCK = T0 + 5 * H + 1000  # inside the 6th hourly bar


@pytest.fixture(scope="module")
def fake():
    with fake_exchange(data=synthetic_market(300), clock_start_ms=CLOCK, clock_speed=0.0,
                       weight_window_s=60.0) as f:
        yield f


@pytest.fixture
def ex(fake):
    fake.admin("POST", "/_fake/reset")
    fake.admin("POST", "/_fake/account/reset")
    fake.admin("POST", "/_fake/account/config", {"partial_fill_parts": 1, "slippage_bps": 0})
    fake.admin("POST", "/_fake/clock", {"start_ms": CLOCK, "speed": 0})
    ex = create_exchange("binanceusdm", url=fake.url, timeout_ms=3000,
                         credentials=Credentials("fake-key", "fake-secret"))
    ex.load_markets()
    return ex


def bar(fake, t_ms: int, kind: Kind = Kind.OHLCV) -> dict[str, float]:
    """The stored 1h bar holding ``t_ms``."""
    open_ms = t_ms // H * H
    frame = fake.venue.data.frame(("BTCUSDT", kind, "1h"), open_ms, open_ms)
    return frame.iloc[0].to_dict()


def step_to(fake, t_ms: int) -> None:
    fake.admin("POST", "/_fake/clock", {"start_ms": t_ms, "speed": 0})


def code_of(exc: BaseException) -> int:
    text = str(exc)
    return int(json.loads(text[text.index("{"):])["code"])


def raw_call(fake, method: str, path: str, params: dict[str, Any], *,
             key: str = "fake-key", secret: str = "fake-secret") -> tuple[int, Any, Any]:
    """A signed request built by hand (query string for every method, as Binance allows)."""
    query = urllib.parse.urlencode(params)
    sig = hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    req = urllib.request.Request(f"{fake.url}{path}?{query}&signature={sig}", method=method,
                                 headers={"X-MBX-APIKEY": key})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read()), resp.headers
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), err.headers


def test_market_buy_fills_at_bar_open_with_taker_fee(fake, ex) -> None:
    order = ex.create_order(S, "market", "buy", 0.01)
    open_ = bar(fake, CLOCK)["open"]
    assert order["status"] == "closed" and order["filled"] == 0.01
    assert order["average"] == pytest.approx(open_, rel=1e-9)
    truth = fake.account()
    fee = open_ * 0.01 * 0.0005
    assert truth["balance"] == pytest.approx(10_000 - fee)
    assert truth["trades"][0]["commission"] == pytest.approx(fee)
    assert truth["positions"]["BTCUSDT"]["positionAmt"] == pytest.approx(0.01)
    [pos] = ex.fetch_positions([S])
    assert pos["contracts"] == pytest.approx(0.01) and pos["side"] == "long"
    assert pos["entryPrice"] == pytest.approx(open_, rel=1e-9)
    mark = bar(fake, CLOCK, Kind.MARK)["open"]  # the mark at the clock: its bar's open
    assert pos["unrealizedPnl"] == pytest.approx(0.01 * (mark - open_), abs=1e-6)
    [trade] = ex.fetch_my_trades(S)
    assert trade["fee"]["cost"] == pytest.approx(fee) and trade["takerOrMaker"] == "taker"
    balance = ex.fetch_balance()
    assert float(balance["info"]["totalWalletBalance"]) == pytest.approx(truth["balance"])
    # ccxt's total is the margin balance: wallet plus unrealized PnL
    assert balance["USDT"]["total"] == pytest.approx(truth["balance"] + pos["unrealizedPnl"])
    # closing realizes the PnL at the next bar's open
    step_to(fake, CLOCK + H)
    ex.create_order(S, "market", "sell", 0.01, params={"reduceOnly": True})
    truth = fake.account()
    exit_ = bar(fake, CLOCK + H)["open"]
    assert truth["positions"]["BTCUSDT"]["positionAmt"] == 0
    pnl = 0.01 * (exit_ - open_)
    assert truth["balance"] == pytest.approx(10_000 - fee - exit_ * 0.01 * 0.0005 + pnl)
    kinds = [r["incomeType"] for r in truth["income"]]
    assert kinds == ["COMMISSION", "REALIZED_PNL", "COMMISSION"]
    # a recorded request list shows what ccxt called
    assert {"order", "positionRisk", "userTrades", "account"} <= set(fake.venue.requests)


def test_slippage_moves_market_fills_against_the_taker(fake, ex) -> None:
    fake.admin("POST", "/_fake/account/config", {"slippage_bps": 10})
    order = ex.create_order(S, "market", "buy", 0.01)
    assert order["average"] == pytest.approx(bar(fake, CLOCK)["open"] * 1.001, rel=1e-9)


def first_bar_below(fake, price: float) -> int:
    for k in range(6, 300):
        if bar(fake, T0 + k * H)["low"] <= price:
            return T0 + k * H
    raise AssertionError("no bar reaches the price")


def test_limit_rests_then_fills_as_maker_when_a_bar_crosses(fake, ex) -> None:
    price = math.floor(bar(fake, CLOCK)["open"] * 0.997 * 10) / 10
    order = ex.create_order(S, "limit", "buy", 0.01, price)
    assert order["status"] == "open"
    crossing = first_bar_below(fake, price)
    step_to(fake, crossing - 1)  # the bar before: not yet
    assert ex.fetch_order(order["id"], S)["status"] == "open"
    step_to(fake, crossing + 10)
    filled = ex.fetch_order(order["id"], S)
    assert filled["status"] == "closed" and filled["average"] == pytest.approx(price)
    [trade] = fake.account()["trades"]
    assert trade["price"] == pytest.approx(price) and trade["commission"] == pytest.approx(
        price * 0.01 * 0.0002)


def test_partial_fill_then_cancel(fake, ex) -> None:
    fake.admin("POST", "/_fake/account/config", {"partial_fill_parts": 2})
    price = math.floor(bar(fake, CLOCK)["open"] * 0.997 * 10) / 10
    order = ex.create_order(S, "limit", "buy", 0.02, price, params={"clientOrderId": "part-1"})
    step_to(fake, first_bar_below(fake, price) + 10)
    assert ex.fetch_order(order["id"], S)["filled"] == pytest.approx(0.01)
    cancelled = ex.cancel_order(order["id"], S)
    assert cancelled["status"] == "canceled" and cancelled["filled"] == pytest.approx(0.01)
    [row] = fake.account()["orders"]
    assert (row["status"], row["executedQty"]) == ("CANCELED", pytest.approx(0.01))


def test_stop_market_triggers_through_the_algo_api(fake, ex) -> None:
    ex.create_order(S, "market", "buy", 0.01)
    stop = math.floor(bar(fake, CLOCK)["open"] * 0.997 * 10) / 10
    algo = ex.create_order(S, "market", "sell", 0.01,
                           params={"stopLossPrice": stop, "reduceOnly": True})
    assert algo["status"] == "open" and "algoOrder" in fake.venue.requests
    crossing = first_bar_below(fake, stop)
    step_to(fake, crossing + 10)
    truth = fake.account()
    assert truth["positions"]["BTCUSDT"]["positionAmt"] == 0
    [algo_row] = truth["algoOrders"]
    assert algo_row["status"] == "FINISHED"
    exit_trade = truth["trades"][-1]
    expected = min(stop, bar(fake, crossing)["open"])  # a gap fills at the open
    assert exit_trade["price"] == pytest.approx(expected)
    assert truth["orders"][-1]["origType"] == "STOP_MARKET"


def test_legacy_stop_market_on_the_order_endpoint(fake, ex) -> None:
    ex.create_order(S, "market", "buy", 0.01)
    stop = math.floor(bar(fake, CLOCK)["open"] * 0.997 * 10) / 10
    status, body, _ = raw_call(fake, "POST", "/fapi/v1/order", {
        "symbol": "BTCUSDT", "side": "SELL", "type": "STOP_MARKET", "quantity": "0.01",
        "stopPrice": f"{stop:.1f}", "reduceOnly": "true",
        "timestamp": int(time.time() * 1000)})
    assert status == 200 and body["status"] == "NEW" and body["type"] == "STOP_MARKET"
    status, body, _ = raw_call(fake, "POST", "/fapi/v1/order", {
        "symbol": "BTCUSDT", "side": "SELL", "type": "STOP_MARKET", "quantity": "0.01",
        "stopPrice": "99999.0", "timestamp": int(time.time() * 1000)})
    assert (status, body["code"]) == (400, -2021)  # would trigger at once
    step_to(fake, first_bar_below(fake, stop) + 10)
    assert fake.account()["positions"]["BTCUSDT"]["positionAmt"] == 0


def test_fetch_order_by_client_id_and_duplicate_id(fake, ex) -> None:
    price = math.floor(bar(fake, CLOCK)["open"] * 0.9 * 10) / 10
    ex.create_order(S, "limit", "buy", 0.01, price, params={"clientOrderId": "dup-1"})
    found = ex.fetch_order(None, S, params={"origClientOrderId": "dup-1"})
    assert found["clientOrderId"] == "dup-1" and found["status"] == "open"
    with pytest.raises(ccxt.BaseError) as info:
        ex.create_order(S, "limit", "buy", 0.01, price, params={"clientOrderId": "dup-1"})
    assert code_of(info.value) == -4116
    ex.cancel_order(found["id"], S)
    with pytest.raises(ccxt.BaseError) as info:  # used ids stay used after a cancel
        ex.create_order(S, "market", "buy", 0.01, params={"clientOrderId": "dup-1"})
    assert code_of(info.value) == -4116
    assert [o["clientOrderId"] for o in fake.account()["orders"]] == ["dup-1"]
    with pytest.raises(ccxt.OrderNotFound) as info:
        ex.fetch_order("987654", S)
    assert code_of(info.value) == -2013
    with pytest.raises(ccxt.OrderNotFound):
        ex.cancel_order(found["id"], S)  # no longer open: -2011


def test_open_orders_all_orders_and_cancel_all(fake, ex) -> None:
    price = math.floor(bar(fake, CLOCK)["open"] * 0.9 * 10) / 10
    for i in range(3):
        ex.create_order(S, "limit", "buy", 0.01, price, params={"clientOrderId": f"o{i}"})
    assert len(ex.fetch_open_orders(S)) == 3
    ex.cancel_all_orders(S)
    assert ex.fetch_open_orders(S) == []
    assert [o["status"] for o in ex.fetch_orders(S)] == ["canceled"] * 3


def test_authentication_errors(fake, ex) -> None:
    bad = create_exchange("binanceusdm", url=fake.url, timeout_ms=3000,
                          credentials=Credentials("fake-key", "wrong-secret"))
    bad.markets, bad.markets_by_id = ex.markets, ex.markets_by_id
    with pytest.raises(ccxt.AuthenticationError) as info:
        bad.fetch_balance()
    assert code_of(info.value) == -1022
    unknown = create_exchange("binanceusdm", url=fake.url, timeout_ms=3000,
                              credentials=Credentials("nobody", "x"))
    with pytest.raises(ccxt.AuthenticationError) as info:
        unknown.fapiPrivateV2GetBalance()
    assert code_of(info.value) == -2015
    ex.nonce = lambda: int(time.time() * 1000) - 10_000  # older than recvWindow (5 s)
    with pytest.raises(ccxt.BaseError) as info:
        ex.fetch_balance()
    assert code_of(info.value) == -1021
    status, body, _ = raw_call(fake, "GET", "/fapi/v2/balance", {
        "timestamp": int(time.time() * 1000) - 10_000, "recvWindow": 20_000})
    assert status == 200 and body[0]["asset"] == "USDT"


@pytest.mark.parametrize(("params", "code"), [
    ({"type": "MARKET", "quantity": "0.0001"}, -1111),  # finer than quantityPrecision
    ({"type": "MARKET", "quantity": "0"}, -4003),
    ({"type": "LIMIT", "quantity": "0.001", "price": "1000", "timeInForce": "GTC"}, -4164),
    ({"type": "LIMIT", "quantity": "0.01", "timeInForce": "GTC"}, -1102),
])
def test_filter_refusals(fake, ex, params, code) -> None:
    status, body, _ = raw_call(fake, "POST", "/fapi/v1/order", {
        "symbol": "BTCUSDT", "side": "BUY", **params, "timestamp": int(time.time() * 1000)})
    assert (status, body["code"]) == (400, code)
    assert fake.account()["orders"] == []


def test_lot_size_and_tick_refusals(fake, ex) -> None:
    base = {"symbol": "BTCUSDT", "side": "BUY", "timestamp": int(time.time() * 1000)}
    _, body, _ = raw_call(fake, "POST", "/fapi/v1/order",
                          {**base, "type": "MARKET", "quantity": "5000"})
    assert body == {"code": -1013, "msg": "Filter failure: MARKET_LOT_SIZE"}
    _, body, _ = raw_call(fake, "POST", "/fapi/v1/order",
                          {**base, "type": "LIMIT", "quantity": "0.01", "price": "30000.001",
                           "timeInForce": "GTC"})
    assert body["code"] == -1111


def test_reduce_only_increase_and_insufficient_margin(fake, ex) -> None:
    with pytest.raises(ccxt.BaseError) as info:
        ex.create_order(S, "market", "sell", 0.01, params={"reduceOnly": True})
    assert code_of(info.value) == -2022
    with pytest.raises(ccxt.ExchangeError) as info:
        ex.create_order(S, "market", "buy", 6.0)  # 240k notional / 20x > 10k
    assert code_of(info.value) == -2019
    ex.set_leverage(50, S)
    assert ex.create_order(S, "market", "buy", 6.0)["status"] == "closed"
    assert fake.account()["positions"]["BTCUSDT"]["leverage"] == 50


def test_leverage_margin_mode_and_position_mode(fake, ex) -> None:
    assert ex.set_leverage(7, S)["leverage"] == 7
    ex.set_margin_mode("isolated", S)
    truth = fake.account()["positions"]["BTCUSDT"]
    assert truth["marginType"] == "ISOLATED" and truth["leverage"] == 7
    with pytest.raises(ccxt.BaseError) as info:
        ex.set_margin_mode("isolated", S)
    assert code_of(info.value) == -4046
    assert ex.fapiPrivateGetPositionSideDual() == {"dualSidePosition": False}
    assert ex.fapiPrivateGetMultiAssetsMargin() == {"multiAssetsMargin": False}
    rates = ex.fapiPrivateGetCommissionRate({"symbol": "BTCUSDT"})
    assert rates["takerCommissionRate"] == "0.0005"
    v2 = ex.fapiPrivateV2GetPositionRisk({"symbol": "BTCUSDT"})
    assert v2[0]["leverage"] == "7" and v2[0]["marginType"] == "isolated"


def test_funding_paid_when_the_clock_passes_a_settlement(fake, ex) -> None:
    ex.create_order(S, "market", "buy", 0.1)
    step_to(fake, T0 + 9 * H)  # passes the 08:00 settlement
    truth = fake.account()
    [fee] = [r for r in truth["income"] if r["incomeType"] == "FUNDING_FEE"]
    funding = fake.venue.data.frame(("BTCUSDT", Kind.FUNDING, None), None, None)
    row = funding.iloc[1]
    settled = int(epoch_us(funding["exchange_ts"])[1] // 1000)
    mark = bar(fake, settled, Kind.MARK)["open"]
    assert fee["time"] == settled
    assert fee["income"] == pytest.approx(-0.1 * mark * row["rate"])
    history = ex.fetch_funding_history(S)
    assert history[-1]["amount"] == pytest.approx(fee["income"])
    trades_cost = sum(t["commission"] for t in truth["trades"])
    assert truth["balance"] == pytest.approx(10_000 - trades_cost + fee["income"])


def test_timeout_after_on_order_places_it_anyway(fake, ex) -> None:
    fake.set_faults(rest=[{"kind": "timeout_after", "endpoint": "order", "delay_s": 1.0}])
    ex.timeout = 300
    with pytest.raises(ccxt.RequestTimeout):
        ex.create_order(S, "market", "buy", 0.01, params={"clientOrderId": "unknown-1"})
    ex.timeout = 3000
    [row] = fake.account()["orders"]  # the outcome the client could not see
    assert (row["clientOrderId"], row["status"]) == ("unknown-1", "FILLED")
    assert ex.fetch_order(None, S, params={"origClientOrderId": "unknown-1"})["filled"] == 0.01


def test_order_rate_limit_answers_429_with_counts(fake, ex) -> None:
    fake.venue.config.order_limit_10s = 2
    try:
        ex.create_order(S, "market", "buy", 0.01)
        assert ex.last_response_headers["X-MBX-ORDER-COUNT-10S"] == "1"
        ex.create_order(S, "market", "buy", 0.01)
        assert ex.last_response_headers["X-MBX-ORDER-COUNT-1M"] == "2"
        with pytest.raises(ccxt.DDoSProtection) as info:
            ex.create_order(S, "market", "buy", 0.01)
        assert code_of(info.value) == -1015
        assert "current limit is 2 orders per 10 SECOND" in str(info.value)
        assert ex.last_response_headers["Retry-After"] == "10"
        assert len(fake.account()["orders"]) == 2
    finally:
        fake.venue.config.order_limit_10s = 300
