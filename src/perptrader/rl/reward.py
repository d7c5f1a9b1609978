"""The reward: a weighted sum of named terms, each computed in the numba core per step.

Terms (all on the equity AFTER fees, slippage and funding of the bar):

* ``log_growth``: 100 * ln(E_t / E_t-1). Sums over an episode to 100 * ln(final/initial),
  the quantity a trader compounds, so the agent is paid for what the evaluation measures.
* ``pnl``: 100 * (E_t / E_t-1 - 1), the net return of the bar in percent.
* ``diff_sharpe``: Moody & Saffell's differential Sharpe ratio (EMA rate ``dsr_eta``),
  the first-order change of an exponentially weighted Sharpe caused by this bar.
* ``leverage``: -(|notional| / equity) per bar: a cost of carrying exposure.
* ``trade_sharpe``: at a bar where a trade closes, mean / std of the last
  ``sharpe_trades`` trade returns (needs two trades; clipped to +-3); 0 elsewhere.
* ``drawdown``: -100 * the increase of the drawdown from the equity peak (new pain only).
* ``vsa``: +1 when the action takes risk (open / increase) in the direction of a VSA
  entry event at the decision bar (the ``vsa`` strategy's events, with context).
* ``experts``: +1 when the action takes risk in the direction both xLSTM experts agree
  on (both BUY or both SELL), -1 when it takes risk while they conflict (BUY vs SELL).

Presets: ``log_growth`` (the default) and ``weighted`` (0.7 pnl / 0.2 trade_sharpe /
0.1 drawdown / 0.1 vsa, the shaped reward of the design), plus ``diff_sharpe``.

Why log-growth is the default: it is dense (every bar pays), it is exactly additive
over time (no hidden state like the differential Sharpe's EMAs, whose early steps are
noisy), it charges costs in the bar they happen, and its sum is the log of the final
equity, so a higher return always means a higher return in the evaluation. The shaped
terms (VSA, experts) pay for agreeing with signals, not for making money; in our runs
they make the agent trade more without improving OOS equity (docs/rl.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

TERMS = ("log_growth", "pnl", "diff_sharpe", "leverage", "trade_sharpe", "drawdown", "vsa",
         "experts")
(R_LOG, R_PNL, R_DSR, R_LEV, R_TSHARPE, R_DD, R_VSA, R_EXPERTS) = range(len(TERMS))
N_TERMS = len(TERMS)

PRESETS: dict[str, dict[str, float]] = {
    "log_growth": {"log_growth": 1.0},
    "weighted": {"pnl": 0.7, "trade_sharpe": 0.2, "drawdown": 0.1, "vsa": 0.1},
    "diff_sharpe": {"diff_sharpe": 1.0},
}
DEFAULT_PRESET = "log_growth"


@dataclass(frozen=True)
class RewardConfig:
    """Weights of the reward terms (missing = 0) and the terms' own settings."""

    weights: Mapping[str, float] = field(default_factory=lambda: dict(PRESETS[DEFAULT_PRESET]))
    preset: str | None = DEFAULT_PRESET
    #: trades in the rolling trade Sharpe
    sharpe_trades: int = 20
    #: EMA rate of the differential Sharpe ratio (1/eta ~ bars of memory)
    dsr_eta: float = 0.01

    def __post_init__(self) -> None:
        unknown = sorted(set(self.weights) - set(TERMS))
        if unknown:
            raise ValueError(f"unknown reward term(s) {unknown}; terms: {', '.join(TERMS)}")
        for k, v in self.weights.items():
            if not np.isfinite(float(v)):
                raise ValueError(f"reward weight {k} must be finite, got {v!r}")
        if self.sharpe_trades < 2:
            raise ValueError(f"sharpe_trades must be >= 2, got {self.sharpe_trades}")
        if not 0.0 < self.dsr_eta < 1.0:
            raise ValueError(f"dsr_eta must be in (0, 1), got {self.dsr_eta}")

    @classmethod
    def from_preset(cls, name: str, overrides: Mapping[str, float] | None = None
                    ) -> RewardConfig:
        """A preset's weights, with ``overrides`` (term=weight) applied on top."""
        if name not in PRESETS:
            raise ValueError(f"unknown reward preset {name!r}; presets: "
                             f"{', '.join(PRESETS)}")
        weights = {**PRESETS[name], **{k: float(v) for k, v in (overrides or {}).items()}}
        return cls(weights=weights, preset=name if not overrides else f"{name}+custom")

    def vector(self) -> np.ndarray:
        """Weights in ``TERMS`` order (what the numba core reads)."""
        return np.array([float(self.weights.get(t, 0.0)) for t in TERMS], dtype=np.float64)

    def as_dict(self) -> dict[str, object]:
        return {"preset": self.preset, "weights": {k: float(v) for k, v in
                                                   self.weights.items() if v},
                "sharpe_trades": self.sharpe_trades, "dsr_eta": self.dsr_eta}

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> RewardConfig:
        return cls(weights=dict(d["weights"]), preset=d.get("preset"),  # type: ignore[arg-type]
                   sharpe_trades=int(d.get("sharpe_trades", 20)),  # type: ignore[arg-type]
                   dsr_eta=float(d.get("dsr_eta", 0.01)))  # type: ignore[arg-type]
