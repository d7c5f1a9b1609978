"""Volume Spread Analysis events as entries (Wyckoff / Tom Williams reading).

Long after signs of strength: a selling climax (professional buying into panic
selling, meaningful at the end of a fall: trend <= 0), or no supply / a test (a quiet
down bar showing sellers are gone, meaningful in an up-move: trend >= 0). Short after
signs of weakness: a buying climax or an upthrust (meaningful after a rise: trend >= 0)
or no demand (meaningful in a down-move: trend <= 0). With ``context=False`` the trend
filter is off and every event counts. A position is held ``hold_bars`` bars or until
the opposite signal (see ``hold.hold_positions``).

The flags come from ``perptrader.features.vsa.compute_vsa`` (decided at each bar's
close), imported when first used so that the other strategies do not need it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from perptrader.strategies.base import AccountView, PolicyBase
from perptrader.strategies.hold import hold_positions, hold_step

LONG_EVENTS = ("selling_climax", "no_supply", "test")
SHORT_EVENTS = ("buying_climax", "upthrust", "no_demand")
#: the trend sign each event needs when ``context`` is on: -1 = trend <= 0, +1 = >= 0
CONTEXT = {"selling_climax": -1, "no_supply": 1, "test": 1,
           "buying_climax": 1, "upthrust": 1, "no_demand": -1}


#: rows of recent bars the per-bar path recomputes VSA on (a multiple of the longest
#: VSA window: beyond its windows a VSA value no longer depends on where data starts)
WINDOW_FACTOR = 8


@dataclass(frozen=True)
class VsaStrategy(PolicyBase):
    hold_bars: int = 24
    context: bool = True
    long_only: bool = False
    name = "vsa"
    #: per-bar state (last bar seen, position, bars left): lets ``decide`` do one bar's
    #: work instead of the whole history; rebuilt from ``bars`` whenever it is stale
    _live: dict[str, Any] = field(default_factory=dict, init=False, repr=False,
                                  compare=False)

    def __post_init__(self) -> None:
        if self.hold_bars < 1:
            raise ValueError(f"vsa: hold_bars must be >= 1, got {self.hold_bars}")

    @property
    def params(self) -> dict[str, Any]:
        return {"hold_bars": self.hold_bars, "context": self.context,
                "long_only": self.long_only}

    @property
    def warmup_bars(self) -> int:
        from perptrader.features.vsa import vsa_specs

        return max(spec.warmup for spec in vsa_specs())

    def signals(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(long, short) entry events per bar."""
        from perptrader.features.vsa import compute_vsa

        vsa = compute_vsa(frame)
        missing = [f"vsa_{c}" for c in (*LONG_EVENTS, *SHORT_EVENTS)
                   if f"vsa_{c}" not in vsa.columns]
        if missing or (self.context and "vsa_trend" not in vsa.columns):
            raise ValueError(f"compute_vsa returned no {missing or ['vsa_trend']}")
        trend = vsa["vsa_trend"].to_numpy(dtype=np.float64, na_value=np.nan)

        def events(names: tuple[str, ...]) -> np.ndarray:
            hit = np.zeros(len(frame), dtype=np.bool_)
            for name in names:
                flag = vsa[f"vsa_{name}"].to_numpy(dtype=np.float64, na_value=0.0) > 0
                if self.context:
                    ok = trend <= 0 if CONTEXT[name] < 0 else trend >= 0
                    flag &= ok  # NaN trend (warm-up) compares False: no signal
                hit |= flag
            return hit

        long_sig = events(LONG_EVENTS)
        short_sig = events(SHORT_EVENTS)
        return long_sig, short_sig

    def targets(self, frame: pd.DataFrame) -> np.ndarray:
        long_sig, short_sig = self.signals(frame)
        out = hold_positions(long_sig, short_sig, self.hold_bars)
        if self.long_only:
            out = np.maximum(out, 0.0)
        return out

    def decide(self, bars: pd.DataFrame, account: AccountView) -> float:
        """The batch target of the last bar, from the VSA of the recent window and the
        hold state carried from the previous call (rebuilt from all ``bars`` when the
        previous call was not for the bar before this one)."""
        live = self._live
        if len(bars) >= 2 and live.get("ts") == bars.index[-2]:
            window = bars.iloc[-max(WINDOW_FACTOR * self.warmup_bars, 2):]
            long_sig, short_sig = self.signals(window)
            pos, left, target = hold_step(live["pos"], live["left"], bool(long_sig[-1]),
                                          bool(short_sig[-1]), self.hold_bars)
        else:
            long_sig, short_sig = self.signals(bars)
            pos, left = 0.0, 0
            for lg, sh in zip(long_sig, short_sig, strict=True):
                pos, left, target = hold_step(pos, left, bool(lg), bool(sh), self.hold_bars)
        live.update(ts=bars.index[-1], pos=pos, left=left)
        return max(target, 0.0) if self.long_only else float(target)
