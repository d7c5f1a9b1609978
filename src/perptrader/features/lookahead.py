"""The proof of no look-ahead: every feature recomputed on truncated histories must
equal the full computation on the rows both share.

If a feature at row t used anything after t (a centred window, a backward fill, a
forward-shifted join), cutting the data after t changes it, and this check names it.
Labels look ahead by design and are never checked here; they are not features.
The loader's own truncation property (stored data cut at time t changes no joined row
closing at or before t) is proven by tests/marketdata/test_loader.py; this check
covers the feature code on top of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from perptrader.core.timeframes import timeframe_delta
from perptrader.features.base import Family, FeatureContext
from perptrader.features.compare import Difference, differences
from perptrader.features.pipeline import compute_features

#: where the histories are cut, as shares of the frame (plus the last row itself)
DEFAULT_CUTS = (0.35, 0.6, 0.8, 0.95)


@dataclass
class LookaheadReport:
    n_features: int
    rows: int
    cuts: list[pd.Timestamp]
    #: feature → the first difference found (at the earliest cut that shows it)
    offenders: dict[str, Difference] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.offenders

    def as_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "n_features": self.n_features,
            "rows": self.rows,
            "cuts": [c.isoformat() for c in self.cuts],
            "offending_features": sorted(self.offenders),
            "details": {k: v.as_json() for k, v in sorted(self.offenders.items())},
        }


def cut_positions(n: int, shares: Sequence[float] = DEFAULT_CUTS) -> list[int]:
    """Row counts to keep: the given shares of ``n`` and ``n - 1`` (drop the last bar)."""
    cuts = {max(1, int(n * s)) for s in shares} | {n - 1}
    return sorted(c for c in cuts if 0 < c < n)


def truncate_context(ctx: FeatureContext, frame: pd.DataFrame, rows: int) -> FeatureContext:
    """The context as it was when bar ``rows - 1`` closed: book/trade events before it."""
    if ctx.book is None and ctx.trades is None:
        return ctx
    close = frame.index[rows - 1] + timeframe_delta(ctx.timeframe)

    def cut(events: pd.DataFrame | None) -> pd.DataFrame | None:
        if events is None:
            return None
        return events[pd.to_datetime(events["ts"], utc=True) < close]

    return FeatureContext(symbol=ctx.symbol, timeframe=ctx.timeframe, book=cut(ctx.book),
                          trades=cut(ctx.trades))


def lookahead_check(frame: pd.DataFrame, families: Sequence[Family], ctx: FeatureContext,
                    *, shares: Sequence[float] = DEFAULT_CUTS,
                    progress: object | None = None) -> LookaheadReport:
    """Compare features on ``frame.iloc[:c]`` with the full computation for each cut c.

    ``progress``: optional callable(done, total) for a progress bar.
    """
    full = compute_features(frame, families, ctx)
    cuts = cut_positions(len(frame), shares)
    report = LookaheadReport(n_features=full.shape[1], rows=len(frame),
                             cuts=[frame.index[c - 1] for c in cuts])
    for i, c in enumerate(cuts):
        part = compute_features(frame.iloc[:c], families, truncate_context(ctx, frame, c))
        for diff in differences(full.iloc[:c], part):
            report.offenders.setdefault(diff.column, diff)
        if callable(progress):
            progress(i + 1, len(cuts))
    return report


def leaky_rows(report: LookaheadReport) -> np.ndarray:
    """Timestamps of the first differing row per offender (for plots and messages)."""
    return np.array([d.first for d in report.offenders.values()])
