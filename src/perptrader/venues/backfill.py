"""Historical market data from a venue's REST API as perptrader Datasets, page by page.

Implements ``marketdata.sources.base.ExchangeSource``: ``fetch(kind, instrument,
timeframe, start, end)`` yields one validated-shape Dataset per page, oldest first, so
the downloader stores each page in its own transaction and an interrupted run resumes
from the last stored row. Unified ccxt methods are used where they exist; Binance trade
klines go through the implicit ``fapiPublicGetKlines`` because the unified
``fetch_ohlcv`` drops the quote volume, trade count and taker-buy volumes that the
data.binance.vision files (and so ``data import``) keep; the taker buy/sell ratio and
the top-trader ratios have no unified method.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from perptrader.core.instruments import PERP, Instrument
from perptrader.core.timeframes import timeframe_ms
from perptrader.marketdata.dataset import Dataset, epoch_us, to_utc
from perptrader.marketdata.kinds import Kind
from perptrader.marketdata.sources.funding import derive_interval_hours, funding_frame
from perptrader.venues.calls import RetryPolicy, VenueClient
from perptrader.venues.ccxt_client import VENUES, Credentials, check_venue, create_exchange
from perptrader.venues.errors import BadRequest, UnknownSymbol, UnsupportedTimeframe
from perptrader.venues.ratelimit import WeightBudget

#: Binance's periods for open interest and ratio history (futures/data endpoints)
DATA_PERIODS = ("5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d")
PAGE = {Kind.OHLCV: 1000, Kind.MARK: 1000, Kind.INDEX: 1000, Kind.FUNDING: 1000,
        Kind.OPEN_INTEREST: 500, Kind.LONG_SHORT: 500, Kind.TAKER_RATIO: 500}
#: Bybit v5 page limits (kline 1000, funding 200, open interest 200, account ratio 500)
BYBIT_PAGE = {Kind.OHLCV: 1000, Kind.MARK: 1000, Kind.INDEX: 1000, Kind.FUNDING: 200,
              Kind.OPEN_INTEREST: 200, Kind.LONG_SHORT: 500, Kind.TAKER_RATIO: 500}
#: Bybit's names of the open-interest / account-ratio periods
BYBIT_PERIODS = {"5m": "5min", "15m": "15min", "30m": "30min", "1h": "1h", "4h": "4h",
                 "1d": "1d"}
_KLINE_WEIGHT = 5  # Binance: limit 500..1000


@dataclass
class SourceOptions:
    url: str | None = None
    credentials: Credentials | None = None
    policy: RetryPolicy | None = None
    timeout_ms: int = 10_000
    sleep: Callable[[float], None] = time.sleep
    now_ms: Callable[[], int] = lambda: int(time.time() * 1000)


def _ms(ts: datetime | pd.Timestamp) -> int:
    t = pd.Timestamp(ts)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return int(t.value // 1_000_000)


def _num(values: list[Any]) -> np.ndarray:
    return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(
        dtype="float64")


class CcxtRestSource:
    """Backfill through ccxt REST for one venue (binanceusdm or bybit)."""

    def __init__(self, exchange_id: str, options: SourceOptions | None = None) -> None:
        self.exchange_id = check_venue(exchange_id)
        self.name = f"{exchange_id} REST"
        self.opts = options or SourceOptions()
        self.ex = create_exchange(exchange_id, url=self.opts.url,
                                  credentials=self.opts.credentials,
                                  timeout_ms=self.opts.timeout_ms)
        self.client = VenueClient(self.ex, policy=self.opts.policy, sleep=self.opts.sleep)
        self._opened = False
        self._funding_tail: dict[str, int] = {}  # market id -> last settlement slot (µs)

    # -- setup --------------------------------------------------------------------------
    def open(self) -> None:
        """Load the venue's markets (and, for Binance, its published weight limit)."""
        if self._opened:
            return
        self.client.call("load markets", self.ex.load_markets, weight=1,
                         retry_unreachable=False)
        body = self.client.last_body()
        if isinstance(body, dict) and "rateLimits" in body:
            self.client.budget = WeightBudget.from_exchange_info(body, sleep=self.opts.sleep)
        self._opened = True

    def instrument(self, symbol: str) -> Instrument:
        return Instrument(VENUES[self.exchange_id], PERP, Instrument.parse(symbol).symbol)

    def market(self, symbol: str) -> dict[str, Any]:
        """The venue's linear perpetual for ``BTCUSDT`` / ``BTC/USDT:USDT``."""
        self.open()
        wanted = Instrument.parse(symbol).symbol
        for market in self.ex.markets.values():
            if market.get("swap") and market.get("linear") and market["id"] == wanted:
                return market
        raise UnknownSymbol(f"{self.exchange_id} lists no linear perpetual {symbol!r}")

    def check_timeframe(self, kind: Kind, timeframe: str | None) -> None:
        bars = kind in (Kind.OHLCV, Kind.MARK, Kind.INDEX)
        known = [tf for tf in (self.ex.timeframes or {}) if tf != "1s"]
        if bars and timeframe not in known:
            raise UnsupportedTimeframe(f"{self.exchange_id} has no {timeframe!r} candles "
                                       f"(it has: {', '.join(known)})")
        periodic = kind in (Kind.OPEN_INTEREST, Kind.LONG_SHORT, Kind.TAKER_RATIO)
        periods = DATA_PERIODS if self.exchange_id == "binanceusdm" else tuple(BYBIT_PERIODS)
        if periodic and timeframe not in periods:
            raise UnsupportedTimeframe(
                f"{self.exchange_id} has no {timeframe!r} period for {kind.value} (it has: "
                f"{', '.join(periods)})")
        if kind is Kind.TAKER_RATIO and self.exchange_id != "binanceusdm":
            raise BadRequest(f"{self.exchange_id} publishes no taker buy/sell ratio history")

    # -- the ExchangeSource protocol -------------------------------------------------------
    def page_size(self, kind: Kind) -> int:
        return (PAGE if self.exchange_id == "binanceusdm" else BYBIT_PAGE)[kind]

    def fetch(self, kind: Kind, instrument: Instrument, timeframe: str | None,
              start: datetime, end: datetime) -> Iterator[Dataset]:
        """Pages covering [start, end), oldest first.

        Binance answers a [startTime, endTime] query with the OLDEST rows from startTime,
        so each page continues after the last row and a short page ends the series.
        Bybit answers with the NEWEST rows of the window, so there each query's window is
        cut to what one page can hold (limit x step, funding at its shortest 1h interval)
        and the windows are walked in order; an empty window does not end the series.
        """
        market = self.market(instrument.symbol)
        self.check_timeframe(kind, timeframe)
        page = self._pager(kind, market, timeframe)
        bars = kind in (Kind.OHLCV, Kind.MARK, Kind.INDEX)
        oldest_first = self.exchange_id == "binanceusdm"
        step = timeframe_ms(timeframe) if timeframe else 3_600_000
        span = (self.page_size(kind) - 1) * step
        cursor, stop = _ms(start), _ms(end)
        while cursor < stop:
            window_end = stop - 1 if oldest_first else min(stop - 1, cursor + span)
            frame = page(cursor, window_end)
            if oldest_first and frame.empty:
                return
            exhausted = oldest_first and len(frame) < self.page_size(kind)
            if not frame.empty:
                frame = frame[(frame["_ms"] >= cursor) & (frame["_ms"] <= window_end)]
            if bars and not frame.empty:
                # a bar still forming would be stored short and never re-fetched
                frame = frame[frame["_ms"] + step <= self.opts.now_ms()]
                if frame.empty:
                    return
            if not frame.empty:
                last = int(frame["_ms"].max())
                out = frame.sort_values("_ms").drop(columns="_ms").reset_index(drop=True)
                out.index = out.index + 1
                yield Dataset(kind, instrument, out, timeframe if bars else None, self.name)
            elif oldest_first:
                return
            if oldest_first:
                if exhausted or last < cursor:
                    return
                cursor = last + 1
            else:
                cursor = window_end + 1

    def _pager(self, kind: Kind, market: dict[str, Any],
               timeframe: str | None) -> Callable[[int, int], pd.DataFrame]:
        if kind is Kind.OHLCV and self.exchange_id == "binanceusdm":
            return lambda a, b: self._binance_klines(market, timeframe or "", a, b)
        if kind in (Kind.OHLCV, Kind.MARK, Kind.INDEX):
            return lambda a, b: self._unified_bars(kind, market, timeframe or "", a, b)
        if kind is Kind.FUNDING:
            return lambda a, b: self._funding(market, a, b)
        if kind is Kind.OPEN_INTEREST:
            return lambda a, b: self._open_interest(market, timeframe or "", a, b)
        if kind is Kind.LONG_SHORT:
            return lambda a, b: self._long_short(market, timeframe or "", a, b)
        if kind is Kind.TAKER_RATIO:
            return lambda a, b: self._taker(market, timeframe or "", a, b)
        raise BadRequest(f"downloading {kind.value} is not supported")

    # -- pages ------------------------------------------------------------------------------
    def _binance_klines(self, market: dict[str, Any], tf: str, start: int,
                        end: int) -> pd.DataFrame:
        rows = self.client.call(
            f"klines {market['id']} {tf}", self.ex.fapiPublicGetKlines,
            {"symbol": market["id"], "interval": tf, "startTime": start, "endTime": end,
             "limit": self.page_size(Kind.OHLCV)}, weight=_KLINE_WEIGHT)
        if not rows:
            return pd.DataFrame()
        cols = list(zip(*rows, strict=False))
        t = np.asarray(cols[0], dtype="int64")
        return pd.DataFrame({
            "ts": to_utc(t, "ms").array, "open": _num(cols[1]), "high": _num(cols[2]),
            "low": _num(cols[3]), "close": _num(cols[4]), "volume": _num(cols[5]),
            "quote_volume": _num(cols[7]),
            "trade_count": pd.array(_num(cols[8]), dtype="Float64").astype("Int64"),
            "taker_buy_base": _num(cols[9]), "taker_buy_quote": _num(cols[10]), "_ms": t})

    def _unified_bars(self, kind: Kind, market: dict[str, Any], tf: str, start: int,
                      end: int) -> pd.DataFrame:
        params: dict[str, Any] = {"until": end}
        if kind is not Kind.OHLCV:
            params["price"] = {Kind.MARK: "mark", Kind.INDEX: "index"}[kind]
        rows = self.client.call(f"{kind.value} candles {market['id']} {tf}",
                                self.ex.fetch_ohlcv, market["symbol"], tf, start,
                                self.page_size(kind), params, weight=_KLINE_WEIGHT)
        if not rows:
            return pd.DataFrame()
        arr = np.asarray(rows, dtype="float64")
        t = arr[:, 0].astype("int64")
        out = pd.DataFrame({"ts": to_utc(t, "ms").array, "open": arr[:, 1], "high": arr[:, 2],
                            "low": arr[:, 3], "close": arr[:, 4], "volume": arr[:, 5],
                            "_ms": t})
        if kind is not Kind.OHLCV:
            out["volume"] = np.nan  # price series without traded volume, as `data import`
        return out

    def _funding(self, market: dict[str, Any], start: int, end: int) -> pd.DataFrame:
        rows = self.client.call(f"funding {market['id']}", self.ex.fetch_funding_rate_history,
                                market["symbol"], start, self.page_size(Kind.FUNDING),
                                {"until": end})
        if not rows:
            return pd.DataFrame()
        t = np.asarray([r["timestamp"] for r in rows], dtype="int64")
        raw = to_utc(t, "ms")
        # the interval is derived from the spacing of settlements: the previous page's
        # last one joins this page so the first row is judged as a whole-file import would
        slots = raw.dt.floor("min")
        key = market["id"]
        prev = self._funding_tail.get(key)
        joined = epoch_us(slots) if prev is None else np.concatenate(([prev], epoch_us(slots)))
        hours = derive_interval_hours(joined)[0 if prev is None else 1:]
        frame = funding_frame(raw, _num([r["fundingRate"] for r in rows]),
                              index=pd.RangeIndex(len(rows)), interval_hours=hours)
        self._funding_tail[key] = int(epoch_us(slots)[-1])
        marks = [(r.get("info") or {}).get("markPrice") for r in rows]
        frame["mark_price"] = _num(marks)
        frame["_ms"] = t
        return frame

    def _open_interest(self, market: dict[str, Any], period: str, start: int,
                       end: int) -> pd.DataFrame:
        rows = self.client.call(f"open interest {market['id']} {period}",
                                self.ex.fetch_open_interest_history, market["symbol"], period,
                                start, self.page_size(Kind.OPEN_INTEREST), {"until": end})
        if not rows:
            return pd.DataFrame()
        t = np.asarray([r["timestamp"] for r in rows], dtype="int64")
        return pd.DataFrame({"ts": to_utc(t, "ms").array,
                             "oi_contracts": _num([r.get("openInterestAmount") for r in rows]),
                             "oi_value": _num([r.get("openInterestValue") for r in rows]),
                             "_ms": t})

    def _long_short(self, market: dict[str, Any], period: str, start: int,
                    end: int) -> pd.DataFrame:
        if self.exchange_id == "binanceusdm":
            args: tuple[Any, ...] = (period, start, self.page_size(Kind.LONG_SHORT),
                                     {"until": end})
        else:  # ccxt's bybit ignores since/until here and passes the period through
            args = (BYBIT_PERIODS[period], None, self.page_size(Kind.LONG_SHORT),
                    {"startTime": start, "endTime": end})
        rows = self.client.call(f"long/short ratio {market['id']} {period}",
                                self.ex.fetch_long_short_ratio_history, market["symbol"], *args)
        if not rows:
            return pd.DataFrame()
        t = np.asarray([r["timestamp"] for r in rows], dtype="int64")
        out = pd.DataFrame({"ts": to_utc(t, "ms").array,
                            "global_account_ratio": _num([r["longShortRatio"] for r in rows]),
                            "_ms": t})
        if self.exchange_id == "binanceusdm":
            request = {"symbol": market["id"], "period": period, "startTime": start,
                       "endTime": end, "limit": self.page_size(Kind.LONG_SHORT)}
            for column, method in (("top_account_ratio", "fapiDataGetTopLongShortAccountRatio"),
                                   ("top_position_ratio",
                                    "fapiDataGetTopLongShortPositionRatio")):
                extra = self.client.call(f"{column} {market['id']} {period}",
                                         getattr(self.ex, method), dict(request))
                values = {int(r["timestamp"]): r["longShortRatio"] for r in extra or []}
                out[column] = _num([values.get(int(x)) for x in t])
        return out

    def _taker(self, market: dict[str, Any], period: str, start: int,
               end: int) -> pd.DataFrame:
        rows = self.client.call(f"taker ratio {market['id']} {period}",
                                self.ex.fapiDataGetTakerlongshortRatio,
                                {"symbol": market["id"], "period": period, "startTime": start,
                                 "endTime": end, "limit": self.page_size(Kind.TAKER_RATIO)})
        if not rows:
            return pd.DataFrame()
        t = np.asarray([int(r["timestamp"]) for r in rows], dtype="int64")
        return pd.DataFrame({"ts": to_utc(t, "ms").array,
                             "buy_sell_ratio": _num([r.get("buySellRatio") for r in rows]),
                             "buy_volume": _num([r.get("buyVol") for r in rows]),
                             "sell_volume": _num([r.get("sellVol") for r in rows]),
                             "_ms": t})
