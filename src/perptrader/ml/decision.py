"""From class probabilities to target exposure, net of costs: the cost-aware decision layer.

The plain rule (``ml.trading.signals``: long when P(BUY) >= 0.45, short when P(SELL) >=
0.45) trades whenever the model leans, so a classifier that is right slightly more often
than not still pays a round trip on every wobble of its probabilities. This layer trades
only when the EXPECTED move pays for the trip:

* **Expected return.** The label's classes are moves of about ``k × σ_t × √h`` over ``h``
  bars (``features.labels``: adaptive threshold k, horizon h; σ_t the realised per-bar
  volatility known at the close of bar t). So the expected horizon return of a long is
  ``edge_t = (P(BUY) − P(SELL)) × k × σ_t × √h`` and of a short its negative. Taken at
  face value, ``k`` trusts the probabilities; a class-balanced model's are not
  calibrated, and a lean of a few points then reads as an edge. ``fit_edge_scale``
  measures ``k`` instead: the slope of the realised, volatility-scaled forward return on
  P(BUY) − P(SELL) over the tuning rows, shrunk towards 0 by its standard error (0 when
  the model shows no skill there, and then the layer never trades). Funding known at t
  (the last published rate, paid by longs when positive) is charged for the bars the
  position is expected to be held.
* **Entry / exit with hysteresis.** A position opens when ``|edge_t| − funding`` exceeds
  ``enter`` round-trip costs and closes (or flips) only when the edge has fallen below
  ``exit`` costs in its direction (``exit < enter``), and never before ``min_hold`` bars:
  probabilities that flicker around one threshold no longer flicker the position.
* **Size.** ``vol_target / σ_t`` (per-bar volatility target over the bar's volatility),
  capped at ``max_size``: a quiet market gets a larger position than a wild one for the
  same risk. With ``size_by_edge`` the size also scales with the edge in costs, up to 1.

The settings are chosen per walk-forward fold on its VALIDATION slice (``fit_decision``),
by net return after costs on that slice, never on the test window; the chosen settings
are stored beside the model (``DecisionParams.as_dict``). Choosing uses ``linear_pnl``
(position × next open-to-open return − |Δposition| × one-way cost − funding), a fast
first-order twin of the accounting core; reported figures always come from the
backtest engine (``backtest.engine.run_on_frame``).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from numba import njit

from perptrader.ml.base import CLASSES

#: funding settlements per day on Binance USD-M (every 8 h)
FUNDINGS_PER_DAY = 3.0


@dataclass(frozen=True)
class DecisionParams:
    """One setting of the decision layer (see the module docstring)."""

    #: open when the expected horizon return exceeds this many round-trip costs
    enter: float = 1.5
    #: close / flip only when the edge in the held direction is below this many costs
    exit: float = 0.25
    #: bars a position is held at least (a close or flip before it is refused)
    min_hold: int = 4
    #: per-bar volatility target of the position (0.01 = 1% of equity per bar's σ)
    vol_target: float = 0.01
    #: cap of |target exposure| (fraction of equity before leverage)
    max_size: float = 1.0
    #: scale the size by min(1, edge / (enter × cost)) as well
    size_by_edge: bool = False

    def __post_init__(self) -> None:
        if not self.enter >= 0.0:
            raise ValueError(f"enter must be >= 0, got {self.enter}")
        if not 0.0 <= self.exit <= self.enter:
            raise ValueError(f"exit must be in [0, enter={self.enter}], got {self.exit}")
        if self.min_hold < 1:
            raise ValueError(f"min_hold must be >= 1 bar, got {self.min_hold}")
        if not self.vol_target > 0.0 or not self.max_size > 0.0:
            raise ValueError("vol_target and max_size must be > 0")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DecisionParams:
        names = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown decision settings {unknown}; known: {sorted(names)}")
        return cls(**d)


@dataclass(frozen=True)
class DecisionInputs:
    """What the layer needs per bar, all known at the close of bar t."""

    #: (n, 3) probabilities in ``CLASSES`` order; NaN rows = no prediction (flat)
    proba: np.ndarray
    #: realised per-bar volatility (log-return std) at t
    sigma: np.ndarray
    #: funding rate per settlement known at t (0 when the data has none)
    funding_rate: np.ndarray
    #: the label's move size in σ√h units and its horizon in bars
    k: float
    horizon: int
    #: round-trip cost as a fraction of notional (2 × (taker fee + slippage))
    round_trip_cost: float
    #: funding settlements per bar (1h: 1/8; 4h: 1/2)
    fundings_per_bar: float

    def __post_init__(self) -> None:
        n = len(self.proba)
        if self.proba.ndim != 2 or self.proba.shape[1] != len(CLASSES):
            raise ValueError(f"proba must be (n, 3), got {self.proba.shape}")
        for name in ("sigma", "funding_rate"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows, proba {n}")
        if self.horizon < 1 or not self.k >= 0 or not self.round_trip_cost >= 0:
            raise ValueError("horizon >= 1, k >= 0 and round_trip_cost >= 0 are required")


def expected_edge(inputs: DecisionInputs) -> np.ndarray:
    """Expected horizon return of a LONG at each bar (a short's is its negative), before
    costs and funding; NaN where the probabilities or σ are unknown."""
    p = np.asarray(inputs.proba, dtype=np.float64)
    move = inputs.k * np.asarray(inputs.sigma, dtype=np.float64) * math.sqrt(inputs.horizon)
    return (p[:, 2] - p[:, 0]) * move


@njit(cache=True)
def decision_step(side: float, held: int, size: float, edge: float, funding_h: float,
                  sigma: float, cost: float, enter: float, exit_: float, min_hold: int,
                  vol_target: float, max_size: float, size_by_edge: bool
                  ) -> tuple[float, int, float, float]:
    """One bar of the hysteresis state machine: (side, bars held, size) before the bar
    and its inputs -> (side, held, size, target of the bar). The batch form loops it and
    a live policy calls it once per bar, so both share one definition of the rule.
    ``funding_h`` = funding a long pays over the horizon."""
    if not np.isfinite(edge) or not np.isfinite(sigma) or sigma <= 0.0:
        # no prediction: hold what is held until min_hold, then go flat
        if side != 0.0 and held < min_hold:
            return side, held + 1, size, side * size
        return 0.0, 0, 0.0, 0.0
    f = funding_h if np.isfinite(funding_h) else 0.0
    long_net = edge - f
    short_net = -edge + f
    want = 0.0
    if long_net > enter * cost:
        want = 1.0
    elif short_net > enter * cost:
        want = -1.0
    if side != 0.0:
        held_net = long_net if side > 0 else short_net
        if held < min_hold or held_net > exit_ * cost:
            want = side  # too early to leave, or the edge still pays: hold
    if want != side:
        held = 0
    side = want
    if side == 0.0:
        return 0.0, held, 0.0, 0.0
    held += 1
    s = vol_target / sigma
    if size_by_edge and cost > 0.0:
        net = long_net if side > 0 else short_net
        s *= min(1.0, max(net, 0.0) / (max(enter, 1e-12) * cost))
    size = min(max_size, s)
    return side, held, size, side * size


@njit(cache=True)
def _decide(edge: np.ndarray, funding_h: np.ndarray, sigma: np.ndarray, cost: float,
            enter: float, exit_: float, min_hold: int, vol_target: float, max_size: float,
            size_by_edge: bool) -> tuple[np.ndarray, float, int, float]:
    """``decision_step`` over every bar, from flat: (targets, final side, held, size)."""
    n = len(edge)
    out = np.zeros(n)
    side = 0.0
    held = 0
    size = 0.0
    for t in range(n):
        side, held, size, out[t] = decision_step(side, held, size, edge[t], funding_h[t],
                                                 sigma[t], cost, enter, exit_, min_hold,
                                                 vol_target, max_size, size_by_edge)
    return out, side, held, size


def decide(inputs: DecisionInputs, params: DecisionParams) -> np.ndarray:
    """Target exposure per bar (fraction of equity, sign = side) under ``params``."""
    return decide_with_state(inputs, params)[0]


def decide_with_state(inputs: DecisionInputs, params: DecisionParams
                      ) -> tuple[np.ndarray, tuple[float, int, float]]:
    """``decide`` and the state (side, bars held, size) after the last bar, from which
    ``decision_step`` continues."""
    edge = expected_edge(inputs)
    funding_h = (np.asarray(inputs.funding_rate, dtype=np.float64)
                 * inputs.fundings_per_bar * inputs.horizon)
    out, side, held, size = _decide(edge, funding_h,
                                    np.asarray(inputs.sigma, dtype=np.float64),
                                    float(inputs.round_trip_cost), params.enter,
                                    params.exit, int(params.min_hold), params.vol_target,
                                    params.max_size, bool(params.size_by_edge))
    return out, (float(side), int(held), float(size))


@njit(cache=True)
def decision_sigma(close: np.ndarray, window: int) -> np.ndarray:
    """σ_t: sample std (ddof=1) of the ``window`` 1-bar log returns ending at t, NaN
    before ``window`` returns exist. The label's estimate (``features.labels.
    bar_volatility``) with each window computed on its own: a live policy computes σ
    of the newest bar from the last ``window + 1`` closes and must get the batch value
    to the float, which a running sum carried from the series' start would not give."""
    n = len(close)
    out = np.full(n, np.nan)
    if window < 2 or n <= window:
        return out
    r = np.empty(n)
    for i in range(1, n):
        r[i] = math.log(close[i] / close[i - 1])
    for t in range(window, n):
        mean = 0.0
        for i in range(t - window + 1, t + 1):
            mean += r[i]
        mean /= window
        ss = 0.0
        for i in range(t - window + 1, t + 1):
            d = r[i] - mean
            ss += d * d
        out[t] = math.sqrt(ss / (window - 1))
    return out


