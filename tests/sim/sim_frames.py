"""Small hand-made loader-like frames for the sim tests (no real data)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def make_frame(open_, high=None, low=None, close=None, *, start="2024-01-01",
               freq="1h", marks: dict[str, list[float]] | None = None,
               funding: dict[str, float] | None = None, interval_hours: float = 8.0
               ) -> pd.DataFrame:
    """Bars with the loader's layout. ``funding`` maps settlement time -> rate; each bar
    shows the last settlement at or before its CLOSE (as the loader does)."""
    o = np.asarray(open_, dtype=float)
    h = np.asarray(high if high is not None else o, dtype=float)
    lo = np.asarray(low if low is not None else o, dtype=float)
    c = np.asarray(close if close is not None else o, dtype=float)
    idx = pd.date_range(start, periods=len(o), freq=freq, tz="UTC", name="ts").as_unit("us")
    frame = pd.DataFrame({"open": o, "high": h, "low": lo, "close": c, "volume": 1.0},
                         index=idx)
    for name, values in (marks or {}).items():
        frame[name] = np.asarray(values, dtype=float)
    if funding is not None:
        times = pd.DatetimeIndex(sorted(pd.Timestamp(t) for t in funding)).as_unit("us")
        rates = np.array([funding[t] for t in sorted(funding, key=pd.Timestamp)])
        closes = idx + pd.Timedelta(freq)
        pos = np.searchsorted(times.asi8, closes.as_unit("us").asi8, side="right") - 1
        ok = pos >= 0
        frame["funding_rate"] = np.where(ok, rates[np.maximum(pos, 0)], np.nan)
        frame["funding_interval_hours"] = float(interval_hours)
        ft = np.where(ok, times.asi8[np.maximum(pos, 0)], np.iinfo(np.int64).min)
        frame["funding_time"] = pd.DatetimeIndex(ft.astype("datetime64[us]"), tz="UTC")
    return frame


def targets_at(n: int, decisions: dict[int, float]) -> np.ndarray:
    t = np.full(n, np.nan)
    for i, v in decisions.items():
        t[i] = v
    return t
