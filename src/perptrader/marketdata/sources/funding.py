"""Funding-rate frames from any source: the settlement slot, the raw exchange time and
the funding interval, which Binance changes per symbol (8h, 4h, 1h) and which must
therefore be read from the data, never assumed."""

from __future__ import annotations

import numpy as np
import pandas as pd

from perptrader.marketdata.dataset import epoch_us

_HOUR_US = 3_600_000_000
_PLAUSIBLE_HOURS = np.array([1.0, 2.0, 4.0, 8.0])


def funding_frame(
    exchange_ts: pd.Series,
    rates: np.ndarray,
    *,
    index: pd.Index,
    interval_hours: np.ndarray | None = None,
) -> pd.DataFrame:
    """Canonical funding rows.

    ``ts`` is the raw settlement time floored to the minute (Binance stamps settlements
    a few ms late: 00:00:00.006), so the same settlement from two sources is one row;
    ``exchange_ts`` keeps the raw time. When no interval is given it is derived.
    """
    raw = pd.Series(exchange_ts.to_numpy(), index=index).astype("datetime64[us, UTC]")
    slot = raw.dt.floor("min")
    if interval_hours is None:
        interval_hours = derive_interval_hours(epoch_us(slot))
    return pd.DataFrame({"ts": slot, "rate": rates, "interval_hours": interval_hours,
                         "exchange_ts": raw}, index=index)


def derive_interval_hours(slot_us: np.ndarray) -> np.ndarray:
    """Funding interval per settlement, from the spacing of settlements.

    The time since the previous settlement is the accrual period; where that spacing is
    not a plausible interval (a missing settlement makes it 16h) the spacing to the next
    settlement is used, and failing both the series' most common plausible spacing.
    """
    n = len(slot_us)
    if n == 0:
        return np.empty(0)
    order = np.argsort(slot_us, kind="stable")
    sorted_us = slot_us[order]
    prev = np.full(n, np.nan)
    prev[1:] = np.diff(sorted_us) / _HOUR_US
    nxt = np.full(n, np.nan)
    nxt[:-1] = prev[1:]
    ok_prev = np.isin(np.round(prev, 3), _PLAUSIBLE_HOURS)
    ok_next = np.isin(np.round(nxt, 3), _PLAUSIBLE_HOURS)
    plausible = prev[ok_prev]
    if len(plausible):
        values, counts = np.unique(plausible, return_counts=True)
        common = values[np.argmax(counts)]
    else:
        common = np.nan
    out = np.where(ok_prev, prev, np.where(ok_next, nxt, common))
    result = np.empty(n)
    result[order] = out
    return result