@dataclass(frozen=True)
class CostAwareRule:
    """The cost-aware layer as stored with a registered model: the chosen setting and
    everything else ``decide`` needs, so the policy trades exactly what was chosen.

    ``targets`` is the batch form (every bar from flat); ``step`` one bar of it from a
    carried state ``(side, held, size)``: the per-bar policy's path (same numbers)."""

    params: DecisionParams
    #: measured edge scale (0: no skill measured -> never trades)
    k: float
    horizon: int
    round_trip_cost: float
    vol_window: int
    fundings_per_bar: float

    def as_dict(self) -> dict[str, Any]:
        return {"params": self.params.as_dict(), "k": self.k, "horizon": self.horizon,
                "round_trip_cost": self.round_trip_cost, "vol_window": self.vol_window,
                "fundings_per_bar": self.fundings_per_bar}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CostAwareRule:
        try:
            return cls(DecisionParams.from_dict(dict(d["params"])), float(d["k"]),
                       int(d["horizon"]), float(d["round_trip_cost"]), int(d["vol_window"]),
                       float(d["fundings_per_bar"]))
        except KeyError as exc:
            raise ValueError(f"stored cost-aware decision lacks {exc.args[0]!r}") from None

    def inputs(self, proba: np.ndarray, close: np.ndarray,
               funding_rate: np.ndarray | None = None) -> DecisionInputs:
        """The layer's inputs over a whole series (NaN probability rows: no prediction;
        NaN funding: none known, charged as 0)."""
        c = np.asarray(close, dtype=np.float64)
        fr = np.zeros(len(c)) if funding_rate is None else funding_rate
        return DecisionInputs(np.asarray(proba, dtype=np.float64),
                              decision_sigma(c, self.vol_window),
                              np.asarray(fr, dtype=np.float64), self.k, self.horizon,
                              self.round_trip_cost, self.fundings_per_bar)

    def targets(self, proba: np.ndarray, close: np.ndarray,
                funding_rate: np.ndarray | None = None) -> np.ndarray:
        """Target per bar of a whole series, from flat."""
        return decide(self.inputs(proba, close, funding_rate), self.params)

    def final_state(self, proba: np.ndarray, close: np.ndarray,
                    funding_rate: np.ndarray | None = None
                    ) -> tuple[np.ndarray, tuple[float, int, float]]:
        """(targets, state after the last bar): the batch form's end, from which a live
        policy continues bar by bar with ``step``."""
        return decide_with_state(self.inputs(proba, close, funding_rate), self.params)

    def step(self, state: tuple[float, int, float], proba: np.ndarray, closes: np.ndarray,
             funding_rate: float) -> tuple[tuple[float, int, float], float]:
        """(new state, target) of the bar whose probabilities are ``proba`` (3 values)
        and whose close is the last of ``closes`` (at least ``vol_window + 1`` closes)."""
        tail = np.asarray(closes[-(self.vol_window + 1):], dtype=np.float64)
        sigma = float(decision_sigma(tail, self.vol_window)[-1]) if len(tail) > 1 else math.nan
        p = np.asarray(proba, dtype=np.float64)
        move = self.k * sigma * math.sqrt(self.horizon)
        edge = float((p[2] - p[0]) * move)
        funding_h = float(funding_rate) * self.fundings_per_bar * self.horizon
        q = self.params
        side, held, size, target = decision_step(
            state[0], state[1], state[2], edge, funding_h, sigma, self.round_trip_cost,
            q.enter, q.exit, int(q.min_hold), q.vol_target, q.max_size, bool(q.size_by_edge))
        return (side, held, size), float(target)


