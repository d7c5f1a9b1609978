"""Market inputs of a simulation: prices, mark prices and funding events as arrays.

``MarketData.from_frame`` turns a loader frame into the float64 arrays the kernel reads,
and decides — explicitly, with a record in ``info`` — where each input comes from:
mark prices (stored mark bars, or the trade price where they are missing) and funding
(the frame's ``funding_time`` changes, or a funding series passed by the caller).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from perptrader.core.errors import PerptraderError
from perptrader.core.timeframes import timeframe_ms

_PRICE = ("open", "high", "low", "close")
_MARK = ("mark_open", "mark_high", "mark_low", "mark_close")
_NS_PER_MS = 1_000_000


@dataclass(frozen=True)
class BarInput:
    """One bar as the step-by-step path (``Account.step``) receives it.

    ``ts`` is the bar OPEN time. Mark fields may be NaN (the trade price is then used and
    counted). Funding: either ``funding_due`` (the summed rate of every settlement inside
    ``(open, close]``, when the caller knows it) or the loader columns ``funding_rate`` and
    ``funding_time`` (the settlement slot of the rate shown, as of the bar close).
    ``high_first``: from lower-timeframe detail, whether the high came before the low
    (None = unknown: the conservative adverse-extreme-first path is used).
    """

    ts: pd.Timestamp
    open: float
    high: float
    low: float
    close: float
    mark_open: float = np.nan
    mark_high: float = np.nan
    mark_low: float = np.nan
    mark_close: float = np.nan
    funding_rate: float = np.nan
    funding_time: pd.Timestamp | None = None
    funding_due: float | None = None
    high_first: bool | None = None


def funding_due_from_times(open_ns: np.ndarray, close_ns: np.ndarray, ft_ns: np.ndarray,
                           rate: np.ndarray) -> np.ndarray:
    """Rate due per bar when its shown settlement ``ft`` lies in ``(open, close]``.

    The loader shows the last settled rate as of the bar close, so a settlement at ``T``
    first appears on the bar whose interval ``(open, close]`` holds it: a settlement exactly
    on a bar boundary is paid by the position held during the bar that ENDS at ``T``.
    """
    ft = np.asarray(ft_ns, dtype=np.int64)
    valid = (ft != np.iinfo(np.int64).min) & ~np.isnan(rate)
    hit = valid & (ft > open_ns) & (ft <= close_ns)
    return np.where(hit, np.nan_to_num(rate), 0.0)


def funding_due_from_series(open_ns: np.ndarray, close_ns: np.ndarray,
                            settle_ns: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """Summed rate of every settlement in ``(open, close]`` per bar (several per long bar)."""
    order = np.argsort(settle_ns, kind="stable")
    t, r = settle_ns[order], np.nan_to_num(rate[order])
    csum = np.concatenate([[0.0], np.cumsum(r)])
    hi = np.searchsorted(t, close_ns, side="right")
    lo = np.searchsorted(t, open_ns, side="right")
    return csum[hi] - csum[lo]


def vol_slippage_scale(open_: np.ndarray, high: np.ndarray, low: np.ndarray,
                       window: int) -> np.ndarray:
    """r_i = range_{i-1} / mean(range_{i-window..i-1}), range = (high-low)/open; 1.0 until
    ``window`` bars are known. Uses only bars before the fill bar (known at decision)."""
    rng = (high - low) / open_
    n = len(rng)
    out = np.ones(n, dtype=np.float64)
    if n > window:
        means = np.lib.stride_tricks.sliding_window_view(rng, window).mean(axis=1)
        # window ending at i-1 starts at i-window: means[i-window]
        idx = np.arange(window, n)
        m = means[idx - window]
        ok = m > 0
        vals = np.where(ok, rng[idx - 1] / np.where(ok, m, 1.0), 1.0)
        out[window:] = vals
    return out


def intrabar_order(open_ns: np.ndarray, close_ns: np.ndarray, high: np.ndarray,
                   low: np.ndarray, detail: pd.DataFrame) -> np.ndarray:
    """+1 where the bar's high came before its low in the lower-timeframe ``detail``
    frame, -1 where the low came first, 0 where unknown: both extremes in the same
    sub-bar, no detail for the bar, or detail whose extremes do not match the bar's."""
    if not {"high", "low"} <= set(detail.columns):
        raise PerptraderError("detail= needs columns high and low (lower-timeframe bars)")
    idx = pd.DatetimeIndex(detail.index)
    if idx.tz is None:
        raise PerptraderError("detail index must be tz-aware UTC sub-bar open times")
    sub = idx.as_unit("ns").asi8
    parent = np.searchsorted(open_ns, sub, side="right") - 1
    inside = (parent >= 0) & (sub < close_ns[np.clip(parent, 0, len(open_ns) - 1)])
    df = pd.DataFrame({"parent": parent[inside],
                       "high": detail["high"].to_numpy(np.float64)[inside],
                       "low": detail["low"].to_numpy(np.float64)[inside]})
    df = df.reset_index(drop=True)
    out = np.zeros(len(open_ns), dtype=np.float64)
    if df.empty:
        return out
    g = df.groupby("parent", sort=True)
    hi_pos = g["high"].idxmax()
    lo_pos = g["low"].idxmin()
    parents = hi_pos.index.to_numpy()
    hi_val = df["high"].to_numpy()[hi_pos.to_numpy()]
    lo_val = df["low"].to_numpy()[lo_pos.to_numpy()]
    # the detail must hold the bar's own extremes, else its order says nothing
    match = np.isclose(hi_val, high[parents], rtol=1e-9) & np.isclose(
        lo_val, low[parents], rtol=1e-9)
    order = np.sign(lo_pos.to_numpy() - hi_pos.to_numpy()).astype(np.float64)
    out[parents] = np.where(match, order, 0.0)
    return out


