"""A run's state from the journal alone: what `trade status`, the API and the Telegram
bot show. Any process can ask; the engine need not be running."""

from __future__ import annotations

from typing import Any

from perptrader.trading.control import CONTROL
from perptrader.trading.engine import CHECKPOINT


def run_status(db: Any, run_id: str) -> dict[str, Any]:
    """The run's state from the journal alone (any process can ask)."""
    run = dict(db.get_run(run_id))
    config = run.get("config") or {}
    curve = db.equity_curve(run_id)
    fills = [dict(f) for f in db.fills(run_id)]
    orders = [dict(o) for o in db.orders(run_id)]
    positions = [dict(p) for p in db.positions(run_id)]
    checkpoint = db.get_state(run_id, CHECKPOINT)
    risk = (checkpoint.value or {}).get("risk", {}) if checkpoint else {}
    control = db.get_state(run_id, CONTROL)
    equity = float(curve["equity"].iloc[-1]) if len(curve) else float(config["initial_cash"])
    last = curve.iloc[-1] if len(curve) else None
    by_status: dict[str, int] = {}
    for o in orders:
        by_status[o["status"]] = by_status.get(o["status"], 0) + 1
    return {
        "run_id": run_id, "mode": run["mode"], "status": run["status"],
        "strategy": run["strategy"], "params": run.get("params"),
        "symbols": run["symbols"], "timeframe": run["timeframe"],
        "replay": config.get("replay"), "leverage": config.get("leverage"),
        "bars": len(curve),
        "first_bar": curve.index[0].isoformat() if len(curve) else None,
        "last_bar": curve.index[-1].isoformat() if len(curve) else None,
        "initial_cash": config.get("initial_cash"), "equity": equity,
        "final_equity": equity if run["status"] == "finished" else None,
        "total_return": equity / float(config["initial_cash"]) - 1.0,
        "fees_paid": float(last["fees_paid"]) if last is not None else 0.0,
        "funding_paid": float(last["funding_paid"]) if last is not None else 0.0,
        "fills": len(fills),
        "liquidations": sum(1 for f in fills if f.get("reason") == "liquidation"),
        "orders": by_status,
        "open_orders": sum(by_status.get(s, 0) for s in ("submitted", "accepted",
                                                         "partially_filled",
                                                         "pending_cancel")),
        "positions": {p["symbol"]: p["qty"] for p in positions},
        "risk": {"trading_state": risk.get("trading_state", "active"),
                 "reason": risk.get("reason", "")},
        "kill_switch": (control.value or {}).get("command") == "stop" if control else False,
    }
