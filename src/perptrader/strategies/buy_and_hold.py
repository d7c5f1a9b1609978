"""Long one unit of exposure from the first bar to the last: the benchmark every result
is printed beside."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from perptrader.strategies.base import AccountView, PolicyBase


@dataclass(frozen=True)
class BuyAndHold(PolicyBase):
    name = "buy_and_hold"

    @property
    def params(self) -> dict[str, Any]:
        return {}

    def targets(self, frame: pd.DataFrame) -> np.ndarray:
        return np.ones(len(frame), dtype=np.float64)

    def decide(self, bars: pd.DataFrame, account: AccountView) -> float:
        return 1.0
