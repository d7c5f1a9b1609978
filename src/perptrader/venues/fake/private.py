"""Binance USD-M's signed (USER_DATA / TRADE) REST endpoints on the fake's accounts.

Why its own module: signing, timestamps and order validation are where live-trading
code breaks against a real venue, so they are checked exactly as Binance does:
``X-MBX-APIKEY`` header, ``signature`` = HMAC-SHA256(secret, query string + form body
without the signature), ``timestamp`` within ``recvWindow`` of the WALL clock (the replay
clock only drives market data and fills), filters of the exchangeInfo the fake serves,
Binance's error codes and its JSON shapes with numbers as strings.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from aiohttp import web

from perptrader.venues.fake.account import CONDITIONAL, MAINT_RATE, Account, Order, fmt
from perptrader.venues.fake.rest import ApiError

if TYPE_CHECKING:
    from perptrader.venues.fake.server import FakeBinance

Handler = Callable[[Account, dict[str, str]], Any]
_SIG = re.compile(r"(^|&)signature=[^&]*")
_CLIENT_ID = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
ORDER_TYPES = ("MARKET", "LIMIT", *CONDITIONAL)


def _mandatory(params: dict[str, str], name: str) -> str:
    value = params.get(name, "")
    if value == "":
        raise ApiError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, "
                       "or malformed.")
    return value


def _decimal(params: dict[str, str], name: str) -> Decimal | None:
    raw = params.get(name)
    if raw in (None, ""):
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ApiError(-1100, f"Illegal characters found in parameter '{name}'; legal range "
                       "is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'.") from None
    if not value.is_finite():
        raise ApiError(-1100, f"Illegal characters found in parameter '{name}'.")
    return value


def _int(params: dict[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError:
        raise ApiError(-1100, f"Illegal characters found in parameter '{name}'; legal range "
                       "is '^-?[0-9]{1,20}$'.") from None


def _bool(params: dict[str, str], name: str) -> bool:
    return params.get(name, "false").lower() == "true"


class PrivateApi:
    """Handlers under /fapi for one venue's :class:`~account.Accounts`."""

    def __init__(self, venue: FakeBinance) -> None:
        self.venue = venue
        self.book = venue.accounts
        self.config = venue.config

    # -- authentication -------------------------------------------------------------------
    def _key(self, request: web.Request) -> tuple[str, str]:
        key = request.headers.get("X-MBX-APIKEY", "")
        if not key:
            raise ApiError(-2014, "API-key format invalid.", 401)
        if key not in self.config.api_keys:
            raise ApiError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        return key, self.config.api_keys[key]

    async def _params(self, request: web.Request) -> tuple[dict[str, str], str, str]:
        """All parameters, and the raw query string and body as sent (for the HMAC)."""
        raw_query = request.raw_path.partition("?")[2]
        body = (await request.text()) if request.can_read_body else ""
        params = dict(parse_qsl(raw_query, keep_blank_values=True))
        params.update(parse_qsl(body, keep_blank_values=True))
        return params, raw_query, body

    def _verify(self, secret: str, params: dict[str, str], query: str, body: str) -> None:
        signature = params.get("signature", "")
        if not signature:
            raise ApiError(-1102, "Mandatory parameter 'signature' was not sent, was "
                           "empty/null, or malformed.")
        total = _SIG.sub("", query).lstrip("&") + _SIG.sub("", body).lstrip("&")
        expected = hmac.new(secret.encode(), total.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise ApiError(-1022, "Signature for this request is not valid.")
        stamp = _int(params, "timestamp")
        if stamp is None:
            _mandatory(params, "timestamp")
        window = _int(params, "recvWindow") or 5000
        if not 0 < window <= 60_000:
            raise ApiError(-1131, "recvWindow must be less than 60000")
        now = int(time.time() * 1000)  # WALL time: the replay clock is not the client's
        if stamp is not None and stamp >= now + 1000:
            raise ApiError(-1021, "Timestamp for this request was 1000ms ahead of the "
                           "server's time.")
        if stamp is not None and now - stamp > window:
            raise ApiError(-1021, "Timestamp for this request is outside of the recvWindow.")

    def signed(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def wrapped(request: web.Request) -> web.Response:
            key, secret = self._key(request)
            params, query, body = await self._params(request)
            self._verify(secret, params, query, body)
            self.book.run()  # what the clock's bars filled since the last look
            out = handler(self.book.accounts[key], params)
            return out if isinstance(out, web.Response) else web.json_response(out)
        return wrapped

    # -- helpers ----------------------------------------------------------------------------
    def _symbol(self, params: dict[str, str], required: bool = True) -> str | None:
        symbol = params.get("symbol", "")
        if not symbol:
            if required:
                _mandatory(params, "symbol")
            return None
        if not self.venue.data.listed(symbol):
            raise ApiError(-1121, "Invalid symbol.")
        return symbol

    def _info(self, symbol: str) -> dict[str, Any]:
        return next(s for s in self.venue.data.info["symbols"] if s["symbol"] == symbol)

    def _find(self, acct: Account, params: dict[str, str], code: int = -2013,
              msg: str = "Order does not exist.") -> Order:
        symbol = self._symbol(params)
        order_id, client_id = _int(params, "orderId"), params.get("origClientOrderId")
        if order_id is None and not client_id:
            raise ApiError(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but "
                           "both were empty/null!")
        for order in acct.orders.values():
            if order.symbol == symbol and (order.order_id == order_id if order_id is not None
                                           else order.client_id == client_id):
                return order
        raise ApiError(code, msg)

    def _order_json(self, o: Order, with_time: bool = True) -> dict[str, Any]:
        out = {"orderId": o.order_id, "symbol": o.symbol, "status": o.status,
               "clientOrderId": o.client_id, "price": fmt(o.price), "avgPrice": fmt(o.avg_price),
               "origQty": fmt(o.qty), "executedQty": fmt(o.executed), "cumQty": fmt(o.executed),
               "cumQuote": fmt(o.cum_quote), "timeInForce": o.tif, "type": o.type,
               "reduceOnly": o.reduce_only, "closePosition": o.close_position,
               "side": o.side, "positionSide": "BOTH", "stopPrice": fmt(o.stop_price),
               "workingType": "CONTRACT_PRICE", "priceProtect": False,
               "origType": o.orig_type or o.type, "priceMatch": "NONE",
               "selfTradePreventionMode": "EXPIRE_MAKER", "goodTillDate": 0,
               "updateTime": o.update_time}
        if with_time:
            out["time"] = o.time
        return out

    def _algo_json(self, a: Order) -> dict[str, Any]:
        return {"algoId": a.algo_id, "clientAlgoId": a.client_id, "algoType": "CONDITIONAL",
                "orderType": a.type, "symbol": a.symbol, "side": a.side,
                "positionSide": "BOTH", "timeInForce": a.tif, "quantity": fmt(a.qty),
                "algoStatus": a.status, "actualOrderId": "" if a.actual_order_id is None
                else str(a.actual_order_id), "actualPrice": fmt(a.avg_price),
                "triggerPrice": fmt(a.stop_price), "price": "0", "icebergQuantity": None,
                "tpTriggerPrice": "0", "tpPrice": "0", "slTriggerPrice": "0",
                "slPrice": "0", "tpOrderType": "", "selfTradePreventionMode": "EXPIRE_MAKER",
                "workingType": "CONTRACT_PRICE", "priceMatch": "NONE",
                "closePosition": a.close_position, "priceProtect": False,
                "reduceOnly": a.reduce_only, "createTime": a.time,
                "updateTime": a.update_time, "triggerTime": a.trigger_time,
                "goodTillDate": 0}

    # -- order validation ------------------------------------------------------------------
    def _count_order(self, acct: Account) -> dict[str, str]:
        """Binance's order-rate limits per account; the counts go in the headers."""
        now = time.time()
        times = acct.order_times
        while times and now - times[0] > 60:
            times.popleft()
        in_10s = sum(1 for t in times if now - t <= 10)
        for count, limit, label in ((in_10s, self.config.order_limit_10s, "10 SECOND"),
                                    (len(times), self.config.order_limit_1m, "1 MINUTE")):
            if count >= limit:
                wait = 10 if label.startswith("10") else 60
                resp = web.json_response(
                    {"code": -1015, "msg": f"Too many new orders; current limit is {limit} "
                     f"orders per {label}."}, status=429,
                    headers={"Retry-After": str(wait),
                             "X-MBX-ORDER-COUNT-10S": str(in_10s),
                             "X-MBX-ORDER-COUNT-1M": str(len(times))})
                raise _Refused(resp)
        times.append(now)
        return {"X-MBX-ORDER-COUNT-10S": str(in_10s + 1), "X-MBX-ORDER-COUNT-1M": str(len(times))}

    def _filters(self, symbol: str, otype: str, qty: Decimal, price: Decimal | None,
                 stop: Decimal | None, reduce_only: bool, now: int) -> None:
        info = self._info(symbol)
        filters = {f["filterType"]: f for f in info.get("filters", [])}
        for value, places in ((qty, info.get("quantityPrecision")),
                              (price, info.get("pricePrecision")),
                              (stop, info.get("pricePrecision"))):
            if value is not None and places is not None and \
                    -value.normalize().as_tuple().exponent > int(places):  # type: ignore[operator]
                raise ApiError(-1111, "Precision is over the maximum defined for this asset.")
        if qty <= 0:
            raise ApiError(-4003, "Quantity less than or equal to zero.")
        lot = filters.get("MARKET_LOT_SIZE" if otype != "LIMIT" else "LOT_SIZE") \
            or filters.get("LOT_SIZE")
        if lot:
            step = Decimal(lot["stepSize"])
            if qty < Decimal(lot["minQty"]) or qty > Decimal(lot["maxQty"]) or (
                    step > 0 and qty % step != 0):
                name = "MARKET_LOT_SIZE" if "MARKET_LOT_SIZE" in filters and \
                    otype != "LIMIT" else "LOT_SIZE"
                raise ApiError(-1013, f"Filter failure: {name}")
        pf = filters.get("PRICE_FILTER")
        for value in (price, stop):
            if value is None or not pf:
                continue
            if value <= 0:
                raise ApiError(-4001, "Price less than 0.")
            tick = Decimal(pf["tickSize"])
            if tick > 0 and value % tick != 0:
                raise ApiError(-4014, "Price not increased by tick size.")
            if value < Decimal(pf["minPrice"]) or (Decimal(pf["maxPrice"]) > 0
                                                   and value > Decimal(pf["maxPrice"])):
                raise ApiError(-1013, "Filter failure: PRICE_FILTER")
        mn = filters.get("MIN_NOTIONAL")
        if mn and not reduce_only:
            ref = price if price is not None else (stop if stop is not None else Decimal(
                repr(self.book.market_price(symbol, now))))
            minimum = Decimal(mn.get("notional", mn.get("minNotional", "0")))
            if qty * ref < minimum:
                raise ApiError(-4164, f"Order's notional must be no smaller than "
                               f"{fmt(minimum)} (unless you choose reduce only).")

    def _order_from(self, acct: Account, params: dict[str, str], algo: bool) -> Order:
        """Validate a new order's parameters (Binance's checks, in Binance's order)."""
        book, now = self.book, self.venue.clock.now_ms()
        symbol = self._symbol(params)
        assert symbol is not None
        side = _mandatory(params, "side")
        if side not in ("BUY", "SELL"):
            raise ApiError(-1117, "Invalid side.")
        otype = _mandatory(params, "type")
        allowed = CONDITIONAL if algo else ORDER_TYPES
        if otype not in allowed:
            raise ApiError(-1116, "Invalid orderType.")
        if params.get("positionSide", "BOTH") != "BOTH":
            raise ApiError(-4061, "Order's position side does not match user's setting.")
        close_position = _bool(params, "closePosition")
        reduce_only = _bool(params, "reduceOnly")
        if close_position and reduce_only:
            raise ApiError(-1106, "Parameter 'reduceonly' sent when not required.")
        qty = _decimal(params, "quantity")
        price = _decimal(params, "price")
        stop = _decimal(params, "triggerPrice" if algo else "stopPrice")
        tif = params.get("timeInForce", "GTC")
        if tif not in ("GTC", "IOC", "FOK", "GTX"):
            raise ApiError(-1115, "Invalid timeInForce.")
        if otype == "LIMIT" and price is None:
            _mandatory(params, "price")
        if otype in CONDITIONAL and stop is None:
            _mandatory(params, "triggerPrice" if algo else "stopPrice")
        if close_position:
            if otype not in CONDITIONAL:
                raise ApiError(-1106, "Parameter 'closePosition' sent when not required.")
            if qty is not None:
                raise ApiError(-1106, "Parameter 'quantity' sent when not required.")
            pos = acct.position(symbol).qty
            qty = Decimal(fmt(abs(pos))) if pos else None
        if qty is None:
            if close_position:
                raise ApiError(-2022, "ReduceOnly Order is rejected.")
            _mandatory(params, "quantity")
        assert qty is not None
        self._filters(symbol, otype, qty, price, stop, reduce_only or close_position, now)
        key = "clientAlgoId" if algo else "newClientOrderId"
        client_id = params.get(key) or ""
        if client_id and not _CLIENT_ID.match(client_id):
            raise ApiError(-1100, f"Illegal characters found in parameter '{key}'; legal "
                           "range is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.")
        if client_id in acct.client_ids:
            raise ApiError(-4116, "ClientOrderId is duplicated.")
        sign = 1 if side == "BUY" else -1
        pos = acct.position(symbol).qty
        if reduce_only and pos * sign >= 0:
            raise ApiError(-2022, "ReduceOnly Order is rejected.")
        market = book.market_price(symbol, now)
        if otype in CONDITIONAL:
            up = (otype == "STOP_MARKET") == (side == "BUY")
            if (market >= float(stop)) if up else (market <= float(stop)):  # type: ignore[arg-type]
                raise ApiError(-2021, "Order would immediately trigger.")
        if otype == "LIMIT" and tif == "GTX" and (
                market <= float(price) if side == "BUY" else market >= float(price)):  # type: ignore[arg-type]
            raise ApiError(-5022, "Due to the order could not be executed as maker, the Post "
                           "Only order will be rejected. The order will not be recorded in "
                           "the order history")
        if not (reduce_only or close_position):
            ref = float(price) if otype == "LIMIT" else market  # type: ignore[arg-type]
            book.check_margin(acct, symbol, sign, float(qty), ref, now)
        if algo:
            algo_id = book.next_id("algo")
            order_id = 0
            client_id = client_id or f"fakealgo{algo_id}"
        else:
            algo_id = None
            order_id = book.next_id("order")
            client_id = client_id or f"fakeorder{order_id}"
        return Order(order_id, client_id, symbol, side, otype, tif, float(qty),
                     float(price or 0), float(stop or 0), reduce_only, close_position, now, 0,
                     orig_type=otype, algo_id=algo_id)

    # -- trading --------------------------------------------------------------------------
    def post_order(self, acct: Account, params: dict[str, str]) -> web.Response:
        try:
            headers = self._count_order(acct)
        except _Refused as refused:
            return refused.response
        now = self.venue.clock.now_ms()
        order = self._order_from(acct, params, algo=False)
        ack = self._order_json(order, with_time=False)
        self.book.new_order(acct, order, now)
        body = ack if params.get("newOrderRespType", "ACK") == "ACK" else \
            self._order_json(order, with_time=False)
        return web.json_response(body, headers=headers)

    def post_algo(self, acct: Account, params: dict[str, str]) -> web.Response:
        if params.get("algoType") != "CONDITIONAL":
            raise ApiError(-4500, "Invalid algoType.")
        try:
            headers = self._count_order(acct)
        except _Refused as refused:
            return refused.response
        order = self._order_from(acct, params, algo=True)
        self.book.new_order(acct, order, self.venue.clock.now_ms())
        return web.json_response(self._algo_json(order), headers=headers)

    def get_order(self, acct: Account, params: dict[str, str]) -> Any:
        return self._order_json(self._find(acct, params))

    def get_open_order(self, acct: Account, params: dict[str, str]) -> Any:
        order = self._find(acct, params)
        if not order.is_open:
            raise ApiError(-2013, "Order does not exist.")
        return self._order_json(order)

    def cancel_order(self, acct: Account, params: dict[str, str]) -> Any:
        order = self._find(acct, params, -2011, "Unknown order sent.")
        if not order.is_open:
            raise ApiError(-2011, "Unknown order sent.")
        self.book.cancel(acct, order, self.venue.clock.now_ms())
        return self._order_json(order, with_time=False)

    def cancel_all(self, acct: Account, params: dict[str, str]) -> Any:
        symbol = self._symbol(params)
        now = self.venue.clock.now_ms()
        for order in acct.open_orders(symbol):
            self.book.cancel(acct, order, now)
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    def open_orders(self, acct: Account, params: dict[str, str]) -> Any:
        symbol = self._symbol(params, required=False)
        return [self._order_json(o) for o in acct.open_orders(symbol)]

    def _window(self, rows: list[Any], params: dict[str, str], time_of: Callable[[Any], int],
                default: int = 500, maximum: int = 1000) -> list[Any]:
        limit = _int(params, "limit") or default
        if not 1 <= limit <= maximum:
            raise ApiError(-1130, "Data sent for parameter 'limit' is not valid.")
        start, end = _int(params, "startTime"), _int(params, "endTime")
        rows = [r for r in rows if (start is None or time_of(r) >= start)
                and (end is None or time_of(r) <= end)]
        return rows[:limit] if start is not None else rows[-limit:]

    def all_orders(self, acct: Account, params: dict[str, str]) -> Any:
        symbol = self._symbol(params)
        first = _int(params, "orderId")
        rows = [o for o in acct.orders.values() if o.symbol == symbol
                and (first is None or o.order_id >= first)]
        if first is not None:
            rows = rows[:_int(params, "limit") or 500]
        return [self._order_json(o) for o in self._window(rows, params, lambda o: o.time)]

    def user_trades(self, acct: Account, params: dict[str, str]) -> Any:
        symbol = self._symbol(params)
        order_id, from_id = _int(params, "orderId"), _int(params, "fromId")
        rows = [t for t in acct.trades if t.symbol == symbol
                and (order_id is None or t.order_id == order_id)
                and (from_id is None or t.id >= from_id)]
        if from_id is not None:
            rows = rows[:_int(params, "limit") or 500]
        return [{"buyer": t.side == "BUY", "commission": fmt(t.commission),
                 "commissionAsset": "USDT", "id": t.id, "maker": t.maker,
                 "orderId": t.order_id, "price": fmt(t.price), "qty": fmt(t.qty),
                 "quoteQty": fmt(t.price * t.qty), "realizedPnl": fmt(t.realized_pnl),
                 "side": t.side, "positionSide": "BOTH", "symbol": t.symbol, "time": t.time}
                for t in self._window(rows, params, lambda t: t.time)]

    def get_algo(self, acct: Account, params: dict[str, str]) -> Any:
        return self._algo_json(self._find_algo(acct, params))

    def _find_algo(self, acct: Account, params: dict[str, str]) -> Order:
        algo_id, client = _int(params, "algoId"), params.get("clientAlgoId")
        if algo_id is None and not client:
            raise ApiError(-1102, "Param 'clientAlgoId' or 'algoId' must be sent, but both "
                           "were empty/null!")
        for a in acct.algos.values():
            if (a.algo_id == algo_id) if algo_id is not None else (a.client_id == client):
                return a
        raise ApiError(-2013, "Order does not exist.")

    def cancel_algo(self, acct: Account, params: dict[str, str]) -> Any:
        algo = self._find_algo(acct, params)
        if algo.status != "NEW":
            raise ApiError(-2011, "Unknown order sent.")
        self.book.cancel(acct, algo, self.venue.clock.now_ms())
        return {"algoId": algo.algo_id, "clientAlgoId": algo.client_id, "code": "200",
                "msg": "success"}

    def open_algos(self, acct: Account, params: dict[str, str]) -> Any:
        symbol = self._symbol(params, required=False)
        return [self._algo_json(a) for a in acct.algos.values()
                if a.status == "NEW" and symbol in (None, a.symbol)]

    def all_algos(self, acct: Account, params: dict[str, str]) -> Any:
        symbol = self._symbol(params)
        rows = [a for a in acct.algos.values() if a.symbol == symbol]
        return [self._algo_json(a) for a in self._window(rows, params, lambda a: a.time,
                                                          100, 100)]

    def cancel_all_algos(self, acct: Account, params: dict[str, str]) -> Any:
        symbol = self._symbol(params)
        now = self.venue.clock.now_ms()
        for a in [a for a in acct.algos.values() if a.status == "NEW" and a.symbol == symbol]:
            self.book.cancel(acct, a, now)
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    # -- account --------------------------------------------------------------------------
    def _symbols(self, acct: Account, symbol: str | None) -> list[str]:
        if symbol:
            return [symbol]
        return sorted(set(self.venue.data.symbols_with_data()) | set(acct.positions)
                      | set(acct.leverage))

    def _position_json(self, acct: Account, s: str, v3: bool) -> dict[str, Any]:
        book, now = self.book, self.venue.clock.now_ms()
        pos = acct.position(s)
        mark = book.mark(s, now) if pos.qty else (book.mark(s, now) if not v3 else 0.0)
        iso = acct.margin_type.get(s, "CROSSED") == "ISOLATED"
        im = book.position_margin(acct, s, now)
        out: dict[str, Any] = {
            "symbol": s, "positionSide": "BOTH", "positionAmt": fmt(pos.qty),
            "entryPrice": fmt(pos.entry), "breakEvenPrice": fmt(pos.entry),
            "markPrice": fmt(mark), "unRealizedProfit": fmt(book.unrealized(acct, s, now)),
            "liquidationPrice": "0", "isolatedMargin": fmt(im if iso else 0.0),
            "notional": fmt(pos.qty * mark), "isolatedWallet": fmt(im if iso else 0.0),
            "updateTime": pos.update_time}
        if v3:
            out.update(marginAsset="USDT", initialMargin=fmt(im),
                       maintMargin=fmt(abs(pos.qty) * mark * MAINT_RATE),
                       positionInitialMargin=fmt(im),
                       openOrderInitialMargin=fmt(book.order_margin(acct, s, now)), adl=0,
                       bidNotional="0", askNotional="0")
        else:
            out.update(marginType="isolated" if iso else "cross", isAutoAddMargin="false",
                       leverage=str(book.lev(acct, s)), maxNotionalValue="1000000")
        return out

    def position_risk(self, acct: Account, params: dict[str, str], v3: bool) -> Any:
        symbol = self._symbol(params, required=False)
        out = []
        for s in self._symbols(acct, symbol):
            has = acct.positions.get(s) is not None and acct.positions[s].qty != 0
            if v3 and not has and not acct.open_orders(s):
                continue  # v3 lists only symbols with a position or open orders
            out.append(self._position_json(acct, s, v3))
        return out

    def _balance(self, acct: Account) -> dict[str, Any]:
        t = self.book.totals(acct, self.venue.clock.now_ms())
        return {"accountAlias": "FakeAcct", "asset": "USDT", "balance": fmt(t["wallet"]),
                "crossWalletBalance": fmt(t["wallet"]), "crossUnPnl": fmt(t["upnl"]),
                "availableBalance": fmt(t["available"]),
                "maxWithdrawAmount": fmt(max(0.0, t["available"])), "marginAvailable": True,
                "updateTime": acct.update_time}

    def balance(self, acct: Account, params: dict[str, str]) -> Any:
        return [self._balance(acct)]

    def account(self, acct: Account, params: dict[str, str], v3: bool) -> Any:
        t = self.book.totals(acct, self.venue.clock.now_ms())
        im = t["position_im"] + t["order_im"]
        margin = t["wallet"] + t["upnl"]
        asset = {"asset": "USDT", "walletBalance": fmt(t["wallet"]),
                 "unrealizedProfit": fmt(t["upnl"]), "marginBalance": fmt(margin),
                 "maintMargin": fmt(t["maint"]), "initialMargin": fmt(im),
                 "positionInitialMargin": fmt(t["position_im"]),
                 "openOrderInitialMargin": fmt(t["order_im"]),
                 "crossWalletBalance": fmt(t["wallet"]), "crossUnPnl": fmt(t["upnl"]),
                 "availableBalance": fmt(t["available"]),
                 "maxWithdrawAmount": fmt(max(0.0, t["available"])), "marginAvailable": True,
                 "updateTime": acct.update_time}
        positions = []
        for s in self._symbols(acct, None):
            has = acct.positions.get(s) is not None and acct.positions[s].qty != 0
            if v3 and not has:
                continue
            p = self._position_json(acct, s, v3=True)
            row = {k: p[k] for k in ("symbol", "positionSide", "positionAmt",
                                     "isolatedMargin", "notional", "isolatedWallet",
                                     "initialMargin", "maintMargin", "updateTime")}
            row["unrealizedProfit"] = p["unRealizedProfit"]
            if not v3:
                row.update(positionInitialMargin=p["positionInitialMargin"],
                           openOrderInitialMargin=p["openOrderInitialMargin"],
                           leverage=str(self.book.lev(acct, s)),
                           isolated=acct.margin_type.get(s) == "ISOLATED",
                           entryPrice=p["entryPrice"], breakEvenPrice=p["breakEvenPrice"],
                           maxNotional="1000000", bidNotional="0", askNotional="0")
            positions.append(row)
        out: dict[str, Any] = {
            "totalInitialMargin": fmt(im), "totalMaintMargin": fmt(t["maint"]),
            "totalWalletBalance": fmt(t["wallet"]), "totalUnrealizedProfit": fmt(t["upnl"]),
            "totalMarginBalance": fmt(margin), "totalPositionInitialMargin":
            fmt(t["position_im"]), "totalOpenOrderInitialMargin": fmt(t["order_im"]),
            "totalCrossWalletBalance": fmt(t["wallet"]), "totalCrossUnPnl": fmt(t["upnl"]),
            "availableBalance": fmt(t["available"]),
            "maxWithdrawAmount": fmt(max(0.0, t["available"])), "assets": [asset],
            "positions": positions}
        if not v3:
            out.update(feeTier=0, feeBurn=False, canTrade=True, canDeposit=True,
                       canWithdraw=True, updateTime=0, multiAssetsMargin=False,
                       tradeGroupId=-1)
        return out

    def leverage(self, acct: Account, params: dict[str, str]) -> Any:
        symbol = self._symbol(params)
        assert symbol is not None
        lev = _int(params, "leverage")
        if lev is None:
            _mandatory(params, "leverage")
        if not 1 <= int(lev or 0) <= 125:
            raise ApiError(-4028, f"Leverage {lev} is not valid")
        acct.leverage[symbol] = int(lev or 1)
        return {"leverage": int(lev or 1), "maxNotionalValue": "1000000", "symbol": symbol}

    def margin_type(self, acct: Account, params: dict[str, str]) -> Any:
        symbol = self._symbol(params)
        assert symbol is not None
        kind = _mandatory(params, "marginType").upper()
        if kind not in ("ISOLATED", "CROSSED"):
            raise ApiError(-1116, "Invalid marginType.")
        if acct.margin_type.get(symbol, "CROSSED") == kind:
            raise ApiError(-4046, "No need to change margin type.")
        if acct.position(symbol).qty:
            raise ApiError(-4048, "Margin type cannot be changed if there exists position.")
        if acct.open_orders(symbol):
            raise ApiError(-4047, "Margin type cannot be changed if there exists open orders.")
        acct.margin_type[symbol] = kind
        return {"code": 200, "msg": "success"}

    def get_dual(self, acct: Account, params: dict[str, str]) -> Any:
        return {"dualSidePosition": False}

    def post_dual(self, acct: Account, params: dict[str, str]) -> Any:
        if _bool(params, "dualSidePosition"):
            raise ApiError(-4068, "The fake exchange supports one-way mode only "
                           "(dualSidePosition false).")
        raise ApiError(-4059, "No need to change position side.")

    def multi_assets(self, acct: Account, params: dict[str, str]) -> Any:
        return {"multiAssetsMargin": False}

    def commission(self, acct: Account, params: dict[str, str]) -> Any:
        symbol = self._symbol(params)
        return {"symbol": symbol, "makerCommissionRate": fmt(self.config.maker_fee),
                "takerCommissionRate": fmt(self.config.taker_fee)}

    def income(self, acct: Account, params: dict[str, str]) -> Any:
        symbol, kind = params.get("symbol"), params.get("incomeType")
        rows = [r for r in acct.income if symbol in (None, "", r["symbol"])
                and kind in (None, "", r["incomeType"])]
        rows = self._window(rows, params, lambda r: r["time"], 100, 1000)
        return [{**r, "income": fmt(r["income"])} for r in rows]

    def brackets(self, acct: Account, params: dict[str, str]) -> Any:
        """One bracket for every notional (the fake has no maintenance tiers)."""
        symbol = self._symbol(params, required=False)
        rows = [{"symbol": s, "notionalCoef": 1.0, "brackets": [
            {"bracket": 1, "initialLeverage": 125, "notionalCap": 1_000_000_000,
             "notionalFloor": 0, "maintMarginRatio": MAINT_RATE, "cum": 0.0}]}
            for s in self._symbols(acct, symbol)]
        return rows[0] if symbol else rows

    def routes(self) -> list[web.RouteDef]:
        s, v1, v2, v3 = self.signed, "/fapi/v1", "/fapi/v2", "/fapi/v3"
        routes = [
            web.post(f"{v1}/order", s(self.post_order)), web.get(f"{v1}/order", s(self.get_order)),
            web.delete(f"{v1}/order", s(self.cancel_order)),
            web.get(f"{v1}/openOrders", s(self.open_orders)),
            web.get(f"{v1}/openOrder", s(self.get_open_order)),
            web.delete(f"{v1}/allOpenOrders", s(self.cancel_all)),
            web.get(f"{v1}/allOrders", s(self.all_orders)),
            web.get(f"{v1}/userTrades", s(self.user_trades)),
            web.post(f"{v1}/algoOrder", s(self.post_algo)),
            web.get(f"{v1}/algoOrder", s(self.get_algo)),
            web.delete(f"{v1}/algoOrder", s(self.cancel_algo)),
            web.get(f"{v1}/openAlgoOrders", s(self.open_algos)),
            web.get(f"{v1}/allAlgoOrders", s(self.all_algos)),
            web.delete(f"{v1}/algoOpenOrders", s(self.cancel_all_algos)),
            web.post(f"{v1}/leverage", s(self.leverage)),
            web.post(f"{v1}/marginType", s(self.margin_type)),
            web.get(f"{v1}/positionSide/dual", s(self.get_dual)),
            web.post(f"{v1}/positionSide/dual", s(self.post_dual)),
            web.get(f"{v1}/multiAssetsMargin", s(self.multi_assets)),
            web.get(f"{v1}/commissionRate", s(self.commission)),
            web.get(f"{v1}/income", s(self.income)),
            web.get(f"{v1}/leverageBracket", s(self.brackets)),
        ]
        for base, v3_shape in ((v2, False), (v3, True)):
            routes += [
                web.get(f"{base}/positionRisk",
                        s(lambda a, p, v=v3_shape: self.position_risk(a, p, v))),
                web.get(f"{base}/balance", s(self.balance)),
                web.get(f"{base}/account", s(lambda a, p, v=v3_shape: self.account(a, p, v))),
            ]
        return routes


class _Refused(Exception):
    """An answer that is not a Binance ``{"code", "msg"}`` 400 (the order-rate 429)."""

    def __init__(self, response: web.Response) -> None:
        super().__init__("refused")
        self.response = response
