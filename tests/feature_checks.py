"""Contract checks every feature family's tests run (see perptrader.features.base)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from perptrader.features.base import Family, FeatureContext


def assert_frames_close(a: pd.DataFrame, b: pd.DataFrame, *, rtol: float = 1e-9,
                        atol: float = 1e-12, what: str = "") -> None:
    """Equal shape, NaN in the same places, values within tolerance; names the columns."""
    assert list(a.columns) == list(b.columns), what
    assert a.index.equals(b.index), what
    x, y = a.to_numpy(float), b.to_numpy(float)
    same_nan = np.isnan(x) == np.isnan(y)
    close = np.isclose(x, y, rtol=rtol, atol=atol, equal_nan=True)
    bad = ~(same_nan & close)
    if bad.any():
        cols = [a.columns[j] for j in np.flatnonzero(bad.any(axis=0))]
        rows = np.flatnonzero(bad.any(axis=1))
        raise AssertionError(f"{what}: {len(cols)} columns differ, e.g. {cols[:8]} "
                             f"(first row {a.index[rows[0]]})")


def assert_no_lookahead(family: Family, frame: pd.DataFrame,
                        ctx: FeatureContext | None = None, *, cuts: int = 4) -> None:
    """Features on ``frame.iloc[:c]`` equal the full computation's first c rows."""
    ctx = ctx or FeatureContext()
    full = family.run(frame, ctx)
    n = len(frame)
    for c in np.linspace(n // 3, n - 1, cuts).astype(int):
        part = family.run(frame.iloc[:c], ctx)
        assert_frames_close(part, full.iloc[:c], what=f"{family.name} cut at row {c}")


def assert_start_invariant(family: Family, frame: pd.DataFrame,
                           ctx: FeatureContext | None = None, *, offset: int = 37) -> None:
    """After ``family.history`` rows, values do not depend on where the frame starts."""
    ctx = ctx or FeatureContext()
    full = family.run(frame, ctx)
    late = family.run(frame.iloc[offset:], ctx)
    skip = family.history
    assert skip < len(late), f"{family.name}: history {skip} longer than the test frame"
    assert_frames_close(late.iloc[skip:], full.iloc[offset + skip:], rtol=1e-8, atol=1e-10,
                        what=f"{family.name} started {offset} rows later")


def assert_contract(family: Family, frame: pd.DataFrame,
                    ctx: FeatureContext | None = None) -> pd.DataFrame:
    """Columns match the specs, no infinities, defined after warm-up; returns the block."""
    ctx = ctx or FeatureContext()
    out = family.run(frame, ctx)
    values = out.to_numpy(float)
    assert not np.isinf(values).any(), f"{family.name}: infinite values"
    after = out.iloc[family.warmup:]
    all_nan = [c for c in after.columns if after[c].isna().all()]
    assert not all_nan, f"{family.name}: never defined after warm-up: {all_nan}"
    return out
