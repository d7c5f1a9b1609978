"""One aligned research frame per instrument and timeframe, without look-ahead.

``load`` reads the trade-price bars of an instrument and joins everything else the
store holds for it onto those bars, each piece only from the moment it was known.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from perptrader.config import Settings
from perptrader.core.errors import PerptraderError
from perptrader.core.instruments import Instrument
from perptrader.core.timeframes import timeframe_delta, timeframe_ms, utc_time
from perptrader.marketdata.dataset import TS_DTYPE
from perptrader.marketdata.kinds import Kind
from perptrader.marketdata.resample import BAR_COLUMNS, can_resample, resample_bars
from perptrader.marketdata.store.base import MarketStore, SeriesInfo

#: how far before ``start`` the as-of sources are read, so that the first bars of a
#: window see the same values as in a longer load
LOOKBACK = pd.Timedelta(days=7)
#: an as-of value older than this many of its series' median steps is not used (NaN)
STALE_STEPS = 3

_ASOF: tuple[tuple[Kind, dict[str, str]], ...] = (
    (Kind.OPEN_INTEREST, {"oi_contracts": "oi_contracts", "oi_value": "oi_value"}),
    (Kind.LONG_SHORT, {
        "global_account_ratio": "ls_global_account_ratio",
        "top_account_ratio": "ls_top_account_ratio",
        "top_position_ratio": "ls_top_position_ratio",
    }),
    (Kind.TAKER_RATIO, {
        "buy_sell_ratio": "taker_buy_sell_ratio",
        "buy_volume": "taker_buy_volume",
        "sell_volume": "taker_sell_volume",
    }),
)
_LIQ_COLUMNS = ("liq_count", "liq_buy_qty", "liq_sell_qty", "liq_buy_notional",
                "liq_sell_notional")


def load(
    symbol: str,
    timeframe: str,
    start: datetime | str | pd.Timestamp | None = None,
    end: datetime | str | pd.Timestamp | None = None,
    *,
    store: MarketStore | None = None,
    settings: Settings | None = None,
    market: str = "perp",
    exchange: str = "binance",
) -> pd.DataFrame:
    """Bars of ``symbol`` at ``timeframe`` with every stored extra joined without look-ahead.

    The index is the bar OPEN time (UTC, named ``ts``); ``start``/``end`` bound it
    (``end`` exclusive; naive times are UTC). Columns:

    * trade-price bars: ``open high low close volume quote_volume trade_count
      taker_buy_base taker_buy_quote``;
    * when stored: ``mark_open .. mark_close`` and ``index_open .. index_close`` (the
      mark/index bar with the same open time);
    * when stored: ``funding_rate``, ``funding_interval_hours`` and ``funding_time``
      (the settlement slot of the rate shown);
    * when stored: open interest (``oi_contracts``, ``oi_value``), long/short ratios
      (``ls_*``) and the taker buy/sell ratio (``taker_buy_sell_ratio``,
      ``taker_buy_volume``, ``taker_sell_volume``);
    * when stored: liquidations inside each bar (``liq_count``, ``liq_buy_qty``,
      ``liq_sell_qty``, ``liq_buy_notional``, ``liq_sell_notional``; *buy* = liquidation
      orders that buy, i.e. shorts liquidated).

    **No look-ahead.** A bar row must only hold what was known when that bar CLOSED
    (open time + timeframe), because that is the earliest moment a strategy can act on
    it. Funding settled at time T (its ``ts``, the settlement slot) is known at T, so it
    appears only on bars whose close time is >= T; open interest, long/short and taker
    ratios are published at their ``ts`` and are joined as of the bar close the same
    way (the latest value with ``ts <= close``, never a later one); liquidations are
    summed over the bar's own interval ``[open, close)``. A value older than
    ``STALE_STEPS`` of its series' median step at the bar close is left NaN rather than
    carried forward across a hole. ``funding_interval_hours``, where not stored, is the
    time since the previous settlement (known at T). Consequently, cutting the stored
    data at any time t changes no row whose bar closes at or before t.

    **Resampling.** When no ``timeframe`` bars are stored in the window but a lower
    timeframe that tiles it is (e.g. 1h for 4h), bars are built from it with
    ``resample.resample_bars``: complete buckets only, so an unfinished last bar is
    never produced. Among several such timeframes the one whose stored span covers the
    window best is used, and the coarsest of equals (fewest rows; closest to the
    exchange's own aggregation). ``frame.attrs['sources']`` tells, per component,
    where it came from and what was done.

    ``store``/``settings``: an open store is used as is; otherwise one is opened from
    ``settings`` (default ``perptrader.config.load_settings()``) and closed again.

    Raises PerptraderError when there are no bars to return.
    """
    instrument = _instrument(symbol, market, exchange)
    timeframe_ms(timeframe)  # ValueError on a bad timeframe, before opening anything
    start_ts, end_ts = _utc(start), _utc(end)
    from perptrader.marketdata.store import using_store

    with using_store(store, settings) as opened:
        return _load(opened, instrument, timeframe, start_ts, end_ts)


def _load(store: MarketStore, inst: Instrument, timeframe: str,
          start: pd.Timestamp | None, end: pd.Timestamp | None) -> pd.DataFrame:
    sources: dict[str, Any] = {}
    inventory = _Inventory(store)
    bars, info = _bars(store, inventory, Kind.OHLCV, inst, timeframe, start, end)
    if bars.empty:
        window = ""
        if start is not None or end is not None:
            window = f" between {start or 'the beginning'} and {end or 'the end'}"
        raise PerptraderError(
            f"no {timeframe} bars for {inst.display} ({inst.exchange} {inst.market}){window} "
            f"in the {store.backend} store{info.get('why', '')}. Import data first with "
            f"`perptrader data import PATH` (a file or folder of klines), then check with "
            f"`perptrader data list`.")
    sources["bars"] = info
    cols = [c for c in BAR_COLUMNS if c in bars.columns]
    frame = bars.set_index(pd.DatetimeIndex(bars["ts"], name="ts"))[cols]
    opens = frame.index
    closes = opens + timeframe_delta(timeframe)

    for kind, prefix in ((Kind.MARK, "mark_"), (Kind.INDEX, "index_")):
        other, other_info = _bars(store, inventory, kind, inst, timeframe, opens[0],
                                  opens[-1] + pd.Timedelta(1, "us"))
        if other.empty:
            continue
        other = other.set_index("ts")[["open", "high", "low", "close"]].add_prefix(prefix)
        frame = frame.join(other, how="left")
        other_info["matched"] = int(frame[f"{prefix}close"].notna().sum())
        sources[kind.value] = other_info

    read_start = opens[0] - LOOKBACK
    read_end = closes[-1] + pd.Timedelta(1, "us")  # ts <= last close
    funding = store.read(Kind.FUNDING, inst, start=read_start, end=read_end)
    if not funding.empty:
        funding = funding.copy()
        iv = funding["interval_hours"].to_numpy(dtype="float64", na_value=np.nan)
        since_prev = funding["ts"].diff().dt.total_seconds().to_numpy() / 3600.0
        funding["interval_hours"] = np.where(np.isnan(iv), since_prev, iv)
        funding["funding_time"] = funding["ts"]
        joined, tol = _asof(closes, funding, {"rate": "funding_rate",
                                              "interval_hours": "funding_interval_hours",
                                              "funding_time": "funding_time"})
        for name in joined.columns:
            frame[name] = joined[name].array  # positional; keeps the tz-aware dtype
        sources["funding"] = _asof_info(funding, frame["funding_rate"], tol)

    for kind, names in _ASOF:
        series = store.read(kind, inst, start=read_start, end=read_end)
        if series.empty:
            continue
        joined, tol = _asof(closes, series, names)
        for name in joined.columns:
            frame[name] = joined[name].array
        sources[kind.value] = _asof_info(series, joined.iloc[:, 0], tol)

    liqs = store.read(Kind.LIQUIDATIONS, inst, start=opens[0] - pd.Timedelta(days=1),
                      end=closes[-1])
    if not liqs.empty:
        agg, info = _liquidations(opens, closes, liqs)
        for name in _LIQ_COLUMNS:
            frame[name] = agg[name]
        sources["liquidations"] = info

    frame.attrs["symbol"] = inst.display
    frame.attrs["instrument"] = {"exchange": inst.exchange, "market": inst.market,
                                 "symbol": inst.symbol}
    frame.attrs["timeframe"] = timeframe
    frame.attrs["sources"] = sources
    return frame


class _Inventory:
    """store.inventory(), read at most once per load and only when resampling is needed."""

    def __init__(self, store: MarketStore) -> None:
        self._store, self._series = store, None

    def __call__(self) -> list[SeriesInfo]:
        if self._series is None:
            self._series = self._store.inventory()
        return self._series


def _bars(store: MarketStore, inventory: _Inventory, kind: Kind, inst: Instrument,
          timeframe: str, start: pd.Timestamp | None,
          end: pd.Timestamp | None) -> tuple[pd.DataFrame, dict]:
    """Stored bars of ``timeframe``, else bars resampled from the best lower timeframe."""
    bars = store.read(kind, inst, timeframe, start, end)
    if not bars.empty:
        return bars, {"kind": kind.value, "timeframe": timeframe, "stored_timeframe": timeframe,
                      "resampled": False, "rows": len(bars)}
    lo = start if start is not None else pd.Timestamp.min.tz_localize("UTC")
    hi = end if end is not None else pd.Timestamp.max.tz_localize("UTC")
    candidates = [
        s for s in inventory()
        if s.instrument == inst and s.kind is kind and s.timeframe and s.timeframe != timeframe
        and can_resample(s.timeframe, timeframe)
        and pd.Timestamp(s.first) < hi and pd.Timestamp(s.last) >= lo
    ]
    if not candidates:
        return bars, {}

    def coverage(s: Any) -> tuple[int, int]:
        """(whole target bars the stored span covers in the window, coarseness)"""
        first = pd.Timestamp(s.first)
        last = pd.Timestamp(s.last) + timeframe_delta(s.timeframe)  # end of the last bar
        span = min(last, hi) - max(first, lo)
        return max(span // timeframe_delta(timeframe), 0), timeframe_ms(s.timeframe)

    best = max(candidates, key=coverage)
    # read one target bar past ``end`` so that the last bucket opening before it is whole
    src_end = end + timeframe_delta(timeframe) if end is not None else None
    src = store.read(kind, inst, best.timeframe, start, src_end)
    out = resample_bars(src, best.timeframe, timeframe)
    dropped = int(out.attrs.get("incomplete_buckets", 0))
    if end is not None:
        out = out[out["ts"] < end].reset_index(drop=True)
    info = {"kind": kind.value, "timeframe": timeframe, "stored_timeframe": best.timeframe,
            "resampled": True, "source_rows": len(src), "rows": len(out),
            "incomplete_buckets_dropped": dropped,
            "note": f"built from {best.timeframe} bars; complete buckets only"}
    if out.empty:
        info["why"] = (f" (the {best.timeframe} bars stored there form no complete "
                       f"{timeframe} bucket)")
    return out, info


def _asof(closes: pd.DatetimeIndex, series: pd.DataFrame,
          names: dict[str, str]) -> tuple[pd.DataFrame, pd.Timedelta]:
    """Latest row with ``ts <= close`` per bar close, no older than STALE_STEPS steps."""
    right = series[["ts", *names]].rename(columns=names)
    right["ts"] = right["ts"].astype(TS_DTYPE)
    steps = right["ts"].diff().dropna()
    steps = steps[steps > pd.Timedelta(0)]
    tol = STALE_STEPS * (steps.median() if len(steps) else pd.Timedelta(days=1))
    left = pd.DataFrame({"close": pd.DatetimeIndex(closes).astype(TS_DTYPE)})
    joined = pd.merge_asof(left, right, left_on="close", right_on="ts", direction="backward",
                           allow_exact_matches=True, tolerance=tol)
    return joined[list(names.values())], tol


def _asof_info(series: pd.DataFrame, joined: pd.Series, tol: pd.Timedelta) -> dict:
    return {"rows": len(series), "join": "as of bar close (latest ts <= close)",
            "max_age": str(tol), "matched": int(joined.notna().sum())}


def _liquidations(opens: pd.DatetimeIndex, closes: pd.DatetimeIndex,
                  liqs: pd.DataFrame) -> tuple[dict[str, np.ndarray], dict]:
    """Sum liquidation events into the bar whose [open, close) holds them."""
    n = len(opens)
    o = opens.as_unit("us").asi8
    c = pd.DatetimeIndex(closes).as_unit("us").asi8
    t = pd.DatetimeIndex(liqs["ts"]).as_unit("us").asi8
    i = np.searchsorted(o, t, side="right") - 1
    ok = (i >= 0) & (t < c[np.clip(i, 0, n - 1)])
    i = i[ok]
    qty = liqs["qty"].to_numpy(dtype="float64")[ok]
    notional = qty * liqs["price"].to_numpy(dtype="float64")[ok]
    side = liqs["side"].astype("string").to_numpy(dtype=object, na_value="")[ok]
    buy, sell = side == "buy", side == "sell"
    sums = {
        "liq_count": None,
        "liq_buy_qty": qty * buy,
        "liq_sell_qty": qty * sell,
        "liq_buy_notional": notional * buy,
        "liq_sell_notional": notional * sell,
    }
    out = {name: np.bincount(i, weights=w, minlength=n).astype("float64")
           for name, w in sums.items()}
    # an event stream cannot tell 'none happened' from 'not collected': bars before the
    # first event read (from a day before the window) are unknown, later ones count 0
    first = t.min()
    unknown = c <= first
    for values in out.values():
        values[unknown] = np.nan
    info = {"rows": len(liqs), "in_bars": int(ok.sum()),
            "join": "summed over each bar's [open, close)",
            "coverage_from": pd.Timestamp(first, unit="us", tz="UTC").isoformat()}
    return out, info


def _instrument(symbol: str, market: str, exchange: str) -> Instrument:
    inst = Instrument.parse(symbol, market=market)
    explicit = ":" in symbol and "/" not in symbol
    return inst if explicit else Instrument(exchange.lower(), market, inst.symbol)


def _utc(value: object) -> pd.Timestamp | None:
    return None if value is None else utc_time(value)


def funding_events(store: MarketStore, symbol: str, frame: pd.DataFrame,
                   timeframe: str) -> pd.DataFrame:
    """Stored funding settlements over the frame's span (``ts, rate, interval_hours``)."""
    start = frame.index[0]
    end = frame.index[-1] + timeframe_delta(timeframe) + pd.Timedelta(1, "us")
    events = store.read(Kind.FUNDING, Instrument.parse(symbol), None, start, end)
    return events


__all__ = ["LOOKBACK", "STALE_STEPS", "funding_events", "load"]
