"""The bot's commands: a chat id and a message in, a reply out (None: no answer).

Only the configured chats are answered; any other chat gets nothing back and a logged
refusal. Replies come from the same journal readers as ``trade status`` and /stop and
/resume write the same control command as ``trade stop|resume``
(``trading.control.send_control``): the engine applies it at its next bar."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from perptrader.core.errors import PerptraderError
from perptrader.notify import journal as J
from perptrader.notify.text import daily_text, pnl_text, positions_text, status_text
from perptrader.persistence.db import TradingDB
from perptrader.persistence.errors import TradingStateError
from perptrader.trading.control import resolve_run, send_control
from perptrader.trading.status import run_status

log = logging.getLogger("perptrader.notify")

HELP = {
    "status": "equity, orders, positions, risk state and kill switch of the run",
    "positions": "open positions",
    "pnl": "PnL since the start and today",
    "daily": "the summary of the current UTC day (or /daily YYYY-MM-DD)",
    "stop": "kill switch: block new orders (/stop flatten [reason] also closes positions)",
    "resume": "lift the kill switch",
    "help": "this list",
}


def parse(text: str) -> tuple[str, list[str]] | None:
    """``"/stop@my_bot flatten now"`` -> ``("stop", ["flatten", "now"])``; None for text
    that is not a command."""
    words = text.strip().split()
    if not words or not words[0].startswith("/"):
        return None
    return words[0][1:].split("@", 1)[0].lower(), words[1:]


class Replies:
    def __init__(self, db: TradingDB, chat_ids: Iterable[int], run: str | None = None) -> None:
        self.db = db
        self.chat_ids = frozenset(int(c) for c in chat_ids)
        self.run = run
        self._handlers: dict[str, Callable[[int, list[str]], str]] = {
            "status": self._status, "positions": self._positions, "pnl": self._pnl,
            "daily": self._daily, "stop": self._stop, "resume": self._resume,
            "help": self._help, "start": self._help}

    def allowed(self, chat_id: int | None) -> bool:
        return chat_id is not None and int(chat_id) in self.chat_ids

    def answer(self, chat_id: int | None, text: str, sender: str = "") -> str | None:
        command = parse(text or "")
        if not self.allowed(chat_id):
            log.warning("telegram: refused %s from chat %s%s (not in notify.chat_ids)",
                        f"/{command[0]}" if command else "a message", chat_id,
                        f" ({sender})" if sender else "")
            return None
        if command is None:
            return None
        name, args = command
        handler = self._handlers.get(name)
        if handler is None:
            return f"unknown command /{name}\n" + self._help(chat_id or 0, [])
        log.info("telegram: /%s from chat %s", name, chat_id)
        assert chat_id is not None
        try:
            return handler(int(chat_id), args)
        except (PerptraderError, TradingStateError) as exc:
            return f"error: {exc}"

    # ---- the commands ----------------------------------------------------------------
    def _run_id(self) -> str:
        return resolve_run(self.db, self.run)

    def _status(self, chat_id: int, args: list[str]) -> str:
        return status_text(run_status(self.db, self._run_id()))

    def _positions(self, chat_id: int, args: list[str]) -> str:
        run_id = self._run_id()
        return positions_text(run_id, self.db.positions(run_id),
                              J.latest_balance(self.db, run_id))

    def _pnl(self, chat_id: int, args: list[str]) -> str:
        run_id = self._run_id()
        last = J.latest_balance(self.db, run_id)
        today = J.day_summary(self.db, run_id, J.day_of(last["ts"])) if last else None
        return pnl_text(run_status(self.db, run_id), today)

    def _daily(self, chat_id: int, args: list[str]) -> str:
        run_id = self._run_id()
        if args:
            day = args[0]
            try:
                day = J.day_of(J.day_start_ms(day))
            except ValueError:
                return f"not a day: {day!r} (YYYY-MM-DD)"
        else:
            last = J.latest_balance(self.db, run_id)
            if last is None:
                return f"{run_id} has no bar yet"
            day = J.day_of(last["ts"])
        summary = J.day_summary(self.db, run_id, day)
        return daily_text(summary) if summary else f"{run_id} has no bar on {day}"

    def _stop(self, chat_id: int, args: list[str]) -> str:
        run_id = self._run_id()
        flatten = any(a.lower() in ("flatten", "--flatten") for a in args)
        reason = " ".join(a for a in args if a.lower() not in ("flatten", "--flatten"))
        send_control(self.db, run_id, "stop", flatten=flatten,
                     reason=f"telegram chat {chat_id}: {reason or 'kill switch'}")
        return (f"kill switch set for {run_id}" + (" (flatten)" if flatten else "")
                + ": the engine applies it at its next bar" + self._not_running(run_id))

    def _resume(self, chat_id: int, args: list[str]) -> str:
        run_id = self._run_id()
        send_control(self.db, run_id, "resume", reason=f"telegram chat {chat_id}")
        return (f"resume sent to {run_id}: the engine applies it at its next bar"
                + self._not_running(run_id))

    def _not_running(self, run_id: str) -> str:
        status = (self.db.get_run(run_id) or {}).get("status")
        if status == "running":
            return ""
        if status == "finished":
            return " (but the run is finished: no engine will apply it)"
        return f" (the run is {status}: it applies when the run is started again)"

    def _help(self, chat_id: int, args: list[str]) -> str:
        return "\n".join(f"/{k} – {v}" for k, v in HELP.items())
