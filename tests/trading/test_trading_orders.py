"""The order state machine by hand: every (status, event) pair, fills, cancels, storage."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from perptrader.core.errors import PerptraderError
from perptrader.trading.ids import client_order_id, fill_id
from perptrader.trading.orders import (
    OPEN,
    TERMINAL,
    TRANSITIONS,
    IllegalTransition,
    InvalidOrderEvent,
    Order,
    OrderError,
    OrderEvent,
    OrderEventKind,
    OrderSide,
    OrderStatus,
    OrderType,
    TimeInForce,
)

S, K = OrderStatus, OrderEventKind
T0 = pd.Timestamp("2024-03-01 12:00", tz="UTC")


def ev(kind: OrderEventKind, minute: int = 1, **kw) -> OrderEvent:
    return OrderEvent(kind=kind, ts=T0 + pd.Timedelta(minutes=minute), **kw)


def new_order(**kw) -> Order:
    args = dict(run_id="run-1", seq=4, symbol="BTCUSDT", side="buy", type="limit", qty=2.0,
                price=100.0, ts=T0, reason="target 1.0", target_exposure=1.0)
    args.update(kw)
    return Order.create(**args)


#: event paths that bring a fresh order into each status
PATHS = {
    S.INITIALIZED: [],
    S.DENIED: [ev(K.DENY, reason="risk")],
    S.SUBMITTED: [ev(K.SUBMIT)],
    S.ACCEPTED: [ev(K.SUBMIT), ev(K.ACCEPT, venue_order_id="v1")],
    S.REJECTED: [ev(K.SUBMIT), ev(K.REJECT, reason="margin")],
    S.PARTIALLY_FILLED: [ev(K.SUBMIT), ev(K.ACCEPT), OrderEvent.fill(T0, 0.5, 100.0)],
    S.FILLED: [ev(K.SUBMIT), OrderEvent.fill(T0, 2.0, 100.0)],
    S.PENDING_CANCEL: [ev(K.SUBMIT), ev(K.ACCEPT), ev(K.CANCEL_REQUEST)],
    S.CANCELED: [ev(K.SUBMIT), ev(K.CANCEL)],
    S.EXPIRED: [ev(K.SUBMIT), ev(K.EXPIRE)],
}


def order_in(status: OrderStatus) -> Order:
    order = new_order()
    for event in PATHS[status]:
        order.apply(event)
    assert order.status is status
    return order


def event_for(kind: OrderEventKind, order: Order) -> OrderEvent:
    if kind is K.FILL:
        return OrderEvent.fill(T0, max(order.qty - order.filled_qty, 0.1), 101.0)
    if kind is K.PARTIAL_FILL:
        return OrderEvent(kind=K.PARTIAL_FILL, ts=T0, qty=0.25, price=101.0)
    return ev(kind, 2, reason="because")


@pytest.mark.parametrize("status", list(S))
@pytest.mark.parametrize("kind", list(K))
def test_every_status_event_pair(status: OrderStatus, kind: OrderEventKind) -> None:
    order = order_in(status)
    before = order.to_dict()
    event = event_for(kind, order)
    if (status, kind) not in TRANSITIONS:
        with pytest.raises(IllegalTransition) as info:
            order.apply(event)
        assert order.to_dict() == before
        message = str(info.value)
        assert order.client_order_id in message and status.value in message
        assert kind.value in message
        return
    expected = TRANSITIONS[(status, kind)]
    if expected is None:  # cancel rejected: back to where it was
        expected = S.ACCEPTED
    assert order.apply(event) is expected
    assert order.status is expected
    assert order.updated_ts == event.ts


def test_terminal_and_open_sets() -> None:
    assert {S.DENIED, S.REJECTED, S.FILLED, S.CANCELED, S.EXPIRED} == TERMINAL
    for status in TERMINAL:
        assert not any(key[0] is status for key in TRANSITIONS)
        order = order_in(status)
        assert order.is_terminal and not order.is_open and order.leaves_qty == 0.0
    for status in OPEN:
        assert order_in(status).is_open
    fresh = order_in(S.INITIALIZED)
    assert not fresh.is_open and not fresh.is_terminal and fresh.leaves_qty == 2.0
    assert fresh.allows(K.SUBMIT) and not fresh.allows(K.FILL)


def test_fills_average_price_fees_and_count() -> None:
    order = order_in(S.ACCEPTED)
    assert order.apply(OrderEvent.fill(T0, 0.5, 100.0, fee=0.02)) is S.PARTIALLY_FILLED
    assert order.fill_count == 1 and fill_id(order.client_order_id, order.fill_count)
    assert order.apply(OrderEvent.fill(T0, 1.0, 103.0, fee=0.04)) is S.PARTIALLY_FILLED
    assert order.leaves_qty == pytest.approx(0.5)
    assert order.apply(OrderEvent.fill(T0, 0.5, 106.0, fee=0.02)) is S.FILLED
    assert order.filled_qty == 2.0 and order.fill_count == 3
    assert order.avg_fill_price == pytest.approx((50 + 103 + 53) / 2)
    assert order.fees == pytest.approx(0.08)
    assert order.signed_filled_qty == 2.0


def test_fill_kind_is_decided_by_quantity() -> None:
    order = order_in(S.SUBMITTED)  # a market order may fill before its acknowledgement
    partial_sent_as_fill = OrderEvent.fill(T0, 1.0, 100.0)
    assert order.apply(partial_sent_as_fill) is S.PARTIALLY_FILLED
    complete = OrderEvent(kind=K.PARTIAL_FILL, ts=T0, qty=1.0, price=100.0)
    assert order.apply(complete) is S.FILLED


def test_float_dust_completes_the_order() -> None:
    order = order_in(S.ACCEPTED)
    order.qty = 0.3
    for _ in range(3):
        order.apply(OrderEvent.fill(T0, 0.1, 10.0))
    assert order.status is S.FILLED and order.filled_qty == 0.3 and order.leaves_qty == 0.0


@pytest.mark.parametrize("qty, price, fee", [
    (2.5, 100.0, 0.0), (0.0, 100.0, 0.0), (-1.0, 100.0, 0.0), (None, 100.0, 0.0),
    (1.0, 0.0, 0.0), (1.0, None, 0.0), (1.0, float("nan"), 0.0), (1.0, 100.0, float("inf")),
])
def test_bad_fills_change_nothing(qty, price, fee) -> None:
    order = order_in(S.PARTIALLY_FILLED)
    before = order.to_dict()
    with pytest.raises(InvalidOrderEvent):
        order.apply(OrderEvent(kind=K.FILL, ts=T0, qty=qty, price=price, fee=fee))
    assert order.to_dict() == before


def test_fill_while_pending_cancel_then_cancel_rejected() -> None:
    order = order_in(S.PENDING_CANCEL)
    assert order.apply(OrderEvent.fill(T0, 0.5, 100.0)) is S.PENDING_CANCEL
    assert order.apply(ev(K.CANCEL_REJECT, reason="unknown order")) is S.PARTIALLY_FILLED
    assert order.status_reason == "unknown order"
    assert order.apply(ev(K.CANCEL_REQUEST)) is S.PENDING_CANCEL
    assert order.apply(OrderEvent.fill(T0, 1.5, 100.0)) is S.FILLED  # filled before cancel
    assert order.pre_cancel_status is None


def test_cancel_rejected_before_and_after_acknowledgement() -> None:
    order = order_in(S.SUBMITTED)
    order.apply(ev(K.CANCEL_REQUEST))
    assert order.apply(ev(K.CANCEL_REJECT)) is S.SUBMITTED
    order.apply(ev(K.CANCEL_REQUEST))
    assert order.apply(ev(K.ACCEPT, venue_order_id="v9")) is S.PENDING_CANCEL
    assert order.venue_order_id == "v9"
    assert order.apply(ev(K.CANCEL_REJECT)) is S.ACCEPTED
    order.apply(ev(K.CANCEL_REQUEST))
    assert order.apply(ev(K.CANCEL, reason="user")) is S.CANCELED
    assert order.status_reason == "user" and order.leaves_qty == 0.0


def test_reasons_and_venue_ids_are_kept() -> None:
    order = order_in(S.INITIALIZED)
    order.apply(ev(K.DENY, reason="max_leverage: 12x"))
    assert order.status_reason == "max_leverage: 12x"
    order = order_in(S.ACCEPTED)
    assert order.venue_order_id == "v1"


def test_round_trip_through_json() -> None:
    order = order_in(S.PARTIALLY_FILLED)
    order.apply(ev(K.CANCEL_REQUEST))
    data = json.loads(json.dumps(order.to_dict()))
    assert data["status"] == "pending_cancel" and data["side"] == "buy"
    assert data["created_ts"] == "2024-03-01T12:00:00+00:00"
    again = Order.from_dict(data)
    assert again == order and again.to_dict() == order.to_dict()
    assert again.apply(ev(K.CANCEL_REJECT)) is S.PARTIALLY_FILLED
    with pytest.raises(OrderError, match="unknown keys"):
        Order.from_dict({**data, "colour": "red"})
    event = OrderEvent.fill(T0, 1.0, 2.0, 0.1, trade_id="t1")
    assert OrderEvent.from_dict(json.loads(json.dumps(event.to_dict()))) == event


def test_create_uses_the_deterministic_id() -> None:
    order = new_order(seq=11)
    assert order.client_order_id == client_order_id("run-1", 11)
    assert order.status is S.INITIALIZED and order.updated_ts == T0
    assert order.created_ts.tz is not None


@pytest.mark.parametrize("kw, match", [
    (dict(type="limit", price=None), "needs a price"),
    (dict(type="market", price=100.0), "takes no price"),
    (dict(type="stop_market", price=None), "needs a stop_price"),
    (dict(type="limit", stop_price=90.0), "takes no stop_price"),
    (dict(qty=0.0), "qty"),
    (dict(qty=float("nan")), "qty"),
    (dict(side="hold"), "side must be one of"),
    (dict(type="market", price=None, post_only=True), "post_only needs a limit"),
    (dict(post_only=True, time_in_force="ioc"), "post_only cannot"),
    (dict(ts=pd.Timestamp("2024-01-01")), "timezone-aware"),
    (dict(ts=1234), "must be a timestamp"),
    (dict(seq=-1), "seq"),
])
def test_invalid_orders(kw, match) -> None:
    with pytest.raises(OrderError, match=match):
        new_order(**kw)


def test_post_only_is_gtx_and_types() -> None:
    assert new_order(post_only=True).time_in_force is TimeInForce.GTX
    assert new_order(time_in_force="gtx").post_only
    stop = new_order(type=OrderType.STOP_MARKET, price=None, stop_price=95.0, side="sell",
                     reduce_only=True)
    assert stop.stop_price == 95.0 and stop.reduce_only and stop.side is OrderSide.SELL
    utc = new_order(ts=pd.Timestamp("2024-03-01 13:00", tz="Europe/Berlin"))
    assert utc.created_ts == T0 and str(utc.created_ts.tz) == "UTC"


def test_errors_are_perptrader_errors() -> None:
    assert issubclass(IllegalTransition, PerptraderError)
    assert issubclass(InvalidOrderEvent, PerptraderError)
    with pytest.raises(OrderError, match="unknown order event kind"):
        OrderEvent(kind="explode", ts=T0)
