"""One way to turn result dicts into plain JSON values.

Results, manifests, tuning records and the trading database all write JSON, and JSON has
no NaN, no numpy scalars and no timestamps. One function decides how each of those is
written, so the same figure never appears as ``NaN`` in one file and ``null`` in another.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON types, recursively.

    numpy scalars and arrays -> Python numbers and lists; non-finite floats -> None;
    dataclass instances -> their fields plus ``"__class__"`` (model configs in manifests);
    paths -> str; datetimes -> ISO 8601; anything else unknown -> ``str(value)``.
    """
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"__class__": type(value).__name__, **json_safe(dataclasses.asdict(value))}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)
