"""The order state machine under random event sequences (hypothesis stateful testing)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from perptrader.trading.orders import (
    OPEN,
    QTY_RTOL,
    TERMINAL,
    TRANSITIONS,
    Order,
    OrderError,
    OrderEvent,
    OrderEventKind,
    OrderStatus,
)

S, K = OrderStatus, OrderEventKind
T0 = pd.Timestamp("2024-03-01", tz="UTC")
_FILLS = (K.FILL, K.PARTIAL_FILL)


class OrderMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.order = Order.create(run_id="prop", seq=0, symbol="ETHUSDT", side="sell",
                                  type="limit", qty=3.0, price=2000.0, ts=T0)
        self.step = 0
        self.seen_accept = False
        self.terminal: OrderStatus | None = None
        self.fill_prices: list[float] = []

    def _ts(self) -> pd.Timestamp:
        self.step += 1
        return T0 + pd.Timedelta(seconds=self.step)

    def _expect_illegal(self, event: OrderEvent) -> None:
        before = self.order.to_dict()
        with pytest.raises(OrderError):
            self.order.apply(event)
        assert self.order.to_dict() == before

    @rule(kind=st.sampled_from([k for k in K if k not in _FILLS]))
    def other_event(self, kind: OrderEventKind) -> None:
        order = self.order
        event = OrderEvent(kind=kind, ts=self._ts(), reason=f"r{self.step}")
        old = order.status
        if (old, kind) not in TRANSITIONS:
            self._expect_illegal(event)
            return
        new = order.apply(event)
        expected = TRANSITIONS[(old, kind)]
        if expected is None:  # a rejected cancel: back to the open status it had
            expected = (S.PARTIALLY_FILLED if order.filled_qty > 0
                        else S.ACCEPTED if self.seen_accept else S.SUBMITTED)
        assert new is expected
        self.seen_accept |= kind is K.ACCEPT

    @rule(kind=st.sampled_from(_FILLS),
          qty=st.one_of(st.just("leaves"), st.floats(0.01, 4.0)),
          price=st.floats(1000.0, 3000.0))
    def fill(self, kind: OrderEventKind, qty: float | str, price: float) -> None:
        order = self.order
        amount = order.qty - order.filled_qty if qty == "leaves" else qty
        event = OrderEvent(kind=kind, ts=self._ts(), qty=amount, price=price, fee=0.01)
        old = order.status
        legal = (old, K.FILL) in TRANSITIONS
        fits = amount > 0 and order.filled_qty + amount <= order.qty * (1 + QTY_RTOL)
        if not (legal and fits):
            self._expect_illegal(event)
            return
        complete = order.filled_qty + amount >= order.qty * (1 - QTY_RTOL)
        resolved = K.FILL if complete else K.PARTIAL_FILL
        new = order.apply(event)
        assert new is TRANSITIONS[(old, resolved)]
        assert (new is S.FILLED) == complete
        self.fill_prices.append(price)

    @invariant()
    def quantities_and_prices_stay_sane(self) -> None:
        order = self.order
        assert 0.0 <= order.filled_qty <= order.qty * (1 + QTY_RTOL)
        assert order.leaves_qty >= 0.0
        assert order.status in {s for s in S}
        assert order.fill_count == len(self.fill_prices)
        if self.fill_prices:
            assert min(self.fill_prices) - 1e-9 <= order.avg_fill_price
            assert order.avg_fill_price <= max(self.fill_prices) + 1e-9
        else:
            assert order.avg_fill_price is None
        assert order.is_open == (order.status in OPEN)
        assert order.is_terminal == (order.status in TERMINAL)
        if order.status is S.FILLED:
            assert order.filled_qty == order.qty

    @invariant()
    def terminal_never_changes(self) -> None:
        if self.terminal is not None:
            assert self.order.status is self.terminal
        elif self.order.is_terminal:
            self.terminal = self.order.status

    @invariant()
    def survives_storage(self) -> None:
        data = json.loads(json.dumps(self.order.to_dict()))
        assert Order.from_dict(data) == self.order


TestOrderMachine = OrderMachine.TestCase
TestOrderMachine.settings = settings(max_examples=250, stateful_step_count=30, deadline=None,
                                     suppress_health_check=[HealthCheck.too_slow])
