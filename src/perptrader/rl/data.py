"""Loading a window for the agent and turning it into an ``EnvMarket``.

The same functions serve training (``rl.train``) and evaluation (``rl.evaluate``), so
an agent is evaluated on a state built exactly as the one it was trained on: same
feature set (its hash is checked through the models' manifests), same models, the PCA
and z-scores frozen in its ``StateSpec``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from perptrader.core.errors import PerptraderError
from perptrader.core.timeframes import timeframe_delta
from perptrader.core.timeframes import utc_time as utc
from perptrader.marketdata.store.base import MarketStore
from perptrader.ml.base import MLFrame
from perptrader.rl.market import EnvMarket
from perptrader.rl.state import (
    ROLE_KINDS,
    StateSpec,
    apply_state,
    expert_agreement,
    model_outputs,
    raw_state,
    vsa_direction,
)
from perptrader.sim import SimConfig

#: bars loaded before an evaluation window so features and sequence models are warm
EVAL_LOOKBACK_BARS = 1_500


@dataclass
class Window:
    """One symbol/timeframe window: the research table, the loader bars, the funding."""

    symbol: str
    timeframe: str
    data: MLFrame
    bars: pd.DataFrame
    funding: pd.DataFrame | None
    warnings: list[str] = field(default_factory=list)


def load_window(store: MarketStore, symbol: str, timeframe: str, start: Any, end: Any, *,
                feature_set: str = "default", lookback_bars: int = 0,
                families: list[str] | None = None) -> Window:
    """Bars, features and labels of ``[start - lookback_bars, end)``; ``families``
    restricts the feature build to what the agent's models were trained on (a window
    with other data coverage would otherwise plan other families)."""
    from perptrader.marketdata.loader import funding_events, load
    from perptrader.ml.dataset import load_ml_frame
    from perptrader.sim.market import choose_funding

    first = None if start is None else utc(start)
    if first is not None and lookback_bars:
        first = first - lookback_bars * timeframe_delta(timeframe)
    data = load_ml_frame(store, symbol, timeframe, first, end, feature_set=feature_set,
                         families=families)
    bars = load(symbol, timeframe, first, end, store=store)
    events = funding_events(store, symbol, bars, timeframe)
    warnings: list[str] = []
    funding, _ = choose_funding(bars, timeframe, events, warnings)
    return Window(symbol=bars.attrs.get("symbol", symbol), timeframe=timeframe, data=data,
                  bars=bars, funding=funding, warnings=warnings)


def role_of(manifest: dict[str, Any]) -> str:
    """The state role a registered model fills, from its kind."""
    for role, kinds in ROLE_KINDS.items():
        if manifest["kind"] in kinds:
            return role
    raise PerptraderError(f"model {manifest['name']!r} is a {manifest['kind']!r}; the state "
                          f"takes {', '.join(k for ks in ROLE_KINDS.values() for k in ks)}")


def load_models(refs: list[dict[str, Any]] | list[str], data: MLFrame
                ) -> dict[str, tuple[Any, dict[str, Any]]]:
    """role -> (model, manifest) of registered models (``NAME[@VERSION]`` strings or
    {"name", "version"} dicts); refuses a table whose features differ from a model's."""
    from perptrader.ml.registry import load_registered
    from perptrader.ml.strategy import parse_model_ref

    out: dict[str, tuple[Any, dict[str, Any]]] = {}
    for ref in refs:
        name, version = (ref["name"], ref["version"]) if isinstance(ref, dict) else \
            parse_model_ref(ref)
        model, manifest = load_registered(name, version, data=data)
        role = role_of(manifest)
        if role in out:
            raise PerptraderError(f"two models for the {role} role: "
                                  f"{out[role][1]['name']!r} and {name!r}")
        out[role] = (model, manifest)
    return out


def model_families(refs: list[dict[str, Any]] | list[str], timeframe: str) -> list[str]:
    """The feature families the registered models were trained on (all must agree)."""
    from perptrader.features.pipeline import families_of
    from perptrader.features.sets import get_set
    from perptrader.ml.registry import show
    from perptrader.ml.strategy import parse_model_ref

    found: list[str] | None = None
    for ref in refs:
        name, version = (ref["name"], ref["version"]) if isinstance(ref, dict) else \
            parse_model_ref(ref)
        m = show(name, version)
        fams = families_of(m["features"], get_set(m["feature_set"]), timeframe)
        if found is not None and fams != found:
            raise PerptraderError(f"model {name!r} was trained on other feature families "
                                  f"than the other --models; they must share one table")
        found = fams
    return found or []


def models_end(models: dict[str, tuple[Any, dict[str, Any]]]) -> pd.Timestamp:
    """The last bar any of the models was trained on (their manifests' data range)."""
    return max(pd.Timestamp(m["data"]["last_bar"]) for _, m in models.values())


def build_raw(window: Window, models: dict[str, tuple[Any, dict[str, Any]]],
              rows: np.ndarray) -> pd.DataFrame:
    """The unfitted state (model outputs, VSA, market columns) at ``rows``."""
    if len(rows) < 3:
        raise PerptraderError(f"{window.symbol} {window.timeframe}: {len(rows)} rows in the "
                              f"window; too few for the agent")
    return raw_state(window.data, model_outputs(window.data, models, rows))


def env_market(window: Window, raw: pd.DataFrame, spec: StateSpec, config: SimConfig
               ) -> EnvMarket:
    """The ``EnvMarket`` of the rows of ``raw`` under a fitted ``spec``."""
    state = apply_state(raw, spec)
    bars = window.bars.reindex(raw.index)
    if bars["open"].isna().any():
        raise PerptraderError("research rows without loader bars; the store changed "
                              "between loads?")
    agree, conflict = expert_agreement(raw)
    return EnvMarket.build(bars, state, symbol=window.symbol, timeframe=window.timeframe,
                           config=config, funding=window.funding,
                           vsa_dir=vsa_direction(window.data, raw.index), agree=agree,
                           conflict=conflict)
