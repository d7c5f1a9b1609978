"""Live trading: the paper engine's loop with the venue as the accounting core.

The policy, the risk manager, the order state machine and the journal are the paper
engine's (``trading.engine``); what changes is where fills and the account come from and
the order of writing and sending:

1. at each closed bar the account is read from the venue (positions, balance) after the
   user-stream events and a REST catch-up of every open order were applied, so the policy
   and the risk manager see the REAL account;
2. an approved order is written to the journal with its deterministic client id and the
   next ``seq`` in ONE committed transaction BEFORE the request leaves (``before_send``);
3. it is sent once. An answer is applied at once (accepted / filled / refused). No
   answer (time-out, 5xx, dropped connection) means the outcome is unknown: the order is
   queried by its client id, and only an order the venue has never seen is sent again,
   under the SAME id, so the venue's duplicate-id check makes a second order impossible;
4. fills are the venue's trades (fill id = venue + symbol + trade id), so a fill seen on
   the user stream and again over REST, or again after a restart, is stored once.

After a crash the same command resumes the run: ``trading.reconcile`` brings every order
of the journal to the venue's state before the first bar (see its docstring).
"""

from __future__ import annotations

import json
import logging
import math
import signal
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from perptrader.core.errors import PerptraderError
from perptrader.core.timeframes import timeframe_delta
from perptrader.persistence.db import TradingDB
from perptrader.strategies import AccountView, Policy
from perptrader.trading.breaker import TradingHalted
from perptrader.trading.crashpoints import crash_point
from perptrader.trading.engine import CHECKPOINT, BarSummary, Engine, _Work
from perptrader.trading.feeds import BarFeed, ClosedBar
from perptrader.trading.orders import (
    Order,
    OrderEvent,
    OrderEventKind,
    OrderSide,
    OrderStatus,
)
from perptrader.trading.paper import SymbolBook
from perptrader.trading.risk import RiskLimits, RiskManager, RiskState
from perptrader.trading.spec import RunSpec
from perptrader.trading.venue import (
    DUPLICATE_CLIENT_ID,
    OrderRefused,
    OutcomeUnknown,
    VenueOrder,
    VenueTrade,
    VenueTrader,
)

log = logging.getLogger(__name__)
#: how often an order whose outcome is unknown is queried / re-sent before the engine
#: gives up on it for this bar (it stays SUBMITTED; the next bar and a restart ask again)
RESOLVE_ATTEMPTS = 4


@dataclass
class LiveAccount:
    """One symbol's share of the venue account, with ``sim.Account``'s attribute names so
    the engine's journal, risk context and policy view read it unchanged."""

    symbol: str
    leverage: float
    initial_cash: float
    position: float = 0.0
    entry_price: float = 0.0
    mark_price: float = math.nan
    close_price: float = math.nan
    equity: float = 0.0
    wallet_balance: float = 0.0
    unrealized_pnl: float = 0.0
    fees_paid: float = 0.0
    funding_paid: float = 0.0
    liquidations: int = 0
    last_decision: float = math.nan

    @property
    def config(self) -> Any:
        return _Config(self.leverage, self.initial_cash)

    @property
    def position_margin(self) -> float:
        mark = self.mark_price if math.isfinite(self.mark_price) else self.close_price
        return abs(self.position) * (mark or 0.0) / max(self.leverage, 1.0)

    def maintenance_margin(self) -> float:
        return 0.0  # the venue liquidates; its own figure is on the venue's position

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LiveAccount:
        values = {k: (math.nan if v is None else v) for k, v in data.items()}
        return cls(**values)


@dataclass(frozen=True)
class _Config:
    leverage: float
    initial_cash: float


