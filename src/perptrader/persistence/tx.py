"""The unit of work: everything written inside one ``TradingDB.transaction()``.

The engine's protocol is "write the intent, commit, then act": an order row (and its
audit entry) is committed before the order is sent, so that after a crash the journal
knows about every order that may be live at the venue. Within one transaction all
writes commit together or none does; an exception leaving the ``with`` block rolls
everything back, the audit rows included. A database error caught inside the block
still fails it (PostgreSQL aborts the transaction at the first failed statement, and
SQLite must not commit more than PostgreSQL would); only ``DuplicateError`` and the
other refusals of the inserts that run in a SAVEPOINT (runs, orders, balances,
decisions) leave the transaction usable.

Values are plain: strings, numbers (numpy scalars welcome), bools, JSON-able documents,
and times as epoch milliseconds or aware datetimes. NaN in a number column is stored as
NULL (SQLite cannot store NaN; PostgreSQL could, and the two backends must agree).
"""

from __future__ import annotations

import contextlib
import enum
import math
import operator
from collections.abc import Iterator, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from perptrader.persistence.audit import chain_hash
from perptrader.persistence.codec import TimeLike, canonical, now_ms, to_ms
from perptrader.persistence.errors import DuplicateError, TradingStateError, db_reason
from perptrader.persistence.models import AuditHead
from perptrader.persistence.readers import (
    Reader,
    audit_t,
    balances_t,
    decisions_t,
    events_t,
    fills_t,
    orders_t,
    positions_t,
    runs_t,
    state_t,
)

RUN_MODES = frozenset({"paper", "live"})
LIQUIDITY = frozenset({"maker", "taker"})
#: order columns the caller must give to ``insert_order``
ORDER_REQUIRED = ("client_order_id", "run_id", "seq", "symbol", "side", "type", "qty",
                  "status")
ORDER_DEFAULTS: dict[str, Any] = {"reduce_only": False, "post_only": False,
                                  "filled_qty": 0.0, "fees": 0.0}
#: order columns ``update_order`` may not change (identity and creation)
ORDER_FIXED = frozenset({"client_order_id", "run_id", "seq", "created_at"})
FILL_REQUIRED = ("fill_id", "run_id", "symbol", "ts", "side", "qty", "price")
_head_t = AuditHead.__table__
_UNIQUE_SQLSTATES = ("23505",)
_UNIQUE_SQLITE = ("SQLITE_CONSTRAINT_PRIMARYKEY", "SQLITE_CONSTRAINT_UNIQUE")


