"""Startup reconciliation: the journal brought to the venue's truth before any trading
(the sequence nautilus_trader documents for its execution engine).

1. every order the journal holds open (initialized, submitted, accepted, partially
   filled, pending cancel) is queried by its client id. The venue never saw it: it is
   closed locally as "never reached the venue" (it cannot fill any more). The venue has
   it: it gets the venue's status, and every venue trade of it the journal lacks is
   stored, its fill id made from the venue's trade id, so asking again adds nothing;
2. the venue's open orders on the run's symbols that the journal does not know are
   adopted when their client id is this run's (a journal lost after the send), and
   recorded as EXTERNAL otherwise (placed by hand or another program): listed, never
   touched;
3. positions: the venue's position must equal the run's starting position plus the
   signed sum of the run's stored fills. If it does not (a manual trade, fills the venue
   no longer lists), the run REFUSES to trade and says by how much, unless the user
   accepts the venue's position (``--adopt-positions``), which is journaled.

Everything it changes is written in one transaction with an audit row holding the report.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from perptrader.core.errors import PerptraderError
from perptrader.trading.crashpoints import crash_point
from perptrader.trading.engine import _Work
from perptrader.trading.ids import is_ours, parse_client_order_id
from perptrader.trading.orders import Order, OrderEvent, OrderEventKind, OrderStatus, OrderType

if TYPE_CHECKING:
    from perptrader.trading.live import LiveEngine


class ReconciliationFailed(PerptraderError):
    """The journal and the venue disagree in a way trading must not paper over."""

    def __init__(self, report: ReconcileReport) -> None:
        self.report = report
        super().__init__("reconciliation failed: " + "; ".join(report.mismatches)
                         + " (trading refused; see `trade status`, or pass "
                           "--adopt-positions to accept the venue's positions)")


@dataclass
class ReconcileReport:
    orders_checked: int = 0
    orders_updated: int = 0
    never_sent: int = 0
    fills_inferred: int = 0
    adopted: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)
    positions: dict[str, dict[str, float]] = field(default_factory=dict)
    mismatches: list[str] = field(default_factory=list)
    adopted_positions: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def summary(self) -> str:
        return (f"reconciled: {self.orders_checked} open order(s) checked, "
                f"{self.orders_updated} updated, {self.never_sent} never sent, "
                f"{self.fills_inferred} fill(s) inferred, {len(self.adopted)} adopted, "
                f"{len(self.external)} external; positions "
                + (", ".join(f"{s} {p['venue']:g}" for s, p in self.positions.items())
                   or "none") + ("" if self.ok else " -- MISMATCH"))


def reconcile(engine: LiveEngine, *, adopt_positions: bool = False) -> ReconcileReport:
    """Run the three steps; raises ``ReconciliationFailed`` when positions disagree."""
    trader, db, run_id = engine.trader, engine.db, engine.run_id
    symbols = engine.spec.symbols
    report = ReconcileReport()
    work = _Work()
    now = pd.Timestamp.now(tz="UTC")
    # 1. the journal's open orders
    for symbol, order in list(engine.open_orders.items()):
        report.orders_checked += 1
        fills_before, status_before = len(work.fills), order.status
        venue = trader.query(order.client_order_id, symbol)
        crash_point("reconcile")
        if venue is None:
            order.apply(OrderEvent(kind=OrderEventKind.CANCEL, ts=now,
                                   reason="never reached the venue"))
            work.order_events.append((order.to_dict(), "cancel", now,
                                      {"reason": "never reached the venue",
                                       "by": "reconciliation"}))
            engine.open_orders.pop(symbol, None)
            report.never_sent += 1
            continue
        engine.apply_venue(order, venue, work, now)
        report.fills_inferred += len(work.fills) - fills_before
        report.orders_updated += int(order.status is not status_before)
    # 2. the venue's open orders the journal does not hold
    known = {o.client_order_id for o in engine.open_orders.values()}
    for venue in trader.open_orders(symbols):
        coid = venue.client_order_id or ""
        if coid in known:
            continue
        if is_ours(coid, run_id) and db.order(coid) is None:
            _adopt(engine, venue, work, now)
            report.adopted.append(coid)
        elif not is_ours(coid, run_id):
            report.external.append(f"{venue.symbol} {venue.side} {venue.qty:g} "
                                   f"{venue.type} id={coid or venue.venue_order_id}")
    engine.commit(work)
    crash_point("reconcile")  # orders brought to the venue's state, positions not checked
    # 3. positions
    venue_positions = trader.positions(symbols)
    baseline = engine.state.get("baseline")
    if baseline is None:  # a new run starts from whatever the account holds
        baseline = {s: venue_positions[s].qty for s in symbols}
        engine.state["baseline"] = baseline
    journal: dict[str, float] = defaultdict(float)
    for row in db.fills(run_id):
        journal[row["symbol"]] += (1 if row["side"] == "buy" else -1) * float(row["qty"])
    for symbol in symbols:
        expected = float(baseline.get(symbol, 0.0)) + journal[symbol]
        actual = venue_positions[symbol].qty
        report.positions[symbol] = {"venue": actual, "journal": expected}
        step = trader.markets[symbol].qty_step or 1e-9
        if abs(actual - expected) > step / 2:
            text = (f"{symbol}: the venue holds {actual:g}, the journal expects "
                    f"{expected:g} (difference {actual - expected:+g})")
            if adopt_positions:
                baseline[symbol] = actual - journal[symbol]
                report.adopted_positions.append(text)
            else:
                report.mismatches.append(text)
    with db.transaction() as tx:
        tx.audit("reconcile", report.as_dict(), run_id=run_id)
        engine.write_checkpoint(tx)
    if not report.ok:
        raise ReconciliationFailed(report)
    return report


def _adopt(engine: LiveEngine, venue: Any, work: _Work, now: pd.Timestamp) -> None:
    """An order with this run's client id that the journal lost: journal it as the venue
    has it, so it is tracked (and can be cancelled) like any other."""
    parsed = parse_client_order_id(venue.client_order_id)
    seq = parsed[1] if parsed else int(engine.state["seq"])
    engine.state["seq"] = max(int(engine.state["seq"]), seq + 1)
    limit = venue.type == "limit" and venue.price
    order = Order(client_order_id=venue.client_order_id, run_id=engine.run_id, seq=seq,
                  symbol=venue.symbol, side=venue.side,
                  type=OrderType.LIMIT if limit else OrderType.MARKET, qty=venue.qty,
                  created_ts=now, price=venue.price if limit else None,
                  reduce_only=venue.reduce_only, reason="adopted")
    work.new_orders.append({"client_order_id": order.client_order_id, "seq": seq,
                            "symbol": venue.symbol, "decided_ts": None})
    work.order_events.append((order.to_dict(), "create", now, {"adopted": True}))
    engine.open_orders[venue.symbol] = order
    engine.apply_venue(order, venue, work, now)
    if order.status is OrderStatus.INITIALIZED:  # pragma: no cover - defensive
        order.apply(OrderEvent(kind=OrderEventKind.SUBMIT, ts=now))