class LiveBroker:
    """The venue account mirrored per symbol; orders go through ``LiveEngine``."""

    venue = "live"

    def __init__(self, trader: VenueTrader, spec: RunSpec,
                 accounts: dict[str, LiveAccount] | None = None,
                 books: dict[str, SymbolBook] | None = None) -> None:
        self.trader = trader
        self.spec = spec
        share = spec.initial_cash / len(spec.symbols)
        self.accounts = accounts or {s: LiveAccount(s, spec.leverage, share)
                                     for s in spec.symbols}
        self.books = books or {s: SymbolBook(peak_equity=share) for s in spec.symbols}
        self.total_equity = 0.0
        self.wallet = 0.0

    def refresh(self, closes: dict[str, float]) -> None:
        """Read positions and balance from the venue; each symbol's equity is its share
        of the account's (one cross wallet at the venue)."""
        positions = self.trader.positions(self.spec.symbols)
        balance = self.trader.balance()
        self.total_equity, self.wallet = balance.equity, balance.wallet
        n = len(self.accounts)
        for symbol, acc in self.accounts.items():
            pos = positions[symbol]
            acc.position, acc.entry_price = pos.qty, pos.entry_price
            acc.unrealized_pnl = pos.unrealized_pnl
            if symbol in closes:
                acc.close_price = closes[symbol]
            acc.mark_price = pos.mark_price if math.isfinite(pos.mark_price) else acc.close_price
            acc.equity = balance.equity / n
            acc.wallet_balance = balance.wallet / n
            book = self.books[symbol]
            book.peak_equity = max(book.peak_equity, acc.equity)

    @property
    def equity(self) -> float:
        return self.total_equity

    def advance_book(self, symbol: str, position_before: float) -> None:
        book = self.books[symbol]
        acc = self.accounts[symbol]
        if position_before == 0.0 and acc.position != 0.0:
            book.entry_bar = book.bars_done
        elif acc.position == 0.0:
            book.entry_bar = -1
        book.bars_done += 1

    def view(self, symbol: str, ts: pd.Timestamp) -> AccountView:
        acc = self.accounts[symbol]
        book = self.books[symbol]
        bar_no = book.bars_done - 1
        return AccountView(
            ts=ts, equity=acc.equity, initial_equity=acc.initial_cash,
            wallet_balance=acc.wallet_balance, position_qty=acc.position,
            entry_price=acc.entry_price, mark_price=acc.mark_price,
            close_price=acc.close_price, unrealized_pnl=acc.unrealized_pnl,
            position_margin=acc.position_margin, maintenance_margin=0.0,
            peak_equity=book.peak_equity,
            bars_in_position=bar_no - book.entry_bar if book.entry_bar >= 0 else -1,
            target=acc.last_decision, leverage=acc.leverage)

    def submit_target(self, symbol: str, target: float) -> bool:
        self.accounts[symbol].last_decision = target
        return True

    def no_order(self, symbol: str) -> None:
        return None

    def snapshot(self) -> dict[str, bytes]:
        return {}  # the mirror lives in the checkpoint's JSON (``live_accounts``)


@dataclass(frozen=True)
class _At:
    """The bar a between-bars order (kill switch) is journaled against."""

    ts: pd.Timestamp


