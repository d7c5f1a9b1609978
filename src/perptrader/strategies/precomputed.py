"""Targets decided elsewhere (a walk-forward's out-of-sample signals, an agent's
rollout), replayed as a policy by bar open time.

Matching by timestamp, not by position, keeps every earlier target unchanged when the
frame is truncated (no look-ahead by construction); a bar without a target is flat.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from perptrader.strategies.base import AccountView, PolicyBase


@dataclass(frozen=True)
class PrecomputedTargets(PolicyBase):
    by_time: pd.Series = field(repr=False)
    label: str = "precomputed"
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.label

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.settings)

    def targets(self, frame: pd.DataFrame) -> np.ndarray:
        values = self.by_time.reindex(frame.index)
        return values.fillna(0.0).to_numpy(dtype=np.float64)

    def decide(self, bars: pd.DataFrame, account: AccountView) -> float:
        value = self.by_time.get(bars.index[-1], np.nan)
        return 0.0 if pd.isna(value) else float(value)
