"""Orders and their lifecycle as an explicit state machine (after nautilus_trader).

Every change of an order's status goes through ``Order.apply(event)`` and the table
``TRANSITIONS``, so the paper engine, the live engine and the reconciliation after a
restart cannot disagree about what a sequence of venue reports means. An event the table
does not allow raises ``IllegalTransition`` and leaves the order exactly as it was: a
report that makes no sense is a bug or a desynchronised venue, and must be looked at
rather than silently absorbed.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

import pandas as pd

from perptrader.core.errors import PerptraderError
from perptrader.trading.ids import client_order_id as make_client_order_id

#: relative tolerance on quantities: venues report fills rounded to their step size and
#: sums of float fills drift, so "filled" means within 1e-9 of the order quantity
QTY_RTOL = 1e-9


class OrderError(PerptraderError, ValueError):
    """An order or order event that is not valid (names the order and the field)."""


class InvalidOrderEvent(OrderError):
    """An event whose data is wrong for the order, e.g. a fill beyond its quantity."""


class IllegalTransition(OrderError):
    """An event that ``TRANSITIONS`` does not allow in the order's current status."""

    def __init__(self, order_id: str, status: OrderStatus, kind: OrderEventKind) -> None:
        self.order_id = order_id
        self.status = status
        self.kind = kind
        super().__init__(f"order {order_id}: event '{kind.value}' is not allowed "
                         f"in status '{status.value}'")


class OrderStatus(StrEnum):
    INITIALIZED = "initialized"  # created locally, not yet sent
    DENIED = "denied"  # refused locally (risk manager) before it was sent
    SUBMITTED = "submitted"  # sent, no answer from the venue yet
    ACCEPTED = "accepted"  # resting at the venue
    REJECTED = "rejected"  # refused by the venue
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    PENDING_CANCEL = "pending_cancel"  # cancel sent, not yet confirmed (may still fill)
    CANCELED = "canceled"
    EXPIRED = "expired"  # time in force ran out (IOC/FOK remainder, GTX that would take)


class OrderEventKind(StrEnum):
    DENY = "deny"
    SUBMIT = "submit"
    ACCEPT = "accept"
    REJECT = "reject"
    #: callers may send either fill kind: ``Order.apply`` looks up FILL when the fill
    #: completes the order and PARTIAL_FILL when quantity is left, whatever was sent
    PARTIAL_FILL = "partial_fill"
    FILL = "fill"
    CANCEL_REQUEST = "cancel_request"
    CANCEL_REJECT = "cancel_reject"
    CANCEL = "cancel"
    EXPIRE = "expire"


