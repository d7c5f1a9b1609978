"""Live events for the WebSocket: the journal tailed every ~200 ms.

Tailing the journal (not hooking the engine) makes the stream the same whether the
engine runs in this process or another one, on SQLite or PostgreSQL. Per poll:

- new audit rows by ``seq`` become ``order`` (order.*), ``fill`` and ``alert`` events
  (liquidations, the kill switch requested / applied, runs starting, resuming,
  finishing);
- new ``balances`` rows of running runs (and of runs with new audit rows) become one
  ``equity`` event per run per poll: ``points`` ``[[ts_ms, equity, drawdown], ...]``;
- a changed ``positions`` row becomes a ``position`` event;
- a changed risk state (engine checkpoint + kill switch command) becomes a ``risk``
  event.

Every event: ``{"type", "run_id", "seq" (audit seq or null), "at" (ISO time of the
poll), "data": {...}}``. The hub polls only while a client listens, and starts from
"now" (history comes from the REST routes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime
from typing import Any

from perptrader.api.journal import Journal, equity_points, risk_summary
from perptrader.core.jsonsafe import json_safe

log = logging.getLogger(__name__)

EVENT_TYPES = ("order", "fill", "position", "equity", "risk", "alert")
#: audit rows read per poll (a fast replay writes many; the rest come next poll)
AUDIT_BATCH = 2000
QUEUE_SIZE = 5000


class Tail:
    """The journal cursor: ``poll()`` returns the events since the last call."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.started = False
        self.seq = 0
        self.balance_ts: dict[str, int] = {}
        self.hwm: dict[str, float] = {}
        self.positions: dict[tuple[str, str], tuple[Any, ...]] = {}
        self.risk: dict[str, dict[str, Any]] = {}

    def _start(self, db: Any) -> None:
        self.seq = _max_seq(db)
        for run in db.list_runs():
            self._track(db, str(run["run_id"]), catch_up=True)
        self.started = True

    def _track(self, db: Any, run_id: str, *, catch_up: bool) -> None:
        """Start following a run: from its newest state (catch_up) or from its start."""
        if run_id in self.balance_ts:
            return
        rows = db.balances(run_id) if catch_up else []
        run = db.get_run(run_id) or {}
        initial = float((run.get("config") or {}).get("initial_cash") or 0.0)
        self.hwm[run_id] = max([initial, *(float(r["equity"]) for r in rows)])
        self.balance_ts[run_id] = int(rows[-1]["ts"]) if rows else -1
        if catch_up:
            for p in db.positions(run_id):
                self.positions[(run_id, p["symbol"])] = _position_key(p)
            self.risk[run_id] = _risk_key(risk_summary(db, run_id))

    def poll(self) -> list[dict[str, Any]]:
        db = self.journal.maybe_db()
        if db is None:
            return []
        if not self.started:
            self._start(db)
            return []
        at = datetime.now(UTC).isoformat()
        events: list[dict[str, Any]] = []
        touched: set[str] = set()
        for row in db.audit_rows(after_seq=self.seq, limit=AUDIT_BATCH):
            self.seq = int(row["seq"])
            run_id = row.get("run_id")
            if run_id:
                touched.add(run_id)
                if run_id not in self.balance_ts:
                    self._track(db, run_id, catch_up=False)
            event = audit_event(row, at)
            if event is not None:
                events.append(event)
        running = {str(r["run_id"]) for r in db.list_runs() if r.get("status") == "running"}
        for run_id in sorted(touched | running):
            if run_id not in self.balance_ts:
                self._track(db, run_id, catch_up=False)
            events.extend(self._run_events(db, run_id, at))
        return events

    def _run_events(self, db: Any, run_id: str, at: str) -> list[dict[str, Any]]:
        events = []
        rows = db.balances(run_id, start=self.balance_ts[run_id] + 1)
        if rows:
            points = equity_points(rows, self.hwm[run_id])
            self.hwm[run_id] = max(self.hwm[run_id], *(p[1] for p in points if p[1] is not None))
            self.balance_ts[run_id] = int(rows[-1]["ts"])
            events.append(_event("equity", run_id, None, at, {
                "columns": ["ts", "equity", "drawdown"], "points": points,
                "last": json_safe({k: rows[-1][k] for k in (
                    "ts", "equity", "wallet_balance", "unrealized_pnl", "margin",
                    "fees_paid", "funding_paid")})}))
        for p in db.positions(run_id):
            key = (run_id, p["symbol"])
            value = _position_key(p)
            if self.positions.get(key) != value:
                self.positions[key] = value
                events.append(_event("position", run_id, None, at, json_safe(p)))
        risk = risk_summary(db, run_id)
        value = _risk_key(risk)
        if self.risk.get(run_id) != value:
            self.risk[run_id] = value
            events.append(_event("risk", run_id, None, at, json_safe(risk)))
        return events