def coerce(table: sa.Table, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` as the driver wants them for ``table``'s columns: Python floats/ints/
    bools (not numpy's), epoch ms for times, NaN as None, enum members as their values.
    Unknown names raise: a typo must not silently drop a field."""
    unknown = set(values) - set(table.c.keys())
    if unknown:
        raise ValueError(f"{table.name} has no column(s) {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {}
    for name, value in values.items():
        col = table.c[name]
        out[name] = value if value is None else _coerce_one(col, value)
    return out


def _coerce_one(col: sa.Column[Any], value: Any) -> Any:
    type_ = col.type
    if isinstance(type_, sa.Float):
        number = float(value)
        return None if math.isnan(number) else number
    if isinstance(type_, sa.Boolean):
        if isinstance(value, str):  # bool("false") is True: refuse rather than guess
            raise TypeError(f"{col.table.name}.{col.name} takes a bool, not {value!r}")
        return bool(value)
    if isinstance(type_, sa.Integer):  # BigInteger too: seq, times
        # operator.index: ints and numpy ints, but not 2.7 silently cut to 2
        return to_ms(value) if col.name in _TIME_COLUMNS else operator.index(value)
    if isinstance(type_, sa.Text):
        if isinstance(value, enum.Enum):
            value = value.value
        if not isinstance(value, str):
            raise TypeError(f"{col.table.name}.{col.name} takes text, not {value!r}")
        return str(value)
    if isinstance(type_, sa.LargeBinary):
        return bytes(value)
    return value  # JSON documents: the engine's serializer handles numpy and dates


_TIME_COLUMNS = frozenset({"ts", "decided_ts", "created_at", "updated_at", "updated_ts"})


def _is_unique_violation(exc: sa.exc.IntegrityError) -> bool:
    orig = exc.orig
    return (getattr(orig, "sqlstate", None) in _UNIQUE_SQLSTATES
            or getattr(orig, "sqlite_errorname", None) in _UNIQUE_SQLITE)


class Tx(Reader):
    """One open write transaction (see the module docstring). Not thread-safe; valid only
    inside its ``with`` block."""

    def __init__(self, conn: sa.Connection, where: str) -> None:
        self._conn = conn
        self._where = where
        self._open = True
        #: a statement failed outside a savepoint: PostgreSQL has aborted the transaction,
        #: so the block may not commit on any backend (see TradingDB.transaction)
        self.failed = False

    # ------------------------------------------------------------------ plumbing
    @contextlib.contextmanager
    def _reading(self) -> Iterator[sa.Connection]:
        self._check_open()
        with self._translated(), self._mark_failure():
            yield self._conn

    def _check_open(self) -> None:
        if not self._open:
            raise TradingStateError("the transaction is over: use the Tx only inside its "
                                    "`with db.transaction()` block")

    def _close(self) -> None:
        self._open = False

    @contextlib.contextmanager
    def _mark_failure(self, duplicate: str | None = None) -> Iterator[None]:
        try:
            yield
        except sa.exc.SQLAlchemyError:
            if duplicate is None:  # with a savepoint, the transaction is still sound
                self.failed = True
            raise

    @contextlib.contextmanager
    def _translated(self, duplicate: str | None = None) -> Iterator[None]:
        try:
            yield
        except sa.exc.IntegrityError as exc:
            if duplicate is not None and _is_unique_violation(exc):
                raise DuplicateError(f"{self._where}: {duplicate} already recorded") from exc
            raise TradingStateError(f"{self._where}: refused by the database: "
                                    f"{db_reason(exc)}") from exc
        except sa.exc.SQLAlchemyError as exc:
            raise TradingStateError(f"{self._where}: {db_reason(exc)}") from exc

    def _exec(self, stmt: sa.Executable, duplicate: str | None = None) -> sa.CursorResult[Any]:
        """Execute; a statement that may hit a duplicate runs in a SAVEPOINT, so that a
        caller catching ``DuplicateError`` can go on with the transaction (PostgreSQL
        otherwise refuses every later statement of a transaction that failed one)."""
        self._check_open()
        with self._translated(duplicate), self._mark_failure(duplicate):
            if duplicate is None:
                return self._conn.execute(stmt)
            with self._conn.begin_nested():
                return self._conn.execute(stmt)

    def _insert(self, table: sa.Table) -> Any:
        dialect = sqlite if self._conn.dialect.name == "sqlite" else postgresql
        return dialect.insert(table)

    # ------------------------------------------------------------------ runs
    def create_run(self, run_id: str, *, mode: str, strategy: str, timeframe: str,
                   symbols: list[str] | tuple[str, ...], params: Mapping[str, Any] | None = None,
                   config: Mapping[str, Any] | None = None, status: str = "running",
                   created_at: TimeLike | None = None) -> None:
        """Record a new run (``DuplicateError`` when ``run_id`` exists). ``config`` holds
        everything needed to resume it: leverage, costs, risk limits, replay window..."""
        if mode not in RUN_MODES:
            raise ValueError(f"mode must be one of {sorted(RUN_MODES)}, not {mode!r}")
        now = to_ms(created_at) if created_at is not None else now_ms()
        values = coerce(runs_t, {
            "run_id": run_id, "mode": mode, "strategy": strategy, "timeframe": timeframe,
            "params": dict(params or {}), "symbols": list(symbols), "config": dict(config or {}),
            "status": status, "created_at": now, "updated_at": now})
        self._exec(sa.insert(runs_t).values(values), duplicate=f"run {run_id!r}")

    def update_run_status(self, run_id: str, status: str) -> None:
        result = self._exec(sa.update(runs_t).where(runs_t.c.run_id == run_id)
                            .values(status=status, updated_at=now_ms()))
        if result.rowcount == 0:
            raise TradingStateError(f"{self._where}: no run {run_id!r}")

    # ------------------------------------------------------------------ orders
    def insert_order(self, order: Mapping[str, Any]) -> None:
        """Record an order intent. Required: ``ORDER_REQUIRED``; the other ``orders``
        columns are optional (``data``: a JSON document for anything else).
        ``DuplicateError`` when the client_order_id (or the run's seq) exists."""
        missing = [k for k in ORDER_REQUIRED if order.get(k) is None]
        if missing:
            raise ValueError(f"order lacks {', '.join(missing)}")
        now = now_ms()
        values = coerce(orders_t, {**ORDER_DEFAULTS, "created_at": now, "updated_at": now,
                                   **order})
        self._exec(sa.insert(orders_t).values(values),
                   duplicate=f"order {order['client_order_id']!r} (or seq {order['seq']} "
                             f"of run {order['run_id']!r})")

    def update_order(self, client_order_id: str, **fields: Any) -> None:
        """Change an order's columns (status, filled_qty, venue_order_id, ...)."""
        fixed = ORDER_FIXED & set(fields)
        if fixed:
            raise ValueError(f"an order's {', '.join(sorted(fixed))} cannot change")
        values = coerce(orders_t, {"updated_at": now_ms(), **fields})
        result = self._exec(sa.update(orders_t)
                            .where(orders_t.c.client_order_id == client_order_id)
                            .values(values))
        if result.rowcount == 0:
            raise TradingStateError(f"{self._where}: no order {client_order_id!r}")

    def add_order_event(self, client_order_id: str, *, kind: str, ts: TimeLike,
                        from_status: str | None = None, to_status: str | None = None,
                        detail: Mapping[str, Any] | None = None) -> int:
        """Record an event of an order (its run is the order's); returns the event id."""
        run_id = self._exec(sa.select(orders_t.c.run_id)
                            .where(orders_t.c.client_order_id == client_order_id)).scalar()
        if run_id is None:
            raise TradingStateError(f"{self._where}: no order {client_order_id!r}")
        values = coerce(events_t, {
            "client_order_id": client_order_id, "run_id": run_id, "ts": ts, "kind": kind,
            "from_status": from_status, "to_status": to_status,
            "detail": dict(detail) if detail is not None else None})
        result = self._exec(sa.insert(events_t).values(values))
        return int(result.inserted_primary_key[0])

    def transition_order(self, client_order_id: str, to_status: str, *, kind: str,
                         ts: TimeLike, detail: Mapping[str, Any] | None = None,
                         **fields: Any) -> int:
        """Move an order to ``to_status`` (plus other ``fields``) and record the event
        with the status it had; returns the event id."""
        current = self._exec(sa.select(orders_t.c.status)
                             .where(orders_t.c.client_order_id == client_order_id)
                             .with_for_update()).scalar()
        if current is None:
            raise TradingStateError(f"{self._where}: no order {client_order_id!r}")
        self.update_order(client_order_id, status=to_status, **fields)
        return self.add_order_event(client_order_id, kind=kind, ts=ts, from_status=current,
                                    to_status=to_status, detail=detail)

    # ------------------------------------------------------------------ fills, positions
    def insert_fill(self, fill: Mapping[str, Any]) -> bool:
        """Record a fill once: True when stored, False when its ``fill_id`` was already
        there (a fill reported again is not an error; the first record stands)."""
        missing = [k for k in FILL_REQUIRED if fill.get(k) is None]
        if missing:
            raise ValueError(f"fill lacks {', '.join(missing)}")
        liquidity = fill.get("liquidity")
        if liquidity is not None and liquidity not in LIQUIDITY:
            raise ValueError(f"liquidity must be maker or taker, not {liquidity!r}")
        values = coerce(fills_t, {"fee": 0.0, **fill})
        stmt = self._insert(fills_t).values(values).on_conflict_do_nothing(
            index_elements=[fills_t.c.fill_id])
        return self._exec(stmt.execution_options(preserve_rowcount=True)).rowcount == 1

    def upsert_position(self, run_id: str, symbol: str, *, qty: float,
                        entry_price: float | None, updated_ts: TimeLike,
                        realized_pnl: float = 0.0, fees: float = 0.0,
                        funding: float = 0.0) -> None:
        """Set the run's position in ``symbol`` (totals, not increments)."""
        values = coerce(positions_t, {
            "run_id": run_id, "symbol": symbol, "qty": qty, "entry_price": entry_price,
            "realized_pnl": realized_pnl, "fees": fees, "funding": funding,
            "updated_ts": updated_ts})
        stmt = self._insert(positions_t).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[positions_t.c.run_id, positions_t.c.symbol],
            set_={k: stmt.excluded[k] for k in values if k not in ("run_id", "symbol")})
        self._exec(stmt)

    # ------------------------------------------------------------------ balances, decisions
    def insert_balance(self, run_id: str, ts: TimeLike, *, equity: float,
                       wallet_balance: float, unrealized_pnl: float = 0.0, margin: float = 0.0,
                       fees_paid: float = 0.0, funding_paid: float = 0.0,
                       position: Any = None) -> None:
        """Add an equity-curve point (``DuplicateError`` for a second one at ``ts``)."""
        values = coerce(balances_t, {
            "run_id": run_id, "ts": ts, "equity": equity, "wallet_balance": wallet_balance,
            "unrealized_pnl": unrealized_pnl, "margin": margin, "fees_paid": fees_paid,
            "funding_paid": funding_paid, "position": position})
        self._exec(sa.insert(balances_t).values(values),
                   duplicate=f"balance of run {run_id!r} at ts {values['ts']}")

    def insert_decision(self, run_id: str, symbol: str, ts: TimeLike, *, policy: str,
                        target: float | None, policy_version: str | None = None,
                        feature_hash: str | None = None,
                        detail: Mapping[str, Any] | None = None) -> None:
        """Record the policy's decision at a bar, once (``DuplicateError`` otherwise)."""
        values = coerce(decisions_t, {
            "run_id": run_id, "symbol": symbol, "ts": ts, "policy": policy, "target": target,
            "policy_version": policy_version, "feature_hash": feature_hash,
            "detail": dict(detail) if detail is not None else None})
        self._exec(sa.insert(decisions_t).values(values),
                   duplicate=f"decision of run {run_id!r} for {symbol} at ts {values['ts']}")

    # ------------------------------------------------------------------ state
    def put_state(self, run_id: str, key: str, value: Any = None,
                  blob: bytes | None = None) -> None:
        """Set a named state entry (replacing it): the kill switch and risk state in
        ``value`` (JSON), the engine checkpoint in ``blob`` (bytes). Global state uses
        run_id ``"*"``."""
        values = coerce(state_t, {"run_id": run_id, "key": key, "value": value,
                                  "blob": blob, "updated_at": now_ms()})
        stmt = self._insert(state_t).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[state_t.c.run_id, state_t.c.key],
            set_={k: stmt.excluded[k] for k in ("value", "blob", "updated_at")})
        self._exec(stmt)

    def delete_state(self, run_id: str, key: str) -> bool:
        result = self._exec(sa.delete(state_t).where(state_t.c.run_id == run_id,
                                                     state_t.c.key == key))
        return result.rowcount > 0

    # ------------------------------------------------------------------ audit
    def audit(self, kind: str, payload: Any, *, run_id: str | None = None,
              ts: TimeLike | None = None) -> int:
        """Append to the hash-chained audit log; returns the row's seq. The head row is
        locked (PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises writers), so
        concurrent writers get consecutive seqs."""
        if not isinstance(kind, str) or not kind:
            raise TypeError(f"an audit kind is a non-empty str, not {kind!r}")
        if run_id is not None and not isinstance(run_id, str):
            raise TypeError(f"run_id is a str or None, not {run_id!r}")
        head = self._exec(sa.select(_head_t.c.seq, _head_t.c.hash).where(_head_t.c.id == 1)
                          .with_for_update()).one()
        seq, prev = int(head.seq) + 1, str(head.hash)
        ts_ms = to_ms(ts) if ts is not None else now_ms()
        text = canonical(payload)
        digest = chain_hash(prev, seq, ts_ms, run_id, kind, text)
        self._exec(sa.insert(audit_t).values(seq=seq, ts=ts_ms, run_id=run_id, kind=kind,
                                             payload=text, prev_hash=prev, hash=digest))
        self._exec(sa.update(_head_t).where(_head_t.c.id == 1).values(seq=seq, hash=digest))
        return seq
