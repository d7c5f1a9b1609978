"""Policies by name: ``get_strategy("sma_cross", {"fast": 10, "slow": 30})``.

Two kinds of names:

* plain names (``REGISTRY``): the baselines shipped here, dataclasses whose fields are
  their parameters;
* prefixed names (``model:NAME[@VERSION]``, ``rl:NAME``): policies that live in higher
  layers (``perptrader.ml``, ``perptrader.rl``). They register a factory for their prefix
  with ``register_prefix``; this package never imports them. The factories are found
  through the ``perptrader.policies`` entry-point group (pyproject.toml), so another
  installed package can add its own prefix the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any

from perptrader.strategies.always_flat import AlwaysFlat
from perptrader.strategies.base import Policy, parse_bool, unknown_params
from perptrader.strategies.buy_and_hold import BuyAndHold
from perptrader.strategies.random_entries import RandomEntries
from perptrader.strategies.sma_cross import SmaCross
from perptrader.strategies.vsa import VsaStrategy

#: name -> (class, one line for ``strategies list``)
REGISTRY: dict[str, tuple[Callable[..., Policy], str]] = {
    "buy_and_hold": (BuyAndHold, "long 1x from the first bar to the last (the benchmark)"),
    "sma_cross": (SmaCross, "long above / short below: SMA(fast) vs SMA(slow)"),
    "vsa": (VsaStrategy, "VSA strength (climax, no supply, test) long; weakness short; "
                         "hold N bars or until the opposite signal"),
    "random": (RandomEntries, "seeded random entries/exits: the null baseline"),
    "always_flat": (AlwaysFlat, "never in the market: the zero line"),
}

#: the four baselines every report is read against
BASELINES = ("buy_and_hold", "sma_cross", "vsa", "random")

#: entry-point group of prefix factories: ``model = "perptrader.ml.strategy:register"``
ENTRY_POINT_GROUP = "perptrader.policies"

PolicyFactory = Callable[[str, Mapping[str, object] | None], Policy]
#: prefix (with its colon) -> (factory, one line for ``strategies list``)
_PREFIXES: dict[str, tuple[PolicyFactory, str]] = {}
_loaded_entry_points = False


def register_prefix(prefix: str, factory: PolicyFactory, description: str) -> None:
    """Make ``prefix`` + NAME resolve through ``factory(full_name, params)``."""
    if not prefix.endswith(":") or len(prefix) < 2:
        raise ValueError(f"a policy prefix ends with ':', got {prefix!r}")
    _PREFIXES[prefix] = (factory, description)


def _load_entry_points() -> None:
    """Import every registered prefix provider once (each calls ``register_prefix``)."""
    global _loaded_entry_points
    if _loaded_entry_points:
        return
    _loaded_entry_points = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        ep.load()()


def prefixes() -> dict[str, str]:
    """Registered prefixes and what they name."""
    _load_entry_points()
    return {p: d for p, (_, d) in sorted(_PREFIXES.items())}


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


def get_strategy(name: str, params: Mapping[str, object] | None = None) -> Policy:
    """A policy by name; ``params`` may be CLI strings (coerced by field type).
    Raises ValueError naming the known policies / parameters."""
    head, sep, _ = name.partition(":")
    if sep:
        _load_entry_points()
        prefix = head + ":"
        if prefix not in _PREFIXES:
            raise ValueError(f"unknown policy prefix {prefix!r} in {name!r}; known: "
                             f"{', '.join(sorted(_PREFIXES)) or 'none installed'}")
        return _PREFIXES[prefix][0](name, params)
    if name not in REGISTRY:
        raise ValueError(f"unknown strategy {name!r}; known: {', '.join(sorted(REGISTRY))}"
                         f" and the prefixes {', '.join(prefixes()) or '(none)'}")
    cls = REGISTRY[name][0]
    params = dict(params or {})
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown_params(params, set(fields), name)
    try:
        kwargs = {k: _coerce(fields[k], v) for k, v in params.items()}
    except ValueError as exc:
        raise ValueError(f"strategy {name!r}: {exc}") from None
    return cls(**kwargs)


def strategy_params(name: str) -> dict[str, Any]:
    """Parameter defaults of a registered strategy."""
    cls = REGISTRY[name][0]
    return {f.name: f.default for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
