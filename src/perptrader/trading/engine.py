"""The trading engine: closed bar -> account -> policy -> risk -> order, journaled.

Per bar (one batch of closed bars, one per symbol):

1. the broker advances every account over its bar: the order queued at the last close
   fills at this bar's open, stops/funding/liquidation run; fills update their orders;
2. control commands written by other processes (``trade stop`` / ``trade resume``) are
   applied: the kill switch cancels the queued order, flattens if asked, blocks new ones;
3. the policy decides from the bars so far and a view of the REAL account; the decision
   is journaled; a target that differs from the last one becomes an order, checked by the
   risk manager first (denied orders are journaled with their reason and not sent);
4. ONE database transaction stores the bar's fills, order changes, positions, equity
   point, decisions, audit rows and the checkpoint (account state, risk state, order
   counter). Only after the commit does the next bar (and so any fill of these orders)
   happen: an order exists in the journal before it can fill, and a crash anywhere
   redoes at most the uncommitted bar, deterministically, from the last checkpoint.

Restart = the same run id: the checkpoint is loaded, the policy's caches rebuild from the
bars, and the feed goes on after the last committed bar. The same orders, fills and
equity come out as from an uninterrupted run; a client order id is never reused
(``seq`` is in the checkpoint, and the journal refuses a duplicate id).
"""

from __future__ import annotations

import gc
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from perptrader.core.errors import PerptraderError
from perptrader.core.timeframes import timeframe_delta
from perptrader.persistence.db import TradingDB
from perptrader.persistence.tx import Tx
from perptrader.sim import StepReport
from perptrader.strategies import Policy
from perptrader.trading import ids
from perptrader.trading.control import CONTROL
from perptrader.trading.feeds import BarFeed, ClosedBar
from perptrader.trading.orders import (
    Order,
    OrderEvent,
    OrderEventKind,
    OrderSide,
    OrderStatus,
    OrderType,
)
from perptrader.trading.paper import PaperBroker
from perptrader.trading.risk import OrderIntent, RiskContext, RiskLimits, RiskManager, RiskState
from perptrader.trading.spec import RunSpec

#: a grouped commit never holds bars longer than this
MAX_UNWRITTEN_SECONDS = 0.5
#: run_state keys (the control command's is trading.control's)
CHECKPOINT = "checkpoint"
ACCOUNT_PREFIX = "account:"


@dataclass
class BarSummary:
    """What one bar did (for the live view and tests)."""

    ts: pd.Timestamp
    equity: float
    positions: dict[str, float]
    targets: dict[str, float]
    orders: list[str] = field(default_factory=list)
    fills: int = 0
    denied: list[str] = field(default_factory=list)


