"""How one simulation is run: money, leverage, margin mode, sizing, stops, delay, costs."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from perptrader.sim.costs import CostModel
from perptrader.sim.tiers import MarginTiers, TiersTable

Sizing = Literal["equity_fraction", "notional", "risk"]


@dataclass(frozen=True)
class SimConfig:
    """Settings of one run; frozen so a result always carries the exact settings it used.

    * ``leverage``: per position; caps |target| (exposure = notional / equity) and sets the
      initial margin (notional / leverage). Must not exceed the symbol's bracket maximum.
    * ``margin_mode``: ``"isolated"`` (each position has its own margin; a loss is capped
      at it) or ``"cross"`` (one wallet backs every position).
    * ``sizing``: how a target becomes a quantity at the fill:
      ``"equity_fraction"``: notional = target * equity;
      ``"notional"``: notional = target * ``notional_size`` (quote currency);
      ``"risk"``: qty = |target| * ``risk_fraction`` * equity / (stop_loss * price), so the
      stop distance loses ``risk_fraction`` of equity (needs ``stop_loss``).
      Every sizing is capped at ``leverage`` * equity and at the bracket limit.
    * ``stop_loss`` / ``take_profit`` / ``trailing_stop``: fractions of the average entry
      price (trailing: of the best price since entry); None = off.
    * ``fill_delay``: bars between the decision (bar close) and the fill (bar open), >= 1.
    * ``tiers``: one symbol's brackets; None -> ``tiers_table``, then the published table
      (``load_tiers("binance", symbol)``), then the conservative DEFAULT ladder with a
      warning in the result.
    * ``tiers_table``: a user's brackets file (``sim.tiers.load_tiers_file``).
    * ``strict_tiers``: refuse a symbol without brackets instead of using DEFAULT.
    """

    initial_cash: float = 10_000.0
    leverage: float = 1.0
    margin_mode: Literal["isolated", "cross"] = "isolated"
    costs: CostModel = field(default_factory=CostModel)
    sizing: Sizing = "equity_fraction"
    notional_size: float = 1_000.0
    risk_fraction: float = 0.01
    stop_loss: float | None = None
    take_profit: float | None = None
    trailing_stop: float | None = None
    fill_delay: int = 1
    tiers: MarginTiers | None = None
    tiers_table: TiersTable | None = None
    strict_tiers: bool = False

    def __post_init__(self) -> None:
        if not (self.initial_cash > 0 and math.isfinite(self.initial_cash)):
            raise ValueError(f"initial_cash must be > 0, got {self.initial_cash!r}")
        if not (self.leverage >= 1.0 and math.isfinite(self.leverage)):
            raise ValueError(f"leverage must be >= 1, got {self.leverage!r}")
        if self.margin_mode not in ("isolated", "cross"):
            raise ValueError(f"margin_mode must be isolated|cross, got {self.margin_mode!r}")
        if self.sizing not in ("equity_fraction", "notional", "risk"):
            raise ValueError(f"sizing must be equity_fraction|notional|risk, got {self.sizing!r}")
        if int(self.fill_delay) != self.fill_delay or self.fill_delay < 1:
            raise ValueError(f"fill_delay must be an integer >= 1 (never the signal bar), "
                             f"got {self.fill_delay!r}")
        for name in ("stop_loss", "take_profit", "trailing_stop"):
            value = getattr(self, name)
            if value is not None and not (0.0 < value < 1.0):
                raise ValueError(f"{name} is a fraction of the entry price in (0, 1), "
                                 f"got {value!r}")
        if self.sizing == "risk" and self.stop_loss is None:
            raise ValueError("sizing='risk' needs stop_loss (the distance that is risked)")
        if self.sizing == "notional" and not self.notional_size > 0:
            raise ValueError(f"notional_size must be > 0, got {self.notional_size!r}")
        if self.sizing == "risk" and not (0.0 < self.risk_fraction < 1.0):
            raise ValueError(f"risk_fraction must be in (0, 1), got {self.risk_fraction!r}")
