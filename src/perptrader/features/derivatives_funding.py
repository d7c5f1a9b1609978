"""The ``funding`` family: funding-rate level, z-score, cumulative carry and the clock.

The loader shows, on each bar, the rate of the last SETTLED slot at the bar close
(``funding_rate``, slot ``funding_time``, ``funding_interval_hours``). A rate is repeated
on every bar until the next settlement, so statistics over *settlements* (z-score,
cumulative carry, change) are computed on the settlement events, each taken once (the
row where its ``funding_time`` first appears), and then carried to bars. That keeps a
4h- or 1h-interval symbol honest: its 24h carry sums 6 or 24 settlements, not 3.

Why windows are in hours, not bars: funding is a clock-driven cash flow (a position
held for 24 hours pays every settlement in those hours), so the windows are physical
time. The warm-ups below are stated in hours (``clock_hours``; the row counts are for 1h
bars, and ``Family.at(timeframe)`` restates them for the build's bars); a window that is not
completely covered by settlements seen in the frame gives NaN, never a partial sum, so a
shorter history degrades to NaN, never to a different number. Bars longer than the
funding interval show only one of several settlements: the carry columns are then NaN
(coverage incomplete) and the level/clock columns still hold.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from perptrader.features.arrays import col, div
from perptrader.features.base import Family, FeatureContext, FeatureSpec
from perptrader.features.derivatives_common import bar_closes, frame_of, times_us
from perptrader.features.windows import trailing_time

HOUR_US = 3_600_000_000
#: trailing windows of the cumulative carry, in hours
CUM_WINDOWS_H = (24, 168)
#: the z-score looks at settlements of the last 30 days
Z_WINDOW_H = 720
#: the longest funding interval the warm-ups allow for (Binance: 8h)
MAX_INTERVAL_H = 8
_INPUTS = ("funding_rate", "funding_interval_hours", "funding_time")


def _specs() -> tuple[FeatureSpec, ...]:
    w_note = "(warm-up for 1h bars, 8h interval)"
    specs = [
        FeatureSpec("funding_rate_bps", "funding_rate * 1e4 (last settled rate at the bar close)",
                    _INPUTS[:1], 0),
        FeatureSpec("funding_annualized",
                    "funding_rate * (24 / funding_interval_hours) * 365 (simple, per year)",
                    _INPUTS[:2], 0),
    ]
    for h in CUM_WINDOWS_H:
        specs.append(FeatureSpec(
            f"funding_cum_{h}h_bps",
            f"1e4 * sum of settled rates with slot in (close - {h}h, close]; NaN unless those "
            f"settlements' intervals cover the {h}h {w_note}", _INPUTS, h + MAX_INTERVAL_H,
            clock_hours=h + MAX_INTERVAL_H))
    specs += [
        FeatureSpec("funding_z_30d",
                    "(r_k - mean(r over settlements with slot in (T_k - 30d, T_k])) / sample "
                    f"std, r_k = last settlement; NaN unless the 30d are covered {w_note}",
                    _INPUTS, Z_WINDOW_H + MAX_INTERVAL_H,
                    clock_hours=Z_WINDOW_H + MAX_INTERVAL_H),
        FeatureSpec("funding_change_bps",
                    "1e4 * (r_k - r_(k-1)) for consecutive settlements (T_k - T_(k-1) = "
                    "interval_k), else NaN", _INPUTS, 2 * MAX_INTERVAL_H,
                    clock_hours=2 * MAX_INTERVAL_H),
        FeatureSpec("funding_hours_to_next",
                    "(funding_time + interval - close) / 1h; NaN when the next slot is overdue",
                    _INPUTS[1:], 0),
        FeatureSpec("funding_phase",
                    "(close - funding_time) / interval, in [0, 1); NaN when overdue",
                    _INPUTS[1:], 0),
    ]
    return tuple(specs)


SPECS = _specs()


def settlements(frame: pd.DataFrame) -> pd.DataFrame:
    """The settlement events seen in the frame, each once, in order of appearance.

    Columns: ``row`` (first bar showing it), ``time_us`` (slot), ``rate``,
    ``interval_h``. A slot that is not later than every slot shown before it is not
    a new settlement (the as-of join repeats the last one until the next).
    """
    t = times_us(frame["funding_time"])
    rows, ev_t, ev_r, ev_h = _settlements(t, col(frame, "funding_rate"),
                                          col(frame, "funding_interval_hours"))
    return pd.DataFrame({"row": rows, "time_us": ev_t, "rate": ev_r, "interval_h": ev_h})


def _settlements(t: np.ndarray, rate: np.ndarray, iv: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``settlements`` as arrays (row, time_us, rate, interval_h) from the columns."""
    present = (t > np.iinfo(np.int64).min) & ~np.isnan(rate)
    seen = np.maximum.accumulate(np.where(present, t, np.iinfo(np.int64).min))
    prev = np.concatenate([[np.iinfo(np.int64).min], seen[:-1]])
    new = present & (t > prev)
    rows = np.flatnonzero(new)
    return rows, t[rows], rate[rows], iv[rows]


