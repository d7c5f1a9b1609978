"""Live trading against the fake exchange with one fault at a time: every test asserts
that the engine stays up (``run`` returns), that the venue holds no order twice (by
client id, and by decision bar), and that the journal equals the venue afterwards
(orders' status and filled quantity, every venue trade stored once, the position)."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import pandas as pd
import pybreaker
import pytest

from perptrader.trading.breaker import TradingHalted, VenueGuard
from perptrader.trading.engine import _Work
from perptrader.trading.orders import Order, OrderSide, OrderStatus, OrderType
from trading.live_helpers import (
    SYMBOL,
    TargetList,
    assert_journal_matches_venue,
    audit,
    fake_venue,
    limit_buy,
    live,
    order_events,
    reset,
    spec_for,
    wait_for,
)

#: enter, reverse, flatten, enter...: an order at every bar
FLIP = [0.5, -0.5, 0.0, 0.5, -0.5, 0.0, 0.5, 0.0]


@pytest.fixture(scope="module")
def fake():
    with fake_venue() as f:
        yield f


@pytest.fixture
def venue(fake):
    reset(fake)
    yield fake
    fake.admin("DELETE", "/_fake/faults")


def flip_spec() -> Any:
    return spec_for("target_list", {"targets": "flip"})


def first_order(lv) -> Any:
    return lv.db.orders(lv.run_id)[0]


def venue_orders(fake, client_order_id: str) -> list[dict[str, Any]]:
    return [o for o in fake.account()["orders"] if o["clientOrderId"] == client_order_id]


# ---- the baseline ------------------------------------------------------------------------
def test_clean_run_journal_equals_venue(venue, tmp_path) -> None:
    with live(venue, tmp_path, policy=TargetList(FLIP), spec=flip_spec()) as lv:
        assert lv.run(6) == "running"
        truth = assert_journal_matches_venue(lv)
        assert len(truth["orders"]) == 6  # one per bar: every target differs
        assert all(o["status"] == "FILLED" for o in truth["orders"])


# ---- 1. time-out before the order takes effect -------------------------------------------
def test_timeout_before_the_order_takes_effect(venue, tmp_path) -> None:
    venue.set_faults(rest=[{"kind": "timeout_before", "endpoint": "order", "delay_s": 0.7}])
    with live(venue, tmp_path, policy=TargetList(FLIP), spec=flip_spec(),
              timeout_ms=400) as lv:
        assert lv.run(3) == "running"
        assert venue.venue.faults.rest[0]._fired == 1
        first = first_order(lv)
        # the venue never processed the first request; the query found nothing and the
        # same client id went out again: one order at the venue, filled
        [vo] = venue_orders(venue, first["client_order_id"])
        assert vo["status"] == "FILLED" and first["status"] == "filled"
        assert_journal_matches_venue(lv)


# ---- 2. time-out after the order took effect ---------------------------------------------
def test_timeout_after_the_order_took_effect(venue, tmp_path) -> None:
    venue.set_faults(rest=[{"kind": "timeout_after", "endpoint": "order", "delay_s": 0.7}])
    with live(venue, tmp_path, policy=TargetList(FLIP), spec=flip_spec(),
              timeout_ms=400) as lv:
        assert lv.run(3) == "running"
        first = first_order(lv)
        [vo] = venue_orders(venue, first["client_order_id"])  # exactly one, not re-sent
        assert vo["status"] == "FILLED"
        assert first["status"] == "filled"  # learnt from the query by client id
        assert float(first["filled_qty"]) == pytest.approx(vo["executedQty"])
        assert_journal_matches_venue(lv)


# ---- 3. 5xx on the order -----------------------------------------------------------------
def test_503_on_the_order(venue, tmp_path) -> None:
    venue.set_faults(rest=[{"kind": "status", "endpoint": "order", "status": 503}])
    with live(venue, tmp_path, policy=TargetList(FLIP), spec=flip_spec()) as lv:
        assert lv.run(3) == "running"
        assert venue.venue.faults.rest[0]._fired == 1
        first = first_order(lv)
        [vo] = venue_orders(venue, first["client_order_id"])
        assert vo["status"] == "FILLED" and first["status"] == "filled"
        assert_journal_matches_venue(lv)


# ---- 4. 429 with Retry-After -------------------------------------------------------------
def test_429_waits_retry_after_and_sends_once(venue, tmp_path) -> None:
    venue.set_faults(rest=[{"kind": "rate_limit", "endpoint": "order", "retry_after_s": 1}])
    with live(venue, tmp_path, policy=TargetList(FLIP), spec=flip_spec()) as lv:
        assert lv.run(3) == "running"
        assert venue.venue.faults.rest[0]._fired == 1
        assert lv.trader.writes.stats.rate_limited == 1
        assert lv.trader.writes.stats.waited_s >= 1.0
        weight = venue.admin("GET", "/_fake/weight")
        assert weight["banned_s"] == 0.0  # it waited: never a 418
        assert lv.trader.guard.banned_until == 0.0
        first = first_order(lv)
        [vo] = venue_orders(venue, first["client_order_id"])
        assert vo["status"] == "FILLED" and first["status"] == "filled"
        assert_journal_matches_venue(lv)


class _Timed(list):
    """``fake.venue.requests`` with the time of every request."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def append(self, item: Any) -> None:
        self.times.append(time.monotonic())
        super().append(item)


