"""A study file: one TOML that names everything a research run may try.

Every variant a study can produce is spelled out here, so the number of trials the
deflated Sharpe and the PBO must account for is known before the run starts and cannot
grow silently (a user who tries another idea edits the file, and the count goes up).
``parse_study`` refuses unknown keys and bad values naming the key, so a typo never runs
a different study than the one written.

Shape (every section but ``[study]`` has defaults; ``default_study()`` is the recipe)::

    [study]
    name = "default"
    symbols = ["BTCUSDT", "ETHUSDT", "LTCUSDT"]
    timeframes = ["1h", "4h"]
    start = "2023-01-01"          # optional
    end = "2026-04-01"            # optional, exclusive
    lockbox = "90d"               # each symbol's last 90 days: held out from every choice
    feature_sets = ["default"]
    seed = 7

    [study.symbols_by_timeframe]  # optional: more symbols on one timeframe
    "4h" = ["ADAUSDT", "AVAXUSDT"]

    [walkforward]                 # one spec per timeframe (ml.splits.WalkForwardSpec.parse)
    "1h" = "train=365d,test=60d,valid=0.2"

    [costs]                       # sim.costs.CostModel fields
    taker_fee = 0.0005

    [[labels]]   name, kind = "adaptive" (k, horizon) | "triple_barrier" (barrier, horizon,
                 net_of_costs)
    [[models]]   name, kind (a GBDT kind of ml.models), quick, params
    [[decisions]] name, kind = "threshold" (threshold) | "cost_aware" (grid) | "meta"
                 (threshold, sizing)
    [pooled]     enabled, timeframe, train_symbols, unseen_symbols, symbol_feature
    [[agents]]   name, timesteps, seeds, settings (rl.study.agent_trial)
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perptrader.core.errors import PerptraderError

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
LABEL_KINDS = ("adaptive", "triple_barrier")
DECISION_KINDS = ("threshold", "cost_aware", "meta")
POOLABLE_MODELS = ("lightgbm", "xgboost", "catboost", "gbdt")


class StudyError(PerptraderError):
    """A study file that cannot run; the message names the file and the key."""


@dataclass(frozen=True)
class LabelSpec:
    name: str
    kind: str = "adaptive"
    #: adaptive: move threshold in σ√h units; triple barrier: barrier distance
    k: float = 0.4
    horizon: int = 24
    #: triple barrier only: barriers widened/narrowed by the round-trip cost
    net_of_costs: bool = True
    #: weight training rows by label uniqueness (overlapping horizons)
    uniqueness_weights: bool = True


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str = "lightgbm"
    quick: bool = True
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DecisionSpec:
    name: str
    kind: str = "threshold"
    threshold: float = 0.45
    grid: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    sizing: str = "step"


@dataclass(frozen=True)
class PooledSpec:
    enabled: bool = False
    timeframe: str = "4h"
    train_symbols: tuple[str, ...] = ()
    unseen_symbols: tuple[str, ...] = ()
    symbol_feature: bool = False
    leader: str = "BTCUSDT"


@dataclass(frozen=True)
class AgentSpec:
    name: str
    timeframe: str = "4h"
    symbols: tuple[str, ...] = ()
    seeds: tuple[int, ...] = (0, 1, 2)
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Study:
    name: str
    symbols: tuple[str, ...]
    timeframes: tuple[str, ...]
    symbols_by_timeframe: dict[str, tuple[str, ...]]
    start: str | None
    end: str | None
    lockbox: str
    feature_sets: tuple[str, ...]
    seed: int
    walkforward: dict[str, str]
    costs: dict[str, Any]
    labels: tuple[LabelSpec, ...]
    models: tuple[ModelSpec, ...]
    decisions: tuple[DecisionSpec, ...]
    pooled: PooledSpec
    agents: tuple[AgentSpec, ...]
    #: the file's text, stored with every run (what was asked, byte for byte)
    source: str = ""

    def cells(self) -> list[tuple[str, str]]:
        """(symbol, timeframe) pairs the per-symbol trials run on."""
        out = []
        for tf in self.timeframes:
            for sym in (*self.symbols, *self.symbols_by_timeframe.get(tf, ())):
                if (sym, tf) not in out:
                    out.append((sym, tf))
        return out

    def recipes(self) -> list[tuple[str, LabelSpec, ModelSpec, DecisionSpec]]:
        """(feature set, label, model, decision) combinations of the per-symbol trials."""
        return [(fs, lab, mod, dec) for fs in self.feature_sets for lab in self.labels
                for mod in self.models for dec in self.decisions]

    def planned_trials(self) -> int:
        """Trials whose out-of-sample results the study compares (the DSR's N)."""
        n = len(self.cells()) * len(self.recipes())
        if self.pooled.enabled:
            pooled_syms = len(self.pooled.train_symbols) + len(self.pooled.unseen_symbols)
            n += pooled_syms * len(self.labels) * len(
                [m for m in self.models if m.kind in POOLABLE_MODELS]) * len(self.decisions)
        for agent in self.agents:
            n += len(agent.symbols)
        return n


DEFAULT_STUDY = """\
# The default research recipe on the shared data (see docs/research.md).
[study]
name = "default"
symbols = ["BTCUSDT", "ETHUSDT", "LTCUSDT"]
timeframes = ["1h", "4h"]
start = "2023-01-01"
lockbox = "90d"
feature_sets = ["default"]
seed = 7

[study.symbols_by_timeframe]
"4h" = ["ADAUSDT", "AVAXUSDT", "BCHUSDT", "ETCUSDT", "LINKUSDT"]

[walkforward]
"1h" = "train=365d,test=60d,valid=0.2"
"4h" = "train=365d,test=60d,valid=0.2"

[costs]
taker_fee = 0.0005
slippage_bps = 1.0

[[labels]]
name = "adaptive"
kind = "adaptive"
k = 0.4
horizon = 24

[[labels]]
name = "tb_net"
kind = "triple_barrier"
k = 1.0
horizon = 24
net_of_costs = true

[[models]]
name = "lgbm"
kind = "lightgbm"
quick = true

[[decisions]]
name = "threshold_045"
kind = "threshold"
threshold = 0.45

[[decisions]]
name = "cost_aware"
kind = "cost_aware"

[[decisions]]
name = "meta"
kind = "meta"
threshold = 0.5

[pooled]
enabled = true
timeframe = "4h"
train_symbols = ["BTCUSDT", "ETHUSDT", "LTCUSDT", "ADAUSDT", "AVAXUSDT", "BCHUSDT"]
unseen_symbols = ["ETCUSDT", "LINKUSDT"]

[[agents]]
name = "ppo"
timeframe = "4h"
symbols = ["BTCUSDT", "ETHUSDT"]
seeds = [0, 1, 2]
settings = {timesteps = 20000}
"""


def _check_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise StudyError(f"{where}: a name of letters, digits, '_', '.', '-' (<= 64) is "
                         f"required, got {value!r}")
    return value


def _strs(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise StudyError(f"{where}: a list of strings is required, got {value!r}")
    return tuple(value)


def _take(table: dict[str, Any], allowed: set[str], where: str) -> dict[str, Any]:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise StudyError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    return table


def _num(table: dict[str, Any], key: str, default: float, where: str, *,
         lo: float = 0.0, integer: bool = False) -> Any:
    value = table.get(key, default)
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or value < lo:
        kind = "an integer" if integer else "a number"
        raise StudyError(f"{where}.{key}: {kind} >= {lo} is required, got {value!r}")
    return value


def _labels(items: list[dict[str, Any]], where: str) -> tuple[LabelSpec, ...]:
    out = []
    for i, raw in enumerate(items):
        w = f"{where}[{i}]"
        t = _take(raw, {"name", "kind", "k", "horizon", "net_of_costs",
                        "uniqueness_weights"}, w)
        kind = t.get("kind", "adaptive")
        if kind not in LABEL_KINDS:
            raise StudyError(f"{w}.kind: one of {LABEL_KINDS}, got {kind!r}")
        out.append(LabelSpec(
            name=_check_name(t.get("name"), f"{w}.name"), kind=kind,
            k=float(_num(t, "k", 0.4 if kind == "adaptive" else 1.0, w, lo=1e-9)),
            horizon=int(_num(t, "horizon", 24, w, lo=1, integer=True)),
            net_of_costs=bool(t.get("net_of_costs", kind == "triple_barrier")),
            uniqueness_weights=bool(t.get("uniqueness_weights", True))))
    return tuple(out)


def _models(items: list[dict[str, Any]], where: str) -> tuple[ModelSpec, ...]:
    from perptrader.ml.models import KINDS

    out = []
    for i, raw in enumerate(items):
        w = f"{where}[{i}]"
        t = _take(raw, {"name", "kind", "quick", "params"}, w)
        kind = t.get("kind", "lightgbm")
        if kind not in KINDS:
            raise StudyError(f"{w}.kind: one of {KINDS}, got {kind!r}")
        params = t.get("params", {})
        if not isinstance(params, dict):
            raise StudyError(f"{w}.params: a table is required, got {params!r}")
        out.append(ModelSpec(_check_name(t.get("name"), f"{w}.name"), kind,
                             bool(t.get("quick", True)), dict(params)))
    return tuple(out)


def _decisions(items: list[dict[str, Any]], where: str) -> tuple[DecisionSpec, ...]:
    from perptrader.ml.decision import DEFAULT_GRID

    out = []
    for i, raw in enumerate(items):
        w = f"{where}[{i}]"
        t = _take(raw, {"name", "kind", "threshold", "grid", "sizing"}, w)
        kind = t.get("kind", "threshold")
        if kind not in DECISION_KINDS:
            raise StudyError(f"{w}.kind: one of {DECISION_KINDS}, got {kind!r}")
        threshold = float(_num(t, "threshold", 0.45 if kind == "threshold" else 0.5, w))
        if threshold > 1.0:
            raise StudyError(f"{w}.threshold: a probability in [0, 1], got {threshold}")
        grid = t.get("grid", {})
        if not isinstance(grid, dict) or any(k not in DEFAULT_GRID for k in grid):
            raise StudyError(f"{w}.grid: a table with keys among {sorted(DEFAULT_GRID)}, "
                             f"got {grid!r}")
        sizing = t.get("sizing", "step")
        if sizing not in ("step", "kelly"):
            raise StudyError(f"{w}.sizing: 'step' or 'kelly', got {sizing!r}")
        out.append(DecisionSpec(_check_name(t.get("name"), f"{w}.name"), kind, threshold,
                                {k: tuple(v if isinstance(v, list) else [v])
                                 for k, v in grid.items()}, sizing))
    return tuple(out)


def _agents(items: list[dict[str, Any]], where: str) -> tuple[AgentSpec, ...]:
    out = []
    for i, raw in enumerate(items):
        w = f"{where}[{i}]"
        t = _take(raw, {"name", "timeframe", "symbols", "seeds", "settings"}, w)
        seeds = t.get("seeds", [0, 1, 2])
        if not isinstance(seeds, list) or not seeds or not all(
                isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            raise StudyError(f"{w}.seeds: a non-empty list of integers, got {seeds!r}")
        settings = t.get("settings", {})
        if not isinstance(settings, dict):
            raise StudyError(f"{w}.settings: a table is required, got {settings!r}")
        out.append(AgentSpec(_check_name(t.get("name"), f"{w}.name"),
                             str(t.get("timeframe", "4h")),
                             _strs(t.get("symbols", ["BTCUSDT"]), f"{w}.symbols"),
                             tuple(seeds), dict(settings)))
    return tuple(out)


def parse_study(text: str, where: str = "study") -> Study:
    """The ``Study`` of a TOML text; ``where`` names the file in every error."""
    from perptrader.core.timeframes import timeframe_delta
    from perptrader.ml.splits import WalkForwardSpec, parse_duration
    from perptrader.sim.costs import CostModel

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StudyError(f"{where}: not valid TOML: {exc}") from None
    _take(doc, {"study", "walkforward", "costs", "labels", "models", "decisions", "pooled",
                "agents"}, where)
    head = _take(doc.get("study") or {}, {"name", "symbols", "timeframes", "start", "end",
                                          "lockbox", "feature_sets", "seed",
                                          "symbols_by_timeframe"}, f"{where} [study]")
    name = _check_name(head.get("name"), f"{where} [study].name")
    symbols = _strs(head.get("symbols"), f"{where} [study].symbols")
    timeframes = _strs(head.get("timeframes", ["1h"]), f"{where} [study].timeframes")
    for tf in timeframes:
        try:
            timeframe_delta(tf)
        except (KeyError, ValueError):
            raise StudyError(f"{where} [study].timeframes: unknown timeframe {tf!r}") from None
    by_tf_raw = head.get("symbols_by_timeframe", {})
    if not isinstance(by_tf_raw, dict) or any(tf not in timeframes for tf in by_tf_raw):
        raise StudyError(f"{where} [study].symbols_by_timeframe: keys must be among "
                         f"the study's timeframes {list(timeframes)}")
    by_tf = {tf: _strs(v, f"{where} [study].symbols_by_timeframe.{tf}")
             for tf, v in by_tf_raw.items()}
    lockbox = str(head.get("lockbox", "90d"))
    try:
        if parse_duration(lockbox) <= parse_duration("0d"):
            raise ValueError
    except ValueError:
        raise StudyError(f"{where} [study].lockbox: a positive duration such as '90d', "
                         f"got {lockbox!r}") from None
    walkforward = {}
    wf = _take(doc.get("walkforward") or {}, set(timeframes), f"{where} [walkforward]")
    for tf in timeframes:
        text_tf = wf.get(tf, "train=365d,test=60d,valid=0.2")
        try:
            WalkForwardSpec.parse(str(text_tf))
        except ValueError as exc:
            raise StudyError(f"{where} [walkforward].{tf}: {exc}") from None
        walkforward[tf] = str(text_tf)
    costs = dict(doc.get("costs") or {})
    try:
        CostModel(**costs)
    except (TypeError, ValueError) as exc:
        raise StudyError(f"{where} [costs]: {exc}") from None
    labels = _labels(doc.get("labels") or [{"name": "adaptive"}], f"{where} [[labels]]")
    models = _models(doc.get("models") or [{"name": "lgbm"}], f"{where} [[models]]")
    decisions = _decisions(doc.get("decisions") or [{"name": "threshold_045"}],
                           f"{where} [[decisions]]")
    for group, items in (("labels", labels), ("models", models), ("decisions", decisions)):
        names = [x.name for x in items]
        if len(set(names)) != len(names):
            raise StudyError(f"{where} [[{group}]]: names repeat: {names}")
    p = _take(doc.get("pooled") or {}, {"enabled", "timeframe", "train_symbols",
                                        "unseen_symbols", "symbol_feature", "leader"},
              f"{where} [pooled]")
    pooled = PooledSpec(bool(p.get("enabled", False)), str(p.get("timeframe", "4h")),
                        _strs(p.get("train_symbols", list(symbols)),
                              f"{where} [pooled].train_symbols"),
                        _strs(p.get("unseen_symbols", []), f"{where} [pooled].unseen_symbols")
                        if p.get("unseen_symbols") else (),
                        bool(p.get("symbol_feature", False)), str(p.get("leader", "BTCUSDT")))
    if pooled.enabled and pooled.timeframe not in timeframes:
        raise StudyError(f"{where} [pooled].timeframe {pooled.timeframe!r} is not one of the "
                         f"study's timeframes {list(timeframes)}")
    if pooled.enabled and len(pooled.train_symbols) < 2:
        raise StudyError(f"{where} [pooled].train_symbols: pooling needs >= 2 symbols")
    seed = _num(head, "seed", 7, f"{where} [study]", integer=True)
    start, end = head.get("start"), head.get("end")
    if start is not None and end is not None and str(start) >= str(end):
        raise StudyError(f"{where} [study]: start {start} is not before end {end}")
    return Study(name=name, symbols=symbols, timeframes=timeframes, symbols_by_timeframe=by_tf,
                 start=None if start is None else str(start),
                 end=None if end is None else str(end), lockbox=lockbox,
                 feature_sets=_strs(head.get("feature_sets", ["default"]),
                                    f"{where} [study].feature_sets"),
                 seed=int(seed), walkforward=walkforward, costs=costs, labels=labels,
                 models=models, decisions=decisions, pooled=pooled,
                 agents=_agents(doc.get("agents") or [], f"{where} [[agents]]"), source=text)


def load_study(path: Path) -> Study:
    """``parse_study`` of a file, with a one-line error when it cannot be read."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise StudyError(f"{path}: cannot read the study file: {exc.strerror}") from None
    return parse_study(text, str(path))


def default_study() -> Study:
    return parse_study(DEFAULT_STUDY, "default study")


__all__ = ["DEFAULT_STUDY", "AgentSpec", "DecisionSpec", "LabelSpec", "ModelSpec",
           "PooledSpec", "Study", "StudyError", "default_study", "load_study", "parse_study"]