def linear_pnl(targets: np.ndarray, open_: np.ndarray, one_way_cost: float,
               funding_rate: np.ndarray | None = None,
               fundings_per_bar: float = 0.0) -> np.ndarray:
    """Per-bar net return of ``targets`` decided at the close of bar t and filled at the
    open of t+1 (the engine's ``fill_delay=1``): position(t) earns open(t+2)/open(t+1)−1,
    pays ``one_way_cost`` × |Δposition| when it changes and funding × position. The
    last two bars earn nothing (their exit is beyond the data). First-order twin of the
    accounting core, used only to CHOOSE settings (compounding, margin and liquidation
    are left to the engine)."""
    pos = np.nan_to_num(np.asarray(targets, dtype=np.float64))
    o = np.asarray(open_, dtype=np.float64)
    n = len(pos)
    out = np.zeros(n)
    if n < 3:
        return out
    ret = o[2:] / o[1:-1] - 1.0
    prev = np.concatenate(([0.0], pos[:-1]))
    trade = np.abs(pos - prev) * one_way_cost
    out[: n - 2] = pos[: n - 2] * ret - trade[: n - 2]
    if funding_rate is not None and fundings_per_bar:
        fr = np.nan_to_num(np.asarray(funding_rate, dtype=np.float64))
        out[: n - 2] -= pos[: n - 2] * fr[: n - 2] * fundings_per_bar
    return out


