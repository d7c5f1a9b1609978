"""Building a feature set on a research frame: which families run, the warm-up cut,
the NaN policy, labels, the feature hash and the Parquet file with its metadata.

``compute_features`` is the single function both the batch path (``build``) and the
live path (``incremental.IncrementalFeatures``) call, so the two cannot drift apart.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from perptrader.core.timeframes import timeframe_ms
from perptrader.features.base import Family, FeatureContext, columns_present
from perptrader.features.registry import all_families
from perptrader.features.sets import FeatureSet

NAN_POLICIES = ("keep", "drop_rows")
#: Parquet key-value metadata key holding the build description (JSON)
METADATA_KEY = b"perptrader.features"


@dataclass(frozen=True)
class Plan:
    """The families one build runs, after checking which have their data."""

    families: tuple[Family, ...]
    #: family name → why it is not in the build
    absent: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [c for f in self.families for c in f.names]

    @property
    def warmup(self) -> int:
        return max((f.warmup for f in self.families), default=0)

    @property
    def history(self) -> int:
        """Rows of history that fully determine the last row (the live buffer size)."""
        return max((f.history for f in self.families), default=0)

    def specs(self) -> list[tuple[str, Any]]:
        return [(f.name, s) for f in self.families for s in f.specs]


def candidate_families(feature_set: FeatureSet, timeframe: str) -> list[Family]:
    """The set's families, plus its higher-timeframe copies that fit ``timeframe``."""
    from perptrader.features.mtf import mtf_family
    from perptrader.marketdata.resample import can_resample

    catalogue = all_families()
    wanted = list(feature_set.families) + list(feature_set.book_families)
    unknown = [n for n in wanted if n not in catalogue]
    unknown += [n for _, names in feature_set.higher for n in names if n not in catalogue]
    if unknown:
        raise KeyError(f"feature set {feature_set.name!r} names unknown families: {unknown}")
    families = [catalogue[n].at(timeframe) for n in wanted]
    for higher_tf, names in feature_set.higher:
        if timeframe_ms(higher_tf) > timeframe_ms(timeframe) and can_resample(timeframe,
                                                                              higher_tf):
            families += [mtf_family(catalogue[n], higher_tf, timeframe) for n in names]
    return families


def plan(frame: pd.DataFrame, feature_set: FeatureSet, ctx: FeatureContext) -> Plan:
    """Which of the set's families have their input data in ``frame``/``ctx``."""
    chosen, absent = [], {}
    for family in candidate_families(feature_set, ctx.timeframe):
        if family.is_available(frame, ctx):
            chosen.append(family)
        else:
            missing = [c for c in family.requires if not columns_present(frame, [c])]
            absent[family.name] = (f"input absent ({', '.join(missing)})" if missing
                                   else "its data is not in the store for this span")
    return Plan(tuple(chosen), absent)


def families_of(features: list[str], feature_set: FeatureSet, timeframe: str) -> list[str]:
    """The set's families whose every column is among ``features`` (a model's list):
    what to rebuild so a table matches what the model was trained on."""
    have = set(features)
    return [f.name for f in candidate_families(feature_set, timeframe)
            if f.names and set(f.names) <= have]


def compute_features(frame: pd.DataFrame, families: tuple[Family, ...] | list[Family],
                     ctx: FeatureContext) -> pd.DataFrame:
    """Every row of every family, side by side (no rows dropped)."""
    from perptrader.features.shared import shared_frame

    with shared_frame(frame):  # columns read, and higher timeframes resampled, once
        blocks = [family.run(frame, ctx) for family in families]
    if not blocks:
        return pd.DataFrame(index=frame.index)
    return pd.concat(blocks, axis=1)


def feature_hash(plan: Plan) -> str:
    """Changes when a column, its formula or its warm-up changes; 16 hex digits."""
    described = [[family, s.name, s.formula, list(s.inputs), s.warmup, s.history]
                 for family, s in plan.specs()]
    return hashlib.sha256(json.dumps(described).encode()).hexdigest()[:16]


@dataclass
class FeatureBuild:
    """A built feature frame with what a reader of its Parquet file needs to know."""

    frame: pd.DataFrame
    features: list[str]
    labels: list[str]
    plan: Plan
    meta: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {k: self.meta[k] for k in (
            "symbol", "timeframe", "feature_set", "n_features", "rows", "start", "end",
            "feature_hash", "warmup_rows_dropped", "nan_policy", "families",
            "absent_families", "labels", "label_balance")}


