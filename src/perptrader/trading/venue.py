"""The venue side of live trading: place, query and cancel by client order id, read
positions, balance, fills and bars, through ccxt, under the rate budgets, the retry
rules and the circuit breaker.

What each call does on failure decides whether orders get lost or doubled:

* reads (query, open orders, trades, positions, balance, bars) are retried with backoff
  (``venues.calls.VenueClient``): asking twice changes nothing;
* an order is sent ONCE per call. A 429 was refused before it was processed (the venue
  says so), so it waits ``Retry-After`` and sends again; any other failure without an
  answer (time-out, 5xx, dropped connection) raises ``OutcomeUnknown``: the order may or
  may not exist, and the caller must ``query`` it by its client id before deciding
  anything (``trading.live``);
* a refusal by the venue (``OrderRefused``: margin, filters, reduce-only, duplicate id)
  is final for that order;
* nothing is sent while the breaker is open or a 418 ban runs (``TradingHalted``).

Venue answers are turned into ``VenueOrder`` / ``VenueTrade`` / ``VenuePosition``, so the
engine never reads ccxt's dictionaries.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import ccxt

from perptrader.core.errors import PerptraderError
from perptrader.trading.breaker import TradingHalted, VenueGuard
from perptrader.trading.orders import Order, OrderType
from perptrader.venues.calls import RetryPolicy, VenueClient
from perptrader.venues.ccxt_client import Credentials, create_exchange
from perptrader.venues.errors import (
    BadRequest,
    IpBanned,
    RateLimited,
    VenueError,
    VenueUnavailable,
    VenueUnreachable,
)
from perptrader.venues.ratelimit import OrderBudget, WeightBudget

#: Binance: the order does not exist (query/cancel of an id the venue never saw)
NO_SUCH_ORDER = -2013
#: Binance: this client order id was used before (the venue refuses a second order)
DUPLICATE_CLIENT_ID = -4116


class OutcomeUnknown(PerptraderError):
    """The order request got no answer: it may or may not have reached the venue."""


class OrderRefused(PerptraderError):
    """The venue refused the order (final); ``code`` is the venue's error code."""

    def __init__(self, message: str, code: int | None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class VenueOrder:
    """One order as the venue reports it. ``status``: new, partially_filled, filled,
    canceled, expired, rejected (Binance's statuses, lowercased)."""

    client_order_id: str | None
    venue_order_id: str
    symbol: str
    side: str
    type: str
    status: str
    qty: float
    filled: float
    avg_price: float | None
    reduce_only: bool
    ts: int
    price: float | None = None  # a limit order's price

    @property
    def is_open(self) -> bool:
        return self.status in ("new", "partially_filled")


@dataclass(frozen=True)
class VenueTrade:
    """One execution of one of the account's orders."""

    trade_id: str
    venue_order_id: str
    symbol: str
    side: str
    qty: float
    price: float
    fee: float
    liquidity: str
    ts: int


@dataclass(frozen=True)
class VenuePosition:
    symbol: str
    qty: float  # signed: + long, - short
    entry_price: float
    mark_price: float
    unrealized_pnl: float
    leverage: float | None
    margin_mode: str | None


@dataclass(frozen=True)
class VenueBalance:
    wallet: float  # USDT wallet balance (realized PnL, fees, funding included)
    equity: float  # wallet + unrealized PnL (Binance's margin balance)
    available: float


@dataclass(frozen=True)
class Market:
    """What sizing needs from a symbol's venue rules."""

    symbol: str  # venue id, e.g. BTCUSDT
    unified: str  # ccxt's, e.g. BTC/USDT:USDT
    qty_step: float
    min_qty: float
    min_notional: float

    def round_qty(self, qty: float) -> float:
        """``qty`` rounded DOWN to the step (an order never exceeds what was sized)."""
        if self.qty_step <= 0:
            return qty
        steps = math.floor(qty / self.qty_step + 1e-9)
        return round(steps * self.qty_step, 12)


_UNIFIED_STATUS = {"open": "new", "closed": "filled", "canceled": "canceled",
                   "expired": "expired", "rejected": "rejected"}
_WEIGHTS = {"order": 1, "query": 1, "cancel": 1, "open_orders": 1, "trades": 5,
            "positions": 5, "balance": 5, "leverage": 1, "margin": 1, "time": 1, "klines": 5,
            "income": 30}


class VenueTrader:
    """One account at one venue. Synchronous: the engine sends one order at a time, each
    only after its intent is committed, so there is nothing to gain from overlapping
    order calls; the user data stream runs on its own thread (``trading.userstream``)."""

    def __init__(self, exchange_id: str, *, url: str | None, credentials: Credentials,
                 guard: VenueGuard | None = None, retry: RetryPolicy | None = None,
                 timeout_ms: int = 10_000, sleep: Callable[[float], None] = time.sleep,
                 exchange: Any = None) -> None:
        self.exchange_id = exchange_id
        self.url = url
        self.credentials = credentials
        self.ex = exchange or create_exchange(exchange_id, url=url, credentials=credentials,
                                              timeout_ms=timeout_ms)
        self.guard = guard or VenueGuard()
        self.sleep = sleep
        self.reads = VenueClient(self.ex, policy=retry or RetryPolicy(), sleep=sleep)
        # one attempt for orders: a retry after an unknown outcome must be a query first
        self.writes = VenueClient(self.ex, policy=RetryPolicy(attempts=1),
                                  budget=self.reads.budget, sleep=sleep)
        self.orders_budget = OrderBudget(sleep=sleep)
        self.markets: dict[str, Market] = {}

    # ---- setup ---------------------------------------------------------------------------
    def load(self, symbols: Iterable[str]) -> dict[str, Market]:
        """Markets and the venue's published limits; unknown symbols are an error."""
        # the venue's published limits first: until they are known the budget assumes
        # Binance's defaults, and the first answer's usage header (this IP's whole use,
        # other processes included) would be judged against the wrong limit
        info = self._read("exchangeInfo", self.ex.fapiPublicGetExchangeInfo, weight=1)
        self.reads.budget = WeightBudget.from_exchange_info(info, sleep=self.sleep)
        self.writes.budget = self.reads.budget
        self.orders_budget = OrderBudget.from_exchange_info(info, sleep=self.sleep)
        self._read("markets", self.ex.load_markets, weight=1)
        for symbol in symbols:
            found = self.ex.markets_by_id.get(symbol)
            if not found:
                raise BadRequest(f"{self.exchange_id} does not list {symbol}")
            m = found[0] if isinstance(found, list) else found
            limits = m.get("limits") or {}
            step = float((m.get("precision") or {}).get("amount") or 0.0)
            self.markets[symbol] = Market(
                symbol=symbol, unified=m["symbol"], qty_step=step,
                min_qty=float((limits.get("amount") or {}).get("min") or 0.0),
                min_notional=float((limits.get("cost") or {}).get("min") or 0.0))
        return self.markets

    def _read(self, what: str, fn: Callable[..., Any], *args: Any, weight: int) -> Any:
        return self.guard.read(self.reads.call, what, fn, *args, weight=weight)

    def configure(self, symbol: str, *, leverage: float, margin_mode: str) -> None:
        """Leverage and margin mode from the run's settings (the venue's, not assumed)."""
        unified = self.markets[symbol].unified
        try:
            self.guard.read(self.reads.call, f"marginType {symbol}", self.ex.set_margin_mode,
                            margin_mode, unified, weight=_WEIGHTS["margin"])
        except BadRequest as exc:
            if "No need to change margin type" not in str(exc) and exc.code != -4046:
                raise
        self.guard.read(self.reads.call, f"leverage {symbol}", self.ex.set_leverage,
                        max(1, math.ceil(leverage)), unified, weight=_WEIGHTS["leverage"])

    # ---- orders --------------------------------------------------------------------------
    def place(self, order: Order) -> VenueOrder:
        """Send ``order`` once under its client id. Raises OutcomeUnknown, OrderRefused,
        TradingHalted (nothing sent)."""
        market = self.markets[order.symbol]
        params: dict[str, Any] = {"newClientOrderId": order.client_order_id,
                                  "newOrderRespType": "RESULT"}
        if order.reduce_only:
            params["reduceOnly"] = True
        if order.type in (OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET):
            params["stopPrice"] = order.stop_price
        if order.type is OrderType.LIMIT:
            params["timeInForce"] = order.time_in_force.value.upper()
        ccxt_type = {OrderType.MARKET: "market", OrderType.LIMIT: "limit",
                     OrderType.STOP_MARKET: "STOP_MARKET",
                     OrderType.TAKE_PROFIT_MARKET: "TAKE_PROFIT_MARKET"}[order.type]
        self.guard.check()
        self.orders_budget.acquire()
        try:
            raw = self.guard.call(self.writes.call, f"order {order.client_order_id}",
                                  self.ex.create_order, market.unified, ccxt_type,
                                  order.side.value, order.qty, order.price, params,
                                  weight=_WEIGHTS["order"])
        except IpBanned as exc:  # refused unprocessed; the guard latched the ban
            raise TradingHalted(f"order {order.client_order_id}: {exc}") from None
        except (VenueUnavailable, VenueUnreachable) as exc:
            raise OutcomeUnknown(f"order {order.client_order_id}: {exc}") from None
        except RateLimited as exc:  # Retry-After longer than allowed: not processed
            raise OrderRefused(f"order {order.client_order_id}: {exc}", 429) from None
        except VenueError as exc:
            if exc.status is None and exc.code is None:
                raise OutcomeUnknown(f"order {order.client_order_id}: {exc}") from None
            raise OrderRefused(str(exc), exc.code) from None
        finally:
            self.orders_budget.observe(self.ex.last_response_headers)
        return self._order(raw)

    def query(self, client_order_id: str, symbol: str) -> VenueOrder | None:
        """The venue's view of our order, or None when the venue never received it."""
        market = self.markets[symbol]
        try:
            raw = self.guard.read(self.reads.call, f"query {client_order_id}",
                                  self.ex.fetch_order, None, market.unified,
                                  {"origClientOrderId": client_order_id},
                                  weight=_WEIGHTS["query"])
        except BadRequest as exc:
            if exc.code == NO_SUCH_ORDER:
                return None
            raise
        return self._order(raw)

    def cancel(self, client_order_id: str, symbol: str) -> VenueOrder | None:
        """Cancel by client id; None when the venue does not know the order (never
        arrived, or already gone). The answer may say it filled first."""
        market = self.markets[symbol]
        try:
            raw = self.guard.read(self.reads.call, f"cancel {client_order_id}",
                                  self.ex.cancel_order, None, market.unified,
                                  {"origClientOrderId": client_order_id},
                                  weight=_WEIGHTS["cancel"])
        except BadRequest as exc:
            if exc.code in (NO_SUCH_ORDER, -2011):
                return self.query(client_order_id, symbol)
            raise
        return self._order(raw)

    def open_orders(self, symbols: Iterable[str]) -> list[VenueOrder]:
        out: list[VenueOrder] = []
        for symbol in symbols:
            rows = self.guard.read(self.reads.call, f"openOrders {symbol}",
                                   self.ex.fetch_open_orders, self.markets[symbol].unified,
                                   weight=_WEIGHTS["open_orders"])
            out.extend(self._order(r) for r in rows)
        return out

    def trades(self, symbol: str, *, since_ms: int | None = None,
               venue_order_id: str | None = None) -> list[VenueTrade]:
        """The account's fills of ``symbol`` (of one order when ``venue_order_id``)."""
        params: dict[str, Any] = {}
        if venue_order_id is not None:
            params["orderId"] = venue_order_id
        rows = self.guard.read(self.reads.call, f"userTrades {symbol}",
                               self.ex.fetch_my_trades, self.markets[symbol].unified,
                               since_ms, 1000, params, weight=_WEIGHTS["trades"])
        return [self._trade(symbol, r) for r in rows]

    # ---- account -------------------------------------------------------------------------
    def positions(self, symbols: Iterable[str]) -> dict[str, VenuePosition]:
        wanted = list(symbols)
        rows = self.guard.read(self.reads.call, "positionRisk", self.ex.fetch_positions,
                               [self.markets[s].unified for s in wanted],
                               weight=_WEIGHTS["positions"])
        out = {s: VenuePosition(s, 0.0, 0.0, math.nan, 0.0, None, None) for s in wanted}
        for r in rows:
            info = r.get("info") or {}
            symbol = info.get("symbol")
            if symbol not in out:
                continue
            qty = float(info.get("positionAmt") or 0.0)
            out[symbol] = VenuePosition(
                symbol=symbol, qty=qty, entry_price=float(info.get("entryPrice") or 0.0),
                mark_price=float(info.get("markPrice") or math.nan),
                unrealized_pnl=float(info.get("unRealizedProfit")
                                     or info.get("unrealizedProfit") or 0.0),
                leverage=float(r["leverage"]) if r.get("leverage") else None,
                margin_mode=r.get("marginMode"))
        return out

    def balance(self, asset: str = "USDT") -> VenueBalance:
        raw = self.guard.read(self.reads.call, "balance", self.ex.fetch_balance,
                              weight=_WEIGHTS["balance"])
        info = raw.get("info") or {}
        for row in info.get("assets") or []:
            if row.get("asset") == asset:
                return VenueBalance(wallet=float(row.get("walletBalance") or 0.0),
                                    equity=float(row.get("marginBalance") or 0.0),
                                    available=float(row.get("availableBalance") or 0.0))
        total = raw.get(asset) or {}
        return VenueBalance(wallet=float(total.get("total") or 0.0),
                            equity=float(total.get("total") or 0.0),
                            available=float(total.get("free") or 0.0))

    def funding(self, symbol: str, since_ms: int) -> list[tuple[int, float]]:
        """(time ms, amount) of the funding the account received (+) or paid (-) on
        ``symbol`` after ``since_ms`` (the venue's income history)."""
        rows = self._read(f"funding {symbol}", self.ex.fetch_funding_history,
                          self.markets[symbol].unified, since_ms + 1, 1000,
                          weight=_WEIGHTS["income"])
        return [(int(r["timestamp"]), float(r["amount"])) for r in rows
                if int(r["timestamp"]) > since_ms]

    def server_time(self) -> int:
        return int(self.guard.read(self.reads.call, "time", self.ex.fetch_time,
                                   weight=_WEIGHTS["time"]))

    def klines(self, symbol: str, timeframe: str, since_ms: int | None,
               limit: int = 1000) -> list[list[float]]:
        return self.guard.read(self.reads.call, f"klines {symbol} {timeframe}",
                               self.ex.fetch_ohlcv, self.markets[symbol].unified, timeframe,
                               since_ms, limit, weight=_WEIGHTS["klines"])

    def raw_klines(self, symbol: str, timeframe: str, start_ms: int, end_ms: int,
                   limit: int = 1500) -> list[list[Any]]:
        """The venue's kline rows as sent (every field: quote volume, trade count, taker
        volumes), which ccxt's unified OHLCV drops."""
        params = {"symbol": symbol, "interval": timeframe, "startTime": start_ms,
                  "endTime": end_ms, "limit": limit}
        return self.guard.read(self.reads.call, f"klines {symbol} {timeframe}",
                               self.ex.fapiPublicGetKlines, params,
                               weight=_WEIGHTS["klines"])

    # ---- parsing -------------------------------------------------------------------------
    def _order(self, raw: dict[str, Any]) -> VenueOrder:
        info = raw.get("info") or {}
        status = str(info.get("status") or "").lower() or _UNIFIED_STATUS.get(
            str(raw.get("status")), str(raw.get("status")))
        filled = float(raw.get("filled") or info.get("executedQty") or 0.0)
        if status == "new" and filled > 0:
            status = "partially_filled"
        avg = raw.get("average") or info.get("avgPrice")
        avg_price = float(avg) if avg not in (None, "", "0", "0.0", 0) else None
        return VenueOrder(
            client_order_id=raw.get("clientOrderId") or info.get("clientOrderId"),
            venue_order_id=str(raw.get("id") or info.get("orderId")),
            symbol=str(info.get("symbol") or self._venue_symbol(raw.get("symbol"))),
            side=str(raw.get("side") or str(info.get("side", "")).lower()),
            type=str(info.get("type") or raw.get("type") or "").lower(),
            status=status, qty=float(raw.get("amount") or info.get("origQty") or 0.0),
            filled=filled, avg_price=avg_price,
            reduce_only=bool(raw.get("reduceOnly") or info.get("reduceOnly")),
            ts=int(raw.get("timestamp") or info.get("updateTime") or 0),
            price=float(info.get("price") or raw.get("price") or 0.0) or None)

    def _trade(self, symbol: str, raw: dict[str, Any]) -> VenueTrade:
        fee = raw.get("fee") or {}
        info = raw.get("info") or {}
        maker = raw.get("takerOrMaker") == "maker" or bool(info.get("maker"))
        return VenueTrade(trade_id=str(raw.get("id") or info.get("id")),
                          venue_order_id=str(raw.get("order") or info.get("orderId")),
                          symbol=symbol, side=str(raw.get("side")),
                          qty=float(raw.get("amount") or info.get("qty")),
                          price=float(raw.get("price") or info.get("price")),
                          fee=float(fee.get("cost") or info.get("commission") or 0.0),
                          liquidity="maker" if maker else "taker",
                          ts=int(raw.get("timestamp") or info.get("time") or 0))

    def _venue_symbol(self, unified: Any) -> str:
        for symbol, m in self.markets.items():
            if m.unified == unified:
                return symbol
        return str(unified)

    def close(self) -> None:
        close = getattr(self.ex, "close", None)
        if callable(close):
            with contextlib.suppress(ccxt.BaseError, RuntimeError):  # best effort
                close()
