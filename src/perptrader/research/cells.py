"""The data of one (symbol, timeframe) of a study, with its lockbox cut off.

The lockbox is cut BEFORE features and labels are built: a label near the end of the
research span would otherwise be computed from prices inside the lockbox (a triple
barrier looks up to ``horizon`` bars ahead), so the lockbox's first days would leak into
training. Features are causal, so the lockbox's own features can be built later from the
whole series without changing any research row (``features.lookahead`` proves that).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd

from perptrader.core.errors import PerptraderError
from perptrader.features.labels import LabelConfig, adaptive_labels, triple_barrier_labels
from perptrader.marketdata.store.base import MarketStore
from perptrader.ml.base import MLFrame
from perptrader.ml.splits import parse_duration
from perptrader.research.study import LabelSpec

#: label column and its spans per label kind
LABEL_COLUMN = {"adaptive": "label_adaptive", "triple_barrier": "label_tb"}


@dataclass
class Cell:
    """One symbol and timeframe of a study, research span only (lockbox removed)."""

    symbol: str
    timeframe: str
    feature_set: str
    #: the loader's frame (OHLCV, funding / mark columns), research span only
    bars: pd.DataFrame
    #: settlement events over ``bars`` (``marketdata.loader.funding_events``)
    funding: pd.DataFrame
    #: features and the default labels of ``bars``
    data: MLFrame
    #: first bar open time of the lockbox (exclusive end of the research span)
    lockbox_start: pd.Timestamp
    #: last bar open time of the lockbox (the symbol's last bar)
    last_bar: pd.Timestamp


def lockbox_start(last_bar: pd.Timestamp, lockbox: str, timeframe: str) -> pd.Timestamp:
    """The first lockbox bar: ``lockbox`` before the end of the last bar, on the bar grid."""
    from perptrader.core.timeframes import timeframe_delta

    step = timeframe_delta(timeframe)
    end = last_bar + step
    return (end - parse_duration(lockbox)).ceil(step)


#: a study feature set named ``selected:NAME`` is a set saved by ``research select``
SELECTED = "selected:"


def resolve_feature_set(name: str) -> tuple[str, list[str] | None, dict | None]:
    """(base set to build, columns to keep or None, the selection record or None)."""
    if not name.startswith(SELECTED):
        return name, None, None
    from perptrader.ml.selection import load_selected_set

    try:
        record = load_selected_set(name.removeprefix(SELECTED))
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise PerptraderError(f"feature set {name!r}: {exc}") from None
    return str(record["base"]), list(record["columns"]), record


def load_cell(store: MarketStore, symbol: str, timeframe: str, feature_set: str, *,
              start: str | None, end: str | None, lockbox: str) -> Cell:
    """Load, cut the lockbox, build features and labels of the research span. A
    ``selected:NAME`` set builds its base set and keeps the selected columns."""
    from perptrader.features.inputs import load_inputs
    from perptrader.features.sets import get_set
    from perptrader.marketdata.loader import funding_events
    from perptrader.ml.dataset import build_ml_frame
    from perptrader.ml.selection import restrict

    base, columns, _ = resolve_feature_set(feature_set)

    try:
        frame, ctx = load_inputs(store, symbol, timeframe, get_set(base), start, end)
    except (KeyError, ValueError) as exc:
        raise PerptraderError(f"{symbol} {timeframe}: {exc}") from None
    if len(frame) == 0:
        raise PerptraderError(f"{symbol} {timeframe}: no bars in the store for the study span")
    last = frame.index[-1]
    cut = lockbox_start(last, lockbox, timeframe)
    research = frame.loc[frame.index < cut]
    if len(research) < 500:
        raise PerptraderError(f"{symbol} {timeframe}: {len(research)} bars before the "
                              f"lockbox ({cut:%Y-%m-%d}): too few to research")
    research.attrs.update(frame.attrs)
    try:
        data = build_ml_frame(research, symbol=symbol, timeframe=timeframe,
                              feature_set=base, ctx=ctx)
    except ValueError as exc:
        raise PerptraderError(f"{symbol} {timeframe}: {exc}") from None
    if columns is not None:
        missing = [c for c in columns if c not in data.frame.columns]
        if missing:
            raise PerptraderError(f"feature set {feature_set!r}: columns missing from the "
                                  f"{base!r} build of {symbol} {timeframe}: {missing[:5]}")
        data = restrict(data, columns)
    return Cell(symbol, timeframe, feature_set, research,
                funding_events(store, symbol, research, timeframe), data, cut, last)


def label_config(spec: LabelSpec, round_trip_cost: float) -> LabelConfig:
    """The ``LabelConfig`` of a study label (both barriers and the threshold at ``k``)."""
    return LabelConfig(future_window=spec.horizon, max_holding=spec.horizon,
                       threshold_multiplier=spec.k, tp_multiplier=spec.k, sl_multiplier=spec.k,
                       cost=round_trip_cost if spec.kind == "triple_barrier"
                       and spec.net_of_costs else 0.0)


def relabel(data: MLFrame, bars: pd.DataFrame, spec: LabelSpec,
            round_trip_cost: float) -> MLFrame:
    """``data`` with the label of ``spec`` (computed on ``bars``, the research span: the
    last ``horizon`` rows are unknown, never labelled from the lockbox)."""
    cfg = label_config(spec, round_trip_cost)
    if spec.kind == "adaptive":
        labels = adaptive_labels(bars, cfg)
    else:
        labels = triple_barrier_labels(bars, cfg)
    labels = labels.reindex(data.frame.index)
    frame = data.frame.drop(columns=[c for c in labels.columns if c in data.frame.columns])
    frame = pd.concat([frame, labels], axis=1)
    return replace(data, frame=frame, label=LABEL_COLUMN[spec.kind], horizon=spec.horizon,
                   meta={**data.meta, "label_spec": spec.name})


def first_test_bar(cell: Cell, walkforward: str) -> pd.Timestamp:
    """The first bar any walk-forward test window of ``cell`` holds."""
    from perptrader.ml.splits import WalkForwardSpec, walk_forward

    folds = walk_forward(cell.data.index, WalkForwardSpec.parse(walkforward),
                         cell.data.horizon)
    tests = [cell.data.index[f.test[0]] for f in folds if len(f.test)]
    if not tests:
        raise PerptraderError(f"{cell.symbol} {cell.timeframe}: the walk-forward "
                              f"{walkforward!r} leaves no test window before the lockbox")
    return min(tests)


def check_selection_before(feature_set: str, first_test: pd.Timestamp) -> None:
    """Refuse a selected set chosen on rows a study tests on: selection is a fit, and a
    feature kept because it helped in a test window makes that window in-sample."""
    _, _, record = resolve_feature_set(feature_set)
    if record is None:
        return
    end = (record.get("source") or {}).get("end")
    limit = None if end is None else pd.Timestamp(end)
    if limit is not None and limit.tz is None:
        limit = limit.tz_localize("UTC")
    if limit is None or limit > first_test:
        raise PerptraderError(
            f"feature set {feature_set!r} was selected on rows up to {end}, past the "
            f"study's first test bar {first_test}: select it again with --end "
            f"{first_test:%Y-%m-%d} or earlier")


__all__ = ["LABEL_COLUMN", "SELECTED", "Cell", "check_selection_before", "first_test_bar",
           "label_config", "load_cell", "lockbox_start", "relabel",
           "resolve_feature_set"]