class Engine:
    """Drives one run. Use ``Engine.open(db, spec, policy, feed)`` (new or resumed)."""

    def __init__(self, db: TradingDB, spec: RunSpec, policy: Policy, feed: BarFeed,
                 broker: PaperBroker, risk: RiskManager, state: dict[str, Any], *,
                 commit_every: int = 1) -> None:
        self.db = db
        self.spec = spec
        self.policy = policy
        self.feed = feed
        self.broker = broker
        self.risk = risk
        self.run_id = spec.run_id
        self.state = state
        self.open_orders: dict[str, Order] = {
            s: Order.from_dict(d) for s, d in state.get("open_orders", {}).items()}
        self.policy_version, self.feature_hash = _policy_identity(policy)
        #: bars per transaction: 1 for paced and live runs; a fast replay may group bars
        #: (a crash then redoes at most those bars, deterministically)
        self.commit_every = max(1, int(commit_every))
        self._unwritten: list[_Work] = []
        self._last_flush = time.monotonic()
        self.written_positions: dict[str, tuple[float, ...]] = {}

    # ---- opening -------------------------------------------------------------------------
    @classmethod
    def open(cls, db: TradingDB, spec: RunSpec, policy: Policy, feed: BarFeed, *,
             commit_every: int = 1) -> Engine:
        """A new run, or the stored run of the same spec resumed from its checkpoint.
        Refuses a finished run and a stored run whose settings differ."""
        limits = RiskLimits.from_pairs(spec.risk)
        margin = getattr(policy, "margin_leverage", None)
        configs = {s: spec.sim_config(margin) for s in spec.symbols}
        run = db.get_run(spec.run_id)
        if run is None:
            broker = PaperBroker(configs, spec.timeframe)
            risk = RiskManager(limits, timeframe=spec.timeframe)
            state = {"last_ts": None, "seq": 1, "hwm": spec.initial_cash,
                     "day": None, "day_start_equity": spec.initial_cash,
                     "control_applied": 0, "open_orders": {},
                     "books": {s: b.as_dict() for s, b in broker.books.items()}}
            engine = cls(db, spec, policy, feed, broker, risk, state,
                         commit_every=commit_every)
            with db.transaction() as tx:
                tx.create_run(spec.run_id, mode=spec.mode, strategy=policy.name,
                              timeframe=spec.timeframe, symbols=list(spec.symbols),
                              params=policy.params, config=spec.config())
                tx.audit("run.start", {"config": spec.config(), "policy": policy.name,
                                       "policy_version": engine.policy_version},
                         run_id=spec.run_id)
                engine._checkpoint(tx)
            return engine
        row = _as_dict(run)
        if row.get("status") == "finished":
            raise PerptraderError(f"run {spec.run_id} already finished; see `trade status "
                                  f"--run {spec.run_id}` (change a setting for a new run)")
        stored = row.get("config") or {}
        diff = spec.differences(stored)
        if diff:
            raise PerptraderError(f"run {spec.run_id} was started with other settings: "
                                  + "; ".join(diff))
        entry = db.get_state(spec.run_id, CHECKPOINT)
        if entry is None or entry.value is None:
            raise PerptraderError(f"run {spec.run_id} has no checkpoint: the trading "
                                  f"database is incomplete")
        state = dict(entry.value)
        blobs = {}
        for s in spec.symbols:
            acc = db.get_state(spec.run_id, ACCOUNT_PREFIX + s)
            if acc is None or acc.blob is None:
                raise PerptraderError(f"run {spec.run_id}: no account checkpoint of {s}")
            blobs[s] = acc.blob
        broker = PaperBroker.restore(configs, spec.timeframe, blobs, state["books"])
        risk = RiskManager(limits, RiskState.from_dict(state.get("risk", {})),
                           timeframe=spec.timeframe)
        engine = cls(db, spec, policy, feed, broker, risk, state, commit_every=commit_every)
        with db.transaction() as tx:
            tx.update_run_status(spec.run_id, "running")
            tx.audit("run.resume", {"after": state.get("last_ts")}, run_id=spec.run_id)
        return engine

    # ---- the loop ------------------------------------------------------------------------
    def run(self, on_bar: Callable[[BarSummary], None] | None = None,
            max_bars: int | None = None) -> str:
        """Process bars until the feed ends (status ``finished``) or ``max_bars`` were
        done (status stays ``running``). Returns the run's status."""
        after = pd.Timestamp(self.state["last_ts"]) if self.state.get("last_ts") else None
        try:
            for done, batch in enumerate(self.feed.batches(after), start=1):
                summary = self.process(batch)
                if done == 1:
                    # the first bar loaded models and built the policy's live state: keep
                    # those long-lived objects out of the collector's full passes, which
                    # would otherwise stall a bar for a few hundred milliseconds
                    gc.freeze()
                if on_bar is not None:
                    on_bar(summary)
                if max_bars is not None and done >= max_bars:
                    return "running"
        finally:
            self.flush()
        with self.db.transaction() as tx:
            tx.update_run_status(self.run_id, "finished")
            tx.audit("run.finish", {"equity": self.broker.equity,
                                    "last_ts": self.state.get("last_ts")}, run_id=self.run_id)
        return "finished"

    def process(self, batch: list[ClosedBar]) -> BarSummary:
        ts = batch[0].ts
        close_time = ts + timeframe_delta(self.spec.timeframe)
        work = _Work()
        for cb in batch:
            report = self.broker.advance(cb.symbol, cb.bar)
            self._on_fills(cb.symbol, report, work)
        equity = self.broker.equity
        self._roll_day(close_time, equity)
        self.state["hwm"] = max(float(self.state["hwm"]), equity)
        self._apply_control(close_time, work)
        summary = BarSummary(ts=ts, equity=equity, positions={}, targets={})
        for cb in batch:
            target = self._decide(cb, close_time, work)
            summary.targets[cb.symbol] = target
            summary.positions[cb.symbol] = self.broker.accounts[cb.symbol].position
        self.state["last_ts"] = ts.isoformat()
        self.state["books"] = {s: b.as_dict() for s, b in self.broker.books.items()}
        work.balance = self._balance(ts)
        self._unwritten.append(work)
        if (self.commit_every <= 1 or len(self._unwritten) >= self.commit_every
                or time.monotonic() - self._last_flush > MAX_UNWRITTEN_SECONDS):
            self.flush()
        summary.orders = [o["client_order_id"] for o in work.new_orders]
        summary.fills = len(work.fills)
        summary.denied = work.denied
        return summary

    # ---- step 1: fills -------------------------------------------------------------------
    def _on_fills(self, symbol: str, report: StepReport, work: _Work) -> None:
        order = self.open_orders.get(symbol)
        signal_fills = [f for f in report.fills if f["reason"] == "signal"]
        if order is not None and order.fill_count == 0 and signal_fills:
            # a target order is sized at the fill (equity at the open), as in a backtest:
            # its quantity becomes what the account traded for it
            order.qty = sum(f["qty"] for f in signal_fills)
        for n, fill in enumerate(report.fills):
            side = OrderSide.BUY if fill["side"] > 0 else OrderSide.SELL
            if fill["reason"] == "signal" and order is not None:
                coid = order.client_order_id
                fid = ids.fill_id(coid, order.fill_count + 1)
                order.apply(OrderEvent.fill(fill["ts"], fill["qty"], fill["price"],
                                            fill["fee"], liquidity=fill["liquidity"],
                                            trade_id=fid))
                work.order_events.append((order.to_dict(), "fill", fill["ts"],
                                          {"fill_id": fid, "qty": fill["qty"],
                                           "price": fill["price"], "fee": fill["fee"]}))
            else:
                # stops and liquidations are the venue's orders, not ours
                coid = None
                fid = f"{ids.run_tag(self.run_id)}-{symbol}-{fill['reason']}-{fill['bar']}-{n}"
                if fill["reason"] != "signal":
                    self.risk.record_exit(symbol, fill["ts"], _exit_reason(fill["reason"]))
            work.fills.append({"fill_id": fid, "client_order_id": coid, "run_id": self.run_id,
                               "symbol": symbol, "ts": fill["ts"], "side": side.value,
                               "qty": fill["qty"], "price": fill["price"], "fee": fill["fee"],
                               "liquidity": fill["liquidity"], "reason": fill["reason"]})
        for trade in report.trades:
            if trade["exit_reason"] == "signal":
                self.risk.record_exit(symbol, trade["exit_ts"], "signal")
        if order is not None:
            if order.status == OrderStatus.ACCEPTED:
                # nothing to trade at the open (already at target, no margin): the order
                # expires, as a venue expires an IOC order it cannot fill
                order.apply(OrderEvent(kind=OrderEventKind.EXPIRE, ts=report.ts,
                                       reason="nothing filled at the open"))
                work.order_events.append((order.to_dict(), "expire", report.ts, {}))
            if order.is_terminal:
                del self.open_orders[symbol]
        acc = self.broker.accounts[symbol]
        work.positions[symbol] = {"qty": acc.position, "entry_price": acc.entry_price,
                                  "fees": acc.fees_paid, "funding": acc.funding_paid,
                                  "liquidations": acc.liquidations, "ts": report.ts}
        if report.liquidated:
            work.audit.append(("liquidation", {"symbol": symbol, "ts": report.ts.isoformat(),
                                               "equity": report.equity}))

    # ---- step 2: control -----------------------------------------------------------------
    def _apply_control(self, now: pd.Timestamp, work: _Work) -> None:
        entry = self.db.get_state(self.run_id, CONTROL)
        if entry is None or not entry.value:
            return
        command = dict(entry.value)
        if int(command.get("id", 0)) <= int(self.state["control_applied"]):
            return
        self.state["control_applied"] = int(command["id"])
        if command.get("command") == "stop":
            flatten = bool(command.get("flatten"))
            self.risk.kill(str(command.get("reason") or "kill switch"), flatten=flatten, ts=now)
            for symbol in list(self.open_orders):
                self._cancel(symbol, now, "kill switch", work)
            work.audit.append(("kill", {"flatten": flatten, "reason": command.get("reason"),
                                        "ts": now.isoformat()}))
        elif command.get("command") == "resume":
            self.risk.resume(ts=now)
            work.audit.append(("resume", {"ts": now.isoformat()}))

    def _cancel(self, symbol: str, now: pd.Timestamp, reason: str, work: _Work) -> None:
        order = self.open_orders.pop(symbol, None)
        if order is None:
            return
        self.broker.cancel(symbol)
        order.apply(OrderEvent(kind=OrderEventKind.CANCEL_REQUEST, ts=now, reason=reason))
        order.apply(OrderEvent(kind=OrderEventKind.CANCEL, ts=now, reason=reason))
        work.order_events.append((order.to_dict(), "cancel", now, {"reason": reason}))

    # ---- step 3: decide ------------------------------------------------------------------
    def _decide(self, cb: ClosedBar, now: pd.Timestamp, work: _Work) -> float:
        symbol = cb.symbol
        acc = self.broker.accounts[symbol]
        view = self.broker.view(symbol, cb.ts)
        raw = float(self.policy.decide(cb.bars, view))
        target = raw * self.spec.leverage if not math.isnan(raw) else math.nan
        if self.spec.close_at_end and self.spec.replay is not None and _remaining(
                self.feed, cb.ts) <= self.spec.fill_delay:
            target = 0.0  # the backtest's flat_at_end: every position closed by the end
        if self.risk.state.flatten_allowed and acc.position != 0.0:
            target = 0.0  # the kill switch was pulled with --flatten
        work.decisions.append((symbol, cb.ts, raw, target))
        last = acc.last_decision
        if math.isnan(target) or (not math.isnan(last) and target == last):
            self.broker.no_order(symbol)
            return target
        if target == 0.0 and acc.position == 0.0 and symbol not in self.open_orders:
            # flat and told to be flat: nothing to send, but the account remembers the
            # decision (as a backtest's target series does)
            self.broker.submit_target(symbol, target)
            return target
        order = self._new_order(symbol, target, cb, now, work)
        if order is None:
            self.broker.no_order(symbol)
            return target
        self._send(symbol, target, order, now, work)
        return target

    def _send(self, symbol: str, target: float, order: Order, now: pd.Timestamp,
              work: _Work) -> None:
        """Hand the approved order to the broker (paper: queued for the next open; the
        live engine overrides this with persist -> send -> resolve)."""
        sent = self.broker.submit_target(symbol, target)
        if not sent:  # cannot happen: the account was checked above
            raise RuntimeError(f"{symbol}: the paper account refused target {target}")
        order.apply(OrderEvent(kind=OrderEventKind.SUBMIT, ts=now))
        order.apply(OrderEvent(kind=OrderEventKind.ACCEPT, ts=now,
                               venue_order_id=f"paper-{order.client_order_id}"))
        self.risk.record_order(now)
        self.open_orders[symbol] = order
        work.order_events.append((order.to_dict(), "accept", now, {}))

    def _size(self, symbol: str, target: float) -> tuple[OrderSide, float, bool] | None:
        """(side, qty, reduce-only) of the market order that moves ``symbol`` to
        ``target`` exposure at the last close, or None when there is nothing to send."""
        acc = self.broker.accounts[symbol]
        price = acc.close_price
        wanted = target * max(acc.equity, 0.0) / price if price > 0 else 0.0
        delta = wanted - acc.position
        side = OrderSide.BUY if delta > 0 else OrderSide.SELL
        qty = abs(delta) if abs(delta) > 0 else abs(acc.position) or 1e-12
        reducing = abs(wanted) < abs(acc.position) and wanted * acc.position >= 0
        return side, qty, reducing

    def _new_order(self, symbol: str, target: float, cb: ClosedBar, now: pd.Timestamp,
                   work: _Work) -> Order | None:
        """The order for ``target`` (journaled), or None when the risk manager denies it
        (journaled as DENIED with the reason)."""
        acc = self.broker.accounts[symbol]
        price = acc.close_price
        sized = self._size(symbol, target)
        if sized is None:
            return None
        side, qty, reducing = sized
        seq = int(self.state["seq"])
        self.state["seq"] = seq + 1
        order = Order.create(run_id=self.run_id, seq=seq, symbol=symbol, side=side,
                             type=OrderType.MARKET, qty=qty, ts=now, reduce_only=reducing,
                             reason=f"target {target:g}", target_exposure=target)
        work.new_orders.append({"client_order_id": order.client_order_id, "seq": seq,
                                "symbol": symbol, "decided_ts": cb.ts})
        intent = OrderIntent(symbol=symbol, side=side, qty=qty, reference_price=price, ts=now,
                             reduce_only=reducing, target_exposure=target)
        ctx = RiskContext(
            now=now, equity=self.broker.equity, high_water_mark=float(self.state["hwm"]),
            day_start_equity=float(self.state["day_start_equity"]),
            positions={s: a.position for s, a in self.broker.accounts.items()},
            marks={s: a.mark_price for s, a in self.broker.accounts.items()},
            leverage=acc.config.leverage)
        decision = self.risk.check(intent, ctx)
        work.order_events.append((order.to_dict(), "create", now, {}))
        if not decision.approved:
            order.apply(OrderEvent(kind=OrderEventKind.DENY, ts=now, reason=decision.reason))
            work.order_events.append((order.to_dict(), "deny", now,
                                      {"code": str(decision.code), "reason": decision.reason}))
            work.denied.append(f"{symbol} target {target:g}: {decision.reason}")
            return None
        return order

    # ---- step 4: journal -----------------------------------------------------------------
    def flush(self) -> None:
        """Write every processed bar not yet written, and the checkpoint, in ONE
        transaction (nothing of them is visible, or acted on, before it commits)."""
        if not self._unwritten:
            return
        with self.db.transaction() as tx:
            for work in self._unwritten:
                work.write(tx, self)
            self._checkpoint(tx)
        self._unwritten.clear()
        self._last_flush = time.monotonic()

    def _balance(self, ts: pd.Timestamp) -> dict[str, Any]:
        accounts = self.broker.accounts.values()
        return {"ts": ts, "equity": self.broker.equity,
                "wallet_balance": sum(a.wallet_balance for a in accounts),
                "unrealized_pnl": sum(a.unrealized_pnl for a in accounts),
                "margin": sum(a.position_margin for a in accounts),
                "fees_paid": sum(a.fees_paid for a in accounts),
                "funding_paid": sum(a.funding_paid for a in accounts),
                "position": {s: {"qty": a.position, "entry_price": a.entry_price,
                                 "equity": a.equity, "mark": a.mark_price,
                                 "margin": a.position_margin, "upnl": a.unrealized_pnl,
                                 "maintenance_margin": a.maintenance_margin()}
                             for s, a in self.broker.accounts.items()}}

    def _checkpoint(self, tx: Tx) -> None:
        self.state["risk"] = self.risk.state.to_dict()
        self.state["open_orders"] = {s: o.to_dict() for s, o in self.open_orders.items()}
        tx.put_state(self.run_id, CHECKPOINT, value=json.loads(json.dumps(self.state)))
        for symbol, blob in self.broker.snapshot().items():
            tx.put_state(self.run_id, ACCOUNT_PREFIX + symbol, blob=blob)

    def _roll_day(self, now: pd.Timestamp, equity: float) -> None:
        day = now.strftime("%Y-%m-%d")
        if self.state.get("day") != day:
            self.state["day"] = day
            self.state["day_start_equity"] = equity