def audit_event(row: dict[str, Any], at: str) -> dict[str, Any] | None:
    """The event of one audit row (None for rows that are not news to a dashboard)."""
    kind = str(row["kind"])
    try:
        payload = json.loads(row["payload"]) if isinstance(row["payload"], str) \
            else row["payload"]
    except ValueError:
        payload = {"raw": row["payload"]}
    if not isinstance(payload, dict):
        payload = {"value": payload}
    run_id, seq = row.get("run_id"), int(row["seq"])
    data = {"kind": kind, "ts": row.get("ts"), **payload}
    if kind.startswith("order."):
        if kind == "order.create":
            data.setdefault("status", "initialized")
        return _event("order", run_id, seq, at, {**data, "event": kind.split(".", 1)[1]})
    if kind == "fill":
        return _event("fill", run_id, seq, at, data)
    alerts = {
        "liquidation": ("critical", "liquidation"),
        "kill": ("warning", "kill switch applied by the engine: trading halted"),
        "resume": ("info", "resume applied by the engine"),
        "control.stop": ("warning", "kill switch requested"),
        "control.resume": ("info", "resume requested"),
        "run.start": ("info", "run started"),
        "run.resume": ("info", "run resumed"),
        "run.finish": ("info", "run finished"),
    }
    if kind in alerts:
        level, message = alerts[kind]
        if kind == "liquidation":
            message = f"liquidation of {payload.get('symbol')} at {payload.get('ts')}"
        return _event("alert", run_id, seq, at, {**data, "level": level, "message": message})
    return None


def _event(kind: str, run_id: str | None, seq: int | None, at: str,
           data: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "run_id": run_id, "seq": seq, "at": at, "data": json_safe(data)}


def _max_seq(db: Any) -> int:
    import sqlalchemy as sa

    from perptrader.persistence.readers import audit_t

    with db.engine.connect() as conn:  # the newest seq (no reader returns just that)
        return int(conn.execute(sa.select(sa.func.max(audit_t.c.seq))).scalar() or 0)


def _position_key(p: dict[str, Any]) -> tuple[Any, ...]:
    return (p.get("qty"), p.get("entry_price"), p.get("fees"), p.get("funding"))


def _risk_key(risk: dict[str, Any]) -> dict[str, Any]:
    return {k: risk.get(k) for k in ("trading_state", "reason", "code", "flatten_allowed",
                                     "kill_switch", "control_pending", "breakers")}


class EventHub:
    """One tail shared by every WebSocket client: each gets its own queue."""

    def __init__(self, journal: Journal, interval: float = 0.2) -> None:
        self.journal = journal
        self.interval = interval
        self._queues: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(QUEUE_SIZE)
        self._queues.add(queue)
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="perptrader-event-hub")
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._queues.discard(queue)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _run(self) -> None:
        tail: Tail | None = None
        while True:
            if not self._queues:
                tail = None  # nobody listens: start from "now" again for the next client
                self._wake.clear()
                await self._wake.wait()
                continue
            if tail is None:
                tail = Tail(self.journal)
            try:
                events = await asyncio.to_thread(tail.poll)
            except Exception as exc:  # a locked or vanished journal: say so, keep going
                log.warning("event tail failed: %s", exc)
                events = [_event("alert", None, None, datetime.now(UTC).isoformat(),
                                 {"level": "error", "kind": "api.tail",
                                  "message": f"cannot read the journal: {exc}"})]
                await asyncio.sleep(1.0)
            for event in events:
                for queue in list(self._queues):
                    try:
                        queue.put_nowait(event)
                    except asyncio.QueueFull:  # a client that does not read: drop it
                        self._queues.discard(queue)
                        with contextlib.suppress(asyncio.QueueFull):
                            queue.get_nowait()
                            queue.put_nowait(None)
            await asyncio.sleep(self.interval)
