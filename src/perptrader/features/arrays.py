"""The array helpers every feature family uses, in one place: reading a column, the
delayed value, division and log that give NaN instead of infinities.

One definition each, because the NaN rules are part of the feature contract
(``base.py``: +-inf never, NaN where an input is missing) and must not differ between
families.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import pandas as pd

from perptrader.features import shared


def col(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A frame column as a contiguous float64 array (pandas NA -> NaN; TA-Lib needs
    contiguous input); a missing column is an error naming it (families are checked
    with ``is_available`` before they run).

    A float64 column comes back as the frame's own memory, READ-ONLY (copy-on-write):
    the live path reads a few dozen columns per bar and the copies were a large part
    of its cost. Compute into new arrays, never into an input."""
    if name not in frame.columns:
        raise KeyError(f"feature input column {name!r} is not in the frame")
    return shared.column(frame, name, _read)


def _read(frame: pd.DataFrame, name: str) -> np.ndarray:
    series = frame[name]
    if series.dtype == np.float64:  # NaN is already NaN: no NA conversion needed
        values = series.to_numpy()
        if values.flags.writeable:  # a view pandas did not protect: protect it here
            values = values.view()
            values.flags.writeable = False
        return values if values.flags.c_contiguous else np.ascontiguousarray(values)
    return np.ascontiguousarray(series.to_numpy(dtype=np.float64, na_value=np.nan))


def block_frame(frame: pd.DataFrame, columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """The output of a family: float64 ``columns`` in the given order, indexed like
    ``frame``, as ONE block (a frame built from a dict of arrays costs a block per
    column and more than the arithmetic on a live tail)."""
    n = len(frame)
    block = np.empty((len(columns), n))
    for i, values in enumerate(columns.values()):
        block[i] = values
    return pd.DataFrame(block.T, index=frame.index, columns=column_index(tuple(columns)),
                        copy=False)


@lru_cache(maxsize=1024)
def _index_of(names: tuple[str, ...]) -> pd.Index:
    return pd.Index(names)


def column_index(names: Sequence[str]) -> pd.Index:
    """The column labels as a (cached, immutable) Index: pandas builds an Arrow-backed
    string index from a list of names on every frame, ~0.1 ms for a family's dozens."""
    return _index_of(tuple(names))


def shift(x: np.ndarray, k: int) -> np.ndarray:
    """``x`` delayed by ``k`` >= 0 rows (NaN in front): the value known k bars ago."""
    n = len(x)
    out = np.empty(n)
    if k < n:
        out[:k] = np.nan
        out[k:] = x[: n - k]
    else:
        out.fill(np.nan)
    return out


def div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with NaN (never +-inf) where den is 0, NaN or infinite."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    ok = np.isfinite(den) & (den != 0)
    shape = num.shape if num.shape == den.shape else np.broadcast_shapes(num.shape, den.shape)
    out = np.empty(shape)
    out.fill(np.nan)
    np.divide(num, den, out=out, where=ok)
    return out


def safe_log(x: np.ndarray) -> np.ndarray:
    """Natural log with NaN where x <= 0 or undefined (a broken value, not -inf)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.full(x.shape, np.nan)
    np.log(x, out=out, where=np.isfinite(x) & (x > 0))
    return out