def _window_sums(ev_t: np.ndarray, values: list[np.ndarray], upto: np.ndarray,
                 lo_time: np.ndarray) -> list[np.ndarray]:
    """Per query: sum of each ``values`` over events with index < upto and time > lo_time.

    Events are sorted by time, so the window is a contiguous index range [lo, upto) and
    the sums are differences of prefix sums (vectorised, no loop over bars).
    """
    lo = np.searchsorted(ev_t, lo_time, side="right")
    lo = np.minimum(lo, upto)
    out = []
    for v in values:
        cs = np.concatenate([[0.0], np.cumsum(v)])
        out.append(cs[upto] - cs[lo])
    return out


def compute_funding(frame: pd.DataFrame, ctx: FeatureContext) -> pd.DataFrame:
    n = len(frame)
    close = bar_closes(frame, ctx)
    rate = col(frame, "funding_rate")
    raw_iv = col(frame, "funding_interval_hours")
    ft = times_us(frame["funding_time"])
    valid = (ft > np.iinfo(np.int64).min) & ~np.isnan(rate)
    iv = np.where(raw_iv > 0, raw_iv, np.nan)

    ev_rows, ev_t, ev_r, ev_h = _settlements(ft, rate, raw_iv)
    known = np.zeros(n, dtype="int64")  # settlements seen up to and including each row
    np.add.at(known, ev_rows, 1)
    known = np.cumsum(known)

    out: dict[str, np.ndarray] = {
        "funding_rate_bps": rate * 1e4,
        "funding_annualized": rate * div(24.0, iv) * 365.0,
    }
    for h in CUM_WINDOWS_H:
        total, covered = _window_sums(ev_t, [ev_r, ev_h], known, close - h * HOUR_US)
        ok = valid & (covered >= h - 1e-6)
        out[f"funding_cum_{h}h_bps"] = np.where(ok, total * 1e4, np.nan)

    # per-settlement statistics, then carried to the bars that show that settlement
    last = known - 1
    has = valid & (last >= 0)
    idx = np.where(has, last, 0)
    z_ev = _event_zscore(ev_t, ev_r, ev_h)
    chg_ev = np.full(len(ev_t), np.nan)
    if len(ev_t) > 1:
        gap_h = np.diff(ev_t) / HOUR_US
        step_ok = np.abs(gap_h - ev_h[1:]) < 1.0 / 3600.0
        chg_ev[1:] = np.where(step_ok, np.diff(ev_r), np.nan)
    if len(ev_t):
        out["funding_z_30d"] = np.where(has, z_ev[idx], np.nan)
        out["funding_change_bps"] = np.where(has, chg_ev[idx] * 1e4, np.nan)
    else:
        out["funding_z_30d"] = np.full(n, np.nan)
        out["funding_change_bps"] = np.full(n, np.nan)

    since_h = np.where(valid, (close - ft) / HOUR_US, np.nan)
    phase = div(since_h, iv)
    overdue = ~((phase >= 0) & (phase < 1))
    out["funding_hours_to_next"] = np.where(overdue, np.nan, iv - since_h)
    out["funding_phase"] = np.where(overdue, np.nan, phase)
    return frame_of(frame, out)


def _event_zscore(ev_t: np.ndarray, ev_r: np.ndarray, ev_h: np.ndarray) -> np.ndarray:
    """z-score of each settlement against the settlements of the 30 days up to it."""
    if len(ev_t) == 0:
        return np.empty(0)
    # settlements are strictly increasing in time: pandas' "720h" rolling, bit for bit
    span = Z_WINDOW_H * HOUR_US
    mean = trailing_time(ev_r, ev_t, span, "mean")
    std = trailing_time(ev_r, ev_t, span, "std")
    covered = trailing_time(ev_h, ev_t, span, "sum")
    std = np.where((std > 1e-9 * np.abs(mean)) & (covered >= Z_WINDOW_H - 1e-6), std, np.nan)
    return div(ev_r - mean, std)


FUNDING = Family(
    name="funding",
    description="Funding rate: level, annualised, 24h/7d carry over real settlements, "
                "30-day z-score, change, and the position in the funding cycle.",
    requires=_INPUTS,
    specs=SPECS,
    compute=compute_funding,
    tags=("derivatives",),
)
