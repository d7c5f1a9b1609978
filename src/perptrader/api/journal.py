"""The trading journal as the API reads it (through ``persistence`` readers).

The database is opened lazily (``create=False``: the API never creates a journal) and
kept for the process's life: SQLite in WAL mode lets the engine write while the API
reads, PostgreSQL is a server anyway. A fresh data dir has no journal: the routes then
answer 404 "no trading database yet" and the API opens it once it appears.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from perptrader.core.errors import PerptraderError
from perptrader.core.jsonsafe import json_safe
from perptrader.persistence import TradingDB, TradingStateError, open_trading_db

#: order statuses that are still working at the venue
OPEN_STATUSES = ("initialized", "submitted", "accepted", "partially_filled", "pending_cancel")


class NoJournal(PerptraderError):
    """There is no trading database (or no run) yet."""


class Journal:
    def __init__(self, url: str | None, data_dir: Path | str) -> None:
        self.url = url
        self.data_dir = Path(data_dir)
        self._db: TradingDB | None = None
        self._lock = threading.Lock()

    def db(self) -> TradingDB:
        """The open journal; ``NoJournal`` while there is none."""
        if self._db is not None:
            return self._db
        with self._lock:
            if self._db is None:
                try:
                    self._db = open_trading_db(self.url, self.data_dir, create=False)
                except TradingStateError as exc:
                    if "no trading database" in str(exc):
                        raise NoJournal(f"no trading database yet ({exc}): start a run with "
                                        "`perptrader trade paper`") from None
                    raise
            return self._db

    def maybe_db(self) -> TradingDB | None:
        try:
            return self.db()
        except NoJournal:
            return None

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # ---- reads ---------------------------------------------------------------------------
    def run_id(self, run: str | None) -> str:
        from perptrader.trading.control import resolve_run

        db = self.db()
        try:
            return resolve_run(db, run)
        except PerptraderError as exc:
            raise NoJournal(str(exc)) from None

    def runs(self) -> list[dict[str, Any]]:
        return [_run_row(r) for r in self.db().list_runs()]

    def status(self, run: str | None) -> dict[str, Any]:
        from perptrader.trading.status import run_status

        db = self.db()
        return json_safe(run_status(db, self.run_id(run)))

    def risk(self, run: str | None) -> dict[str, Any]:
        run_id = self.run_id(run)
        return {"run_id": run_id, **risk_summary(self.db(), run_id)}

    def rows(self, kind: str, run: str | None, *, limit: int | None = None,
             open_only: bool = False) -> dict[str, Any]:
        db = self.db()
        run_id = self.run_id(run)
        if kind == "orders":
            rows = db.orders(run_id, open_only=open_only)
        elif kind == "fills":
            rows = db.fills(run_id)
        elif kind == "positions":
            rows = db.positions(run_id)
        elif kind == "decisions":
            rows = db.decisions(run_id)
        else:  # pragma: no cover - the routes name the kinds
            raise ValueError(kind)
        if limit is not None and len(rows) > limit:
            rows = rows[-limit:]
        return {"run_id": run_id, "rows": json_safe(rows)}

    def equity(self, run: str | None, *, limit: int | None = None) -> dict[str, Any]:
        """The equity curve with the drawdown from the running high-water mark; ``limit``
        keeps the newest points (the drawdown is still measured from the whole curve)."""
        db = self.db()
        run_id = self.run_id(run)
        rows = db.balances(run_id)
        run_row = db.get_run(run_id) or {}
        initial = float((run_row.get("config") or {}).get("initial_cash") or 0.0)
        points = equity_points(rows, initial)
        if limit is not None and len(points) > limit:
            points = points[-limit:]
        return {"run_id": run_id, "initial_cash": initial,
                "columns": ["ts", "equity", "drawdown"], "points": points}


def equity_points(rows: list[dict[str, Any]], hwm: float) -> list[list[float]]:
    """``[[ts_ms, equity, drawdown], ...]``; drawdown = equity / running max - 1 (<= 0)."""
    out = []
    for r in rows:
        equity = float(r["equity"])
        hwm = max(hwm, equity)
        out.append([int(r["ts"]), equity, equity / hwm - 1.0 if hwm > 0 else 0.0])
    return json_safe(out)


def risk_summary(db: TradingDB, run_id: str) -> dict[str, Any]:
    """The engine's risk state from its last checkpoint, the kill switch command, the
    configured limits and the protections ("breakers": stop-out lock, cooldowns)."""
    from perptrader.trading.control import CONTROL
    from perptrader.trading.engine import CHECKPOINT
    from perptrader.trading.risk import RiskLimits

    checkpoint = db.get_state(run_id, CHECKPOINT)
    state = (checkpoint.value or {}) if checkpoint else {}
    risk = state.get("risk") or {}
    control = db.get_state(run_id, CONTROL)
    command = (control.value or {}) if control else {}
    run = db.get_run(run_id) or {}
    pairs = tuple((run.get("config") or {}).get("risk") or ())
    try:
        limits = json_safe(RiskLimits.from_pairs(pairs).model_dump())
    except (ValueError, PerptraderError):
        limits = {"error": f"cannot read the run's limits {list(pairs)}"}
    protections = risk.get("protections") or {}
    applied = int(state.get("control_applied") or 0)
    return {
        "trading_state": risk.get("trading_state", "active"),
        "reason": risk.get("reason", ""),
        "code": risk.get("code", ""),
        "flatten_allowed": bool(risk.get("flatten_allowed", False)),
        "since": risk.get("since"),
        "kill_switch": command.get("command") == "stop",
        "control": command or None,
        "control_pending": bool(command) and int(command.get("id", 0)) > applied,
        "orders_last_minute": len(risk.get("order_times") or []),
        "breakers": {
            "stopout_lock_until": protections.get("locked_until"),
            "stopout_lock_reason": protections.get("lock_reason", ""),
            "recent_stopouts": len(protections.get("stopouts") or []),
            "last_exit": protections.get("last_exit") or {},
        },
        "high_water_mark": state.get("hwm"),
        "day_start_equity": state.get("day_start_equity"),
        "limits": limits,
    }


def _run_row(row: dict[str, Any]) -> dict[str, Any]:
    config = row.get("config") or {}
    return json_safe({"run_id": row["run_id"], "mode": row["mode"], "status": row["status"],
                      "strategy": row["strategy"], "symbols": row["symbols"],
                      "timeframe": row["timeframe"], "replay": config.get("replay"),
                      "created_at": row["created_at"], "updated_at": row["updated_at"]})
