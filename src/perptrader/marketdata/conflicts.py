"""Incoming rows whose key is already stored with different values: found, reported and
resolved before a write, so that no import changes stored data without saying so.

The store's merge rules stay as they are for the cases they exist for: a bar saved while
it was still forming (same open, a range inside the final bar's, less volume) gives way
to the final bar, so does a zero-volume flat placeholder (an exchange incident) to a
traded bar, and missing values are filled in. Anything else that differs is a
*conflict*: every conflicting row is counted and the first ones shown, per file, and the
user's policy decides (``data import --on-conflict``):

- ``keep`` (default): the stored values stay, the conflicts are reported;
- ``replace``: the file's values replace the stored ones, except *implausible* ones;
- ``fail``: the file is refused when any row conflicts.

A replacement bar is implausible when one of its prices lies more than
``Plausibility.max_jump`` away from all of the bar's other OHLC values, or from all
prices of the neighbouring bars (a 1e300 high, a 10x print, a bar shifted 1000x):
such a bar never replaces a stored one, whatever the policy (with ``fail`` it refuses
the file like any conflict).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from perptrader.core.errors import DataFormatError
from perptrader.core.timeframes import timeframe_delta
from perptrader.marketdata.dataset import (
    DEFAULT_PLAUSIBILITY,
    Dataset,
    Plausibility,
    epoch_us,
)
from perptrader.marketdata.kinds import BAR_KINDS, TABLES, Kind
from perptrader.marketdata.store.base import MarketStore

POLICIES = ("keep", "replace", "fail")
EXAMPLES = 5
_OHLC = ("open", "high", "low", "close")
#: values that legitimately differ between two sources of the same row: the raw
#: settlement time within the minute slot, an interval derived from a file's edges
_IGNORED = {Kind.FUNDING: {"exchange_ts", "interval_hours"}}
_RTOL = 1e-9


@dataclass
class ConflictSummary:
    """What one file's rows did against the stored ones."""

    rows: int = 0  # rows whose stored values differ (forming bars excluded)
    kept: int = 0  # ... left as stored
    replaced: int = 0  # ... replaced by the file's values
    implausible: int = 0  # replacements refused as implausible (counted in ``kept``)
    examples: list[str] = field(default_factory=list)

    def add(self, other: ConflictSummary) -> None:
        self.rows += other.rows
        self.kept += other.kept
        self.replaced += other.replaced
        self.implausible += other.implausible
        self.examples = (self.examples + other.examples)[:EXAMPLES]

    def as_json(self) -> dict[str, object]:
        return {"rows": self.rows, "kept": self.kept, "replaced": self.replaced,
                "implausible": self.implausible, "examples": self.examples}

    def describe(self) -> str:
        if not self.rows and not self.implausible:
            return ""
        parts = [f"{self.rows} row(s) conflict with stored values"]
        if self.kept:
            parts.append(f"{self.kept} kept as stored")
        if self.replaced:
            parts.append(f"{self.replaced} replaced")
        if self.implausible:
            parts.append(f"{self.implausible} implausible replacement(s) refused")
        return ", ".join(parts) + (f"; e.g. {self.examples[0]}" if self.examples else "")