def build(frame: pd.DataFrame, feature_set: FeatureSet, ctx: FeatureContext, *,
          labels: bool = True, nan_policy: str = "keep",
          label_config: Any | None = None,
          families: Collection[str] | None = None) -> FeatureBuild:
    """Features (and labels) for ``frame``, warm-up rows dropped, NaN policy applied.

    NaN policy ``keep`` (default): after the warm-up cut, NaN stays where an input is
    genuinely missing (e.g. basis before the first stored mark bar); gradient boosting
    takes NaN natively and the sequence models impute with an indicator. ``drop_rows``
    drops every row with a NaN feature. Labels never cause rows to be dropped: the last
    rows have unknown (NaN) labels, and training code drops them, not the builder.

    ``families``: build only these (``families_of`` a model's features), and keep them
    even when sparse: a table for a trained model must have the model's columns whatever
    the data coverage of this window, or fail on the feature check.
    """
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {NAN_POLICIES}, not {nan_policy!r}")
    if frame.empty:
        raise ValueError("cannot build features on an empty frame")
    the_plan = plan(frame, feature_set, ctx)
    if families is not None:
        wanted = set(families)
        the_plan = Plan(tuple(f for f in the_plan.families if f.name in wanted),
                        {**the_plan.absent, **{f.name: "not among the requested families"
                                               for f in the_plan.families
                                               if f.name not in wanted}})
    values = compute_features(frame, the_plan.families, ctx)
    warmup = the_plan.warmup
    # families too sparse after warm-up to be worth a column (see FeatureSet.min_coverage)
    after = values.iloc[warmup:]
    kept, absent = [], dict(the_plan.absent)
    for family in the_plan.families:
        defined = after[family.names].notna().any(axis=1)
        coverage = float(defined.mean()) if len(defined) else 0.0
        if coverage < feature_set.min_coverage and families is None:
            absent[family.name] = (f"defined on {coverage:.2%} of rows after warm-up "
                                   f"(< {feature_set.min_coverage:.0%})")
        else:
            kept.append(family)
    final_plan = Plan(tuple(kept), absent)
    warmup = final_plan.warmup
    out = values[final_plan.names].iloc[warmup:]
    if nan_policy == "drop_rows":
        out = out.dropna()
    label_names: list[str] = []
    balance: dict[str, Any] = {}
    if labels:
        lab = label_frame(frame, label_config).reindex(out.index)
        label_names = list(lab.columns)
        out = pd.concat([out, lab], axis=1)
        balance = label_balance(lab)
    if out.empty:
        raise ValueError(f"no rows left after the {warmup}-row warm-up"
                         + (" and dropping NaN rows" if nan_policy == "drop_rows" else "")
                         + f": {len(frame)} bars are too few for this feature set")
    features = final_plan.names
    nan_share = out[features].isna().mean()
    meta = {
        "symbol": ctx.symbol,
        "timeframe": ctx.timeframe,
        "feature_set": feature_set.name,
        "n_features": len(features),
        "rows": len(out),
        "start": _iso(out.index[0]),
        "end": _iso(out.index[-1]),
        "data_start": _iso(frame.index[0]),
        "data_end": _iso(frame.index[-1]),
        "feature_hash": feature_hash(final_plan),
        "warmup_rows_dropped": int(min(warmup, len(frame))),
        "history_rows": final_plan.history,
        "nan_policy": nan_policy,
        "families": [f.name for f in final_plan.families],
        "absent_families": absent,
        "features": features,
        "labels": label_names,
        "label_balance": balance,
        "nan_share": {k: round(float(v), 6) for k, v in nan_share.items() if v > 0},
    }
    return FeatureBuild(out, features, label_names, final_plan, meta)


def label_frame(frame: pd.DataFrame, config: Any | None = None) -> pd.DataFrame:
    """The default label columns: adaptive 3-class, triple barrier, forward returns."""
    from perptrader.features import labels as lab

    cfg = config or lab.LabelConfig()
    parts = [lab.adaptive_labels(frame, cfg), lab.triple_barrier_labels(frame, cfg),
             lab.forward_returns(frame)]
    return pd.concat(parts, axis=1)


def label_balance(labels: pd.DataFrame) -> dict[str, Any]:
    """Class balance of every 3-class label column (SELL/HOLD/BUY shares)."""
    from perptrader.features.labels import class_balance

    out = {}
    for column in labels.columns:
        series = labels[column]
        if not column.startswith("label_") or not pd.api.types.is_numeric_dtype(series):
            continue
        known = series.dropna()
        if known.empty or not set(np.unique(known)) <= {-1.0, 0.0, 1.0}:
            continue
        table = class_balance(series)
        out[column] = _balance_dict(table)
    return out


def _balance_dict(table: pd.DataFrame) -> dict[str, Any]:
    records = table.reset_index().to_dict(orient="records")
    return {str(r[table.index.name or "index"]): {k: _plain(v) for k, v in r.items()
                                                  if k != (table.index.name or "index")}
            for r in records}


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_parquet(result: FeatureBuild, path: Path) -> None:
    """Write atomically (temp file + rename), metadata in the Parquet schema."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(result.frame, preserve_index=True)
    meta = dict(table.schema.metadata or {})
    meta[METADATA_KEY] = json.dumps(result.meta).encode()
    table = table.replace_schema_metadata(meta)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def read_metadata(path: Path) -> dict[str, Any]:
    """The build description stored by ``write_parquet``."""
    meta = pq.read_schema(path).metadata or {}
    if METADATA_KEY not in meta:
        raise ValueError(f"{path}: not a perptrader feature file (no {METADATA_KEY.decode()} "
                         "metadata)")
    return json.loads(meta[METADATA_KEY])


def _iso(ts: pd.Timestamp) -> str:
    return pd.Timestamp(ts).strftime("%Y-%m-%dT%H:%M:%SZ")
