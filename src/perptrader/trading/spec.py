"""What a trading run is: policy, symbols, account and risk settings, and its feed window.

The spec is stored with the run (``runs.config``), so a restarted process resumes the
same run with the same settings, and a restart with DIFFERENT settings is refused
instead of silently mixing two configurations in one journal. The run id is derived
from the spec: running the same command again resumes the run it started.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from perptrader.core.errors import PerptraderError
from perptrader.sim import CostModel, SimConfig

#: settings that may differ between the start and a resume of a run (display only)
RESUMABLE_DIFFERENCES = frozenset({"speed"})


@dataclass(frozen=True)
class RunSpec:
    mode: str
    strategy: str
    symbols: tuple[str, ...]
    timeframe: str
    params: dict[str, str] = field(default_factory=dict)
    leverage: float = 1.0
    initial_cash: float = 10_000.0
    maker_fee: float = 0.0002
    taker_fee: float = 0.0005
    slippage_bps: float = 1.0
    fill_delay: int = 1
    margin_mode: str = "isolated"
    risk: tuple[str, ...] = ()
    #: replay window [start, end) as ISO strings; None for a live feed
    replay: tuple[str, str] | None = None
    history_bars: int = 0
    #: a replay closes every position at the open of its last bar, as a backtest does
    close_at_end: bool = True
    speed: float | None = None
    #: a brackets file (``--tiers FILE``) for symbols the published table lacks, or None
    tiers: str | None = None
    #: live runs: the venue account traded (``binanceusdm``, ``binanceusdm-testnet``);
    #: part of the run's identity, so a testnet run never resumes as a real-money one
    venue: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("paper", "live"):
            raise PerptraderError(f"mode must be paper or live, not {self.mode!r}")
        if not self.symbols:
            raise PerptraderError("a run needs at least one --symbol")
        if not self.leverage >= 1.0:
            raise PerptraderError(f"--leverage must be >= 1, got {self.leverage}")
        if not self.initial_cash > 0:
            raise PerptraderError(f"--initial-cash must be > 0, got {self.initial_cash}")
        for name in ("maker_fee", "taker_fee", "slippage_bps"):
            if not getattr(self, name) >= 0:
                raise PerptraderError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.fill_delay < 1:
            raise PerptraderError(f"fill delay must be >= 1 bar, got {self.fill_delay}")

    # ---- identity ------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The JSON stored with the run."""
        out = asdict(self)
        out["symbols"] = list(self.symbols)
        out["risk"] = list(self.risk)
        out["replay"] = list(self.replay) if self.replay else None
        if out["tiers"] is None:  # runs started before --tiers existed keep their id
            del out["tiers"]
        if out["venue"] is None:  # paper runs keep the ids they had
            del out["venue"]
        return out

    @property
    def run_id(self) -> str:
        """``<mode>-<policy>-<12 hex of the settings>``: the same settings, the same run."""
        key = {k: v for k, v in self.config().items() if k not in RESUMABLE_DIFFERENCES}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
        slug = re.sub(r"[^a-z0-9]+", "-", self.strategy.lower()).strip("-")[:24] or "policy"
        return f"{self.mode}-{slug}-{digest}"

    def differences(self, stored: dict[str, Any]) -> list[str]:
        """Settings of ``stored`` (a run's config) that differ from this spec."""
        mine = self.config()
        return [f"{k}: stored {stored.get(k)!r}, now {v!r}" for k, v in mine.items()
                if k not in RESUMABLE_DIFFERENCES and _norm(stored.get(k)) != _norm(v)]

    # ---- accounting ----------------------------------------------------------------------
    def costs(self) -> CostModel:
        return CostModel(maker_fee=self.maker_fee, taker_fee=self.taker_fee,
                         slippage_bps=self.slippage_bps)

    def sim_config(self, margin_leverage: float | None = None) -> SimConfig:
        """One symbol's account: its share of the cash, the backtester's costs and
        margin. ``margin_leverage``: the policy's own account (an RL agent's 2x)."""
        lev = margin_leverage or self.leverage
        if lev < self.leverage:
            raise PerptraderError(f"the policy's margin leverage {lev} is below --leverage "
                                  f"{self.leverage}")
        from perptrader.sim.tiers import load_tiers_file

        return SimConfig(initial_cash=self.initial_cash / len(self.symbols), leverage=lev,
                         margin_mode=self.margin_mode, costs=self.costs(),
                         fill_delay=self.fill_delay,
                         tiers_table=load_tiers_file(self.tiers) if self.tiers else None)

    def window(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        if self.replay is None:
            raise PerptraderError("this run has no replay window")
        return pd.Timestamp(self.replay[0]), pd.Timestamp(self.replay[1])


def _norm(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_norm(v) for v in value]
    if isinstance(value, list):
        return [_norm(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value
