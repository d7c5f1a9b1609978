"""The array helpers every feature family uses, in one place: reading a column, the
delayed value, division and log that give NaN instead of infinities.

One definition each, because the NaN rules are part of the feature contract
(``base.py``: +-inf never, NaN where an input is missing) and must not differ between
families.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def col(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A frame column as a contiguous float64 array (pandas NA -> NaN; TA-Lib needs
    contiguous input); a missing column is an error naming it (families are checked
    with ``is_available`` before they run)."""
    if name not in frame.columns:
        raise KeyError(f"feature input column {name!r} is not in the frame")
    return np.ascontiguousarray(frame[name].to_numpy(dtype=np.float64, na_value=np.nan))


def shift(x: np.ndarray, k: int) -> np.ndarray:
    """``x`` delayed by ``k`` >= 0 rows (NaN in front): the value known k bars ago."""
    out = np.full(len(x), np.nan)
    if k < len(x):
        out[k:] = x[: len(x) - k]
    return out


def div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with NaN (never +-inf) where den is 0, NaN or infinite."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=np.isfinite(den) & (den != 0))
    return out


def safe_log(x: np.ndarray) -> np.ndarray:
    """Natural log with NaN where x <= 0 or undefined (a broken value, not -inf)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.full(x.shape, np.nan)
    np.log(x, out=out, where=np.isfinite(x) & (x > 0))
    return out
