"""Never in the market: the zero line. A policy that loses against it loses money."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from perptrader.strategies.base import AccountView, PolicyBase


@dataclass(frozen=True)
class AlwaysFlat(PolicyBase):
    name = "always_flat"

    @property
    def params(self) -> dict[str, Any]:
        return {}

    def targets(self, frame: pd.DataFrame) -> np.ndarray:
        return np.zeros(len(frame), dtype=np.float64)

    def decide(self, bars: pd.DataFrame, account: AccountView) -> float:
        return 0.0
