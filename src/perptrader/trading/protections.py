"""Protections (after freqtrade's): a cooldown after each exit and a lock after a run of
stop-outs, plus the durations they are written in.

They block only NEW exposure; the risk manager lets reducing orders through them, since a
protection exists to stop a strategy digging deeper, never to keep a position open.

Durations are written either as a bar count (an int, or a string of digits such as "3")
resolved with the run's timeframe, or as a time span "<n><unit>" with unit s, m, h, d or
w ("0h", "30m", "4h", "1d"), the units of ``core.timeframes``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from perptrader.core.timeframes import timeframe_delta
from perptrader.trading.orders import utc_timestamp

#: exit reasons that count as stop-outs for the lock ("stop" for venues that do not say
#: which stop; the rest are ``sim.kernel.REASONS``)
STOPOUT_REASONS = frozenset({"stop", "stop_loss", "trailing_stop", "liquidation"})
_SPAN = re.compile(r"^(\d+)([smhdw])$")


def check_duration(value: Any) -> int | str:
    """``value`` normalised (a bar count as int, a span as its string); ValueError if it is
    neither. Zero is allowed here; callers that need a positive span check ``> 0``."""
    if isinstance(value, bool):
        raise ValueError(f"a duration is a bar count or e.g. '4h', got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a bar count must be >= 0, got {value}")
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return int(text)
        if _SPAN.match(text):
            return text
    raise ValueError(f"a duration is a bar count (e.g. 3) or a span like '30m', '4h', '1d', "
                     f"got {value!r}")


def resolve_duration(value: int | str, timeframe: str | None) -> pd.Timedelta:
    """The span of a checked duration. A non-zero bar count needs ``timeframe``."""
    value = check_duration(value)
    if isinstance(value, int):
        if value == 0:
            return pd.Timedelta(0)
        if timeframe is None:
            raise ValueError(f"{value} is a bar count, which needs the run's timeframe")
        return value * timeframe_delta(timeframe)
    count = int(value[:-1])  # checked above: digits then one unit letter
    return pd.Timedelta(0) if count == 0 else timeframe_delta(value)


@dataclass
class ProtectionState:
    """What the protections remember: the last exit per symbol (cooldown), recent
    stop-outs (within the lock window) and the current lock, if any."""

    last_exit: dict[str, pd.Timestamp] = field(default_factory=dict)
    stopouts: list[pd.Timestamp] = field(default_factory=list)
    locked_until: pd.Timestamp | None = None
    lock_reason: str = ""

    def record_exit(self, symbol: str, ts: Any, reason: str, *, lock_count: int | None,
                    window: pd.Timedelta, duration: pd.Timedelta) -> None:
        """Remember an exit; ``lock_count`` stop-outs within ``window`` (ending now) lock
        new entries on every symbol for ``duration``."""
        ts = utc_timestamp(ts)
        prev = self.last_exit.get(symbol)
        self.last_exit[symbol] = ts if prev is None else max(prev, ts)
        if reason not in STOPOUT_REASONS:
            return
        self.stopouts.append(ts)
        latest = max(self.stopouts)
        self.stopouts = sorted(t for t in self.stopouts if t > latest - window)
        if lock_count is None:
            return
        recent = sum(1 for t in self.stopouts if ts - window < t <= ts)
        if recent >= lock_count:
            until = ts + duration
            if self.locked_until is None or until > self.locked_until:
                self.locked_until = until
                self.lock_reason = (f"{recent} stop-outs within {window} (last: {symbol} "
                                    f"{reason} at {ts.isoformat()})")

    def block(self, symbol: str, now: pd.Timestamp,
              cooldown: pd.Timedelta) -> tuple[str, str] | None:
        """(code, reason) if a protection blocks new exposure on ``symbol`` now."""
        if self.locked_until is not None and now < self.locked_until:
            return ("stopout_lock",
                    f"entries locked until {self.locked_until.isoformat()}: {self.lock_reason}")
        last = self.last_exit.get(symbol)
        if cooldown > pd.Timedelta(0) and last is not None and now < last + cooldown:
            return ("cooldown", f"{symbol} exited at {last.isoformat()}; cooldown {cooldown} "
                                f"until {(last + cooldown).isoformat()}")
        return None

    def clear_locks(self) -> None:
        """Lift the stop-out lock and forget the stop-outs behind it (cooldowns stay)."""
        self.locked_until = None
        self.lock_reason = ""
        self.stopouts = []

    def to_dict(self) -> dict[str, Any]:
        return {
            "last_exit": {s: t.isoformat() for s, t in sorted(self.last_exit.items())},
            "stopouts": [t.isoformat() for t in self.stopouts],
            "locked_until": None if self.locked_until is None else self.locked_until.isoformat(),
            "lock_reason": self.lock_reason,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProtectionState:
        locked = data.get("locked_until")
        return cls(
            last_exit={s: utc_timestamp(t) for s, t in data.get("last_exit", {}).items()},
            stopouts=[utc_timestamp(t) for t in data.get("stopouts", [])],
            locked_until=None if locked is None else utc_timestamp(locked),
            lock_reason=str(data.get("lock_reason", "")),
        )