# ---- 5. 418 ban --------------------------------------------------------------------------
def test_418_ban_halts_orders_then_resumes(venue, tmp_path) -> None:
    venue.venue.requests = requests = _Timed()
    venue.set_faults(rest=[{"kind": "ban", "endpoint": "order", "retry_after_s": 1}])
    with live(venue, tmp_path, policy=TargetList(FLIP), spec=flip_spec()) as lv:
        assert lv.run(1) == "running"
        # the first order met the 418: nothing was processed, so it is journaled as not
        # sent (TradingHalted) and the account keeps its last decision
        first = first_order(lv)
        assert first["status"] == "canceled"
        [cancel] = [e for e in order_events(lv, "cancel")
                    if e["client_order_id"] == first["client_order_id"]]
        assert "418" in str(cancel["detail"])
        assert "not sent" in str(lv.db.order(first["client_order_id"])["data"])
        assert venue_orders(venue, first["client_order_id"]) == []
        banned_at = requests.times[requests.index("order")]
        assert lv.trader.guard.banned_until > 0
        # while banned, an order is refused locally: no request reaches the venue
        if time.time() < lv.trader.guard.banned_until:
            before = requests.count("order")
            probe = Order.create(run_id=lv.run_id, seq=999, symbol=SYMBOL,
                                 side=OrderSide.BUY, type=OrderType.MARKET, qty=0.01,
                                 ts=pd.Timestamp.now(tz="UTC"))
            with pytest.raises(TradingHalted):
                lv.trader.place(probe)
            assert requests.count("order") == before
        orders_in_ban = [t for e, t in zip(requests, requests.times, strict=True)
                         if e == "order" and banned_at < t < banned_at + 1.0]
        assert orders_in_ban == []
        # after Retry-After, trading resumes: the next bars' orders are filled
        assert lv.run(3) == "running"
        filled = [o for o in lv.db.orders(lv.run_id) if o["status"] == "filled"]
        assert len(filled) >= 2
        assert venue.admin("GET", "/_fake/weight")["banned_s"] == 0.0
        assert_journal_matches_venue(lv)


# ---- 6. the circuit breaker --------------------------------------------------------------
class _Recorder(pybreaker.CircuitBreakerListener):
    def __init__(self, requests: list[str]) -> None:
        self.requests = requests
        self.changes: list[tuple[str, int]] = []

    def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
        self.changes.append((new_state.name, len(self.requests)))


def test_breaker_opens_on_a_5xx_burst_and_recovers(venue, tmp_path) -> None:
    # every order call 503s: POST (1), the query after it (3 read attempts: 2), the
    # resend (3: the breaker opens); the query that would follow is held back locally
    venue.set_faults(rest=[{"kind": "status", "endpoint": "order", "status": 503,
                            "times": 5}])
    guard = VenueGuard(fail_max=3, reset_timeout_s=0.3)
    with live(venue, tmp_path, policy=TargetList(FLIP), spec=flip_spec(), guard=guard) as lv:
        requests = venue.venue.requests
        recorder = _Recorder(requests)
        guard.breaker.add_listener(recorder)
        assert lv.run(3) == "running"
        states = [s for s, _ in recorder.changes]
        assert states[:3] == ["open", "half-open", "closed"]
        opened, half = recorder.changes[0][1], recorder.changes[1][1]
        assert "order" not in requests[opened:half]  # nothing sent while open
        rows = [json.loads(r["payload"]) for r in audit(lv, "breaker")]
        assert [(r["from"], r["to"]) for r in rows][:3] == [
            ("closed", "open"), ("open", "half-open"), ("half-open", "closed")]
        assert guard.state == "closed"
        # the query after the trip waited for the half-open state (it was the trial
        # call), found that nothing had arrived, and the same id went out once
        first = first_order(lv)
        [vo] = venue_orders(venue, first["client_order_id"])
        assert vo["status"] == "FILLED" and first["status"] == "filled"
        assert len([o for o in lv.db.orders(lv.run_id) if o["status"] == "filled"]) >= 2
        assert_journal_matches_venue(lv)


# ---- 7-9. the user data stream -----------------------------------------------------------
def test_user_stream_drop_reconnects(venue, tmp_path) -> None:
    venue.set_faults(streams=[{"kind": "close", "stream": "user", "close_code": 1006,
                               "skip": 1}])
    with live(venue, tmp_path, policy=TargetList(FLIP), spec=flip_spec(), stream=True) as lv:
        assert lv.run(3) == "running"
        wait_for(lambda: lv.stream.reconnects > 0, what="a reconnect")
        wait_for(lv.stream.connected.is_set, what="the stream to come back")
        seen = lv.stream.events_seen
        assert lv.run(2) == "running"
        wait_for(lambda: lv.stream.events_seen > seen, what="events after the reconnect")
        assert_journal_matches_venue(lv)


