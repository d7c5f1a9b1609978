"""How values are stored: times as integer epoch milliseconds (UTC), documents as JSON.

Integers for time are exact, sort the same on every backend and need no time-zone
handling in SQLite (which has no timestamp type); the audit hash covers them, so they
must not change by a round trip through a driver.
"""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal
from pathlib import PurePath
from typing import Any

import numpy as np
import orjson

#: a time given to the API: epoch milliseconds, or an aware datetime / pandas Timestamp
TimeLike = int | dt.datetime | np.datetime64 | np.integer

_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
_CANONICAL_OPTIONS = _JSON_OPTIONS | orjson.OPT_SORT_KEYS


def now_ms() -> int:
    """The wall clock in epoch milliseconds (created_at / updated_at columns)."""
    return time.time_ns() // 1_000_000


def to_ms(value: TimeLike) -> int:
    """Epoch milliseconds of ``value``. Naive datetimes are refused: a bar time without a
    zone is ambiguous, and a wrong hour in the trading record is worse than an error."""
    if isinstance(value, bool):
        raise TypeError("a time cannot be a bool")
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, np.datetime64):
        return int(value.astype("datetime64[ms]").astype(np.int64))
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
            raise ValueError(f"naive datetime {value.isoformat()}: give a UTC-aware time")
        nanos = getattr(value, "value", None)  # pandas Timestamp: exact nanoseconds
        if isinstance(nanos, int):
            return nanos // 1_000_000
        return (value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)
    raise TypeError(f"not a time: {value!r} ({type(value).__name__})")


def _default(value: Any) -> Any:
    """What orjson does not know natively (pandas Timestamps, Decimals, paths, sets)."""
    if isinstance(value, dt.datetime):  # pandas Timestamp (a subclass orjson refuses)
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "isoformat"):  # pandas NaT and other date-likes
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


def dumps(value: Any) -> str:
    """JSON text for a JSON column (the engine's ``json_serializer``). NaN becomes null."""
    return orjson.dumps(value, default=_default, option=_JSON_OPTIONS).decode()


def canonical(value: Any) -> str:
    """Canonical JSON: sorted keys, no whitespace, UTF-8 as is, shortest float repr.
    The audit log stores this text and hashes it byte for byte."""
    return orjson.dumps(value, default=_default, option=_CANONICAL_OPTIONS).decode()


def loads(text: str | bytes) -> Any:
    return orjson.loads(text)
