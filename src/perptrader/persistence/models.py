"""The trading-state tables as SQLAlchemy declarative models.

The models are the one description of the schema that the code reads and writes
through (as Core tables: ``Order.__table__``); migration 0001 creates the same tables
and a test compares the two on both backends, so neither can drift.

Conventions: every time is epoch milliseconds UTC (``BigInteger``); quantities and money
are doubles (the engine computes in floats; a decimal column would only pretend to more
precision); documents are JSON (JSONB on PostgreSQL); the audit payload is TEXT, because
its exact bytes are hashed.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

F = sa.Float(precision=53)
MS = sa.BigInteger()
#: an auto-incrementing 64-bit key (SQLite autoincrements only INTEGER PRIMARY KEY)
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSONDoc = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

#: order statuses after which an order can no longer fill (``orders(open_only=True)``)
TERMINAL_ORDER_STATUSES = frozenset({"filled", "canceled", "cancelled", "rejected", "expired"})
#: the audit chain's ``prev_hash`` before the first row
GENESIS_HASH = "0" * 64

NAMING = {
    "pk": "pk_%(table_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING)


def _run_fk() -> sa.ForeignKey:
    return sa.ForeignKey("runs.run_id")


class Run(Base):
    """One paper or live session of a strategy: what it trades and with which settings."""

    __tablename__ = "runs"
    run_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    mode: Mapped[str] = mapped_column(sa.Text)
    strategy: Mapped[str] = mapped_column(sa.Text)
    params: Mapped[Any] = mapped_column(JSONDoc)
    symbols: Mapped[Any] = mapped_column(JSONDoc)
    timeframe: Mapped[str] = mapped_column(sa.Text)
    config: Mapped[Any] = mapped_column(JSONDoc)
    status: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[int] = mapped_column(MS)
    updated_at: Mapped[int] = mapped_column(MS)
    __table_args__ = (sa.Index(None, "mode", "created_at"),)


class Order(Base):
    """An order as the engine intended it and as the venue has treated it so far."""

    __tablename__ = "orders"
    client_order_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    run_id: Mapped[str] = mapped_column(sa.Text, _run_fk())
    seq: Mapped[int] = mapped_column(sa.BigInteger)
    symbol: Mapped[str] = mapped_column(sa.Text)
    side: Mapped[str] = mapped_column(sa.Text)
    type: Mapped[str] = mapped_column(sa.Text)
    qty: Mapped[float] = mapped_column(F)
    price: Mapped[float | None] = mapped_column(F)
    stop_price: Mapped[float | None] = mapped_column(F)
    reduce_only: Mapped[bool] = mapped_column(sa.Boolean)
    post_only: Mapped[bool] = mapped_column(sa.Boolean)
    time_in_force: Mapped[str | None] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.Text)
    filled_qty: Mapped[float] = mapped_column(F)
    avg_fill_price: Mapped[float | None] = mapped_column(F)
    fees: Mapped[float] = mapped_column(F)
    venue_order_id: Mapped[str | None] = mapped_column(sa.Text)
    reason: Mapped[str | None] = mapped_column(sa.Text)
    target_exposure: Mapped[float | None] = mapped_column(F)
    decided_ts: Mapped[int | None] = mapped_column(MS)
    created_at: Mapped[int] = mapped_column(MS)
    updated_at: Mapped[int] = mapped_column(MS)
    data: Mapped[Any | None] = mapped_column(JSONDoc)
    __table_args__ = (
        sa.UniqueConstraint("run_id", "seq"),
        sa.Index(None, "run_id", "status"),
        sa.Index(None, "venue_order_id"),
    )


class OrderEvent(Base):
    """One change of an order (sent, acknowledged, partly filled, cancelled...)."""

    __tablename__ = "order_events"
    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    client_order_id: Mapped[str] = mapped_column(
        sa.Text, sa.ForeignKey("orders.client_order_id"))
    run_id: Mapped[str] = mapped_column(sa.Text, _run_fk())
    ts: Mapped[int] = mapped_column(MS)
    from_status: Mapped[str | None] = mapped_column(sa.Text)
    to_status: Mapped[str | None] = mapped_column(sa.Text)
    kind: Mapped[str] = mapped_column(sa.Text)
    detail: Mapped[Any | None] = mapped_column(JSONDoc)
    __table_args__ = (sa.Index(None, "client_order_id", "id"), sa.Index(None, "run_id", "id"))


class Fill(Base):
    """An execution. ``fill_id`` is deterministic (venue trade id, or the simulator's), so
    that a fill reported twice (reconnect, replay after a crash) is stored once.
    ``client_order_id`` is null for fills of orders this program did not place
    (a liquidation, a manual trade)."""

    __tablename__ = "fills"
    fill_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    client_order_id: Mapped[str | None] = mapped_column(
        sa.Text, sa.ForeignKey("orders.client_order_id"))
    run_id: Mapped[str] = mapped_column(sa.Text, _run_fk())
    symbol: Mapped[str] = mapped_column(sa.Text)
    ts: Mapped[int] = mapped_column(MS)
    side: Mapped[str] = mapped_column(sa.Text)
    qty: Mapped[float] = mapped_column(F)
    price: Mapped[float] = mapped_column(F)
    fee: Mapped[float] = mapped_column(F)
    liquidity: Mapped[str | None] = mapped_column(sa.Text)
    reason: Mapped[str | None] = mapped_column(sa.Text)
    __table_args__ = (sa.Index(None, "run_id", "ts"), sa.Index(None, "client_order_id"))


class Position(Base):
    """The current position per run and symbol (the engine upserts it after each fill
    and funding payment)."""

    __tablename__ = "positions"
    run_id: Mapped[str] = mapped_column(sa.Text, _run_fk(), primary_key=True)
    symbol: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    qty: Mapped[float] = mapped_column(F)
    entry_price: Mapped[float | None] = mapped_column(F)
    realized_pnl: Mapped[float] = mapped_column(F)
    fees: Mapped[float] = mapped_column(F)
    funding: Mapped[float] = mapped_column(F)
    updated_ts: Mapped[int] = mapped_column(MS)


class Balance(Base):
    """One point of the equity curve."""

    __tablename__ = "balances"
    run_id: Mapped[str] = mapped_column(sa.Text, _run_fk(), primary_key=True)
    ts: Mapped[int] = mapped_column(MS, primary_key=True)
    equity: Mapped[float] = mapped_column(F)
    wallet_balance: Mapped[float] = mapped_column(F)
    unrealized_pnl: Mapped[float] = mapped_column(F)
    margin: Mapped[float] = mapped_column(F)
    fees_paid: Mapped[float] = mapped_column(F)
    funding_paid: Mapped[float] = mapped_column(F)
    position: Mapped[Any | None] = mapped_column(JSONDoc)


class Decision(Base):
    """What the policy wanted at a bar, and which model said so (recorded once per bar)."""

    __tablename__ = "decisions"
    run_id: Mapped[str] = mapped_column(sa.Text, _run_fk(), primary_key=True)
    symbol: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    ts: Mapped[int] = mapped_column(MS, primary_key=True)
    policy: Mapped[str] = mapped_column(sa.Text)
    policy_version: Mapped[str | None] = mapped_column(sa.Text)
    feature_hash: Mapped[str | None] = mapped_column(sa.Text)
    target: Mapped[float | None] = mapped_column(F)
    detail: Mapped[Any | None] = mapped_column(JSONDoc)


class RunState(Base):
    """Small named state: the kill switch and risk state (``value``), the engine's
    checkpoint (``blob``). No foreign key: state may be global (run_id ``"*"``)."""

    __tablename__ = "run_state"
    run_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    key: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    value: Mapped[Any | None] = mapped_column(JSONDoc)
    blob: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    updated_at: Mapped[int] = mapped_column(MS)


class AuditLog(Base):
    """The hash-chained, append-only record of everything the engine decided and did."""

    __tablename__ = "audit_log"
    seq: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    ts: Mapped[int] = mapped_column(MS)
    run_id: Mapped[str | None] = mapped_column(sa.Text)
    kind: Mapped[str] = mapped_column(sa.Text)
    payload: Mapped[str] = mapped_column(sa.Text)
    prev_hash: Mapped[str] = mapped_column(sa.Text)
    hash: Mapped[str] = mapped_column(sa.Text)
    __table_args__ = (sa.Index(None, "run_id", "seq"),)


class AuditHead(Base):
    """The chain's last seq and hash (one row, id 1), moved in the same transaction as
    each append: deleting the newest audit rows leaves the head pointing past the end."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(sa.BigInteger)
    hash: Mapped[str] = mapped_column(sa.Text)
    __table_args__ = (sa.CheckConstraint("id = 1", name="single_row"),)


TABLES = Base.metadata.tables