def resolve(ds: Dataset, store: MarketStore, policy: str = "keep",
            bounds: Plausibility = DEFAULT_PLAUSIBILITY) -> tuple[list[Dataset], ConflictSummary]:
    """The datasets to write instead of ``ds``, and what conflicted.

    Raises DataFormatError (naming the first conflicting row) under ``policy='fail'``.
    """
    if policy not in POLICIES:
        raise ValueError(f"on-conflict policy must be one of {POLICIES}, got {policy!r}")
    summary = ConflictSummary()
    if ds.rows == 0:
        return [ds], summary
    spec = TABLES[ds.kind]
    bars = ds.kind in BAR_KINDS
    new = ds.frame
    pad = timeframe_delta(ds.timeframe) if bars and ds.timeframe else pd.Timedelta(0)
    start = new["ts"].min() - pad
    end = new["ts"].max() + pad + pd.Timedelta(microseconds=1)
    stored = store.read(ds.kind, ds.instrument, ds.timeframe, start.to_pydatetime(),
                        end.to_pydatetime())
    if stored.empty:
        return [ds], summary
    key = [c for c in spec.key_names if c in new.columns]
    left = new.reset_index(names="_row")
    left["_pos"] = np.arange(len(left))
    both = left.merge(stored, on=key, how="inner", suffixes=("", "_old"))
    if both.empty:
        return [ds], summary
    compare = [c for c in spec.value_names
               if c in new.columns and c not in _IGNORED.get(ds.kind, set())]
    differs = {c: _differs(both[c], both[f"{c}_old"]) for c in compare}
    any_diff = np.logical_or.reduce([d for d in differs.values()]) if differs else \
        np.zeros(len(both), dtype=bool)
    forming_new_wins = np.zeros(len(both), dtype=bool)
    conflict = any_diff.copy()
    if bars:
        forming, new_wins = _forming(both)
        conflict &= ~forming
        forming_new_wins = forming & new_wins & any_diff
    implausible = np.zeros(len(both), dtype=bool)
    if bars:
        candidates = conflict | forming_new_wins
        if candidates.any():
            implausible = _implausible(both, candidates, new, stored, bounds)
        # a larger-volume bar that jumps implausibly is no forming bar: a conflict
        conflict |= forming_new_wins & implausible
    summary.rows = int(conflict.sum())
    summary.implausible = int((conflict & implausible).sum())
    for i in np.flatnonzero(conflict)[:EXAMPLES]:
        summary.examples.append(_example(both, i, differs, bool(implausible[i])))
    if policy == "fail" and conflict.any():
        i = int(np.flatnonzero(conflict)[0])
        col = next((c for c in compare if differs[c][i]), compare[0] if compare else "ts")
        raise DataFormatError(
            f"{summary.rows} row(s) conflict with stored values (--on-conflict fail); "
            f"first: {summary.examples[0]}",
            path=ds.source or None, row=int(both["_row"].iloc[i]), field=col)
    if policy == "replace":
        drop = conflict & implausible
        overwrite = conflict & ~implausible
    else:
        drop = conflict
        overwrite = np.zeros(len(both), dtype=bool)
    summary.replaced = int(overwrite.sum())
    summary.kept = int(drop.sum())
    positions = both["_pos"].to_numpy()
    gone = np.zeros(len(new), dtype=bool)
    gone[positions[drop | overwrite]] = True
    out = [replace(ds, frame=new[~gone])]
    if overwrite.any():
        chosen = np.zeros(len(new), dtype=bool)
        chosen[positions[overwrite]] = True
        out.append(replace(ds, frame=new[chosen], merge="overwrite"))
    return out, summary


def _differs(a: pd.Series, b: pd.Series) -> np.ndarray:
    """Both values present and different (floats: beyond a relative 1e-9)."""
    present = (a.notna() & b.notna()).to_numpy(dtype=bool)
    if pd.api.types.is_float_dtype(a.dtype) or pd.api.types.is_float_dtype(b.dtype):
        x = a.to_numpy(dtype="float64", na_value=np.nan)
        y = b.to_numpy(dtype="float64", na_value=np.nan)
        with np.errstate(invalid="ignore"):
            same = np.isclose(x, y, rtol=_RTOL, atol=0.0, equal_nan=True)
        return present & ~same
    eq = (a == b).fillna(True).to_numpy(dtype=bool)
    return present & ~eq


