"""Risk limits and the kill switch in live trading against the fake exchange: whatever
targets a policy asks for, no position the venue ever held breaks the limits; a
``trade stop --flatten`` leaves the venue flat with no open order within one ``poll``."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perptrader.trading.control import send_control
from trading.live_helpers import (
    SYMBOL,
    TargetList,
    assert_journal_matches_venue,
    fake_venue,
    limit_buy,
    live,
    reset,
    spec_for,
)

MAX_LEVERAGE = 2.0
MAX_NOTIONAL = 15_000.0
RISK = (f"max_leverage={MAX_LEVERAGE:g}", f"max_position_notional={MAX_NOTIONAL:g}",
        "max_orders_per_minute=5")
TOLERANCE = 0.01  # fills at the next bar's open, sized at the last close


@pytest.fixture(scope="module")
def fake():
    with fake_venue() as f:
        yield f


targets = st.lists(st.sampled_from([-3.0, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.4,
                                    2.5, 3.0, math.nan]), min_size=2, max_size=3)


@settings(max_examples=4, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(script=targets)
def test_no_venue_position_ever_breaks_the_limits(fake, script) -> None:
    reset(fake)
    spec = spec_for("target_list", {"targets": "risk"}, risk=RISK)
    with tempfile.TemporaryDirectory() as d, live(fake, Path(d), policy=TargetList(script),
                                                  spec=spec) as lv:
        assert lv.run(len(script)) == "running"
        truth = assert_journal_matches_venue(lv)
        equity = max(10_000.0, float(truth["balance"]))
        limit = min(MAX_NOTIONAL, MAX_LEVERAGE * equity) * (1 + TOLERANCE)
        position = 0.0
        for trade in sorted(truth["trades"], key=lambda t: (t["time"], t["id"])):
            position += (1 if trade["side"] == "BUY" else -1) * trade["qty"]
            assert abs(position * trade["price"]) <= limit, (script, truth["trades"])
        for order in lv.db.orders(lv.run_id):  # what was refused never reached the venue
            if order["status"] == "denied":
                assert order["client_order_id"] not in {
                    o["clientOrderId"] for o in truth["orders"]}


def test_kill_switch_flattens_within_one_poll(fake, tmp_path) -> None:
    reset(fake)
    spec = spec_for("target_list", {"targets": "kill"})
    with live(fake, tmp_path, policy=TargetList([0.8], default=math.nan), spec=spec) as lv:
        assert lv.run(1) == "running"
        assert fake.account()["positions"][SYMBOL]["positionAmt"] > 0
        resting = limit_buy(lv)  # an open order too: the stop cancels it
        assert any(o["status"] == "NEW" for o in fake.account()["orders"])
        send_control(lv.db, lv.run_id, "stop", flatten=True, reason="test")
        lv.engine.poll()
        truth = fake.account()
        assert truth["positions"][SYMBOL]["positionAmt"] == 0
        assert [o for o in truth["orders"] if o["status"] in ("NEW", "PARTIALLY_FILLED")] == []
        assert lv.db.order(resting.client_order_id)["status"] == "canceled"
        assert not lv.engine.open_orders
        flatten = lv.db.orders(lv.run_id)[-1]
        assert flatten["reduce_only"] and flatten["status"] == "filled"
        assert_journal_matches_venue(lv, account=False, exclude=(
            resting.client_order_id, flatten["client_order_id"]))
        # halted: the next bar sends nothing, even though the policy's target is long
        orders = len(truth["orders"])
        assert lv.run(1) == "running"
        assert len(fake.account()["orders"]) == orders
