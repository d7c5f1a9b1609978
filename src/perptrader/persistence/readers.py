"""Reading the trading state: the same methods on the database (each call its own short
read transaction) and on a transaction (reading what it has written so far).

Every reader returns plain dicts (column -> value; times as epoch ms, JSON columns
decoded) or lists of them, oldest first; ``equity_curve`` alone returns a DataFrame,
for plotting and metrics.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from perptrader.persistence.models import (
    TERMINAL_ORDER_STATUSES,
    AuditLog,
    Balance,
    Decision,
    Fill,
    Order,
    OrderEvent,
    Position,
    Run,
    RunState,
)

if TYPE_CHECKING:
    import pandas as pd

Row = dict[str, Any]


@dataclass(frozen=True)
class StateEntry:
    """A ``run_state`` row: the JSON ``value``, the raw ``blob`` and when it was written."""

    value: Any
    blob: bytes | None
    updated_at: int


def _t(model: type) -> sa.Table:
    return model.__table__  # type: ignore[attr-defined, no-any-return]


runs_t, orders_t, events_t, fills_t = _t(Run), _t(Order), _t(OrderEvent), _t(Fill)
positions_t, balances_t, decisions_t = _t(Position), _t(Balance), _t(Decision)
state_t, audit_t = _t(RunState), _t(AuditLog)


class Reader:
    """The read methods; subclasses say where the connection comes from."""

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sa.Connection]:  # pragma: no cover - abstract
        raise NotImplementedError
        yield

    def _all(self, stmt: sa.Select[Any]) -> list[Row]:
        with self._reading() as conn:
            return [dict(r) for r in conn.execute(stmt).mappings()]

    def _one(self, stmt: sa.Select[Any]) -> Row | None:
        with self._reading() as conn:
            row = conn.execute(stmt).mappings().first()
            return dict(row) if row is not None else None

    # ------------------------------------------------------------------ runs
    def get_run(self, run_id: str) -> Row | None:
        return self._one(sa.select(runs_t).where(runs_t.c.run_id == run_id))

    def latest_run(self, mode: str | None = None) -> Row | None:
        """The most recently created run (of ``mode``, when given): what ``resume`` picks."""
        stmt = sa.select(runs_t).order_by(runs_t.c.created_at.desc(), runs_t.c.run_id.desc())
        if mode is not None:
            stmt = stmt.where(runs_t.c.mode == mode)
        return self._one(stmt.limit(1))

    def list_runs(self, mode: str | None = None) -> list[Row]:
        """All runs, newest first."""
        stmt = sa.select(runs_t).order_by(runs_t.c.created_at.desc(), runs_t.c.run_id.desc())
        if mode is not None:
            stmt = stmt.where(runs_t.c.mode == mode)
        return self._all(stmt)

    # ------------------------------------------------------------------ orders
    def order(self, client_order_id: str) -> Row | None:
        return self._one(sa.select(orders_t).where(orders_t.c.client_order_id == client_order_id))

    def order_by_venue_id(self, venue_order_id: str) -> Row | None:
        return self._one(sa.select(orders_t).where(orders_t.c.venue_order_id == venue_order_id))

    def orders(self, run_id: str, open_only: bool = False) -> list[Row]:
        """The run's orders by seq; ``open_only``: those not yet in a terminal status
        (``TERMINAL_ORDER_STATUSES``), i.e. what must be reconciled after a restart."""
        stmt = sa.select(orders_t).where(orders_t.c.run_id == run_id).order_by(orders_t.c.seq)
        if open_only:
            stmt = stmt.where(orders_t.c.status.not_in(sorted(TERMINAL_ORDER_STATUSES)))
        return self._all(stmt)

    def next_seq(self, run_id: str) -> int:
        """The seq for the run's next order (max seq + 1; 1 for the first). Allocate it in
        the transaction that inserts the order, so that two writers cannot take the same."""
        with self._reading() as conn:
            top = conn.execute(sa.select(sa.func.max(orders_t.c.seq))
                               .where(orders_t.c.run_id == run_id)).scalar()
        return int(top or 0) + 1

    def order_events(self, run_id: str | None = None,
                     client_order_id: str | None = None) -> list[Row]:
        """Order events in the order they were recorded, of a run and/or one order."""
        stmt = sa.select(events_t).order_by(events_t.c.id)
        if run_id is not None:
            stmt = stmt.where(events_t.c.run_id == run_id)
        if client_order_id is not None:
            stmt = stmt.where(events_t.c.client_order_id == client_order_id)
        return self._all(stmt)

    # ------------------------------------------------------------------ fills, positions
    def fills(self, run_id: str, client_order_id: str | None = None) -> list[Row]:
        stmt = sa.select(fills_t).where(fills_t.c.run_id == run_id)
        if client_order_id is not None:
            stmt = stmt.where(fills_t.c.client_order_id == client_order_id)
        return self._all(stmt.order_by(fills_t.c.ts, fills_t.c.fill_id))

    def positions(self, run_id: str) -> list[Row]:
        return self._all(sa.select(positions_t).where(positions_t.c.run_id == run_id)
                         .order_by(positions_t.c.symbol))

    # ------------------------------------------------------------------ balances, decisions
    def balances(self, run_id: str, start: int | None = None,
                 end: int | None = None) -> list[Row]:
        """Equity-curve points by ts, ``start <= ts <= end`` (epoch ms) when given."""
        stmt = sa.select(balances_t).where(balances_t.c.run_id == run_id)
        if start is not None:
            stmt = stmt.where(balances_t.c.ts >= start)
        if end is not None:
            stmt = stmt.where(balances_t.c.ts <= end)
        return self._all(stmt.order_by(balances_t.c.ts))

    def equity_curve(self, run_id: str) -> pd.DataFrame:
        """``balances`` as a DataFrame indexed by UTC time (for plots and metrics)."""
        import pandas as pd

        rows = self.balances(run_id)
        columns = [c.name for c in balances_t.c if c.name not in ("run_id", "ts")]
        frame = pd.DataFrame(rows, columns=["ts", *columns])
        frame.index = pd.DatetimeIndex(pd.to_datetime(frame.pop("ts"), unit="ms", utc=True),
                                       name="ts")
        return frame

    def decisions(self, run_id: str, symbol: str | None = None) -> list[Row]:
        stmt = sa.select(decisions_t).where(decisions_t.c.run_id == run_id)
        if symbol is not None:
            stmt = stmt.where(decisions_t.c.symbol == symbol)
        return self._all(stmt.order_by(decisions_t.c.ts, decisions_t.c.symbol))

    # ------------------------------------------------------------------ state, audit
    def get_state(self, run_id: str, key: str) -> StateEntry | None:
        row = self._one(sa.select(state_t).where(state_t.c.run_id == run_id,
                                                 state_t.c.key == key))
        if row is None:
            return None
        return StateEntry(row["value"], row["blob"], row["updated_at"])

    def audit_rows(self, run_id: str | None = None, after_seq: int = 0,
                   limit: int | None = 1000) -> list[Row]:
        """Audit rows by seq (``payload`` as stored: canonical JSON text)."""
        stmt = sa.select(audit_t).where(audit_t.c.seq > after_seq).order_by(audit_t.c.seq)
        if run_id is not None:
            stmt = stmt.where(audit_t.c.run_id == run_id)
        if limit is not None:
            stmt = stmt.limit(limit)
        return self._all(stmt)