def test_listen_key_expiry_gets_a_new_key(venue, tmp_path) -> None:
    with live(venue, tmp_path, policy=TargetList(FLIP), spec=flip_spec(), stream=True) as lv:
        assert lv.run(2) == "running"
        old = set(venue.venue.userstreams.keys)
        assert venue.expire_listen_keys()["expired"] == len(old)
        wait_for(lambda: lv.stream.expired > 0, what="listenKeyExpired")
        wait_for(lambda: set(venue.venue.userstreams.keys) - old, what="a new listen key")
        wait_for(lv.stream.connected.is_set, what="the stream to come back")
        seen = lv.stream.events_seen
        assert lv.run(2) == "running"
        wait_for(lambda: lv.stream.events_seen > seen, what="events on the new key")
        assert_journal_matches_venue(lv)


def _step_until(lv, done: Any, *, bars: int = 60) -> None:
    for _ in range(bars):
        if done():
            return
        lv.step()
        time.sleep(0.05)  # the matcher runs on the fake's timer
    raise AssertionError("the limit order never filled")


def test_duplicated_and_reordered_user_events_fill_once(venue, tmp_path) -> None:
    venue.admin("POST", "/_fake/account/config", {"partial_fill_parts": 3})
    venue.set_faults(streams=[{"kind": "duplicate", "stream": "user", "times": None},
                              {"kind": "reorder", "stream": "user", "times": None,
                               "probability": 0.5}])
    keep = TargetList([], default=math.nan)  # never trades by itself
    with live(venue, tmp_path, policy=keep, spec=flip_spec(), stream=True) as lv:
        assert lv.run(1) == "running"
        order = limit_buy(lv)

        def filled() -> bool:
            lv.engine.poll()  # applies the stream's fills as they come
            vo = venue_orders(venue, order.client_order_id)[0]
            return vo["status"] == "FILLED" and order.filled_qty >= vo["executedQty"] - 1e-9

        _step_until(lv, filled)
        # every part arrived twice (some out of order): stored once each
        assert order.fill_count == 3 and order.status is OrderStatus.FILLED
        assert len(lv.db.fills(lv.run_id, order.client_order_id)) == 3
        assert lv.stream.events_seen > 6
        assert lv.run(1) == "running"  # the bar after: REST agrees, nothing added
        assert len(lv.db.fills(lv.run_id, order.client_order_id)) == 3
        assert_journal_matches_venue(lv)


# ---- 10. a refused order -----------------------------------------------------------------
def test_rejected_order_is_journaled_with_the_venue_code(venue, tmp_path) -> None:
    # the venue account at 1x: a 2x target needs twice the margin there is
    policy = TargetList([1.0, 0.25, 0.0])
    spec = spec_for("target_list", {"targets": "reject"}, leverage=2.0)
    with live(venue, tmp_path, policy=policy, spec=spec) as lv:
        lv.trader.configure(SYMBOL, leverage=1, margin_mode="cross")
        assert lv.run(3) == "running"
        first, second, third = lv.db.orders(lv.run_id)
        assert first["status"] == "rejected"
        [reject] = [e for e in order_events(lv, "reject")]
        assert reject["client_order_id"] == first["client_order_id"]
        assert "-2019" in str(reject["detail"])
        assert venue_orders(venue, first["client_order_id"]) == []
        assert [second["status"], third["status"]] == ["filled", "filled"]  # it went on
        assert any("refused" in d for s in lv.summaries for d in s.denied)
        assert_journal_matches_venue(lv)


# ---- 11. a partial fill, then a cancel ---------------------------------------------------
def test_partial_fill_then_cancel(venue, tmp_path) -> None:
    venue.admin("POST", "/_fake/account/config", {"partial_fill_parts": 3})
    keep = TargetList([], default=math.nan)
    with live(venue, tmp_path, policy=keep, spec=flip_spec()) as lv:
        assert lv.run(1) == "running"
        order = limit_buy(lv)
        coid = order.client_order_id
        _step_until(lv, lambda: venue_orders(venue, coid)[0]["executedQty"] > 0)
        work = _Work()
        lv.engine._cancel(SYMBOL, pd.Timestamp.now(tz="UTC"), "test", work)
        lv.engine.commit(work)
        [vo] = venue_orders(venue, coid)
        assert vo["status"] == "CANCELED" and 0 < vo["executedQty"] < 0.03
        row = lv.db.order(coid)
        assert row["status"] == "canceled"
        assert float(row["filled_qty"]) == pytest.approx(vo["executedQty"])
        assert SYMBOL not in lv.engine.open_orders
        assert_journal_matches_venue(lv, account=False)
        assert lv.run(1) == "running"
        assert_journal_matches_venue(lv)