class LiveEngine(Engine):
    """``Engine`` with the venue as the account: see the module docstring."""

    broker: LiveBroker  # type: ignore[assignment]

    def __init__(self, db: TradingDB, spec: RunSpec, policy: Policy, feed: BarFeed,
                 broker: LiveBroker, risk: RiskManager, state: dict[str, Any],
                 trader: VenueTrader, stream: Any = None) -> None:
        super().__init__(db, spec, policy, feed, broker, risk, state)  # type: ignore[arg-type]
        self.trader = trader
        self.stream = stream
        self.stop_requested = threading.Event()
        self._fill_ids: set[str] = set()
        self._bar_orders: list[str] = []
        #: funding is asked over REST when the stream reported some, or cannot say
        self._funding_due = True
        self._stream_reconnects = -1

    # ---- opening -------------------------------------------------------------------------
    @classmethod
    def open_live(cls, db: TradingDB, spec: RunSpec, policy: Policy, feed: BarFeed,
                  trader: VenueTrader, *, stream: Any = None,
                  reconcile: Callable[[LiveEngine], Any] | None = None) -> LiveEngine:
        """A new live run or the stored one resumed; either way reconciled with the venue
        (``reconcile(engine)``) before it may trade."""
        limits = RiskLimits.from_pairs(spec.risk)
        run = db.get_run(spec.run_id)
        if run is None:
            broker = LiveBroker(trader, spec)
            risk = RiskManager(limits, timeframe=spec.timeframe)
            state: dict[str, Any] = {
                "last_ts": None, "seq": 1, "hwm": spec.initial_cash, "day": None,
                "day_start_equity": spec.initial_cash, "control_applied": 0,
                "open_orders": {}, "decided": {}, "baseline": None,
                "books": {s: b.as_dict() for s, b in broker.books.items()},
                "live_accounts": {s: a.to_dict() for s, a in broker.accounts.items()}}
            engine = cls(db, spec, policy, feed, broker, risk, state, trader, stream)
            with db.transaction() as tx:
                tx.create_run(spec.run_id, mode=spec.mode, strategy=policy.name,
                              timeframe=spec.timeframe, symbols=list(spec.symbols),
                              params=policy.params, config=spec.config())
                tx.audit("run.start", {"config": spec.config(), "policy": policy.name,
                                       "policy_version": engine.policy_version,
                                       "venue": trader.exchange_id}, run_id=spec.run_id)
                engine._checkpoint(tx)
        else:
            row = dict(run._mapping) if hasattr(run, "_mapping") else dict(run)
            if row.get("status") == "finished":
                raise PerptraderError(f"run {spec.run_id} already finished")
            diff = spec.differences(row.get("config") or {})
            if diff:
                raise PerptraderError(f"run {spec.run_id} was started with other settings: "
                                      + "; ".join(diff))
            entry = db.get_state(spec.run_id, CHECKPOINT)
            if entry is None or entry.value is None:
                raise PerptraderError(f"run {spec.run_id} has no checkpoint")
            state = dict(entry.value)
            accounts = {s: LiveAccount.from_dict(d)
                        for s, d in state["live_accounts"].items()}
            books = {s: SymbolBook.from_dict(b) for s, b in state["books"].items()}
            broker = LiveBroker(trader, spec, accounts, books)
            risk = RiskManager(limits, RiskState.from_dict(state.get("risk", {})),
                               timeframe=spec.timeframe)
            engine = cls(db, spec, policy, feed, broker, risk, state, trader, stream)
            with db.transaction() as tx:
                tx.update_run_status(spec.run_id, "running")
                tx.audit("run.resume", {"after": state.get("last_ts")}, run_id=spec.run_id)
        engine._fill_ids = {row["fill_id"] for row in db.fills(spec.run_id)}
        if reconcile is not None:
            reconcile(engine)
        return engine

    # ---- the loop ------------------------------------------------------------------------
    def run(self, on_bar: Callable[[BarSummary], None] | None = None,
            max_bars: int | None = None) -> str:
        """Trade until the feed stops (SIGINT/SIGTERM or ``max_bars``); the run stays
        ``running`` (the same command resumes it), unlike a finished replay."""
        after = pd.Timestamp(self.state["last_ts"]) if self.state.get("last_ts") else None
        done = 0
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} \
            if threading.current_thread() is threading.main_thread() else {}
        for sig in previous:
            signal.signal(sig, lambda *_: self.stop_requested.set())
        try:
            for batch in self.feed.batches(after):
                summary = self.process(batch)
                done += 1
                if on_bar is not None:
                    on_bar(summary)
                if (max_bars is not None and done >= max_bars) or self.stop_requested.is_set():
                    break
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.flush()
        return "running"

    def poll(self) -> None:
        """Between bars (the feed calls it while it waits): apply what the user stream
        reported (fills of resting orders), and a ``trade stop`` at once: open orders
        are cancelled at the venue and, with ``--flatten``, positions closed by
        reduce-only market orders, without waiting for the next bar."""
        work = _Work()
        now = pd.Timestamp.now(tz="UTC")
        if self.stream is not None and self.stream.pending():
            self._apply_stream(work, now)
        applied = int(self.state["control_applied"])
        self._apply_control(now, work)
        if int(self.state["control_applied"]) != applied and self.risk.state.flatten_allowed:
            self._flatten_all(now, work)
        if work.fills or work.order_events or work.audit:
            self.commit(work)

    def _flatten_all(self, now: pd.Timestamp, work: _Work) -> None:
        closes = {s: a.close_price for s, a in self.broker.accounts.items()}
        self.broker.refresh(closes)
        last = pd.Timestamp(self.state["last_ts"]) if self.state.get("last_ts") else now
        for symbol, acc in self.broker.accounts.items():
            if acc.position == 0.0 or symbol in self.open_orders:
                continue
            order = self._new_order(symbol, 0.0, _At(last), now, work)
            if order is not None:
                self._send(symbol, 0.0, order, now, work)

    def process(self, batch: list[ClosedBar]) -> BarSummary:
        ts = batch[0].ts
        close_time = ts + timeframe_delta(self.spec.timeframe)
        work = _Work()
        self._bar_orders = []
        self._sync_orders(work, close_time)
        before = {s: a.position for s, a in self.broker.accounts.items()}
        self.broker.refresh({cb.symbol: float(cb.bar.close) for cb in batch})
        for cb in batch:
            self.broker.advance_book(cb.symbol, before[cb.symbol])
        self._collect_funding(ts)
        equity = self.broker.equity
        if self.state.get("baseline") is None:
            self.state["baseline"] = {s: a.position for s, a in self.broker.accounts.items()}
        self._roll_day(close_time, equity)
        self.state["hwm"] = max(float(self.state["hwm"]), equity)
        self._apply_control(close_time, work)
        summary = BarSummary(ts=ts, equity=equity, positions={}, targets={})
        decided = self.state.setdefault("decided", {})
        for cb in batch:
            acc = self.broker.accounts[cb.symbol]
            if decided.get(cb.symbol) == ts.isoformat():
                # this bar's order intent was committed before a crash: reconciliation
                # has resolved it; deciding again would send a second order for one bar
                summary.targets[cb.symbol] = acc.last_decision
            elif getattr(cb, "stale", False):
                summary.targets[cb.symbol] = math.nan  # missed while down: no order
                work.decisions.append((cb.symbol, cb.ts, math.nan, math.nan))
            else:
                summary.targets[cb.symbol] = self._decide(cb, close_time, work)
        if self._bar_orders:
            # the bar's orders changed the account: journal it as the venue has it now
            self.broker.refresh({cb.symbol: float(cb.bar.close) for cb in batch})
        for cb in batch:
            summary.positions[cb.symbol] = self.broker.accounts[cb.symbol].position
        for symbol, acc in self.broker.accounts.items():
            work.positions[symbol] = {"qty": acc.position, "entry_price": acc.entry_price,
                                      "fees": acc.fees_paid, "funding": acc.funding_paid,
                                      "ts": ts}
        self.state["last_ts"] = ts.isoformat()
        self.state["decided"] = {}
        self.state["books"] = {s: b.as_dict() for s, b in self.broker.books.items()}
        work.balance = self._balance(ts)
        fills = len(work.fills)
        self.commit(work)
        summary.fills = fills
        summary.orders = list(self._bar_orders)
        summary.denied = list(work.denied)
        self._audit_breaker()
        return summary

    def _collect_funding(self, ts: pd.Timestamp) -> None:
        """Funding the venue settled since the last bar, into each symbol's running
        total (paid = -received), so positions and `trade status` show it."""
        stream = self.stream
        if stream is not None and stream.connected.is_set() and not self._funding_due \
                and stream.reconnects == self._stream_reconnects:
            return  # the stream is up and reported no funding: nothing to ask (weight 30)
        self._funding_due = False
        self._stream_reconnects = stream.reconnects if stream is not None else 0
        cursors = self.state.setdefault("funding_ms", {})
        start = int(ts.value // 1_000_000)
        for symbol, acc in self.broker.accounts.items():
            since = int(cursors.get(symbol, start))
            for t, amount in self.trader.funding(symbol, since):
                acc.funding_paid -= amount
                since = max(since, t)
            cursors[symbol] = since

    # ---- orders --------------------------------------------------------------------------
    def _size(self, symbol: str, target: float) -> tuple[OrderSide, float, bool] | None:
        acc = self.broker.accounts[symbol]
        market = self.trader.markets[symbol]
        price = acc.close_price
        if not price > 0:
            return None
        wanted = target * max(acc.equity, 0.0) / price
        delta = wanted - acc.position
        qty = abs(delta)
        closing = min(qty, abs(acc.position)) if delta * acc.position < 0 else 0.0
        if qty > closing:
            # the opening part is capped by the margin it needs, fee included, as the
            # accounting core caps it (and as the venue would refuse it otherwise)
            left = abs(acc.position) - closing if delta * acc.position < 0 \
                else abs(acc.position)
            lev = max(acc.leverage, 1.0)
            free = max(acc.equity, 0.0) - left * price / lev
            afford = max(free, 0.0) / (price * (1.0 / lev + self.spec.taker_fee))
            qty = closing + min(qty - closing, afford)
        qty = market.round_qty(qty)
        if qty <= 0 or qty < market.min_qty:
            return None
        reducing = abs(wanted) < abs(acc.position) and wanted * acc.position >= 0
        if not reducing and qty * price < market.min_notional:
            return None  # the venue refuses an entry this small; nothing to do
        if reducing:
            qty = min(qty, abs(acc.position))
        side = OrderSide.BUY if delta > 0 else OrderSide.SELL
        return side, qty, reducing

    def _send(self, symbol: str, target: float, order: Order, now: pd.Timestamp,
              work: _Work) -> None:
        """Persist the intent, then send, then resolve; see the module docstring."""
        self.open_orders[symbol] = order
        decided = work.new_orders[-1]["decided_ts"] if work.new_orders else None
        if decided is not None:
            self.state.setdefault("decided", {})[symbol] = pd.Timestamp(decided).isoformat()
        self.commit(work)  # the intent (INITIALIZED, seq advanced) is durable now
        crash_point("before_send")
        self.risk.record_order(now)
        self._bar_orders.append(order.client_order_id)
        try:
            answer = self._place(order)
        except TradingHalted as exc:
            # nothing left: the account keeps its last decision, so the next bar tries again
            order.apply(OrderEvent(kind=OrderEventKind.CANCEL, ts=now, reason=f"not sent: {exc}"))
            work.order_events.append((order.to_dict(), "cancel", now, {"reason": str(exc)}))
            work.denied.append(f"{symbol} target {target:g}: {exc}")
            del self.open_orders[symbol]
            return
        except OrderRefused as exc:
            order.apply(OrderEvent(kind=OrderEventKind.SUBMIT, ts=now))
            work.order_events.append((order.to_dict(), "submit", now, {}))
            order.apply(OrderEvent(kind=OrderEventKind.REJECT, ts=now, reason=str(exc)))
            work.order_events.append((order.to_dict(), "reject", now,
                                      {"reason": str(exc), "code": exc.code}))
            work.denied.append(f"{symbol} target {target:g}: refused: {exc}")
            del self.open_orders[symbol]
            return
        crash_point("after_send")
        self.broker.submit_target(symbol, target)  # it left: this is the account's target
        if answer is None:  # unknown: it stays SUBMITTED and is asked about again
            order.apply(OrderEvent(kind=OrderEventKind.SUBMIT, ts=now))
            work.order_events.append((order.to_dict(), "submit", now,
                                      {"outcome": "unknown"}))
            return
        self.apply_venue(order, answer, work, now)

    def _place(self, order: Order) -> VenueOrder | None:
        """Send once; on an unknown outcome ask by client id, and send again (same id)
        only when the venue has never seen it. None: still unknown after every try.
        TradingHalted only while nothing was sent: once an attempt may have arrived, a
        halt leaves the outcome unknown (None), to be asked about at the next bar."""
        sent = False
        for _ in range(RESOLVE_ATTEMPTS):
            try:
                return self.trader.place(order)
            except TradingHalted:
                if not sent:
                    raise
                return None
            except OrderRefused as exc:
                if exc.code != DUPLICATE_CLIENT_ID:
                    raise
                # our earlier attempt did arrive: the venue has it under this id
            except OutcomeUnknown as exc:
                log.warning("%s; asking the venue", exc)
            sent = True
            try:
                found = self.trader.query(order.client_order_id, order.symbol)
            except TradingHalted:
                return None
            except PerptraderError as exc:
                log.warning("query of %s failed: %s", order.client_order_id, exc)
                continue
            if found is not None:
                return found
        return None

    def apply_venue(self, order: Order, venue: VenueOrder, work: _Work,
                     now: pd.Timestamp) -> None:
        """Bring ``order`` to the venue's state: acknowledgement, every trade (from the
        venue's trade list, ids deduplicated), then the final status."""
        if order.status is OrderStatus.INITIALIZED:
            order.apply(OrderEvent(kind=OrderEventKind.SUBMIT, ts=now))
            work.order_events.append((order.to_dict(), "submit", now, {}))
        if venue.status == "rejected":
            order.apply(OrderEvent(kind=OrderEventKind.REJECT, ts=now, reason="venue"))
            work.order_events.append((order.to_dict(), "reject", now, {}))
        else:
            if order.status is OrderStatus.SUBMITTED:
                order.apply(OrderEvent(kind=OrderEventKind.ACCEPT, ts=now,
                                       venue_order_id=venue.venue_order_id))
                work.order_events.append((order.to_dict(), "accept", now,
                                          {"venue_order_id": venue.venue_order_id}))
            if venue.filled > order.filled_qty * (1 + 1e-9):
                trades = self.trader.trades(order.symbol, venue_order_id=venue.venue_order_id)
                for trade in sorted(trades, key=lambda t: (t.ts, t.trade_id)):
                    self._apply_trade(order, trade, work)
            if not order.is_terminal and venue.status in ("canceled", "expired"):
                kind = OrderEventKind.CANCEL if venue.status == "canceled" \
                    else OrderEventKind.EXPIRE
                order.apply(OrderEvent(kind=kind, ts=now, reason=f"venue: {venue.status}"))
                work.order_events.append((order.to_dict(), kind.value, now, {}))
        crash_point("after_fill")
        if order.is_terminal:
            self.open_orders.pop(order.symbol, None)

    def _apply_trade(self, order: Order, trade: VenueTrade, work: _Work) -> bool:
        fill_id = f"{self.trader.exchange_id}:{trade.symbol}:{trade.trade_id}"
        if fill_id in self._fill_ids or order.is_terminal:
            return False
        ts = pd.Timestamp(trade.ts, unit="ms", tz="UTC")
        order.apply(OrderEvent(kind=OrderEventKind.FILL, ts=ts, qty=trade.qty,
                               price=trade.price, fee=trade.fee, liquidity=trade.liquidity,
                               trade_id=trade.trade_id))
        self._fill_ids.add(fill_id)
        acc = self.broker.accounts[order.symbol]
        acc.fees_paid += trade.fee
        work.order_events.append((order.to_dict(), "fill", ts,
                                  {"fill_id": fill_id, "qty": trade.qty,
                                   "price": trade.price}))
        work.fills.append({"fill_id": fill_id, "client_order_id": order.client_order_id,
                           "run_id": self.run_id, "symbol": order.symbol, "ts": ts,
                           "side": order.side.value, "qty": trade.qty, "price": trade.price,
                           "fee": trade.fee, "liquidity": trade.liquidity,
                           "reason": order.reason or "signal"})
        return True

    def _sync_orders(self, work: _Work, now: pd.Timestamp) -> None:
        """Every open order brought to the venue's state: user-stream events first, then
        (stream or not) a REST look at whatever is still open."""
        self._apply_stream(work, now)
        for symbol, order in list(self.open_orders.items()):
            venue = self.trader.query(order.client_order_id, symbol)
            if venue is None:
                if order.status in (OrderStatus.INITIALIZED, OrderStatus.SUBMITTED):
                    # committed but never arrived: it will not fill; the policy decides
                    # again on this bar with the real position
                    order.apply(OrderEvent(kind=OrderEventKind.CANCEL, ts=now,
                                           reason="never reached the venue"))
                    work.order_events.append((order.to_dict(), "cancel", now,
                                              {"reason": "never reached the venue"}))
                    self.open_orders.pop(symbol, None)
                continue
            self.apply_venue(order, venue, work, now)

    def _apply_stream(self, work: _Work, now: pd.Timestamp) -> None:
        if self.stream is None:
            return
        by_id = {o.client_order_id: o for o in self.open_orders.values()}
        for event in self.stream.drain():
            if event.kind == "account" and event.reason == "FUNDING_FEE":
                self._funding_due = True
            if event.kind != "trade":
                continue
            order = by_id.get(event.client_order_id or "")
            if order is None or event.trade is None:
                continue
            if order.status is OrderStatus.SUBMITTED:
                order.apply(OrderEvent(kind=OrderEventKind.ACCEPT, ts=now,
                                       venue_order_id=event.trade.venue_order_id))
                work.order_events.append((order.to_dict(), "accept", now, {}))
            self._apply_trade(order, event.trade, work)
            if order.is_terminal:
                self.open_orders.pop(order.symbol, None)

    # ---- control -------------------------------------------------------------------------
    def _cancel(self, symbol: str, now: pd.Timestamp, reason: str, work: _Work) -> None:
        order = self.open_orders.get(symbol)
        if order is None:
            return
        venue = self.trader.cancel(order.client_order_id, symbol)
        if venue is None:
            order.apply(OrderEvent(kind=OrderEventKind.CANCEL, ts=now, reason=reason))
            work.order_events.append((order.to_dict(), "cancel", now, {"reason": reason}))
            self.open_orders.pop(symbol, None)
            return
        self.apply_venue(order, venue, work, now)

    # ---- journal -------------------------------------------------------------------------
    def commit(self, work: _Work) -> None:
        with self.db.transaction() as tx:
            work.write(tx, self)
            self._checkpoint(tx)
        work.clear()

    def write_checkpoint(self, tx: Any) -> None:
        """The live state into ``tx`` (reconciliation writes it with its report)."""
        self._checkpoint(tx)

    def _checkpoint(self, tx: Any) -> None:
        self.state["live_accounts"] = {s: a.to_dict() for s, a in self.broker.accounts.items()}
        self.state["risk"] = self.risk.state.to_dict()
        self.state["open_orders"] = {s: o.to_dict() for s, o in self.open_orders.items()}
        tx.put_state(self.run_id, CHECKPOINT, value=json.loads(json.dumps(self.state)))

    def _balance(self, ts: pd.Timestamp) -> dict[str, Any]:
        out = super()._balance(ts)
        out["equity"] = self.broker.total_equity
        out["wallet_balance"] = self.broker.wallet
        return out

    def _audit_breaker(self) -> None:
        changes = self.trader.guard.transitions
        if not changes:
            return
        with self.db.transaction() as tx:
            for old, new in changes:
                tx.audit("breaker", {"from": old, "to": new}, run_id=self.run_id)
        changes.clear()
