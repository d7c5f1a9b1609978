"""Plain-text renderings (Telegram messages are sent without markup, so nothing in a
symbol, reason or run id can break them)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd


def num(value: Any) -> str:
    if value is None:
        return "–"
    try:
        return f"{float(value):.6g}"
    except (TypeError, ValueError):
        return str(value)


def money(value: Any) -> str:
    if value is None:
        return "–"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "–" if math.isnan(number) else f"{number:,.2f}"


def pct(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "–"
    return "–" if math.isnan(number) else f"{number:+.2%}"


def when(ts_ms: Any) -> str:
    if ts_ms is None:
        return "–"
    return pd.Timestamp(int(ts_ms), unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M UTC")


def status_text(s: dict[str, Any]) -> str:
    """``trade status`` (``trading.status.run_status``) as a message."""
    lines = [f"{s['run_id']} ({s['status']}, {s['mode']})",
             f"policy: {s['strategy']} {s['params'] or ''}".rstrip(),
             f"symbols: {', '.join(s['symbols'])} {s['timeframe']} x{s['leverage']}",
             f"bars: {s['bars']:,} ({s['first_bar']} → {s['last_bar']})",
             f"equity: {money(s['equity'])} ({pct(s['total_return'])})"]
    if s.get("final_equity") is not None:
        lines.append(f"final equity: {money(s['final_equity'])}")
    lines += [f"fees / funding: {money(s['fees_paid'])} / {money(s['funding_paid'])}",
              "orders: " + (", ".join(f"{k} {v}" for k, v in sorted(s["orders"].items()))
                            or "none") + f" (open {s['open_orders']})",
              f"fills / liquidations: {s['fills']} / {s['liquidations']}",
              "positions: " + (", ".join(f"{k} {num(v)}" for k, v in s["positions"].items()
                                         if v) or "flat"),
              f"risk: {s['risk']['trading_state']} {s['risk']['reason']}".rstrip(),
              f"kill switch: {'ON' if s['kill_switch'] else 'off'}"]
    return "\n".join(lines)


def positions_text(run_id: str, positions: list[dict[str, Any]],
                   balance: dict[str, Any] | None) -> str:
    marks = (balance or {}).get("position") or {}
    lines = [f"positions of {run_id}" + (f" at {when(balance['ts'])}" if balance else "")]
    open_ = [p for p in positions if p.get("qty")]
    for p in open_:
        extra = marks.get(p["symbol"], {})
        equity = f", sub-account equity {money(extra['equity'])}" if "equity" in extra else ""
        lines.append(f"{p['symbol']}: {num(p['qty'])} @ {num(p.get('entry_price'))}"
                     f", fees {money(p.get('fees'))}, funding {money(p.get('funding'))}"
                     f"{equity}")
    if not open_:
        lines.append("flat")
    if balance is not None:
        lines.append(f"unrealised PnL {money(balance['unrealized_pnl'])}, margin "
                     f"{money(balance['margin'])}")
    return "\n".join(lines)


def pnl_text(s: dict[str, Any], today: dict[str, Any] | None) -> str:
    lines = [f"PnL of {s['run_id']}",
             f"equity {money(s['equity'])} from {money(s['initial_cash'])}: "
             f"{money(s['equity'] - float(s['initial_cash']))} ({pct(s['total_return'])})",
             f"fees {money(s['fees_paid'])}, funding {money(s['funding_paid'])}"]
    if today is not None:
        lines.append(f"{today['day']} so far: {money(today['pnl'])} ({pct(today['return'])})")
    return "\n".join(lines)


def daily_text(d: dict[str, Any]) -> str:
    positions = ", ".join(f"{k} {num(v)}" for k, v in d["positions"].items() if v) or "flat"
    return "\n".join([
        f"📅 [{d['run_id']}] daily summary {d['day']} (UTC)",
        f"equity {money(d['start_equity'])} → {money(d['end_equity'])}: "
        f"{money(d['pnl'])} ({pct(d['return'])})",
        f"fills {d['fills']}, liquidations {d['liquidations']}, fees {money(d['fees'])}, "
        f"funding {money(d['funding'])}",
        f"positions at {d['last_bar']}: {positions}"])
