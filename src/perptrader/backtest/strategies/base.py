"""The strategy protocol the backtester runs.

A strategy turns the loader's research frame into one TARGET EXPOSURE per bar
(signed notional / equity, before leverage): +1 = fully long, -1 = fully short, 0 =
flat, NaN = keep whatever position is held. The target of bar t is decided at the
CLOSE of bar t from rows <= t only; the simulator fills it at a later bar's open. So a
strategy must give the same targets for rows <= t whether it sees ``frame[:t+1]`` or
the whole frame (tests check this by truncation).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd


@runtime_checkable
class Strategy(Protocol):
    #: registry name, e.g. ``sma_cross``
    name: str

    @property
    def params(self) -> dict[str, Any]:
        """The parameters that fully determine the targets (written to result.json)."""
        ...

    def targets(self, frame: pd.DataFrame) -> np.ndarray:
        """float64 target exposure per row of ``frame`` (see the module docstring)."""
        ...


def close_prices(frame: pd.DataFrame) -> np.ndarray:
    """The close column as float64, refusing a frame without one."""
    if "close" not in frame.columns:
        raise ValueError("the frame has no 'close' column")
    return frame["close"].to_numpy(dtype=np.float64, na_value=np.nan)


def parse_bool(value: object) -> bool:
    """``true/false/1/0/yes/no`` from the CLI's ``--param key=value`` strings."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def unknown_params(given: Mapping[str, object], known: set[str], name: str) -> None:
    extra = sorted(set(given) - known)
    if extra:
        raise ValueError(f"strategy {name!r} has no parameter(s) {extra}; "
                         f"it takes {sorted(known)}")
