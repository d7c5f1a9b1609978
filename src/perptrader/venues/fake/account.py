"""The fake venue's accounts: wallet, one-way positions, orders, fills, fees and funding.

Why a hand-written matcher: the fake has no order book to trade against, only recorded
bars, so it fills the way the backtester assumes (sim/'s "next bar" model) and the live
code can be tested end to end through ccxt without a real account:

* MARKET orders fill at once at the OPEN of the bar that holds the replay clock (in the
  symbol's finest stored kline timeframe, or ``FakeConfig.fill_timeframe``), moved by
  ``slippage_bps`` against the taker; taker fee.
* LIMIT orders rest; a bar that opened after the order's bar and reaches the price (buy:
  low <= price, sell: high >= price) fills it at its price; maker fee. With
  ``partial_fill_parts`` = n every crossing bar fills one n-th (a "partial fill" test).
  A LIMIT that would cross at once fills as a taker at the market price (GTX: refused).
* STOP_MARKET / TAKE_PROFIT_MARKET trigger when a bar's range reaches ``stopPrice`` and
  fill at it (at the bar's open when the bar opened beyond it), taker fee.

Matching runs before every private request and on a timer (``stream_interval_s``).
There is no liquidation. State is in this object, so clients may restart and find it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from perptrader.core.timeframes import timeframe_ms
from perptrader.marketdata.dataset import epoch_us
from perptrader.marketdata.kinds import Kind
from perptrader.venues.fake.rest import ApiError

if TYPE_CHECKING:
    from perptrader.venues.fake.data import MarketData
    from perptrader.venues.fake.server import FakeConfig

OPEN = ("NEW", "PARTIALLY_FILLED")
MAINT_RATE = 0.004  # one maintenance-margin rate for every notional (reported only)
CONDITIONAL = ("STOP_MARKET", "TAKE_PROFIT_MARKET")
Listener = Callable[[str, dict[str, Any]], None]


def fmt(x: float | Decimal, places: int = 8) -> str:
    """A number as Binance sends it: a decimal string without float noise."""
    if isinstance(x, float) and not math.isfinite(x):
        return "0"
    text = f"{float(x):.{places}f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


@dataclass
class Order:
    """One order (or, with ``algo_id``, one conditional algo order) of an account."""

    order_id: int
    client_id: str
    symbol: str
    side: str  # BUY | SELL
    type: str
    tif: str
    qty: float
    price: float
    stop_price: float
    reduce_only: bool
    close_position: bool
    time: int
    bar_ms: int  # open of the last bar already looked at
    orig_type: str = ""
    status: str = "NEW"
    executed: float = 0.0
    cum_quote: float = 0.0
    update_time: int = 0
    algo_id: int | None = None  # conditional orders placed through /fapi/v1/algoOrder
    actual_order_id: int | None = None
    trigger_time: int = 0

    @property
    def sign(self) -> int:
        return 1 if self.side == "BUY" else -1

    @property
    def is_open(self) -> bool:
        return self.status in OPEN

    @property
    def remaining(self) -> float:
        return round(self.qty - self.executed, 10)

    @property
    def avg_price(self) -> float:
        return self.cum_quote / self.executed if self.executed else 0.0

    def as_json(self) -> dict[str, Any]:
        """The admin view (ground truth for tests)."""
        return {"orderId": self.order_id, "algoId": self.algo_id,
                "clientOrderId": self.client_id, "symbol": self.symbol, "side": self.side,
                "type": self.type, "origType": self.orig_type, "timeInForce": self.tif,
                "status": self.status, "origQty": self.qty, "executedQty": self.executed,
                "price": self.price, "stopPrice": self.stop_price, "avgPrice": self.avg_price,
                "reduceOnly": self.reduce_only, "closePosition": self.close_position,
                "time": self.time, "updateTime": self.update_time}


@dataclass
class Trade:
    id: int
    order_id: int
    client_id: str
    symbol: str
    side: str
    price: float
    qty: float
    commission: float
    realized_pnl: float
    maker: bool
    time: int

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "orderId": self.order_id, "clientOrderId": self.client_id,
                "symbol": self.symbol, "side": self.side, "price": self.price,
                "qty": self.qty, "commission": self.commission,
                "realizedPnl": self.realized_pnl, "maker": self.maker, "time": self.time}


@dataclass
class Position:
    qty: float = 0.0  # signed: > 0 long
    entry: float = 0.0
    realized: float = 0.0  # accumulated realized PnL (Binance's "cr")
    update_time: int = 0


@dataclass
class Account:
    """One API key's futures account (USDT margin, one-way mode)."""

    key: str
    wallet: float
    positions: dict[str, Position] = field(default_factory=dict)
    leverage: dict[str, int] = field(default_factory=dict)
    margin_type: dict[str, str] = field(default_factory=dict)  # CROSSED | ISOLATED
    orders: dict[int, Order] = field(default_factory=dict)
    algos: dict[int, Order] = field(default_factory=dict)
    client_ids: set[str] = field(default_factory=set)  # every id ever used
    trades: list[Trade] = field(default_factory=list)
    income: list[dict[str, Any]] = field(default_factory=list)
    funding_cursor: dict[str, int] = field(default_factory=dict)
    order_times: deque[float] = field(default_factory=deque)  # wall time of placements
    update_time: int = 0

    def position(self, symbol: str) -> Position:
        return self.positions.setdefault(symbol, Position())

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        return [o for o in self.orders.values()
                if o.is_open and symbol in (None, o.symbol)]

    def as_json(self) -> dict[str, Any]:
        return {"apiKey": self.key, "balance": self.wallet,
                "positions": {s: {"positionAmt": p.qty, "entryPrice": p.entry,
                                  "realized": p.realized,
                                  "leverage": self.leverage.get(s),
                                  "marginType": self.margin_type.get(s, "CROSSED")}
                              for s, p in self.positions.items()},
                "orders": [o.as_json() for o in self.orders.values()],
                "algoOrders": [o.as_json() for o in self.algos.values()],
                "trades": [t.as_json() for t in self.trades],
                "income": list(self.income)}