@dataclass
class _Work:
    """Everything one bar writes, collected before the one transaction."""

    fills: list[dict[str, Any]] = field(default_factory=list)
    new_orders: list[dict[str, Any]] = field(default_factory=list)
    #: (order dict after the event, event kind, ts, detail)
    order_events: list[tuple[dict[str, Any], str, Any, dict[str, Any]]] = field(
        default_factory=list)
    decisions: list[tuple[str, pd.Timestamp, float, float]] = field(default_factory=list)
    positions: dict[str, dict[str, float]] = field(default_factory=dict)
    audit: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    denied: list[str] = field(default_factory=list)
    balance: dict[str, Any] = field(default_factory=dict)

    def clear(self) -> None:
        """Forget what was written (the live engine commits an order's intent mid-bar and
        goes on collecting the rest of the bar in the same object); ``denied`` is only
        shown, never written, and stays for the bar's summary."""
        for name in ("fills", "new_orders", "order_events", "decisions", "audit"):
            getattr(self, name).clear()
        self.positions.clear()

    def write(self, tx: Tx, engine: Engine) -> None:
        run_id = engine.run_id
        inserted: set[str] = set()
        decided = {o["client_order_id"]: o["decided_ts"] for o in self.new_orders}
        status: dict[str, str] = {}
        for order, kind, ts, detail in self.order_events:
            coid = order["client_order_id"]
            row = _order_row(order)
            if kind == "create":
                tx.insert_order({**row, "status": OrderStatus.INITIALIZED.value,
                                 "filled_qty": 0.0, "decided_ts": decided.get(coid)})
                inserted.add(coid)
                status[coid] = OrderStatus.INITIALIZED.value
                tx.audit("order.create", {k: row[k] for k in (
                    "client_order_id", "symbol", "side", "qty", "target_exposure")},
                    run_id=run_id, ts=ts)
                continue
            tx.transition_order(coid, row["status"], kind=kind, ts=ts, detail=detail,
                                **{k: v for k, v in row.items()
                                   if k not in ("client_order_id", "run_id", "seq",
                                                "status", "created_at")})
            tx.audit(f"order.{kind}", {"client_order_id": coid, "status": row["status"],
                                       **detail}, run_id=run_id, ts=ts)
        for fill in self.fills:
            if tx.insert_fill(fill):
                tx.audit("fill", {k: fill[k] for k in ("fill_id", "client_order_id",
                                                       "symbol", "side", "qty", "price",
                                                       "fee", "reason")},
                         run_id=run_id, ts=fill["ts"])
        for symbol, pos in self.positions.items():
            key = (pos["qty"], pos["entry_price"], pos["fees"], pos["funding"])
            if engine.written_positions.get(symbol) == key:
                continue
            engine.written_positions[symbol] = key
            tx.upsert_position(run_id, symbol, qty=pos["qty"], entry_price=pos["entry_price"],
                               fees=pos["fees"], funding=pos["funding"],
                               updated_ts=pos["ts"])
        for symbol, ts, raw, target in self.decisions:
            tx.insert_decision(run_id, symbol, ts, policy=engine.policy.name,
                               policy_version=engine.policy_version,
                               feature_hash=engine.feature_hash,
                               target=target,
                               detail={"raw": None if math.isnan(raw) else raw})
        for kind, payload in self.audit:
            tx.audit(kind, payload, run_id=run_id)
        if self.balance:
            balance = dict(self.balance)
            tx.insert_balance(run_id, balance.pop("ts"), **balance)