@dataclass(frozen=True)
class EdgeScale:
    """The measured ``k`` of ``expected_edge`` (see the module docstring)."""

    #: shrunk slope (>= 0): expected forward return in σ√h units per unit of P(BUY)−P(SELL)
    k: float
    #: the raw least-squares slope and its t statistic
    slope: float
    t: float
    n: int


def fit_edge_scale(score: np.ndarray, forward_z: np.ndarray, overlap: int = 1) -> EdgeScale:
    """Slope through the origin of ``forward_z`` (forward return / (σ_t √h)) on ``score``
    (P(BUY) − P(SELL)), shrunk by the positive-part rule ``k = slope × max(0, 1 − 1/t²)``
    and floored at 0: a slope within one standard error of zero, or a negative one
    (the model is wrong more often than right), gives k = 0. Forward returns over
    ``overlap`` bars measured every bar share most of their path, so the standard error
    is widened by √overlap (n / overlap independent observations)."""
    x = np.asarray(score, dtype=np.float64)
    y = np.asarray(forward_z, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = len(x)
    sxx = float(np.dot(x, x))
    if n < 10 or sxx <= 0.0:
        return EdgeScale(0.0, math.nan, math.nan, n)
    slope = float(np.dot(x, y)) / sxx
    resid = y - slope * x
    se = math.sqrt(float(np.dot(resid, resid)) / max(n - 1, 1) / sxx * max(overlap, 1))
    t = slope / se if se > 0 else math.inf
    k = slope * max(0.0, 1.0 - 1.0 / (t * t)) if t > 0 else 0.0
    return EdgeScale(max(k, 0.0), slope, t, n)


#: the grid ``fit_decision`` searches by default (24 settings). ``enter`` starts at one
#: round trip: entering on an expected move smaller than its own cost is a loss by
#: construction, and letting a small tuning slice pick it anyway is how a search overfits.
DEFAULT_GRID: dict[str, tuple[Any, ...]] = {
    "enter": (1.0, 1.5, 2.0, 3.0),
    "exit": (0.0, 0.5),
    "min_hold": (4, 12, 24),
    "vol_target": (0.01,),
    "max_size": (1.0,),
    "size_by_edge": (False,),
}


def grid_settings(grid: dict[str, tuple[Any, ...]] | None = None) -> list[DecisionParams]:
    """Every valid combination of ``grid`` (exit > enter combinations are skipped)."""
    g = {**DEFAULT_GRID, **(grid or {})}
    out = []
    for values in itertools.product(*g.values()):
        d = dict(zip(g.keys(), values, strict=True))
        if d["exit"] <= d["enter"]:
            out.append(DecisionParams(**d))
    if not out:
        raise ValueError(f"the decision grid {g} holds no valid setting")
    return out


@dataclass(frozen=True)
class DecisionFit:
    """The chosen setting and what the search saw (for the study record)."""

    params: DecisionParams
    #: net return of the chosen setting on the validation slice (linear_pnl sum)
    valid_net: float
    #: how many settings were tried (they count as trials of the study)
    n_tried: int
    #: False when no setting beat staying flat: then ``params`` never trades
    trades: bool


#: a setting that never trades (enter above any reachable edge)
NEVER = DecisionParams(enter=1e9, exit=0.0)


def fit_decision(blocks: list[tuple[DecisionInputs, np.ndarray]],
                 grid: dict[str, tuple[Any, ...]] | None = None,
                 min_trades: int = 3) -> DecisionFit:
    """Choose the setting of ``grid`` with the highest net return summed over ``blocks``
    (each a contiguous run of bars: its inputs and bar opens, e.g. one fold's validation
    slice). Staying flat (0) is a candidate: when nothing beats it the result never
    trades, the honest answer for a model without an edge after costs. A setting that
    opens fewer than ``min_trades`` positions in all is not chosen (one lucky trade is
    not a rule)."""
    best, best_net = NEVER, 0.0
    settings = grid_settings(grid)
    for params in settings:
        net, opens = 0.0, 0
        for inputs, open_ in blocks:
            targets = decide(inputs, params)
            before = np.concatenate(([0.0], targets[:-1]))
            opens += int(np.sum((targets != 0.0) & (np.sign(targets) != np.sign(before))))
            net += float(linear_pnl(targets, open_, inputs.round_trip_cost / 2.0,
                                    inputs.funding_rate, inputs.fundings_per_bar).sum())
        if opens >= min_trades and net > best_net:
            best, best_net = params, net
    return DecisionFit(best, best_net, len(settings), best is not NEVER)


def decision_inputs(frame: pd.DataFrame, proba: np.ndarray, *, k: float, horizon: int,
                    round_trip_cost: float, vol_window: int, fundings_per_bar: float,
                    funding_column: str = "funding_rate") -> DecisionInputs:
    """Inputs from a bar frame (``close`` and optionally ``funding_rate`` columns, rows
    aligned with ``proba``): σ is the realised volatility of log closes over
    ``vol_window`` bars ending at t (``decision_sigma``: the label's estimate, computed
    window by window)."""
    close = frame["close"].to_numpy(dtype=np.float64)
    sigma = decision_sigma(close, vol_window)
    if funding_column in frame.columns:
        fr = frame[funding_column].to_numpy(dtype=np.float64)
    else:
        fr = np.zeros(len(frame))
    return DecisionInputs(np.asarray(proba, dtype=np.float64), sigma, fr, k, horizon,
                          round_trip_cost, fundings_per_bar)


def round_trip_cost(costs: Any | None = None) -> float:
    """2 × (taker fee + slippage) of a cost model (``sim.costs.CostModel``)."""
    from perptrader.sim.costs import CostModel

    c = costs or CostModel()
    return 2.0 * (c.taker_fee + c.slippage_bps / 1e4)


__all__ = ["DEFAULT_GRID", "NEVER", "CostAwareRule", "DecisionFit", "DecisionInputs",
           "DecisionParams", "EdgeScale", "decide", "decide_with_state", "decision_inputs",
           "decision_sigma", "decision_step", "expected_edge", "fit_decision",
           "fit_edge_scale", "grid_settings", "linear_pnl", "round_trip_cost"]
