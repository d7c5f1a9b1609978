"""Moving-average crossover: long while SMA(fast) > SMA(slow), short (or flat when
``long_only``) while below. The simplest trend rule; a baseline, not an edge."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import talib

from perptrader.strategies.base import PolicyBase, close_prices


@dataclass(frozen=True)
class SmaCross(PolicyBase):
    fast: int = 20
    slow: int = 50
    long_only: bool = False
    name = "sma_cross"

    def __post_init__(self) -> None:
        if not 1 <= self.fast < self.slow:
            raise ValueError(f"sma_cross needs 1 <= fast < slow, got fast={self.fast}, "
                             f"slow={self.slow}")

    @property
    def params(self) -> dict[str, Any]:
        return {"fast": self.fast, "slow": self.slow, "long_only": self.long_only}

    @property
    def warmup_bars(self) -> int:
        return self.slow

    def targets(self, frame: pd.DataFrame) -> np.ndarray:
        """+1 / -1 (0 when long_only) by the sign of SMA(fast) - SMA(slow); flat (0)
        until both averages exist and where they are equal."""
        close = close_prices(frame)
        diff = talib.SMA(close, self.fast) - talib.SMA(close, self.slow)
        short = 0.0 if self.long_only else -1.0
        out = np.where(diff > 0, 1.0, np.where(diff < 0, short, 0.0))
        return out.astype(np.float64)
