"""The contract every feature family follows, so that the pipeline, the look-ahead
check, the incremental (live) path and docs/features.md all treat them alike.

A *family* turns the loader's research frame (``marketdata.loader.load``: index = bar
open time, one row per bar, extras joined as of the bar close) into a block of feature
columns with the same index. Rules every family keeps:

* **No look-ahead.** Row t uses only rows <= t of the frame (and, for book/trade
  data, events before the close of bar t).
* **Start invariance.** After ``memory`` rows, a value does not depend on where the
  frame starts: computing on ``frame.iloc[k:]`` gives the same values (to 1e-9
  relative) for rows >= k + memory. Cumulative raw levels (OBV, A/D, NVI) are only
  emitted in origin-free forms (differences, z-scores, ratios to their own rolling
  mean). This is what lets the live path compute on a bounded buffer of recent bars
  and still match the batch path.
* **Stationary.** Raw price levels are not emitted; distances are in ATR units or
  returns, volumes relative to their own average.
* **Absent, not zero-filled.** A family whose input columns are missing (or all NaN)
  is left out of a build; rows where its input is missing stay NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from perptrader.core.timeframes import timeframe_ms
from perptrader.features.arrays import column_index


@dataclass(frozen=True)
class FeatureSpec:
    """One output column: what docs/features.md prints about it."""

    name: str
    #: the formula in one line, plain text (e.g. "close / SMA(close, 20) - 1")
    formula: str
    #: frame columns it reads (e.g. ("high", "low", "close"))
    inputs: tuple[str, ...]
    #: rows before the first defined value (the pipeline drops the largest warm-up)
    warmup: int
    #: rows of history that determine a value to 1e-9 (recursive smoothers remember
    #: longer than their warm-up: about 12 x period for an EMA); None means ``warmup``
    memory: int | None = None
    #: for windows in clock time (funding carry over 24h, 7d, 30d): the warm-up and
    #: memory in hours; ``warmup``/``memory`` are then the 1h-bar values, and
    #: ``Family.at(timeframe)`` restates them in rows of the build's timeframe
    clock_hours: float | None = None

    @property
    def history(self) -> int:
        return self.warmup if self.memory is None else max(self.memory, self.warmup)

    def at(self, timeframe: str) -> FeatureSpec:
        """This spec with clock-time warm-up and memory expressed in ``timeframe`` rows."""
        if self.clock_hours is None:
            return self
        rows = math.ceil(self.clock_hours * 3_600_000 / timeframe_ms(timeframe))
        return replace(self, warmup=rows, memory=rows)


@dataclass(frozen=True)
class FeatureContext:
    """What a family may need besides the bar frame."""

    symbol: str = ""
    #: the frame's bar timeframe, e.g. "1h"
    timeframe: str = "1h"
    #: top-N L2 snapshots (store kind ``book``: ts, level, bid/ask price/qty) covering the
    #: frame's span, or None when the build does not use order-book data
    book: pd.DataFrame | None = None
    #: trades (store kind ``trades``: ts, price, qty, is_buyer_maker ...) or None
    trades: pd.DataFrame | None = None


Compute = Callable[[pd.DataFrame, FeatureContext], pd.DataFrame]
Available = Callable[[pd.DataFrame, FeatureContext], bool]


def columns_present(frame: pd.DataFrame, columns: Sequence[str]) -> bool:
    """True when every column exists and holds at least one value."""
    return all(c in frame.columns and frame[c].notna().any() for c in columns)


@dataclass(frozen=True)
class Family:
    """A named block of features computed together.

    ``compute(frame, ctx)`` returns a DataFrame indexed like ``frame`` whose columns are
    exactly ``[s.name for s in specs]`` in that order (float64; 0/1 flags as float).
    """

    name: str
    #: one sentence for ``perptrader features list``
    description: str
    #: frame columns the family needs; it is absent when any is missing or all-NaN
    requires: tuple[str, ...]
    specs: tuple[FeatureSpec, ...]
    compute: Compute
    #: overrides the ``requires`` check (e.g. families that read ``ctx.book``)
    available: Available | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    @property
    def warmup(self) -> int:
        return max((s.warmup for s in self.specs), default=0)

    @property
    def history(self) -> int:
        return max((s.history for s in self.specs), default=0)

    def at(self, timeframe: str) -> Family:
        """The family with clock-time warm-ups restated for ``timeframe`` bars."""
        if all(s.clock_hours is None for s in self.specs):
            return self
        return replace(self, specs=tuple(s.at(timeframe) for s in self.specs))

    def is_available(self, frame: pd.DataFrame, ctx: FeatureContext) -> bool:
        if self.available is not None:
            return self.available(frame, ctx)
        return columns_present(frame, self.requires)

    def run(self, frame: pd.DataFrame, ctx: FeatureContext) -> pd.DataFrame:
        """``compute`` plus the contract checks, so a family cannot drift from its specs."""
        out = self.compute(frame, ctx)
        names = self.names
        # a family that labels its block with the shared Index passes without a compare
        if out.columns is not column_index(names) and out.columns.tolist() != names:
            missing = [n for n in names if n not in out.columns]
            extra = [c for c in out.columns if c not in names]
            raise ValueError(f"feature family {self.name!r}: columns differ from its specs "
                             f"(missing {missing}, unexpected {extra})")
        if out.index is not frame.index and not out.index.equals(frame.index):
            raise ValueError(f"feature family {self.name!r}: index differs from the frame's")
        # the live path runs every family on every bar: skip the no-op conversion
        if _all_float64(out):
            return out
        return out.astype("float64")


def _all_float64(frame: pd.DataFrame) -> bool:
    """Every column float64 (cheaply: ``frame.dtypes`` builds a Series, ~20 us)."""
    blocks = getattr(getattr(frame, "_mgr", None), "blocks", None)
    if blocks is not None:  # pandas' block manager: one dtype per block
        return all(block.dtype == np.float64 for block in blocks)
    return all(dtype == np.float64 for dtype in frame.dtypes)  # pragma: no cover
