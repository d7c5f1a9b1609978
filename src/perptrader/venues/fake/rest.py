"""The Binance USD-M public REST endpoints of the fake exchange (``/fapi/v1/...`` and
``/futures/data/...``), answering as the real venue does for the subset ccxt's
``binanceusdm`` uses for market data: same paths, parameters, limits, error codes and
JSON shapes; numbers as strings (``repr`` of the stored float, so they round-trip
exactly). Fields a recording lacks are sent as ``""`` (the real venue always fills
them) and listed in ``X-Fake-Missing-Fields``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from aiohttp import web

from perptrader.core.timeframes import timeframe_ms
from perptrader.marketdata.dataset import epoch_us
from perptrader.marketdata.kinds import Kind
from perptrader.venues.fake import generated
from perptrader.venues.fake.data import MarketData

KLINE_INTERVALS = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h",
                   "1d", "3d", "1w")
DATA_PERIODS = ("5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d")
DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000)


class ApiError(Exception):
    """A Binance error answer: HTTP status plus ``{"code": ..., "msg": ...}``."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status

    def response(self) -> web.Response:
        return web.json_response({"code": self.code, "msg": self.msg}, status=self.status)


def _num(value: Any) -> str:
    """A stored number as Binance sends it (a string); missing -> ''."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return repr(float(value))


def _int_param(params: dict[str, str], name: str, default: int | None = None) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ApiError(-1100, f"Illegal characters found in parameter '{name}'; "
                       f"legal range is '^-?[0-9]{{1,20}}$'.") from None


def _limit(params: dict[str, str], default: int, maximum: int) -> int:
    limit = _int_param(params, "limit", default) or default
    if not 1 <= limit <= maximum:
        raise ApiError(-1130, "Data sent for parameter 'limit' is not valid.")
    return limit


def _ms(ts: pd.Series) -> np.ndarray:
    return epoch_us(ts) // 1000


def select_rows(frame: pd.DataFrame, start: int | None, end: int | None, limit: int,
                now_ms: int) -> pd.DataFrame:
    """Binance's window rule: from ``startTime`` forward, else back from ``endTime`` (or
    now); never past now; at most ``limit`` rows, oldest first."""
    if frame.empty:
        return frame
    ms = _ms(frame["ts"])
    hi = min(end, now_ms) if end is not None else now_ms
    mask = ms <= hi
    if start is not None:
        mask &= ms >= start
        return frame[mask].head(limit)
    return frame[mask].tail(limit)


def grid_times(period_ms: int, start: int | None, end: int | None, limit: int,
               now_ms: int) -> list[int]:
    """Period starts for generated series, by the same window rule."""
    hi = min(end, now_ms) if end is not None else now_ms
    last = hi // period_ms * period_ms
    if start is not None:
        first = -(-start // period_ms) * period_ms
        return [t for t in range(first, min(last, first + (limit - 1) * period_ms) + 1,
                                 period_ms)]
    return list(range(max(0, last - (limit - 1) * period_ms), last + 1, period_ms))


class RestApi:
    """Handlers; ``now`` is the fake clock in ms, ``seed`` drives generated series."""

    def __init__(self, data: MarketData, now: Any, seed: int = 0) -> None:
        self.data = data
        self.now = now
        self.seed = seed
        #: (symbol, family) -> clock ms its capture timeline started (shared replay), set
        #: by the server; None: REST serves the capture's own snapshot and times
        self.timeline: Any = None
        self._books: dict[str, tuple[Any, int]] = {}  # symbol -> (L2Book, next diff)

    def _started(self, symbol: str, family: str) -> int | None:
        return self.timeline(symbol, family) if self.timeline is not None else None

    def _book_now(self, symbol: str, capture: Any, started: int) -> Any:
        """The capture's book as of the clock on the shared timeline: the snapshot plus
        every diff sent so far (lastUpdateId = the last one's ``u``)."""
        from perptrader.marketdata.orderbook import L2Book

        if symbol not in self._books:
            book = L2Book()
            snap = capture.snapshot
            book.apply_snapshot(int(snap["lastUpdateId"]), snap["bids"], snap["asks"])
            self._books[symbol] = (book, 0)
        book, index = self._books[symbol]
        shift = started - capture.diffs[0]["E"]
        now = self.now()
        diffs = capture.diffs
        while index < len(diffs) and diffs[index]["E"] + shift <= now:
            d = diffs[index]
            book.apply_diff(d["U"], d["u"], d["pu"], d["b"], d["a"], d["E"] + shift)
            index += 1
        self._books[symbol] = (book, index)
        return book

    # -- helpers ------------------------------------------------------------------------
    def _symbol(self, params: dict[str, str], name: str = "symbol") -> str:
        symbol = params.get(name, "")
        if not symbol:
            raise ApiError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, "
                           "or malformed.")
        if not self.data.listed(symbol):
            raise ApiError(-1121, "Invalid symbol.")
        return symbol

    def _window(self, params: dict[str, str]) -> tuple[int | None, int | None]:
        start, end = _int_param(params, "startTime"), _int_param(params, "endTime")
        if start is not None and end is not None and start > end:
            raise ApiError(-1128, "Combination of optional parameters invalid. "
                           "startTime is after endTime.")
        return start, end

    # -- general ------------------------------------------------------------------------
    async def ping(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def time(self, request: web.Request) -> web.Response:
        return web.json_response({"serverTime": self.now()})

    async def exchange_info(self, request: web.Request) -> web.Response:
        resp = web.json_response(self.data.exchange_info(self.now()))
        resp.headers["X-Fake-Source"] = self.data.info_source
        return resp

    # -- bars -----------------------------------------------------------------------------
    async def klines(self, request: web.Request, kind: Kind = Kind.OHLCV) -> web.Response:
        params = dict(request.query)
        symbol = self._symbol(params, "pair" if kind is Kind.INDEX else "symbol")
        interval = params.get("interval", "")
        if interval not in KLINE_INTERVALS:
            raise ApiError(-1120, "Invalid interval.")
        limit = _limit(params, 500, 1500)
        start, end = self._window(params)
        frame = self.data.frame((symbol, kind, interval), start, end)
        rows = select_rows(frame, start, end, limit, self.now())
        step = timeframe_ms(interval)
        missing = [c for c in ("quote_volume", "trade_count", "taker_buy_base",
                               "taker_buy_quote") if rows[c].isna().any()]
        body = []
        for t, r in zip(_ms(rows["ts"]), rows.itertuples(index=False), strict=True):
            volume = "0" if kind is not Kind.OHLCV else _num(r.volume)
            body.append([int(t), _num(r.open), _num(r.high), _num(r.low), _num(r.close),
                         volume, int(t) + step - 1, _num(r.quote_volume),
                         "" if pd.isna(r.trade_count) else int(r.trade_count),
                         _num(r.taker_buy_base), _num(r.taker_buy_quote), "0"])
        resp = web.json_response(body)
        if missing and kind is Kind.OHLCV:
            resp.headers["X-Fake-Missing-Fields"] = ",".join(missing)
        return resp

    async def mark_klines(self, request: web.Request) -> web.Response:
        return await self.klines(request, Kind.MARK)

    async def index_klines(self, request: web.Request) -> web.Response:
        return await self.klines(request, Kind.INDEX)

    # -- funding, premium, open interest --------------------------------------------------
    async def funding_rate(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        symbol = self._symbol(params)
        limit = _limit(params, 100, 1000)
        start, end = self._window(params)
        frame = self.data.frame((symbol, Kind.FUNDING, None), None, None)
        raw = frame.assign(ts=frame["exchange_ts"].fillna(frame["ts"]))
        rows = select_rows(raw, start, end, limit, self.now())
        return web.json_response([
            {"symbol": symbol, "fundingTime": int(t), "fundingRate": _num(r.rate),
             "markPrice": _num(r.mark_price)}
            for t, r in zip(_ms(rows["ts"]), rows.itertuples(index=False), strict=True)])

    async def premium_index(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        if "symbol" not in params:
            return web.json_response([self.premium(s) for s in self.data.symbols_with_data()])
        return web.json_response(self.premium(self._symbol(params)))

    def premium(self, symbol: str) -> dict[str, Any]:
        """premiumIndex of a symbol as of the clock (also the markPrice stream's source)."""
        now = self.now()
        mark = self.data.frame((symbol, Kind.MARK, "1h"), None, now)
        if mark.empty:
            mark = self.data.frame((symbol, Kind.OHLCV, "1h"), None, now)
        funding = self.data.frame((symbol, Kind.FUNDING, None), None, now)
        price = _num(mark["close"].iloc[-1]) if len(mark) else ""
        rate = _num(funding["rate"].iloc[-1]) if len(funding) else ""
        interval = (float(funding["interval_hours"].iloc[-1]) if len(funding)
                    and not pd.isna(funding["interval_hours"].iloc[-1]) else 8.0)
        step = int(interval * 3_600_000)
        return {"symbol": symbol, "markPrice": price, "indexPrice": price,
                "estimatedSettlePrice": price, "lastFundingRate": rate,
                "interestRate": "0.00010000", "nextFundingTime": (now // step + 1) * step,
                "time": now}

    async def open_interest(self, request: web.Request) -> web.Response:
        symbol = self._symbol(dict(request.query))
        now = self.now()
        frame = self.data.frame((symbol, Kind.OPEN_INTEREST, None), None, now)
        if frame.empty:
            raise ApiError(-1121, "Invalid symbol.")  # what Binance says for no OI
        last = frame.iloc[-1]
        return web.json_response({"openInterest": _num(last["oi_contracts"]),
                                  "symbol": symbol, "time": now})

    async def open_interest_hist(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        symbol = self._symbol(params)
        period = self._period(params)
        limit = _limit(params, 30, 500)
        start, end = self._window(params)
        frame = self.data.frame((symbol, Kind.OPEN_INTEREST, period), start, end)
        rows = select_rows(frame, start, end, limit, self.now())
        resp = web.json_response([
            {"symbol": symbol, "sumOpenInterest": _num(r.oi_contracts),
             "sumOpenInterestValue": _num(r.oi_value), "timestamp": int(t)}
            for t, r in zip(_ms(rows["ts"]), rows.itertuples(index=False), strict=True)])
        native = self.data.native_oi_periods(symbol)
        if period not in native:
            resp.headers["X-Fake-Note"] = (f"no recorded {period} open interest for {symbol}; "
                                           f"recorded periods: {','.join(native) or 'none'}")
        return resp

    def _period(self, params: dict[str, str]) -> str:
        period = params.get("period", "")
        if period not in DATA_PERIODS:
            raise ApiError(-1120, "Invalid period.")
        return period

    # -- generated ratios -----------------------------------------------------------------
    async def ratio(self, request: web.Request) -> web.Response:
        endpoint = request.path.rsplit("/", 1)[-1]
        params = dict(request.query)
        symbol = self._symbol(params)
        period = self._period(params)
        limit = _limit(params, 30, 500)
        start, end = self._window(params)
        times = grid_times(timeframe_ms(period), start, end, limit, self.now())
        out: list[dict[str, Any]] = []
        for t in times:
            if endpoint == "takerlongshortRatio":
                buy, sell = generated.taker_volumes(self.seed, symbol, t)
                out.append({"buySellRatio": f"{buy / sell:.4f}", "buyVol": repr(buy),
                            "sellVol": repr(sell), "timestamp": t, "fakeGenerated": True})
            else:
                r = generated.ratio(self.seed, symbol, endpoint, t)
                long_share = r / (1 + r)
                out.append({"symbol": symbol, "longShortRatio": repr(r),
                            "longAccount": f"{long_share:.4f}",
                            "shortAccount": f"{1 - long_share:.4f}", "timestamp": t,
                            "fakeGenerated": True})
        resp = web.json_response(out)
        resp.headers["X-Fake-Generated"] = "true"
        return resp

    # -- order book and trades ------------------------------------------------------------
    async def depth(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        symbol = self._symbol(params)
        limit = _int_param(params, "limit", 500) or 500
        if limit not in DEPTH_LIMITS:
            raise ApiError(-1130, "Data sent for parameter 'limit' is not valid.")
        capture = self.data.capture(symbol)
        if capture is None or capture.snapshot is None:
            return web.json_response({"lastUpdateId": 0, "E": self.now(), "T": self.now(),
                                      "bids": [], "asks": []})
        started = self._started(symbol, "depth")
        if started is not None and capture.diffs:
            book = self._book_now(symbol, capture, started)
            bids, asks = book.top(limit)
            now = self.now()
            return web.json_response({
                "lastUpdateId": book.last_update_id, "E": now, "T": book.last_ts or now,
                "bids": [[repr(p), repr(q)] for p, q in bids.tolist()],
                "asks": [[repr(p), repr(q)] for p, q in asks.tolist()]})
        snap = capture.snapshot
        return web.json_response({"lastUpdateId": snap["lastUpdateId"],
                                  "E": snap.get("E", self.now()), "T": snap.get("T", self.now()),
                                  "bids": snap["bids"][:limit], "asks": snap["asks"][:limit]})

    def _trades(self, symbol: str) -> list[dict[str, Any]]:
        capture = self.data.capture(symbol)
        return capture.trades if capture else []

    async def agg_trades(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        symbol = self._symbol(params)
        limit = _limit(params, 500, 1000)
        start, end = self._window(params)
        from_id = _int_param(params, "fromId")
        out: list[dict[str, Any]] = []
        trades = self._trades(symbol)
        started = self._started(symbol, "trades")
        # shared timeline: the stream's times, and only what was traded by now
        shift = started - trades[0]["T"] if started is not None and trades else 0
        now = self.now()
        for tr in trades:
            tid, t = tr.get("t", tr.get("a")), tr["T"] + shift
            if started is not None and t > now:
                break
            if from_id is not None and tid < from_id:
                continue
            if (start is not None and t < start) or (end is not None and t > end):
                continue
            out.append({"a": tid, "p": tr["p"], "q": tr["q"], "f": tid, "l": tid, "T": t,
                        "m": tr["m"]})
            if len(out) >= limit:
                break
        return web.json_response(out)

    async def trades(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        symbol = self._symbol(params)
        limit = _limit(params, 500, 1000)
        rows = self._trades(symbol)[-limit:]
        return web.json_response([
            {"id": tr.get("t", tr.get("a")), "price": tr["p"], "qty": tr["q"],
             "quoteQty": repr(float(tr["p"]) * float(tr["q"])), "time": tr["T"],
             "isBuyerMaker": tr["m"]} for tr in rows])

    def routes(self) -> list[web.RouteDef]:
        v1 = "/fapi/v1"
        data = "/futures/data"
        return [
            web.get(f"{v1}/ping", self.ping), web.get(f"{v1}/time", self.time),
            web.get(f"{v1}/exchangeInfo", self.exchange_info),
            web.get(f"{v1}/klines", self.klines),
            web.get(f"{v1}/markPriceKlines", self.mark_klines),
            web.get(f"{v1}/indexPriceKlines", self.index_klines),
            web.get(f"{v1}/fundingRate", self.funding_rate),
            web.get(f"{v1}/premiumIndex", self.premium_index),
            web.get(f"{v1}/openInterest", self.open_interest),
            web.get(f"{v1}/depth", self.depth),
            web.get(f"{v1}/aggTrades", self.agg_trades),
            web.get(f"{v1}/trades", self.trades),
            web.get(f"{data}/openInterestHist", self.open_interest_hist),
            *(web.get(f"{data}/{name}", self.ratio) for name in (
                "globalLongShortAccountRatio", "topLongShortAccountRatio",
                "topLongShortPositionRatio", "takerlongshortRatio")),
        ]