@dataclass
class MarketData:
    """Aligned arrays of one symbol (pandas only at the edges, numpy inside)."""

    symbol: str
    timeframe: str
    index: pd.DatetimeIndex
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    mark_open: np.ndarray
    mark_high: np.ndarray
    mark_low: np.ndarray
    mark_close: np.ndarray
    funding_due: np.ndarray
    hl_order: np.ndarray
    raw_funding_rate: np.ndarray
    raw_funding_time_ns: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def mark_source(self) -> str:
        return str(self.info["mark_source"])

    def __len__(self) -> int:
        return len(self.index)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, symbol: str | None = None,
                   timeframe: str | None = None, funding: pd.DataFrame | None = None, *,
                   require_funding: bool = True,
                   detail: pd.DataFrame | None = None) -> MarketData:
        """Arrays from a loader frame (index = bar OPEN time, UTC).

        Funding: with ``funding`` (columns ``ts`` settlement time, ``rate``, optional
        ``interval_hours``) every settlement in a bar's ``(open, close]`` is summed;
        otherwise events come from the frame's ``funding_time`` — only valid when the bar
        is no longer than the funding interval (one settlement per bar at most), else
        an error asks for ``funding=``. No funding at all is an error unless
        ``require_funding=False`` (then recorded as absent in ``info`` and ``warnings``).

        ``detail``: optional lower-timeframe bars (index = sub-bar open time, columns high,
        low) that tell, per bar, whether the high or the low came first; stops and
        liquidation then follow that order instead of the conservative adverse-first one.
        """
        symbol = symbol or frame.attrs.get("symbol")
        timeframe = timeframe or frame.attrs.get("timeframe")
        if not symbol or not timeframe:
            raise PerptraderError("MarketData.from_frame needs symbol= and timeframe= "
                                  "(or a loader frame whose attrs carry them)")
        missing = [c for c in _PRICE if c not in frame.columns]
        if missing:
            raise PerptraderError(f"frame of {symbol} lacks price columns {missing}")
        if len(frame) == 0:
            raise PerptraderError(f"frame of {symbol} is empty")
        index = pd.DatetimeIndex(frame.index)
        if index.tz is None:
            raise PerptraderError("frame index must be tz-aware UTC bar open times")
        if not index.is_monotonic_increasing or index.has_duplicates:
            raise PerptraderError("frame index must be strictly increasing")
        step_ms = timeframe_ms(timeframe)
        prices = {c: frame[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in _PRICE}
        if any(np.isnan(v).any() for v in prices.values()):
            raise PerptraderError(f"frame of {symbol} has NaN trade prices; drop or fill "
                                  f"those bars before simulating")
        info: dict[str, Any] = {"symbol": symbol, "timeframe": timeframe, "bars": len(frame)}
        warnings: list[str] = []
        marks = {}
        substituted = np.zeros(len(frame), dtype=bool)
        for m, p in zip(_MARK, _PRICE, strict=True):
            if m in frame.columns:
                v = frame[m].to_numpy(dtype=np.float64, na_value=np.nan)
            else:
                v = np.full(len(frame), np.nan)
            bad = np.isnan(v)
            substituted |= bad
            marks[m] = np.where(bad, prices[p], v)
        n_sub = int(substituted.sum())
        has_mark = any(m in frame.columns for m in _MARK)
        info["mark_substituted_bars"] = n_sub
        if not has_mark:
            info["mark_source"] = "trade_price (no mark columns)"
        elif n_sub:
            info["mark_source"] = "mark, trade_price where missing"
        else:
            info["mark_source"] = "mark"
        if n_sub:
            warnings.append(f"{symbol}: trade price used as mark price on {n_sub} of "
                            f"{len(frame)} bars (no mark bar); unrealized PnL and "
                            f"liquidation there follow the trade price")
        open_ns = index.as_unit("ns").asi8
        close_ns = open_ns + step_ms * _NS_PER_MS
        raw_rate = (frame["funding_rate"].to_numpy(dtype=np.float64, na_value=np.nan)
                    if "funding_rate" in frame.columns else np.full(len(frame), np.nan))
        if "funding_time" in frame.columns:
            raw_ft = pd.DatetimeIndex(frame["funding_time"]).as_unit("ns").asi8.copy()
        else:
            raw_ft = np.full(len(frame), np.iinfo(np.int64).min, dtype=np.int64)
        if funding is not None:
            due = _due_from_series(funding, open_ns, close_ns, info)
        elif "funding_time" in frame.columns and "funding_rate" in frame.columns:
            due = _due_from_frame(frame, symbol, step_ms, open_ns, close_ns, raw_ft,
                                  raw_rate, info, warnings)
        elif require_funding:
            raise PerptraderError(
                f"no funding for {symbol}: the frame has no funding_rate/funding_time and no "
                f"funding= series was passed. Pass funding=, or require_funding=False to "
                f"simulate without funding payments (recorded in the result).")
        else:
            due = np.zeros(len(frame))
            info["funding_source"] = "none (require_funding=False)"
            warnings.append(f"{symbol}: funding NOT simulated (no funding data)")
        info["funding_events"] = int(np.count_nonzero(due))
        if detail is not None:
            hl = intrabar_order(open_ns, close_ns, prices["high"], prices["low"], detail)
            info["intrabar_order"] = "lower-timeframe detail"
            info["intrabar_resolved_bars"] = int(np.count_nonzero(hl))
            unresolved = len(frame) - info["intrabar_resolved_bars"]
            if unresolved:
                warnings.append(f"{symbol}: intrabar order unknown on {unresolved} bars "
                                f"(no or inconsistent detail, or both extremes in one "
                                f"sub-bar); the adverse-first path is used there")
        else:
            hl = np.zeros(len(frame))
            info["intrabar_order"] = "adverse extreme first (no detail)"
        return cls(symbol=symbol, timeframe=timeframe, index=index, open=prices["open"],
                   high=prices["high"], low=prices["low"], close=prices["close"],
                   mark_open=marks["mark_open"], mark_high=marks["mark_high"],
                   mark_low=marks["mark_low"], mark_close=marks["mark_close"],
                   funding_due=due, hl_order=hl, raw_funding_rate=raw_rate,
                   raw_funding_time_ns=raw_ft, info=info, warnings=warnings)

    def bar(self, i: int) -> BarInput:
        """Bar ``i`` as the step-by-step path receives it (raw marks, loader funding)."""
        ft = self.raw_funding_time_ns[i]
        explicit = str(self.info.get("funding_source", "")).startswith("series")
        return BarInput(
            ts=self.index[i], open=float(self.open[i]), high=float(self.high[i]),
            low=float(self.low[i]), close=float(self.close[i]),
            mark_open=float(self.mark_open[i]), mark_high=float(self.mark_high[i]),
            mark_low=float(self.mark_low[i]), mark_close=float(self.mark_close[i]),
            funding_rate=float(self.raw_funding_rate[i]),
            funding_time=None if ft == np.iinfo(np.int64).min else pd.Timestamp(ft, tz="UTC"),
            funding_due=float(self.funding_due[i]) if explicit else None,
            high_first=None if self.hl_order[i] == 0 else bool(self.hl_order[i] > 0))


def _due_from_frame(frame: pd.DataFrame, symbol: str, step_ms: int, open_ns: np.ndarray,
                    close_ns: np.ndarray, ft: np.ndarray, rate: np.ndarray,
                    info: dict[str, Any], warnings: list[str]) -> np.ndarray:
    interval = (frame["funding_interval_hours"].to_numpy(dtype=np.float64, na_value=np.nan)
                if "funding_interval_hours" in frame.columns else np.full(len(frame), np.nan))
    known = interval[~np.isnan(interval)]
    min_interval_ms = float(known.min()) * 3_600_000 if len(known) else 8 * 3_600_000
    if step_ms > min_interval_ms:
        raise PerptraderError(
            f"{symbol}: bars of {step_ms / 3_600_000:g}h are longer than the funding interval "
            f"({min_interval_ms / 3_600_000:g}h), so several settlements fall in one bar and "
            f"the frame shows only the last. Pass funding= (the stored funding series: ts, "
            f"rate, interval_hours).")
    due = funding_due_from_times(open_ns, close_ns, ft, rate)
    info["funding_source"] = "frame funding_time changes"
    nan_bars = int(np.isnan(rate).sum())
    if nan_bars:
        warnings.append(f"{symbol}: funding_rate unknown on {nan_bars} bars; settlements "
                        f"there are not paid")
    # settlements the frame skipped (a hole in the stored funding) are reported
    valid = ft != np.iinfo(np.int64).min
    slots, first = np.unique(ft[valid], return_index=True)
    if len(slots) > 1:
        gaps_h = np.diff(slots) / 3.6e12
        iv = interval[valid][first][1:]  # interval of each later settlement (hours)
        ok = iv > 0
        missed = int(np.sum(np.maximum(np.round(gaps_h[ok] / iv[ok]) - 1, 0)))
        info["funding_settlements_missing"] = missed
        if missed:
            warnings.append(f"{symbol}: {missed} funding settlements absent from the frame "
                            f"(holes in the stored funding); not paid")
    return due


def _due_from_series(funding: pd.DataFrame, open_ns: np.ndarray, close_ns: np.ndarray,
                     info: dict[str, Any]) -> np.ndarray:
    if "ts" not in funding.columns or "rate" not in funding.columns:
        raise PerptraderError("funding= needs columns ts (settlement time, UTC) and rate")
    ts = pd.DatetimeIndex(funding["ts"])
    if ts.tz is None:
        raise PerptraderError("funding ts must be tz-aware UTC")
    settle = ts.as_unit("ns").asi8
    rate = funding["rate"].to_numpy(dtype=np.float64, na_value=np.nan)
    inside = (settle > open_ns[0]) & (settle <= close_ns[-1])
    info["funding_source"] = "series (funding=)"
    info["funding_settlements"] = int(inside.sum())
    return funding_due_from_series(open_ns, close_ns, settle, rate)


#: the funding source word when nothing is stored (funding is then not charged)
NO_FUNDING = "none stored (not charged)"


def choose_funding(frame: pd.DataFrame, timeframe: str, events: pd.DataFrame | None,
                   warnings: list[str]) -> tuple[pd.DataFrame | None, str]:
    """Which funding the simulator gets, and a word for result.json about it.

    The stored settlement events when a bar is longer than the shortest funding interval
    (the frame's as-of columns then cannot show every settlement) or the frame has none;
    else the frame's columns. ``NO_FUNDING`` (and a warning) when neither exists."""
    has_events = events is not None and not events.empty
    in_frame = "funding_rate" in frame.columns and frame["funding_rate"].notna().any()
    if has_events:
        iv = events.get("interval_hours")
        shortest = float(np.nanmin(iv.to_numpy(dtype=np.float64, na_value=np.nan))) \
            if iv is not None and iv.notna().any() else 8.0
        if timeframe_ms(timeframe) > shortest * 3_600_000 or not in_frame:
            return events, f"stored settlement events ({len(events)})"
    if in_frame:
        return None, "frame columns funding_rate/funding_time (as of each bar close)"
    warnings.append("no funding rates stored for this symbol and window: funding is NOT "
                    "charged, so holding costs are understated")
    return None, NO_FUNDING


__all__ = ["NO_FUNDING", "BarInput", "MarketData", "choose_funding", "funding_due_from_series",
           "funding_due_from_times", "intrabar_order", "vol_slippage_scale"]