class Accounts:
    """Every account of one fake venue plus the matcher; ``listeners`` receive
    ``(api_key, user-data event)`` for the user data stream."""

    def __init__(self, config: FakeConfig, data: MarketData, now: Callable[[], int]) -> None:
        self.config = config
        self.data = data
        self.now = now
        self.listeners: list[Listener] = []
        self.reset()

    def reset(self) -> None:
        self.accounts = {key: Account(key, float(self.config.initial_balance))
                         for key in self.config.api_keys}
        self._ids = {"order": 0, "trade": 0, "tran": 0, "algo": 0}
        self._cache: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray]] = {}

    def next_id(self, what: str) -> int:
        self._ids[what] += 1
        return self._ids[what]

    def emit(self, acct: Account, event: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            listener(acct.key, event)

    # -- prices -------------------------------------------------------------------------
    def timeframe(self, symbol: str, kind: Kind = Kind.OHLCV,
                  now: int | None = None) -> str | None:
        """The finest stored timeframe of a symbol's bars that covers ``now`` (recordings
        differ in span: 1m bars for a few days, 1h for years); ``fill_timeframe`` when
        set."""
        if kind is Kind.OHLCV and self.config.fill_timeframe:
            return self.config.fill_timeframe
        tfs = sorted({k[2] for k in (*self.data.files, *self.data._loaded)
                      if k[0] == symbol and k[1] is kind and k[2]}, key=timeframe_ms)
        if not tfs:
            return None
        if now is None:
            return tfs[0]
        for tf in tfs:
            first, last = self._span(symbol, kind, tf)
            if first is not None and first <= now < last + timeframe_ms(tf):
                return tf
        return tfs[-1]

    def _series(self, key: tuple[Any, ...]) -> tuple[np.ndarray, np.ndarray]:
        """(open ms, [o, h, l, c] rows) of a stored bar series, read once: recordings do
        not change while the fake serves, and a store query per price lookup made every
        order cost tens of milliseconds."""
        if key not in self._cache:
            frame = self.data.frame(key, None, None)
            ms = (epoch_us(frame["ts"]) // 1000).astype(np.int64) if len(frame) \
                else np.empty(0, np.int64)
            ohlc = frame[["open", "high", "low", "close"]].to_numpy(np.float64) \
                if len(frame) else np.empty((0, 4))
            self._cache[key] = (np.asarray(ms), ohlc)
        return self._cache[key]

    def _span(self, symbol: str, kind: Kind, tf: str) -> tuple[int | None, int]:
        """(first, last) bar open ms of a stored series."""
        ms, _ = self._series((symbol, kind, tf))
        return (int(ms[0]), int(ms[-1])) if len(ms) else (None, 0)

    def bars(self, symbol: str, after_ms: int, now: int,
             kind: Kind = Kind.OHLCV) -> list[tuple[int, float, float, float, float]]:
        """(open ms, o, h, l, c) of the bars that opened in (after_ms, now]."""
        tf = self.timeframe(symbol, kind, now)
        if tf is None or after_ms >= now:
            return []
        ms, ohlc = self._series((symbol, kind, tf))
        lo, hi = np.searchsorted(ms, [after_ms, now], side="right")
        return [(int(t), *map(float, row)) for t, row in zip(ms[lo:hi], ohlc[lo:hi],
                                                             strict=True)]

    def bar_at(self, symbol: str, now: int, kind: Kind = Kind.OHLCV) -> tuple[int, ...] | None:
        """The bar holding ``now`` (else the last one before it)."""
        tf = self.timeframe(symbol, kind, now)
        if tf is None:
            return None
        ms, ohlc = self._series((symbol, kind, tf))
        i = int(np.searchsorted(ms, now, side="right")) - 1
        if i < 0:
            return None
        o, h, low, c = ohlc[i]
        return (int(ms[i]), float(o), float(h), float(low), float(c))

    def market_price(self, symbol: str, now: int) -> float:
        bar = self.bar_at(symbol, now)
        if bar is None:
            raise ApiError(-2010, "Order would have no fill price: no recorded bar at the "
                           "clock (fake exchange).")
        return bar[1]

    def mark(self, symbol: str, now: int) -> float:
        """Mark price at the clock: the OPEN of the mark kline holding it (else of the
        trade kline). Its close lies in the future of the clock: a mark from it would let
        a client see the bar's end while the bar is still running."""
        bar = self.bar_at(symbol, now, Kind.MARK) or self.bar_at(symbol, now)
        return bar[1] if bar else 0.0

    def current_bar_ms(self, symbol: str, now: int) -> int:
        tf = self.timeframe(symbol, Kind.OHLCV, now)
        step = timeframe_ms(tf) if tf else 60_000
        return now // step * step

    # -- account figures ----------------------------------------------------------------
    def lev(self, acct: Account, symbol: str) -> int:
        return acct.leverage.get(symbol, self.config.default_leverage)

    def unrealized(self, acct: Account, symbol: str, now: int) -> float:
        pos = acct.positions.get(symbol)
        if pos is None or pos.qty == 0:
            return 0.0
        return pos.qty * (self.mark(symbol, now) - pos.entry)

    def position_margin(self, acct: Account, symbol: str, now: int) -> float:
        pos = acct.positions.get(symbol)
        if pos is None or pos.qty == 0:
            return 0.0
        return abs(pos.qty) * self.mark(symbol, now) / self.lev(acct, symbol)

    def order_margin(self, acct: Account, symbol: str | None, now: int) -> float:
        total = 0.0
        for o in acct.open_orders(symbol):
            if o.type == "LIMIT" and not o.reduce_only:
                total += o.remaining * o.price / self.lev(acct, o.symbol)
        return total

    def totals(self, acct: Account, now: int) -> dict[str, float]:
        symbols = [s for s, p in acct.positions.items() if p.qty]
        upnl = sum(self.unrealized(acct, s, now) for s in symbols)
        pos_im = sum(self.position_margin(acct, s, now) for s in symbols)
        ord_im = self.order_margin(acct, None, now)
        available = acct.wallet + upnl - pos_im - ord_im
        return {"wallet": acct.wallet, "upnl": upnl, "position_im": pos_im,
                "order_im": ord_im, "available": available,
                "maint": sum(abs(acct.positions[s].qty) * self.mark(s, now) * MAINT_RATE
                             for s in symbols)}

    # -- placing ------------------------------------------------------------------------
    def check_margin(self, acct: Account, symbol: str, side_sign: int, qty: float,
                     price: float, now: int) -> None:
        """-2019 when the part of the order that opens exposure needs more initial margin
        than is available (reducing parts need none)."""
        pos = acct.position(symbol).qty
        opening = qty if pos * side_sign >= 0 else max(0.0, qty - abs(pos))
        if opening <= 0:
            return
        need = opening * price / self.lev(acct, symbol)
        if need > self.totals(acct, now)["available"] + 1e-9:
            raise ApiError(-2019, "Margin is insufficient.")

    def new_order(self, acct: Account, order: Order, now: int) -> None:
        """Accept a validated order: record it, send NEW, fill what fills at once."""
        order.update_time = now
        order.bar_ms = self.current_bar_ms(order.symbol, now)
        acct.client_ids.add(order.client_id)
        if order.algo_id is not None:
            acct.algos[order.algo_id] = order
            self.emit(acct, self._algo_event(order, now))
            return
        acct.orders[order.order_id] = order
        self.emit(acct, self._order_event(order, "NEW", now))
        if order.type == "MARKET":
            self._fill_market(acct, order, self.market_price(order.symbol, now), now)
        elif order.type == "LIMIT":
            market = self.market_price(order.symbol, now)
            crosses = market <= order.price if order.side == "BUY" else market >= order.price
            if crosses:  # marketable: takes at the market price
                self._fill_market(acct, order, market, now)
            elif order.tif in ("IOC", "FOK"):
                self.finish(acct, order, "EXPIRED", now)

    def _fill_market(self, acct: Account, order: Order, price: float, now: int) -> None:
        slip = self.config.slippage_bps / 1e4
        px = price * (1 + slip) if order.side == "BUY" else price * (1 - slip)
        qty = self._reducible(acct, order)
        if qty <= 0:
            self.finish(acct, order, "EXPIRED", now)
            return
        self.fill(acct, order, px, qty, False, now)
        if order.is_open:  # reduce-only clipped to the position
            self.finish(acct, order, "EXPIRED", now)

    def _reducible(self, acct: Account, order: Order) -> float:
        """What may fill now: all of it, or for reduce-only at most the position."""
        qty = order.remaining
        if order.reduce_only or order.close_position:
            pos = acct.position(order.symbol).qty
            if pos * order.sign >= 0:
                return 0.0
            qty = min(qty, abs(pos)) if not order.close_position else abs(pos)
        return qty

    def finish(self, acct: Account, order: Order, status: str, now: int) -> None:
        order.status = status
        order.update_time = now
        self.emit(acct, self._order_event(order, status, now))

    def cancel(self, acct: Account, order: Order, now: int) -> None:
        if order.algo_id is not None:
            order.status = "CANCELED"
            order.update_time = now
            self.emit(acct, self._algo_event(order, now))
        else:
            self.finish(acct, order, "CANCELED", now)

    # -- fills ----------------------------------------------------------------------------
    def fill(self, acct: Account, order: Order, price: float, qty: float, maker: bool,
             now: int) -> None:
        fee = self.config.maker_fee if maker else self.config.taker_fee
        commission = price * qty * fee
        pnl = self._apply(acct, order.symbol, order.sign * qty, price, now)
        acct.wallet += pnl - commission
        acct.update_time = now
        trade = Trade(self.next_id("trade"), order.order_id, order.client_id, order.symbol,
                      order.side, price, qty, commission, pnl, maker, now)
        acct.trades.append(trade)
        order.executed = round(order.executed + qty, 10)
        order.cum_quote += price * qty
        order.status = "FILLED" if order.remaining <= 1e-12 else "PARTIALLY_FILLED"
        order.update_time = now
        if pnl:
            self._income(acct, order.symbol, "REALIZED_PNL", pnl, now, trade.id)
        if commission:
            self._income(acct, order.symbol, "COMMISSION", -commission, now, trade.id)
        self.emit(acct, self.account_event(acct, "ORDER", [order.symbol], now))
        self.emit(acct, self._order_event(order, "TRADE", now, trade))

    def _apply(self, acct: Account, symbol: str, dq: float, price: float, now: int) -> float:
        """Move the position by ``dq`` at ``price``; returns the realized PnL."""
        pos = acct.position(symbol)
        pnl = 0.0
        if pos.qty == 0 or pos.qty * dq > 0:
            if pos.qty == 0:
                acct.funding_cursor[symbol] = now
            total = abs(pos.qty) + abs(dq)
            pos.entry = (abs(pos.qty) * pos.entry + abs(dq) * price) / total
            pos.qty = round(pos.qty + dq, 10)
        else:
            closed = min(abs(pos.qty), abs(dq))
            pnl = closed * (price - pos.entry) * (1 if pos.qty > 0 else -1)
            flips = abs(dq) > abs(pos.qty)
            pos.qty = round(pos.qty + dq, 10)
            if flips:
                pos.entry = price
                acct.funding_cursor[symbol] = now
            elif pos.qty == 0:
                pos.entry = 0.0
        pos.realized += pnl
        pos.update_time = now
        return pnl

    def _income(self, acct: Account, symbol: str, kind: str, amount: float, now: int,
                trade_id: int | None = None) -> None:
        acct.income.append({"symbol": symbol, "incomeType": kind, "income": amount,
                            "asset": "USDT", "info": kind, "time": now,
                            "tranId": self.next_id("tran"),
                            "tradeId": "" if trade_id is None else str(trade_id)})

    # -- matching ---------------------------------------------------------------------------
    def run(self) -> None:
        """Fill what the bars since the last run reach; pay funding that fell due."""
        now = self.now()
        for acct in self.accounts.values():
            for algo in [a for a in acct.algos.values() if a.status == "NEW"]:
                self._match_algo(acct, algo, now)
            for order in sorted(acct.open_orders(), key=lambda o: o.order_id):
                self._match(acct, order, now)
            self._funding(acct, now)

    def _match(self, acct: Account, order: Order, now: int) -> None:
        for t, o, h, low, _c in self.bars(order.symbol, order.bar_ms, now):
            order.bar_ms = t
            if order.type == "LIMIT":
                if (low <= order.price) if order.side == "BUY" else (h >= order.price):
                    qty = self._reducible(acct, order)
                    if qty <= 0:
                        self.finish(acct, order, "EXPIRED", now)
                        return
                    parts = max(1, int(self.config.partial_fill_parts))
                    part = self._part(order, parts)
                    self.fill(acct, order, order.price, min(qty, part), True, now)
            elif order.type in CONDITIONAL and self._triggered(order, o, h, low):
                self._fill_market(acct, order, self._stop_fill(order, o), now)
            if not order.is_open:
                return

    def _part(self, order: Order, parts: int) -> float:
        step = self._step(order.symbol)
        part = math.ceil(order.qty / parts / step) * step if step else order.qty / parts
        return round(min(order.remaining, max(part, step or part)), 10)

    def _step(self, symbol: str) -> float:
        info = next((s for s in self.data.info["symbols"] if s["symbol"] == symbol), {})
        for f in info.get("filters", []):
            if f.get("filterType") == "LOT_SIZE":
                return float(f["stepSize"])
        return 0.0

    @staticmethod
    def _triggered(order: Order, o: float, h: float, low: float) -> bool:
        up = (order.type == "STOP_MARKET") == (order.side == "BUY")  # fires on a rise
        return h >= order.stop_price if up else low <= order.stop_price

    @staticmethod
    def _stop_fill(order: Order, bar_open: float) -> float:
        """At the stop, or at the open when the bar gapped through it."""
        up = (order.type == "STOP_MARKET") == (order.side == "BUY")
        return max(order.stop_price, bar_open) if up else min(order.stop_price, bar_open)

    def _match_algo(self, acct: Account, algo: Order, now: int) -> None:
        for t, o, h, low, _c in self.bars(algo.symbol, algo.bar_ms, now):
            algo.bar_ms = t
            if self._triggered(algo, o, h, low):
                self._trigger(acct, algo, self._stop_fill(algo, o), now)
                return

    def _trigger(self, acct: Account, algo: Order, price: float, now: int) -> None:
        """The algo service places a MARKET order in the matching engine."""
        algo.status, algo.trigger_time, algo.update_time = "TRIGGERED", now, now
        order = Order(self.next_id("order"), algo.client_id, algo.symbol, algo.side, "MARKET",
                      "GTC", algo.qty, 0.0, algo.stop_price, algo.reduce_only,
                      algo.close_position, now, algo.bar_ms, orig_type=algo.type)
        algo.actual_order_id = order.order_id
        self.emit(acct, self._algo_event(algo, now))
        acct.orders[order.order_id] = order
        self.emit(acct, self._order_event(order, "NEW", now))
        self._fill_market(acct, order, price, now)
        algo.status, algo.update_time = "FINISHED", now
        algo.executed, algo.cum_quote = order.executed, order.cum_quote
        self.emit(acct, self._algo_event(algo, now))

    def _funding(self, acct: Account, now: int) -> None:
        for symbol, pos in acct.positions.items():
            last = acct.funding_cursor.get(symbol, now)
            acct.funding_cursor[symbol] = now
            if pos.qty == 0 or last >= now:
                continue
            frame = self.data.frame((symbol, Kind.FUNDING, None), last - 60_000, now)
            if frame.empty:
                continue
            times = epoch_us(frame["exchange_ts"].fillna(frame["ts"])) // 1000
            for t, rate, mark in zip(times.tolist(), frame["rate"].tolist(),
                                     frame["mark_price"].tolist(), strict=True):
                if not last < t <= now or pd.isna(rate):
                    continue
                price = mark if not pd.isna(mark) else self.mark(symbol, t)
                amount = -pos.qty * price * rate
                acct.wallet += amount
                self._income(acct, symbol, "FUNDING_FEE", amount, t)
                self.emit(acct, self.account_event(acct, "FUNDING_FEE", [], t))

    # -- user-data events -------------------------------------------------------------------
    def account_event(self, acct: Account, reason: str, symbols: list[str],
                      now: int) -> dict[str, Any]:
        positions = []
        for s in symbols:
            pos = acct.position(s)
            iso = acct.margin_type.get(s, "CROSSED") == "ISOLATED"
            positions.append({
                "s": s, "pa": fmt(pos.qty), "ep": fmt(pos.entry), "bep": fmt(pos.entry),
                "cr": fmt(pos.realized), "up": fmt(self.unrealized(acct, s, now)),
                "mt": "isolated" if iso else "cross",
                "iw": fmt(self.position_margin(acct, s, now) if iso else 0.0),
                "ps": "BOTH"})
        return {"e": "ACCOUNT_UPDATE", "E": now, "T": now, "a": {
            "m": reason,
            "B": [{"a": "USDT", "wb": fmt(acct.wallet), "cw": fmt(acct.wallet), "bc": "0"}],
            "P": positions}}

    def _order_event(self, order: Order, execution: str, now: int,
                     trade: Trade | None = None) -> dict[str, Any]:
        o: dict[str, Any] = {
            "s": order.symbol, "c": order.client_id, "S": order.side, "o": order.type,
            "f": order.tif, "q": fmt(order.qty), "p": fmt(order.price),
            "ap": fmt(order.avg_price), "sp": fmt(order.stop_price), "x": execution,
            "X": order.status, "i": order.order_id,
            "l": fmt(trade.qty) if trade else "0", "z": fmt(order.executed),
            "L": fmt(trade.price) if trade else "0", "T": now,
            "t": trade.id if trade else 0, "b": "0", "a": "0",
            "m": trade.maker if trade else False, "R": order.reduce_only,
            "wt": "CONTRACT_PRICE", "ot": order.orig_type or order.type, "ps": "BOTH",
            "cp": order.close_position, "rp": fmt(trade.realized_pnl) if trade else "0",
            "pP": False, "si": 0, "ss": 0, "V": "EXPIRE_MAKER", "pm": "NONE", "gtd": 0}
        if trade is not None:
            o["N"], o["n"] = "USDT", fmt(trade.commission)
        return {"e": "ORDER_TRADE_UPDATE", "E": now, "T": now, "o": o}

    def _algo_event(self, algo: Order, now: int) -> dict[str, Any]:
        return {"e": "ALGO_UPDATE", "T": now, "E": now, "o": {
            "caid": algo.client_id, "aid": algo.algo_id, "at": "CONDITIONAL",
            "o": algo.type, "s": algo.symbol, "S": algo.side, "ps": "BOTH", "f": algo.tif,
            "q": fmt(algo.qty), "X": algo.status,
            "ai": "" if algo.actual_order_id is None else str(algo.actual_order_id),
            "ap": fmt(algo.avg_price), "aq": fmt(algo.executed), "act": "MARKET",
            "tp": fmt(algo.stop_price), "p": "0", "V": "EXPIRE_MAKER",
            "wt": "CONTRACT_PRICE", "pm": "NONE", "cp": algo.close_position, "pP": False,
            "R": algo.reduce_only, "tt": algo.trigger_time, "gtd": 0, "rm": ""}}
