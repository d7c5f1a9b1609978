"""Small reads of the trading journal the notifier needs besides ``persistence``'s
readers: the audit head, the latest balance, a day's balances and fills, the risk
state. Each is one short read (any process may ask while the engine writes)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import sqlalchemy as sa

from perptrader.persistence.db import TradingDB
from perptrader.persistence.models import AuditHead
from perptrader.persistence.readers import balances_t, fills_t

DAY_MS = 86_400_000


def _rows(db: TradingDB, stmt: Any) -> list[dict[str, Any]]:
    with db.engine.connect() as conn:
        return [dict(r) for r in conn.execute(stmt).mappings()]


def audit_head_seq(db: TradingDB) -> int:
    head = AuditHead.__table__
    rows = _rows(db, sa.select(head.c.seq).where(head.c.id == 1))
    return int(rows[0]["seq"]) if rows else 0


def latest_balance(db: TradingDB, run_id: str, before_ms: int | None = None
                   ) -> dict[str, Any] | None:
    """The newest equity point of the run (at or before ``before_ms`` when given)."""
    stmt = sa.select(balances_t).where(balances_t.c.run_id == run_id)
    if before_ms is not None:
        stmt = stmt.where(balances_t.c.ts <= before_ms)
    rows = _rows(db, stmt.order_by(balances_t.c.ts.desc()).limit(1))
    return rows[0] if rows else None


def fills_between(db: TradingDB, run_id: str, start_ms: int, end_ms: int
                  ) -> list[dict[str, Any]]:
    """The run's fills with ``start_ms <= ts < end_ms``."""
    return _rows(db, sa.select(fills_t).where(fills_t.c.run_id == run_id,
                                              fills_t.c.ts >= start_ms,
                                              fills_t.c.ts < end_ms)
                 .order_by(fills_t.c.ts, fills_t.c.fill_id))


def day_of(ts_ms: int) -> str:
    return pd.Timestamp(int(ts_ms), unit="ms", tz="UTC").strftime("%Y-%m-%d")


def day_start_ms(day: str) -> int:
    return int(pd.Timestamp(day, tz="UTC").value // 1_000_000)


def day_summary(db: TradingDB, run_id: str, day: str) -> dict[str, Any] | None:
    """Equity at the start and end of the UTC ``day`` (bars opened that day), its PnL,
    fills, fees, funding, liquidations and the positions at its end; None when the run
    has no bar that day."""
    start = day_start_ms(day)
    end_row = latest_balance(db, run_id, before_ms=start + DAY_MS - 1)
    if end_row is None or end_row["ts"] < start:
        return None
    before = latest_balance(db, run_id, before_ms=start - 1)
    run = db.get_run(run_id) or {}
    initial = float((run.get("config") or {}).get("initial_cash", math.nan))
    start_equity = float(before["equity"]) if before else initial
    fees0 = float(before["fees_paid"]) if before else 0.0
    funding0 = float(before["funding_paid"]) if before else 0.0
    fills = fills_between(db, run_id, start, start + DAY_MS)
    end_equity = float(end_row["equity"])
    return {
        "run_id": run_id, "day": day, "start_equity": start_equity,
        "end_equity": end_equity, "pnl": end_equity - start_equity,
        "return": end_equity / start_equity - 1.0 if start_equity > 0 else math.nan,
        "fills": len(fills),
        "liquidations": sum(1 for f in fills if f.get("reason") == "liquidation"),
        "fees": float(end_row["fees_paid"]) - fees0,
        "funding": float(end_row["funding_paid"]) - funding0,
        "last_bar": pd.Timestamp(int(end_row["ts"]), unit="ms", tz="UTC").isoformat(),
        "positions": {s: float(p.get("qty") or 0.0)
                      for s, p in (end_row.get("position") or {}).items()},
    }


def risk_state(db: TradingDB, run_id: str) -> dict[str, str]:
    """The risk manager's state in the run's last checkpoint."""
    from perptrader.trading.engine import CHECKPOINT

    entry = db.get_state(run_id, CHECKPOINT)
    risk = (entry.value or {}).get("risk", {}) if entry else {}
    return {"trading_state": str(risk.get("trading_state", "active")),
            "reason": str(risk.get("reason", "") or "")}


def margin_ratios(balance: dict[str, Any]) -> dict[str, float]:
    """Maintenance margin over margin balance per open position (1 = liquidation), from
    a balance row: the position's own ``maint_margin``/``margin``/``upnl`` when the engine
    journals them, else estimated from the row (one open position: its mark follows from
    the unrealised PnL; several: one ratio over all, key ``"*"``, at entry prices)."""
    from perptrader.sim.tiers import resolve

    positions = {s: p for s, p in (balance.get("position") or {}).items()
                 if p and float(p.get("qty") or 0.0) != 0.0}
    out: dict[str, float] = {}

    def ratio(mm: float, backing: float) -> float:
        return mm / backing if backing > 0 else math.inf

    def maint(symbol: str, notional: float) -> float:
        try:
            return float(resolve(symbol).maintenance_margin(notional))
        except Exception:  # an unknown symbol under strict tiers: a conservative 1%
            return abs(notional) * 0.01

    missing = {}
    for symbol, p in positions.items():
        if all(k in p for k in ("maint_margin", "margin", "upnl")):
            out[symbol] = ratio(float(p["maint_margin"]), float(p["margin"]) + float(p["upnl"]))
        else:
            missing[symbol] = p
    if not missing:
        return out
    upnl, margin = float(balance.get("unrealized_pnl") or 0.0), float(balance.get("margin")
                                                                       or 0.0)
    if len(missing) == 1 and len(positions) == 1:
        (symbol, p), = missing.items()
        qty, entry = float(p["qty"]), float(p.get("entry_price") or 0.0)
        mark = p.get("mark") or (entry + upnl / qty)
        out[symbol] = ratio(maint(symbol, qty * float(mark)), margin + upnl)
    else:
        mm = sum(maint(s, float(p["qty"]) * float(p.get("mark") or p.get("entry_price") or 0))
                 for s, p in missing.items())
        out["*"] = ratio(mm, margin + upnl)
    return out
