"""Control commands for a running engine (the kill switch): written to the journal by
``trade stop|resume`` and the API alike, applied by the engine at its next bar.

The command is the run's ``control`` state entry ``{"id": n, "command": "stop" |
"resume", ...}`` with an increasing ``id`` (the engine applies each id once), plus a
``control.<command>`` audit row, in one transaction. The id is read inside the write
transaction, so two commands sent at the same moment get different ids.
"""

from __future__ import annotations

from typing import Any

from perptrader.core.errors import PerptraderError
from perptrader.persistence.db import TradingDB

#: the ``run_state`` key of the command (the engine reads it; see trading.engine)
CONTROL = "control"
COMMANDS = ("stop", "resume")


def send_control(db: TradingDB, run_id: str, command: str, **extra: Any) -> dict[str, Any]:
    """Write ``command`` ("stop" with optional ``flatten``/``reason``, or "resume") for
    ``run_id``; returns the stored command. Raises ``PerptraderError`` for an unknown run
    or command."""
    if command not in COMMANDS:
        raise PerptraderError(f"unknown control command {command!r}: use stop or resume")
    with db.transaction() as tx:
        if tx.get_run(run_id) is None:
            raise PerptraderError(f"no run {run_id!r} in the trading database")
        previous = tx.get_state(run_id, CONTROL)
        number = int((previous.value or {}).get("id", 0)) + 1 if previous else 1
        value = {"id": number, "command": command, **extra}
        tx.put_state(run_id, CONTROL, value=value)
        tx.audit(f"control.{command}", value, run_id=run_id)
    return value


def resolve_run(db: TradingDB, run: str | None) -> str:
    """``run`` when the journal has it, else the latest run; a clear error otherwise."""
    if run:
        if db.get_run(run) is None:
            raise PerptraderError(f"no run {run!r} in the trading database")
        return run
    latest = db.latest_run()
    if latest is None:
        raise PerptraderError("no trading run yet: start one with `perptrader trade paper`")
    return str(latest["run_id"])
