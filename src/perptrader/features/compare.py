"""Column-wise comparison of two feature frames, shared by the look-ahead check and the
live-path check: same NaN pattern, values within a relative tolerance."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

#: relative tolerance: far below any signal, above float noise of rolling sums
RTOL = 1e-9
#: absolute floor for values near zero (z-scores crossing 0, flags)
ATOL = 1e-9


@dataclass(frozen=True)
class Difference:
    column: str
    #: first row (timestamp) where the two disagree
    first: pd.Timestamp
    rows: int
    max_abs_diff: float
    #: rows where one side is NaN and the other is not
    nan_mismatches: int

    def as_json(self) -> dict[str, object]:
        return {"column": self.column, "first": self.first.isoformat(), "rows": self.rows,
                "max_abs_diff": None if np.isnan(self.max_abs_diff) else self.max_abs_diff,
                "nan_mismatches": self.nan_mismatches}


def differences(expected: pd.DataFrame, actual: pd.DataFrame, *, rtol: float = RTOL,
                atol: float = ATOL) -> list[Difference]:
    """Columns of ``actual`` that disagree with ``expected`` on the shared rows."""
    rows = expected.index.intersection(actual.index)
    columns = [c for c in expected.columns if c in actual.columns]
    x = expected.loc[rows, columns].to_numpy(np.float64)
    y = actual.loc[rows, columns].to_numpy(np.float64)
    x_nan, y_nan = np.isnan(x), np.isnan(y)
    with np.errstate(invalid="ignore"):
        diff = np.abs(x - y)
        close = diff <= atol + rtol * np.abs(x)
    bad = (x_nan != y_nan) | (~x_nan & ~y_nan & ~close)
    out = []
    for j in np.flatnonzero(bad.any(axis=0)):
        col_bad = bad[:, j]
        both = ~x_nan[:, j] & ~y_nan[:, j]
        valued = both & col_bad
        max_diff = float(diff[valued, j].max()) if valued.any() else float("nan")
        out.append(Difference(
            column=columns[j], first=rows[int(np.argmax(col_bad))], rows=int(col_bad.sum()),
            max_abs_diff=max_diff, nan_mismatches=int((x_nan[:, j] != y_nan[:, j]).sum())))
    return out