def _order_row(order: dict[str, Any]) -> dict[str, Any]:
    keys = ("client_order_id", "run_id", "seq", "symbol", "side", "type", "qty", "price",
            "stop_price", "reduce_only", "post_only", "time_in_force", "status",
            "filled_qty", "avg_fill_price", "fees", "venue_order_id", "reason",
            "target_exposure")
    row = {k: order.get(k) for k in keys}
    row["data"] = {"status_reason": order.get("status_reason"),
                   "fill_count": order.get("fill_count")}
    return row


def _exit_reason(reason: str) -> str:
    return {"stop_loss": "stop", "trailing_stop": "stop"}.get(reason, reason)


def _remaining(feed: BarFeed, ts: pd.Timestamp) -> int:
    """Bars after ``ts`` in a replay (a large number for a live feed)."""
    remaining = getattr(feed, "remaining", None)
    return remaining(ts) if callable(remaining) else 1 << 30


def _policy_identity(policy: Policy) -> tuple[str | None, str | None]:
    """(version, feature hash) of a registered model or agent policy; (None, None) for a
    rule. Journaled with every decision, so a decision can be traced to its model."""
    manifest: Any = None
    if callable(getattr(policy, "manifest", None)):
        manifest = policy.manifest()  # type: ignore[attr-defined]
    elif callable(getattr(policy, "loaded", None)):
        first = policy.loaded()[0]  # type: ignore[attr-defined]
        manifest = first if isinstance(first, dict) else None
    if not isinstance(manifest, dict):
        return None, None
    version = manifest.get("version") or manifest.get("created")
    return (None if version is None else str(version)), manifest.get("feature_hash")


def _as_dict(row: Any) -> dict[str, Any]:
    if isinstance(row, dict):
        return row
    mapping = getattr(row, "_mapping", None)
    return dict(mapping) if mapping is not None else dict(row)
