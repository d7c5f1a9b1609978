"""Building the research table (``MLFrame``) from the store or from a loaded frame."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd

from perptrader.features.base import FeatureContext
from perptrader.features.pipeline import FeatureBuild, build
from perptrader.features.sets import get_set
from perptrader.marketdata.store.base import MarketStore
from perptrader.ml.base import DEFAULT_LABEL, OHLCV, MLFrame


def ml_frame_from_build(bars: pd.DataFrame, result: FeatureBuild, *,
                        label: str = DEFAULT_LABEL, horizon: int | None = None) -> MLFrame:
    """Join the bars' OHLCV onto a feature build (its rows, warm-up already dropped)."""
    ohlcv = bars.loc[result.frame.index, list(OHLCV)]
    table = pd.concat([ohlcv, result.frame], axis=1)
    cfg = result.meta.get("label_config") or {}
    h = horizon if horizon is not None else int(cfg.get("future_window", 24))
    meta = {k: result.meta[k] for k in ("symbol", "timeframe", "feature_set", "feature_hash",
                                        "start", "end", "n_features")}
    return MLFrame(table, list(result.features), label=label, horizon=h, meta=meta)


def build_ml_frame(bars: pd.DataFrame, *, symbol: str, timeframe: str,
                   feature_set: str = "default", label: str = DEFAULT_LABEL,
                   label_config: Any | None = None,
                   ctx: FeatureContext | None = None,
                   families: list[str] | None = None) -> MLFrame:
    """Features and labels of a loaded frame (``marketdata.loader.load``); ``families``
    restricts the build (see ``features.pipeline.build``)."""
    from perptrader.features.labels import LabelConfig

    cfg = label_config or LabelConfig()
    ctx = ctx or FeatureContext(symbol=symbol, timeframe=timeframe)
    result = build(bars, get_set(feature_set), ctx, label_config=cfg, families=families)
    result.meta["label_config"] = dict(cfg.__dict__)
    return ml_frame_from_build(bars, result, label=label,
                               horizon=max(cfg.future_window, cfg.max_holding))


def load_ml_frame(store: MarketStore, symbol: str, timeframe: str,
                  start: datetime | str | None = None, end: datetime | str | None = None, *,
                  feature_set: str = "default", label: str = DEFAULT_LABEL,
                  label_config: Any | None = None,
                  families: list[str] | None = None) -> MLFrame:
    """Load bars from the store, build the feature set and labels, return the table."""
    from perptrader.features.inputs import load_inputs

    frame, ctx = load_inputs(store, symbol, timeframe, get_set(feature_set), start, end)
    return build_ml_frame(frame, symbol=symbol, timeframe=timeframe, feature_set=feature_set,
                          label=label, label_config=label_config, ctx=ctx, families=families)
