"""Alerts from the journal: new audit rows by seq, the latest balance of each running run
(liquidation risk), the risk manager's state (breakers) and closed UTC days (summary).

The cursor (last audit seq read, per-run day and alert states) is kept in the journal
itself (``run_state`` of run ``"*"``, key ``notify.telegram``) and moved only after the
alerts were sent (``commit``): a notifier restarted after a crash sends what it had not
sent, and one started for the first time begins at the current head (no history flood).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any

from perptrader.notify import journal as J
from perptrader.notify.text import daily_text, money, num, when
from perptrader.persistence.db import TradingDB

log = logging.getLogger("perptrader.notify")

CURSOR_RUN = "*"
CURSOR_KEY = "notify.telegram"
#: audit rows read per poll (the rest next poll)
BATCH = 500
#: audit kinds that are never summarised away when a poll has too much to say
URGENT = frozenset({"liquidation", "kill", "resume", "breaker", "risk", "liquidation_risk",
                    "control", "run"})


@dataclass(frozen=True)
class Alert:
    kind: str
    run_id: str | None
    text: str

    @property
    def urgent(self) -> bool:
        return self.kind in URGENT


def _short(run_id: str | None) -> str:
    return f"[{run_id}] " if run_id else ""


def audit_alert(row: dict[str, Any], *, fills: bool = True) -> Alert | None:
    """The alert of one audit row (None: not worth a message)."""
    kind, run_id = str(row["kind"]), row.get("run_id")
    try:
        p = json.loads(row["payload"]) if isinstance(row["payload"], str) else row["payload"]
    except ValueError:
        p = {}
    p = p if isinstance(p, dict) else {"value": p}
    tag = _short(run_id)
    if kind == "fill":
        if p.get("reason") == "liquidation":
            return Alert("liquidation", run_id, f"🚨 {tag}LIQUIDATION fill {p.get('symbol')} "
                         f"{p.get('side')} {num(p.get('qty'))} @ {num(p.get('price'))} "
                         f"({when(row['ts'])})")
        if not fills:
            return None
        reason = p.get("reason") or "signal"
        return Alert("fill", run_id, f"✅ {tag}fill {p.get('symbol')} {p.get('side')} "
                     f"{num(p.get('qty'))} @ {num(p.get('price'))}, fee {money(p.get('fee'))}"
                     f" ({reason}, {when(row['ts'])})")
    if kind == "liquidation":
        return Alert("liquidation", run_id, f"🚨 {tag}LIQUIDATED {p.get('symbol')} at "
                     f"{p.get('ts')}: equity {money(p.get('equity'))}")
    if kind == "kill":
        flat = " and flattening" if p.get("flatten") else ""
        return Alert("kill", run_id, f"🛑 {tag}KILL SWITCH applied{flat} at {p.get('ts')}: "
                     f"{p.get('reason') or 'kill switch'}. New orders are blocked until "
                     f"/resume.")
    if kind == "resume":
        return Alert("resume", run_id, f"▶️ {tag}trading resumed at {p.get('ts')}")
    if kind.startswith("control."):
        command = kind.split(".", 1)[1]
        extra = " (flatten)" if p.get("flatten") else ""
        why = f": {p['reason']}" if p.get("reason") else ""
        return Alert("control", run_id, f"📨 {tag}{command}{extra} requested{why}; the "
                     f"engine applies it at its next bar")
    if kind == "order.deny":
        return Alert("deny", run_id, f"⚠️ {tag}order denied {p.get('client_order_id')}: "
                     f"{p.get('reason') or p.get('code')}")
    if kind.startswith("breaker."):
        what = kind.split(".", 1)[1]
        detail = ", ".join(f"{k} {v}" for k, v in p.items() if k != "ts")
        return Alert("breaker", run_id, f"⚡ {tag}circuit breaker {what.upper()}"
                     + (f": {detail}" if detail else ""))
    if kind == "run.start":
        return Alert("run", run_id, f"🚀 {tag}run started: {p.get('policy')}")
    if kind == "run.resume":
        return Alert("run", run_id, f"🔁 {tag}run resumed after {p.get('after')}")
    if kind == "run.finish":
        return Alert("run", run_id, f"🏁 {tag}run finished: equity "
                     f"{money(p.get('equity'))} (last bar {p.get('last_ts')})")
    return None


class JournalAlerts:
    """Reads what happened since the cursor; ``poll()`` returns the alerts, ``commit()``
    stores the cursor once they were delivered."""

    def __init__(self, db: TradingDB, *, run: str | None = None,
                 liquidation_ratio: float = 0.8, fills: bool = True,
                 daily: bool = True) -> None:
        self.db = db
        self.run = run
        self.liquidation_ratio = liquidation_ratio
        self.fills = fills
        self.daily = daily
        entry = db.get_state(CURSOR_RUN, CURSOR_KEY)
        self._pending: dict[str, Any] | None = None
        if entry is not None and isinstance(entry.value, dict):
            self.state: dict[str, Any] = dict(entry.value)
            self.state.setdefault("runs", {})
        else:  # first start: from the current head, stored at once (a crash before the
            # first delivery must not skip what happens meanwhile)
            self.state = {"seq": J.audit_head_seq(db), "runs": {}}
            self._pending = self.state
            self.commit()

    @property
    def seq(self) -> int:
        return int(self.state["seq"])

    def poll(self) -> list[Alert]:
        """The alerts since the cursor (not yet committed: a second ``poll`` before
        ``commit`` reads the same rows again)."""
        state = json.loads(json.dumps(self.state))
        alerts: list[Alert] = []
        rows = self.db.audit_rows(self.run, after_seq=int(state["seq"]), limit=BATCH)
        applied: set[str] = set()
        for row in rows:
            state["seq"] = int(row["seq"])
            alert = audit_alert(row, fills=self.fills)
            if alert is not None:
                alerts.append(alert)
                if alert.kind in ("kill", "resume"):
                    applied.add(str(alert.run_id))
        if len(rows) == BATCH:  # more to read: balances and days when caught up
            self._pending = state
            return alerts
        for run_id in self._watched():
            alerts.extend(self._run_alerts(run_id, state["runs"].setdefault(run_id, {}),
                                           applied))
        self._pending = state
        return alerts

    def commit(self) -> None:
        """Store the cursor of the last ``poll`` (its alerts were delivered)."""
        if self._pending is None:
            return
        with self.db.transaction() as tx:
            tx.put_state(CURSOR_RUN, CURSOR_KEY, value=self._pending)
        self.state, self._pending = self._pending, None

    def _watched(self) -> list[str]:
        if self.run is not None:
            return [self.run]
        return [str(r["run_id"]) for r in self.db.list_runs() if r.get("status") == "running"]

    def _run_alerts(self, run_id: str, st: dict[str, Any], applied: set[str]) -> list[Alert]:
        alerts: list[Alert] = []
        balance = J.latest_balance(self.db, run_id)
        if balance is None:
            return alerts
        tag = _short(run_id)
        # liquidation risk: crossing the threshold (and back under it) once each way
        ratios = J.margin_ratios(balance)
        worst = max(ratios.items(), key=lambda kv: kv[1], default=(None, 0.0))
        at_risk = worst[1] >= self.liquidation_ratio
        if at_risk and not st.get("at_risk"):
            symbol = "all positions" if worst[0] == "*" else worst[0]
            value = "∞" if math.isinf(worst[1]) else f"{worst[1]:.1%}"
            alerts.append(Alert("liquidation_risk", run_id, f"🔥 {tag}LIQUIDATION RISK "
                                f"{symbol}: margin ratio {value} (alert at "
                                f"{self.liquidation_ratio:.1%}; 100% = liquidation), "
                                f"equity {money(balance['equity'])} at {when(balance['ts'])}"))
        elif not at_risk and st.get("at_risk"):
            alerts.append(Alert("liquidation_risk", run_id, f"🟢 {tag}margin ratio back "
                                f"under {self.liquidation_ratio:.1%}"))
        st["at_risk"] = at_risk
        # breakers: the risk manager leaving ACTIVE (drawdown stop, daily loss...)
        risk = J.risk_state(self.db, run_id)
        previous = st.get("risk")
        if previous is not None and previous != risk["trading_state"] \
                and run_id not in applied:
            icon = "⚡" if risk["trading_state"] != "active" else "🟢"
            reason = f": {risk['reason']}" if risk["reason"] else ""
            alerts.append(Alert("risk", run_id, f"{icon} {tag}risk state "
                                f"{previous.upper()} → {risk['trading_state'].upper()}"
                                f"{reason}"))
        st["risk"] = risk["trading_state"]
        # the daily summary: when the first bar of a new UTC day is journaled
        day = J.day_of(balance["ts"])
        if st.get("day") is None:
            st["day"] = day
        elif day > st["day"]:
            done = J.day_of(J.day_start_ms(day) - 1)
            st["day"] = day
            summary = J.day_summary(self.db, run_id, done) if self.daily else None
            if summary is not None:
                alerts.append(Alert("daily", run_id, daily_text(summary)))
        return alerts


def compose(alerts: list[Alert], limit: int = 3_900, max_messages: int = 3) -> list[str]:
    """The texts to send for one poll: alerts joined into as few messages as fit
    Telegram's 4,096 characters, at most ``max_messages``; beyond that, routine alerts
    (fills, denied orders) are counted in one line and urgent ones always kept."""
    lines = [a.text for a in alerts]
    if sum(len(t) + 1 for t in lines) > limit * max_messages:
        kept = [a.text for a in alerts if a.urgent]
        dropped: dict[str, int] = {}
        room = limit * max_messages - sum(len(t) + 1 for t in kept) - 200
        routine = []
        for a in alerts:
            if a.urgent:
                continue
            if room - len(a.text) - 1 > 0:
                routine.append(a.text)
                room -= len(a.text) + 1
            else:
                dropped[a.kind] = dropped.get(a.kind, 0) + 1
        lines = [a.text for a in alerts if a.urgent or a.text in routine]
        lines.append("… and " + ", ".join(f"{n} more {k}" for k, n in dropped.items())
                     + " (see `perptrader trade fills` / `trade orders`)")
    messages: list[str] = []
    current = ""
    for line in lines:
        line = line if len(line) <= limit else line[:limit - 1] + "…"
        if current and len(current) + len(line) + 1 > limit:
            messages.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line
    if current:
        messages.append(current)
    return messages