class OrderSide(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        """+1 for a buy, -1 for a sell: the sign of the position change."""
        return 1 if self is OrderSide.BUY else -1

    @property
    def opposite(self) -> OrderSide:
        return OrderSide.SELL if self is OrderSide.BUY else OrderSide.BUY


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP_MARKET = "stop_market"
    TAKE_PROFIT_MARKET = "take_profit_market"


class TimeInForce(StrEnum):
    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"
    GTX = "gtx"  # post-only: expires instead of taking liquidity


S, K = OrderStatus, OrderEventKind
TERMINAL: frozenset[OrderStatus] = frozenset(
    {S.DENIED, S.REJECTED, S.FILLED, S.CANCELED, S.EXPIRED})
#: live at the venue: may still fill
OPEN: frozenset[OrderStatus] = frozenset(
    {S.SUBMITTED, S.ACCEPTED, S.PARTIALLY_FILLED, S.PENDING_CANCEL})
_FILLS = (K.PARTIAL_FILL, K.FILL)

#: (status, event) -> next status. ``None`` means "back to the open status the order had
#: before the cancel request" (a rejected cancel: the order is still working). Anything
#: not listed is illegal.
TRANSITIONS: dict[tuple[OrderStatus, OrderEventKind], OrderStatus | None] = {
    (S.INITIALIZED, K.DENY): S.DENIED,
    (S.INITIALIZED, K.SUBMIT): S.SUBMITTED,
    (S.INITIALIZED, K.CANCEL): S.CANCELED,  # dropped locally before it was sent
    (S.SUBMITTED, K.ACCEPT): S.ACCEPTED,
    (S.SUBMITTED, K.REJECT): S.REJECTED,
    # a market order may report its fills before (or instead of) an acknowledgement
    (S.SUBMITTED, K.PARTIAL_FILL): S.PARTIALLY_FILLED,
    (S.SUBMITTED, K.FILL): S.FILLED,
    (S.SUBMITTED, K.CANCEL_REQUEST): S.PENDING_CANCEL,
    (S.SUBMITTED, K.CANCEL): S.CANCELED,
    (S.SUBMITTED, K.EXPIRE): S.EXPIRED,
    (S.ACCEPTED, K.PARTIAL_FILL): S.PARTIALLY_FILLED,
    (S.ACCEPTED, K.FILL): S.FILLED,
    (S.ACCEPTED, K.CANCEL_REQUEST): S.PENDING_CANCEL,
    (S.ACCEPTED, K.CANCEL): S.CANCELED,
    (S.ACCEPTED, K.EXPIRE): S.EXPIRED,
    (S.PARTIALLY_FILLED, K.PARTIAL_FILL): S.PARTIALLY_FILLED,
    (S.PARTIALLY_FILLED, K.FILL): S.FILLED,
    (S.PARTIALLY_FILLED, K.CANCEL_REQUEST): S.PENDING_CANCEL,
    (S.PARTIALLY_FILLED, K.CANCEL): S.CANCELED,
    (S.PARTIALLY_FILLED, K.EXPIRE): S.EXPIRED,
    # a cancel races with the matching engine: fills, the late acknowledgement of the
    # submission or its rejection can all still arrive
    (S.PENDING_CANCEL, K.ACCEPT): S.PENDING_CANCEL,
    (S.PENDING_CANCEL, K.REJECT): S.REJECTED,
    (S.PENDING_CANCEL, K.PARTIAL_FILL): S.PENDING_CANCEL,
    (S.PENDING_CANCEL, K.FILL): S.FILLED,
    (S.PENDING_CANCEL, K.CANCEL): S.CANCELED,
    (S.PENDING_CANCEL, K.CANCEL_REJECT): None,
    (S.PENDING_CANCEL, K.EXPIRE): S.EXPIRED,
}
del S, K


def utc_timestamp(value: Any, name: str = "ts") -> pd.Timestamp:
    """A tz-aware UTC Timestamp from a Timestamp, datetime or ISO string.

    Naive times are refused: whether they meant UTC or local time cannot be told, and a
    wrong guess shifts every cooldown and rate window by hours.
    """
    if isinstance(value, pd.Timestamp | dt.datetime | str):
        ts = pd.Timestamp(value)
    else:
        raise OrderError(f"{name} must be a timestamp, got {value!r}")
    if ts is pd.NaT:
        raise OrderError(f"{name} must be a timestamp, got NaT")
    if ts.tzinfo is None:
        raise OrderError(f"{name} must be timezone-aware (UTC), got {value!r}")
    return ts.tz_convert("UTC")


def _finite(value: Any, name: str, *, positive: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise OrderError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or (positive and number <= 0):
        raise OrderError(f"{name} must be {'> 0 and ' if positive else ''}finite, "
                         f"got {value!r}")
    return number


@dataclass(frozen=True, kw_only=True)
class OrderEvent:
    """One thing that happened to an order: a local decision or a venue report.

    Fill events carry ``qty`` (> 0, this fill only), ``price``, ``fee`` (quote currency,
    + = paid, - = rebate), ``liquidity`` ("maker"/"taker") and the venue's ``trade_id``;
    deny/reject/cancel events may carry a ``reason``; accept may carry ``venue_order_id``.
    """

    kind: OrderEventKind
    ts: pd.Timestamp
    qty: float | None = None
    price: float | None = None
    fee: float = 0.0
    liquidity: str | None = None
    trade_id: str | None = None
    reason: str | None = None
    venue_order_id: str | None = None

    def __post_init__(self) -> None:
        try:
            kind = OrderEventKind(self.kind)
        except ValueError:
            raise OrderError(f"unknown order event kind {self.kind!r}") from None
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "ts", utc_timestamp(self.ts))

    @classmethod
    def fill(cls, ts: Any, qty: float, price: float, fee: float = 0.0, *,
             liquidity: str = "taker", trade_id: str | None = None) -> OrderEvent:
        return cls(kind=OrderEventKind.FILL, ts=ts, qty=qty, price=price, fee=fee,
                   liquidity=liquidity, trade_id=trade_id)

    @property
    def is_fill(self) -> bool:
        return self.kind in _FILLS

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OrderEvent:
        return cls(**_known_keys(cls, data))


@dataclass(kw_only=True)
class Order:
    """One order of a run; mutable, changed only through ``apply``.

    ``reason`` says why the order was created (e.g. "target 1.0", "stop_loss") and
    ``target_exposure`` the exposure it was sized for, so a fill can be traced back to
    the decision. ``status_reason`` holds the last deny/reject/cancel reason.
    ``pre_cancel_status`` remembers the open status to go back to if a cancel is
    rejected.
    """

    client_order_id: str
    run_id: str
    seq: int
    symbol: str
    side: OrderSide
    type: OrderType
    qty: float
    created_ts: pd.Timestamp
    price: float | None = None
    stop_price: float | None = None
    reduce_only: bool = False
    post_only: bool = False
    time_in_force: TimeInForce = TimeInForce.GTC
    status: OrderStatus = OrderStatus.INITIALIZED
    filled_qty: float = 0.0
    avg_fill_price: float | None = None
    fees: float = 0.0
    fill_count: int = 0
    venue_order_id: str | None = None
    reason: str = ""
    status_reason: str | None = None
    target_exposure: float | None = None
    updated_ts: pd.Timestamp | None = None
    pre_cancel_status: OrderStatus | None = None

    def __post_init__(self) -> None:
        where = f"order {self.client_order_id!r}"
        if not isinstance(self.client_order_id, str) or not self.client_order_id:
            raise OrderError("client_order_id must be a non-empty string")
        if not isinstance(self.run_id, str):
            raise OrderError(f"{where}: run_id must be a string, got {self.run_id!r}")
        if not isinstance(self.symbol, str) or not self.symbol:
            raise OrderError(f"{where}: symbol must be a non-empty string")
        if isinstance(self.seq, bool) or not isinstance(self.seq, int) or self.seq < 0:
            raise OrderError(f"{where}: seq must be an integer >= 0, got {self.seq!r}")
        self.side = _enum(OrderSide, self.side, where, "side")
        self.type = _enum(OrderType, self.type, where, "type")
        self.time_in_force = _enum(TimeInForce, self.time_in_force, where, "time_in_force")
        self.status = _enum(OrderStatus, self.status, where, "status")
        if self.pre_cancel_status is not None:
            self.pre_cancel_status = _enum(OrderStatus, self.pre_cancel_status, where,
                                           "pre_cancel_status")
        self.qty = _finite(self.qty, f"{where}: qty", positive=True)
        self.created_ts = utc_timestamp(self.created_ts, f"{where}: created_ts")
        self.updated_ts = (self.created_ts if self.updated_ts is None
                           else utc_timestamp(self.updated_ts, f"{where}: updated_ts"))
        self._check_prices(where)
        self._check_post_only(where)
        self.reduce_only = bool(self.reduce_only)
        self.filled_qty = _finite(self.filled_qty, f"{where}: filled_qty")
        if self.filled_qty < 0 or self.filled_qty > self.qty * (1 + QTY_RTOL):
            raise OrderError(f"{where}: filled_qty {self.filled_qty} outside [0, {self.qty}]")
        if self.avg_fill_price is not None:
            self.avg_fill_price = _finite(self.avg_fill_price, f"{where}: avg_fill_price",
                                          positive=True)
        self.fees = _finite(self.fees, f"{where}: fees")
        if self.target_exposure is not None:
            self.target_exposure = _finite(self.target_exposure, f"{where}: target_exposure")

    def _check_prices(self, where: str) -> None:
        if self.type is OrderType.LIMIT:
            if self.price is None:
                raise OrderError(f"{where}: a limit order needs a price")
            self.price = _finite(self.price, f"{where}: price", positive=True)
        elif self.price is not None:
            raise OrderError(f"{where}: a {self.type.value} order takes no price")
        if self.type in (OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET):
            if self.stop_price is None:
                raise OrderError(f"{where}: a {self.type.value} order needs a stop_price")
            self.stop_price = _finite(self.stop_price, f"{where}: stop_price", positive=True)
        elif self.stop_price is not None:
            raise OrderError(f"{where}: a {self.type.value} order takes no stop_price")

    def _check_post_only(self, where: str) -> None:
        # post-only IS time-in-force GTX on Binance (PostOnly on Bybit): keep both in step
        if self.time_in_force is TimeInForce.GTX:
            self.post_only = True
        elif self.post_only:
            if self.time_in_force is not TimeInForce.GTC:
                raise OrderError(f"{where}: post_only cannot be combined with "
                                 f"time_in_force {self.time_in_force.value}")
            self.time_in_force = TimeInForce.GTX
        if self.post_only and self.type is not OrderType.LIMIT:
            raise OrderError(f"{where}: post_only needs a limit order")

    @classmethod
    def create(cls, *, run_id: str, seq: int, symbol: str, side: OrderSide | str,
               type: OrderType | str, qty: float, ts: Any, **kwargs: Any) -> Order:
        """A new INITIALIZED order whose client id is ``ids.client_order_id(run_id, seq)``."""
        try:
            coid = make_client_order_id(run_id, seq)
        except ValueError as exc:
            raise OrderError(f"order of run {run_id!r}: {exc}") from None
        return cls(client_order_id=coid, run_id=run_id, seq=seq, symbol=symbol, side=side,
                   type=type, qty=qty, created_ts=ts, **kwargs)

    # ---- state ---------------------------------------------------------------------------
    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def is_open(self) -> bool:
        """Live at the venue (submitted, accepted, partially filled or pending cancel)."""
        return self.status in OPEN

    @property
    def leaves_qty(self) -> float:
        """Quantity still to fill; 0 once terminal (a canceled remainder will not fill)."""
        return 0.0 if self.is_terminal else max(self.qty - self.filled_qty, 0.0)

    @property
    def signed_filled_qty(self) -> float:
        return self.side.sign * self.filled_qty

    def allows(self, kind: OrderEventKind | str) -> bool:
        """Whether an event of ``kind`` is legal now (fills: ignoring their quantity)."""
        return (self.status, OrderEventKind(kind)) in TRANSITIONS

    # ---- transitions -------------------------------------------------------------------
    def apply(self, event: OrderEvent) -> OrderStatus:
        """Apply ``event``; returns the new status. Raises ``IllegalTransition`` or
        ``InvalidOrderEvent`` and changes nothing when the event does not fit."""
        kind = event.kind
        if (self.status, kind) not in TRANSITIONS:
            raise IllegalTransition(self.client_order_id, self.status, kind)
        if event.is_fill:
            return self._apply_fill(event)
        target = TRANSITIONS[(self.status, kind)]
        if kind is OrderEventKind.CANCEL_REQUEST:
            self.pre_cancel_status = self.status
        elif kind is OrderEventKind.CANCEL_REJECT:
            target = self.pre_cancel_status or (OrderStatus.PARTIALLY_FILLED
                                                if self.filled_qty > 0
                                                else OrderStatus.ACCEPTED)
            self.pre_cancel_status = None
        elif (kind is OrderEventKind.ACCEPT and self.status is OrderStatus.PENDING_CANCEL
              and self.pre_cancel_status is OrderStatus.SUBMITTED):
            self.pre_cancel_status = OrderStatus.ACCEPTED
        if kind in (OrderEventKind.DENY, OrderEventKind.REJECT, OrderEventKind.CANCEL,
                    OrderEventKind.CANCEL_REJECT, OrderEventKind.EXPIRE):
            self.status_reason = event.reason
        if event.venue_order_id is not None:
            self.venue_order_id = event.venue_order_id
        assert target is not None
        self.status = target
        if self.is_terminal:
            self.pre_cancel_status = None
        self.updated_ts = event.ts
        return self.status

    def _apply_fill(self, event: OrderEvent) -> OrderStatus:
        where = f"order {self.client_order_id}: fill"
        try:
            qty = _finite(event.qty, f"{where} qty", positive=True)
            price = _finite(event.price, f"{where} price", positive=True)
            fee = _finite(event.fee, f"{where} fee")
        except OrderError as exc:
            raise InvalidOrderEvent(str(exc)) from None
        total = self.filled_qty + qty
        tol = self.qty * QTY_RTOL
        if total > self.qty + tol:
            raise InvalidOrderEvent(f"{where} of {qty} would fill {total} of {self.qty}")
        complete = total >= self.qty - tol
        kind = OrderEventKind.FILL if complete else OrderEventKind.PARTIAL_FILL
        target = TRANSITIONS[(self.status, kind)]
        assert target is not None
        prev_value = (self.avg_fill_price or 0.0) * self.filled_qty
        self.avg_fill_price = (prev_value + price * qty) / total
        self.filled_qty = self.qty if complete else total
        self.fees += fee
        self.fill_count += 1
        if event.venue_order_id is not None:
            self.venue_order_id = event.venue_order_id
        if self.status is OrderStatus.PENDING_CANCEL and not complete:
            self.pre_cancel_status = OrderStatus.PARTIALLY_FILLED
        self.status = target
        if self.is_terminal:
            self.pre_cancel_status = None
        self.updated_ts = event.ts
        return self.status

    # ---- persistence ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able: enums as their values, timestamps as ISO-8601 strings."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Order:
        """The order ``to_dict`` wrote; unknown keys are an error (a schema mismatch)."""
        return cls(**_known_keys(cls, data))


def _enum(enum: type[StrEnum], value: Any, where: str, name: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        valid = ", ".join(m.value for m in enum)
        raise OrderError(f"{where}: {name} must be one of {valid}, got {value!r}") from None


def _jsonable(value: Any) -> Any:
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def _known_keys(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise OrderError(f"{cls.__name__}.from_dict: unknown keys {', '.join(unknown)}")
    return dict(data)

