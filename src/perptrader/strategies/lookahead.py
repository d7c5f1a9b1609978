"""Does a policy peek at the future? Change the future and see whether the past moves.

For a cut at row c, every row after c gets very different prices and volumes (each bar
scaled by its own random factor between 0.3x and 3x, OHLC kept consistent); the targets
of rows <= c must come out exactly as on the untouched frame. A policy that reads even
one bar ahead (a ``shift(-1)``, a centred window, a normalisation over the whole frame)
changes some target before the cut. This is freqtrade's ``lookahead-analysis`` idea
applied to target series: it checks the policy as a black box, so it also checks
policies a user writes.

Every cut is tried on short frames; on long ones ``cuts`` random cuts (at least 500 by
default) spread over the frame, plus the first and last possible cut.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from perptrader.strategies.base import Policy

PRICE_COLUMNS = ("open", "high", "low", "close")
#: columns scaled with the prices after a cut (when present)
PRICE_LIKE = (*PRICE_COLUMNS, "mark_open", "mark_high", "mark_low", "mark_close",
              "index_open", "index_high", "index_low", "index_close", "vwap")
VOLUME_LIKE = ("volume", "quote_volume", "trades", "taker_buy_volume",
               "taker_buy_quote_volume")
#: frames up to this many rows get every cut
EVERY_CUT_MAX_ROWS = 600
DEFAULT_CUTS = 500


@dataclass
class LookaheadReport:
    policy: str
    rows: int
    cuts: int
    #: the first bar whose target changed when only later bars changed (None = clean)
    first_moved_bar: pd.Timestamp | None = None
    cut_at: pd.Timestamp | None = None
    before: float | None = None
    after: float | None = None
    failing_cuts: int = 0
    details: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.first_moved_bar is None

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "policy": self.policy, "rows": self.rows, "cuts": self.cuts,
                "failing_cuts": self.failing_cuts,
                "first_moved_bar": _iso(self.first_moved_bar), "cut_at": _iso(self.cut_at),
                "target_before": self.before, "target_after": self.after,
                "details": self.details[:20]}


def perturb_after(frame: pd.DataFrame, cut: int, rng: np.random.Generator) -> pd.DataFrame:
    """``frame`` with every row after position ``cut`` given other prices and volumes."""
    out = frame.copy()
    n_after = len(frame) - cut - 1
    if n_after <= 0:
        return out
    price_scale = np.exp(rng.uniform(np.log(0.3), np.log(3.0), n_after))
    volume_scale = np.exp(rng.uniform(np.log(0.1), np.log(10.0), n_after))
    rows = slice(cut + 1, None)
    for col in PRICE_LIKE:
        if col in out.columns and pd.api.types.is_numeric_dtype(out[col]):
            values = out[col].to_numpy(dtype=np.float64, copy=True)
            values[rows] *= price_scale
            out[col] = values
    for col in VOLUME_LIKE:
        if col in out.columns and pd.api.types.is_numeric_dtype(out[col]):
            values = out[col].to_numpy(dtype=np.float64, copy=True)
            values[rows] *= volume_scale
            out[col] = values
    if all(c in out.columns for c in PRICE_COLUMNS):
        # scaled bars stay bars: swap open/close at random so direction changes too
        swap = np.zeros(len(out), dtype=bool)
        swap[cut + 1:] = rng.random(n_after) < 0.5
        o = out["open"].to_numpy(copy=True)
        c = out["close"].to_numpy(copy=True)
        o[swap], c[swap] = c[swap], o[swap].copy()
        out["open"], out["close"] = o, c
    return out


def choose_cuts(n_rows: int, first: int, cuts: int, rng: np.random.Generator) -> np.ndarray:
    """Row positions to cut after: all of ``first .. n_rows - 2`` for short frames, else
    ``cuts`` distinct random ones plus both ends."""
    last = n_rows - 2
    if last < first:
        return np.zeros(0, dtype=np.int64)
    if n_rows <= EVERY_CUT_MAX_ROWS or last - first + 1 <= cuts:
        return np.arange(first, last + 1, dtype=np.int64)
    chosen = rng.choice(np.arange(first, last + 1), size=cuts, replace=False)
    return np.unique(np.concatenate([[first, last], chosen])).astype(np.int64)


def lookahead_check(policy: Policy, frame: pd.DataFrame, *, cuts: int = DEFAULT_CUTS,
                    seed: int = 0, first: int | None = None,
                    progress: Callable[[int, int], None] | None = None) -> LookaheadReport:
    """Cut ``frame`` at many rows, change everything after each cut, and compare the
    targets up to the cut with the untouched run. ``first``: the earliest cut (default:
    the policy's warm-up, where targets start to mean something, but at least row 1)."""
    if len(frame) < 3:
        raise ValueError(f"a look-ahead check needs at least 3 bars, got {len(frame)}")
    rng = np.random.default_rng(seed)
    base = np.asarray(policy.targets(frame), dtype=np.float64)
    start = max(1, min(first if first is not None else int(policy.warmup_bars),
                       len(frame) - 2))
    positions = choose_cuts(len(frame), start, cuts, rng)
    report = LookaheadReport(policy=policy.name, rows=len(frame), cuts=len(positions))
    for k, cut in enumerate(positions):
        changed = np.asarray(policy.targets(perturb_after(frame, int(cut), rng)),
                             dtype=np.float64)
        a, b = base[: cut + 1], changed[: cut + 1]
        moved = ~((a == b) | (np.isnan(a) & np.isnan(b)))
        if moved.any():
            j = int(np.argmax(moved))
            report.failing_cuts += 1
            report.details.append({"cut_at": _iso(frame.index[cut]),
                                   "moved_bar": _iso(frame.index[j]),
                                   "before": _num(a[j]), "after": _num(b[j])})
            if report.first_moved_bar is None or frame.index[j] < report.first_moved_bar:
                report.first_moved_bar = frame.index[j]
                report.cut_at = frame.index[cut]
                report.before, report.after = _num(a[j]), _num(b[j])
        if progress is not None:
            progress(k + 1, len(positions))
    return report


def _num(v: float) -> float | None:
    return None if np.isnan(v) else float(v)


def _iso(ts: pd.Timestamp | None) -> str | None:
    return None if ts is None else pd.Timestamp(ts).isoformat()
