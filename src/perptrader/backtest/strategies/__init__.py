"""Strategies by name: ``get_strategy("sma_cross", fast=10, slow=30)``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from perptrader.backtest.strategies.base import Strategy, parse_bool, unknown_params
from perptrader.backtest.strategies.buy_and_hold import BuyAndHold
from perptrader.backtest.strategies.random_entries import RandomEntries
from perptrader.backtest.strategies.sma_cross import SmaCross
from perptrader.backtest.strategies.vsa import VsaStrategy

#: name -> (class, one line for ``backtest list-strategies``)
REGISTRY: dict[str, tuple[Callable[..., Strategy], str]] = {
    "buy_and_hold": (BuyAndHold, "long 1x from the first bar to the last (the benchmark)"),
    "sma_cross": (SmaCross, "long above / short below: SMA(fast) vs SMA(slow)"),
    "vsa": (VsaStrategy, "VSA strength (climax, no supply, test) long; weakness short; "
                         "hold N bars or until the opposite signal"),
    "random": (RandomEntries, "seeded random entries/exits: the null baseline"),
}

#: the four baselines every report is read against
BASELINES = ("buy_and_hold", "sma_cross", "vsa", "random")


def _coerce(field: dataclasses.Field, value: object) -> object:
    """CLI strings to the dataclass field's type (int, float, bool)."""
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
    if kind == "bool":
        return parse_bool(value)
    if kind == "int":
        return int(str(value)) if not isinstance(value, int) else value
    if kind == "float":
        return float(str(value)) if not isinstance(value, float) else value
    return value


def get_strategy(name: str, params: Mapping[str, object] | None = None) -> Strategy:
    """A strategy by registry name; ``params`` may be CLI strings (coerced by field type).
    Raises ValueError naming the known strategies / parameters.

    ``model:NAME[@VERSION]`` is a registered ML model (``perptrader.ml.strategy``; the
    latest version when none is given), params ``buy_threshold``/``sell_threshold``;
    ``rl:NAME`` a trained RL agent (``perptrader.rl.strategy``)."""
    if name.startswith("model:"):
        from perptrader.ml.strategy import model_strategy  # lazy: ML stack only when used

        return model_strategy(name, params)
    if name.startswith("rl:"):
        from perptrader.rl.strategy import rl_strategy  # lazy: RL stack only when used

        return rl_strategy(name, params)
    if name not in REGISTRY:
        raise ValueError(f"unknown strategy {name!r}; known: {', '.join(sorted(REGISTRY))}")
    cls = REGISTRY[name][0]
    params = dict(params or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown_params(params, set(fields), name)
    try:
        kwargs = {k: _coerce(fields[k], v) for k, v in params.items()}
    except ValueError as exc:
        raise ValueError(f"strategy {name!r}: {exc}") from None
    return cls(**kwargs)


def strategy_params(name: str) -> dict[str, Any]:
    """Parameter defaults of a registered strategy."""
    cls = REGISTRY[name][0]
    return {f.name: f.default for f in dataclasses.fields(cls)}  # type: ignore[arg-type]


__all__ = ["BASELINES", "REGISTRY", "BuyAndHold", "RandomEntries", "SmaCross", "Strategy",
           "VsaStrategy", "get_strategy", "strategy_params"]