def _forming(both: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Rows where one version is the other while it was still forming: the same open,
    the larger-volume bar's range contains the other's. Returns (forming, new_wins)."""
    v_new = both["volume"].to_numpy(dtype="float64", na_value=np.nan)
    v_old = both["volume_old"].to_numpy(dtype="float64", na_value=np.nan)
    new_wins = np.nan_to_num(v_new, nan=-1.0) > np.nan_to_num(v_old, nan=-1.0)
    old_wins = np.nan_to_num(v_old, nan=-1.0) > np.nan_to_num(v_new, nan=-1.0)

    def col(name: str) -> np.ndarray:
        return both[name].to_numpy(dtype="float64", na_value=np.nan)

    same_open = np.isclose(col("open"), col("open_old"), rtol=_RTOL, atol=0.0)
    new_contains = (col("high") >= col("high_old")) & (col("low") <= col("low_old"))
    old_contains = (col("high_old") >= col("high")) & (col("low_old") <= col("low"))
    forming = same_open & ((new_wins & new_contains) | (old_wins & old_contains))
    # a zero-volume flat placeholder (an exchange incident) gives way to a traded bar
    flat_new = (col("high") == col("low")) & (v_new == 0)
    flat_old = (col("high_old") == col("low_old")) & (v_old == 0)
    forming |= (new_wins & flat_old) | (old_wins & flat_new)
    return forming, new_wins


def _implausible(both: pd.DataFrame, rows: np.ndarray, new: pd.DataFrame,
                 stored: pd.DataFrame, bounds: Plausibility) -> np.ndarray:
    """Per row (only where ``rows``): does one of the file's OHLC prices jump beyond
    ``max_jump`` from the bar's other OHLC values or from the neighbouring bars (the
    stored ones first, else the file's)?"""
    j = float(bounds.max_jump)
    ref = pd.concat([stored[["ts", *_OHLC]], new[["ts", *_OHLC]]])
    ref = ref.drop_duplicates("ts", keep="first").sort_values("ts").reset_index(drop=True)
    ts_ref = epoch_us(ref["ts"])
    ohlc_ref = ref[list(_OHLC)].to_numpy(dtype="float64")
    ts_rows = epoch_us(both["ts"])
    ohlc_rows = both[list(_OHLC)].to_numpy(dtype="float64")
    out = np.zeros(len(both), dtype=bool)
    for i in np.flatnonzero(rows):
        row = ohlc_rows[i]
        pos = int(np.searchsorted(ts_ref, ts_rows[i]))
        neighbours = []
        if pos > 0:
            neighbours.append(ohlc_ref[pos - 1])
        after = pos + 1 if pos < len(ts_ref) and ts_ref[pos] == ts_rows[i] else pos
        if after < len(ts_ref):
            neighbours.append(ohlc_ref[after])
        near = np.concatenate(neighbours) if neighbours else np.empty(0)
        for k, v in enumerate(row):
            if not _supported(v, np.delete(row, k), j) or (len(near)
                                                            and not _supported(v, near, j)):
                out[i] = True
                break
    return out


def _supported(value: float, refs: np.ndarray, factor: float) -> bool:
    refs = refs[np.isfinite(refs) & (refs > 0)]
    if not len(refs) or not np.isfinite(value) or value <= 0:
        return True
    ratio = np.maximum(value / refs, refs / value)
    return bool((ratio <= factor).any())


def _example(both: pd.DataFrame, i: int, differs: dict[str, np.ndarray],
             implausible: bool) -> str:
    ts = pd.Timestamp(both["ts"].iloc[i]).strftime("%Y-%m-%d %H:%M:%S")
    cols = [c for c, d in differs.items() if d[i]]
    shown = ", ".join(f"{c} {_fmt(both[f'{c}_old'].iloc[i])} stored, "
                      f"{_fmt(both[c].iloc[i])} in file" for c in cols[:3])
    tag = " (implausible)" if implausible else ""
    return f"{ts} row {int(both['_row'].iloc[i])}: {shown or 'values differ'}{tag}"


def _fmt(v: object) -> str:
    return f"{v:.10g}" if isinstance(v, float | np.floating) else str(v)
