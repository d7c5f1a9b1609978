"""Timeframes such as ``1m``, ``4h``, ``1d``: parsing and conversions, in one place."""

from __future__ import annotations

import re

import pandas as pd

from perptrader.core.errors import InputError

_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_PATTERN = re.compile(r"^(\d+)([smhdw])$")


def timeframe_ms(timeframe: str) -> int:
    """Length of one bar in milliseconds. Raises ValueError on anything unparseable."""
    match = _PATTERN.match(timeframe.strip())
    if not match:
        raise InputError(f"not a timeframe: {timeframe!r} (expected e.g. 1m, 15m, 1h, 4h, 1d, 1w)")
    count, unit = int(match.group(1)), match.group(2)
    if count <= 0:
        raise InputError(f"not a timeframe: {timeframe!r}")
    return count * _UNIT_MS[unit]


def timeframe_delta(timeframe: str) -> pd.Timedelta:
    return pd.Timedelta(milliseconds=timeframe_ms(timeframe))


def ms_to_timeframe(step_ms: int) -> str:
    """The shortest label for a step, e.g. 14_400_000 -> '4h'. Used for inferred steps."""
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNIT_MS[unit]
        if step_ms % size == 0:
            return f"{step_ms // size}{unit}"
    return f"{step_ms}ms"


def is_timeframe(text: str) -> bool:
    return bool(_PATTERN.match(text))


def utc_time(value: object) -> pd.Timestamp:
    """A date or time the user gave (``2024-01-01``, ISO text, datetime) as a UTC
    timestamp; naive means UTC. InputError names the value when it is not a time."""
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        ts = pd.NaT
    if pd.isna(ts):
        raise InputError(f"not a date or time: {value!r} (expected e.g. 2024-01-01)")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
