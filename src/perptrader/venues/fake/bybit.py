"""A Bybit v5 ``linear`` public-market subset on the same recorded data: instruments-info,
kline, mark-price-kline, index-price-kline, funding/history, open-interest,
account-ratio (GENERATED), orderbook, time.

There is no Bybit recording in ``../shared/data``: this face serves the Binance
recordings through Bybit's protocol (envelope ``{"retCode", "retMsg", "result", ...}``,
HTTP 200 even for errors, newest-first lists, window rules, page limits) so that the
Bybit code path can be tested; its prices are Binance's, and every response says so in
``X-Fake-Source``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from aiohttp import web

from perptrader.core.timeframes import timeframe_ms
from perptrader.marketdata.kinds import Kind
from perptrader.venues.fake import generated
from perptrader.venues.fake.data import MarketData
from perptrader.venues.fake.rest import _ms, _num

INTERVALS = {"1": "1m", "3": "3m", "5": "5m", "15": "15m", "30": "30m", "60": "1h",
             "120": "2h", "240": "4h", "360": "6h", "720": "12h", "D": "1d", "W": "1w"}
PERIODS = {"5min": "5m", "15min": "15m", "30min": "30m", "1h": "1h", "4h": "4h", "1d": "1d"}
SOURCE = "binance recordings served through Bybit's v5 protocol (no Bybit data recorded)"


class BybitError(Exception):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code, self.msg = code, msg


def envelope(result: Any, now: int, code: int = 0, msg: str = "OK") -> web.Response:
    resp = web.json_response({"retCode": code, "retMsg": msg, "result": result,
                              "retExtInfo": {}, "time": now})
    resp.headers["X-Fake-Source"] = SOURCE
    return resp


def _instrument(symbol: str) -> dict[str, Any]:
    base = symbol[:-4] if symbol.endswith("USDT") else symbol[:-3]
    return {"symbol": symbol, "contractType": "LinearPerpetual", "status": "Trading",
            "baseCoin": base, "quoteCoin": "USDT", "settleCoin": "USDT",
            "launchTime": "1585526400000", "deliveryTime": "0", "deliveryFeeRate": "",
            "priceScale": "2",
            "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00",
                               "leverageStep": "0.01"},
            "priceFilter": {"minPrice": "0.10", "maxPrice": "1999999.80", "tickSize": "0.10"},
            "lotSizeFilter": {"maxOrderQty": "1190.000", "minOrderQty": "0.001",
                              "qtyStep": "0.001", "postOnlyMaxOrderQty": "1190.000",
                              "maxMktOrderQty": "500.000", "minNotionalValue": "5"},
            "unifiedMarginTrade": True, "fundingInterval": 480, "copyTrading": "both",
            "upperFundingRate": "0.00375", "lowerFundingRate": "-0.00375"}


class BybitApi:
    """Handlers under ``/v5/``; ``now`` is the fake clock in ms."""

    def __init__(self, data: MarketData, now: Any, seed: int = 0) -> None:
        self.data = data
        self.now = now
        self.seed = seed

    def _params(self, request: web.Request) -> dict[str, str]:
        params = dict(request.query)
        if params.get("category", "linear") != "linear":
            raise BybitError(10001, "params error: this fake serves category=linear only")
        return params

    def _symbol(self, params: dict[str, str]) -> str:
        symbol = params.get("symbol", "")
        if not symbol or not self.data.listed(symbol):
            raise BybitError(10001, "params error: symbol invalid")
        return symbol

    def _int(self, params: dict[str, str], name: str) -> int | None:
        raw = params.get(name)
        try:
            return int(raw) if raw not in (None, "") else None
        except ValueError:
            raise BybitError(10001, f"params error: {name} invalid") from None

    def _limit(self, params: dict[str, str], default: int, maximum: int) -> int:
        limit = self._int(params, "limit") or default
        if not 1 <= limit <= maximum:
            raise BybitError(10001, "params error: limit invalid")
        return limit

    def _newest(self, frame: pd.DataFrame, start: int | None, end: int | None,
                limit: int) -> pd.DataFrame:
        """Bybit's rule: the NEWEST ``limit`` rows in [start, end], newest first."""
        if frame.empty:
            return frame
        ms = _ms(frame["ts"])
        hi = min(end, self.now()) if end is not None else self.now()
        mask = ms <= hi
        if start is not None:
            mask &= ms >= start
        return frame[mask].tail(limit).iloc[::-1]

    async def dispatch(self, request: web.Request) -> web.Response:
        handlers = {"time": self.time, "instruments-info": self.instruments,
                    "kline": self.kline, "mark-price-kline": self.kline,
                    "index-price-kline": self.kline, "history": self.funding,
                    "open-interest": self.open_interest, "account-ratio": self.account_ratio,
                    "orderbook": self.orderbook}
        name = request.path.rsplit("/", 1)[-1]
        try:
            if name not in handlers:
                raise web.HTTPNotFound()
            return await handlers[name](request)
        except BybitError as exc:
            return envelope({}, self.now(), exc.code, exc.msg)

    async def time(self, request: web.Request) -> web.Response:
        now = self.now()
        return envelope({"timeSecond": str(now // 1000), "timeNano": str(now * 1_000_000)},
                        now)

    async def instruments(self, request: web.Request) -> web.Response:
        params = self._params(request)
        if params.get("status") == "PreLaunch":
            rows: list[dict[str, Any]] = []
        else:
            symbols = self.data.symbols_with_data()
            rows = [_instrument(s) for s in symbols
                    if params.get("symbol") in (None, "", s)]
        return envelope({"category": "linear", "list": rows, "nextPageCursor": ""},
                        self.now())

    async def kline(self, request: web.Request) -> web.Response:
        params = self._params(request)
        symbol = self._symbol(params)
        tf = INTERVALS.get(params.get("interval", ""))
        if tf is None:
            raise BybitError(10001, "params error: interval invalid")
        endpoint = request.path.rsplit("/", 1)[-1]
        kind = {"kline": Kind.OHLCV, "mark-price-kline": Kind.MARK,
                "index-price-kline": Kind.INDEX}[endpoint]
        limit = self._limit(params, 200, 1000)
        start, end = self._int(params, "start"), self._int(params, "end")
        rows = self._newest(self.data.frame((symbol, kind, tf), start, end), start, end, limit)
        out = []
        for t, r in zip(_ms(rows["ts"]), rows.itertuples(index=False), strict=True):
            row = [str(int(t)), _num(r.open), _num(r.high), _num(r.low), _num(r.close)]
            if kind is Kind.OHLCV:
                row += [_num(r.volume), _num(r.quote_volume)]
            out.append(row)
        return envelope({"category": "linear", "symbol": symbol, "list": out}, self.now())

    async def funding(self, request: web.Request) -> web.Response:
        params = self._params(request)
        symbol = self._symbol(params)
        limit = self._limit(params, 200, 200)
        start, end = self._int(params, "startTime"), self._int(params, "endTime")
        if start is not None and end is None:
            raise BybitError(10001, "params error: endTime is required with startTime")
        frame = self.data.frame((symbol, Kind.FUNDING, None), None, None)
        raw = frame.assign(ts=frame["exchange_ts"].fillna(frame["ts"]))
        rows = self._newest(raw, start, end, limit)
        return envelope({"category": "linear", "list": [
            {"symbol": symbol, "fundingRate": _num(r.rate), "fundingRateTimestamp": str(int(t))}
            for t, r in zip(_ms(rows["ts"]), rows.itertuples(index=False), strict=True)]},
            self.now())

    async def open_interest(self, request: web.Request) -> web.Response:
        params = self._params(request)
        symbol = self._symbol(params)
        period = PERIODS.get(params.get("intervalTime", ""))
        if period is None:
            raise BybitError(10001, "params error: intervalTime invalid")
        limit = self._limit(params, 50, 200)
        start, end = self._int(params, "startTime"), self._int(params, "endTime")
        frame = self.data.frame((symbol, Kind.OPEN_INTEREST, period), start, end)
        rows = self._newest(frame, start, end, limit)
        return envelope({"category": "linear", "symbol": symbol, "nextPageCursor": "",
                         "list": [{"openInterest": _num(r.oi_contracts), "timestamp": str(int(t))}
                                  for t, r in zip(_ms(rows["ts"]), rows.itertuples(index=False),
                                                  strict=True)]}, self.now())

    async def account_ratio(self, request: web.Request) -> web.Response:
        params = self._params(request)
        symbol = self._symbol(params)
        period = PERIODS.get(params.get("period", ""))
        if period is None:
            raise BybitError(10001, "params error: period invalid")
        limit = self._limit(params, 50, 500)
        start, end = self._int(params, "startTime"), self._int(params, "endTime")
        step = timeframe_ms(period)
        last = (min(end, self.now()) if end is not None else self.now()) // step * step
        low = last - (limit - 1) * step
        if start is not None:
            low = max(low, -(-start // step) * step)
        times = list(range(last, low - 1, -step))  # newest first
        out = []
        for t in times:
            r = generated.ratio(self.seed, symbol, "bybit-account-ratio", t)
            buy = r / (1 + r)
            out.append({"symbol": symbol, "buyRatio": f"{buy:.4f}",
                        "sellRatio": f"{1 - buy:.4f}", "timestamp": str(t),
                        "fakeGenerated": True})
        resp = envelope({"list": out}, self.now())
        resp.headers["X-Fake-Generated"] = "true"
        return resp

    async def orderbook(self, request: web.Request) -> web.Response:
        params = self._params(request)
        symbol = self._symbol(params)
        limit = self._limit(params, 25, 500)
        cap = self.data.capture(symbol)
        snap = cap.snapshot if cap else None
        bids = snap["bids"][:limit] if snap else []
        asks = snap["asks"][:limit] if snap else []
        now = self.now()
        return envelope({"s": symbol, "b": bids, "a": asks, "ts": now,
                         "u": snap["lastUpdateId"] if snap else 0, "seq": 0, "cts": now}, now)

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/v5/market/{name:.*}", self.dispatch)]
