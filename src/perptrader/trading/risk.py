"""The pre-trade risk manager: every order intent passes ``RiskManager.check`` before it
becomes an order (after nautilus_trader's RiskEngine and freqtrade's protections).

Two rules shape everything here:

* an intent that only REDUCES |position| (computed from the context's positions, not
  only from its reduce-only flag) always passes the trading stops, locks and cooldowns,
  because a user must always be able to get flat; only the kill switch can block it, and
  ``kill(flatten=True)`` lets flattening through;
* the defaults never deny what a backtest at leverage <= 3 would do, so a paper run
  under the defaults reproduces the backtester exactly. The defaults that are on are the
  ones no strategy needs to break: total exposure <= 10x equity, 120 orders a minute, and
  an order price within 10% of the mark. Loss stops, notional caps and protections are
  off until set (``--risk key=value``).

The manager's memory (kill switch, latched drawdown stop, order times, exits, locks) is
the ``RiskState`` dataclass; the caller persists ``state.to_dict()`` so it survives a
restart.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from perptrader.core.errors import PerptraderError
from perptrader.trading.orders import OrderSide, utc_timestamp
from perptrader.trading.protections import ProtectionState, check_duration, resolve_duration

#: slack on the caps: an intent sized to exactly the cap must not be denied by rounding
CAP_RTOL = 1e-9
RATE_WINDOW = pd.Timedelta(seconds=60)
_NONE_WORDS = frozenset({"none", "off", "null", ""})


class RiskConfigError(PerptraderError, ValueError):
    """A risk limit that cannot be used: names the key and what is wrong, on one line."""


class RiskLimits(BaseModel):
    """The limits and protections; None switches a limit off.

    Fractions are in (0, 1]. ``max_daily_loss``: of the day-start equity;
    ``max_drawdown``: from the high-water mark, a hard stop that latches the manager into
    REDUCING until ``resume()``; ``drawdown_lock``: the same measure as a soft stop that
    lifts by itself once the drawdown is back under it; ``price_band``: how far an order's
    reference price may be from the mark (fat-finger guard).
    Durations (``cooldown_after_exit``, ``stopout_lock_window``, ``stopout_lock_duration``)
    are a bar count (3, "3") resolved with the manager's timeframe, or a span ("30m",
    "4h", "1d"); see ``protections``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    max_leverage: float = 10.0
    max_position_notional: float | None = None
    max_total_notional: float | None = None
    max_daily_loss: float | None = None
    max_drawdown: float | None = None
    max_orders_per_minute: int | None = 120
    price_band: float | None = 0.1
    cooldown_after_exit: int | str = 0
    stopout_lock_count: int | None = None
    stopout_lock_window: int | str = "1d"
    stopout_lock_duration: int | str = "4h"
    drawdown_lock: float | None = None

    @field_validator("max_leverage", "max_position_notional", "max_total_notional")
    @classmethod
    def _positive(cls, value: float | None) -> float | None:
        if value is not None and not value > 0:
            raise ValueError(f"must be > 0, got {value}")
        return value

    @field_validator("max_daily_loss", "max_drawdown", "price_band", "drawdown_lock")
    @classmethod
    def _fraction(cls, value: float | None) -> float | None:
        if value is not None and not 0 < value <= 1:
            raise ValueError(f"must be a fraction in (0, 1], got {value}")
        return value

    @field_validator("max_orders_per_minute", "stopout_lock_count")
    @classmethod
    def _count(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(f"must be an integer >= 1, got {value}")
        return value

    @field_validator("cooldown_after_exit", "stopout_lock_window", "stopout_lock_duration",
                     mode="before")
    @classmethod
    def _duration(cls, value: Any, info: Any) -> int | str:
        checked = check_duration(value)
        if info.field_name != "cooldown_after_exit" and resolve_duration(
                checked, "1m") <= pd.Timedelta(0):
            raise ValueError(f"must be longer than 0, got {value!r}")
        return checked

    # ---- construction from user input ------------------------------------------------------
    @classmethod
    def keys(cls) -> list[str]:
        return list(cls.model_fields)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], base: RiskLimits | None = None
                     ) -> RiskLimits:
        """``base`` (default: the defaults) with ``data`` over it; every problem becomes
        one ``RiskConfigError`` line naming the key."""
        for key in data:
            _check_key(key)
        merged = {**(base.model_dump() if base is not None else {}), **data}
        try:
            return cls.model_validate(merged)
        except ValidationError as exc:
            err = exc.errors()[0]
            key = str(err["loc"][0]) if err["loc"] else "?"
            msg = str(err["msg"]).removeprefix("Value error, ")
            shown = data.get(key, merged.get(key))
            if shown is None:
                msg = "cannot be switched off (none/off); give a value"
            raise RiskConfigError(f"risk limit {key}={shown}: {msg}") from None

    @classmethod
    def from_pairs(cls, pairs: Iterable[str], base: RiskLimits | None = None) -> RiskLimits:
        """Parse CLI ``--risk key=value`` strings; "none"/"off" switches a limit off."""
        data: dict[str, Any] = {}
        for pair in pairs:
            key, sep, raw = pair.partition("=")
            key = key.strip()
            if not sep or not key:
                raise RiskConfigError(f"--risk {pair!r}: expected key=value; valid keys: "
                                      f"{', '.join(cls.keys())}")
            _check_key(key)
            if key in data:
                raise RiskConfigError(f"--risk {key} given twice")
            value = raw.strip()
            data[key] = None if value.lower() in _NONE_WORDS else value
        return cls.from_mapping(data, base)

    def as_pairs(self) -> list[str]:
        """The limits that differ from the defaults, as ``from_pairs`` reads them."""
        default = RiskLimits()
        return [f"{k}={'none' if v is None else v}" for k, v in self.model_dump().items()
                if v != getattr(default, k)]


def _check_key(key: str) -> None:
    keys = RiskLimits.keys()
    if key in keys:
        return
    close = difflib.get_close_matches(key, keys, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise RiskConfigError(f"unknown risk limit '{key}'{hint}; valid keys: {', '.join(keys)}")


class TradingState(StrEnum):
    """As nautilus_trader's risk engine: ACTIVE trades; REDUCING only lets orders through
    that reduce positions; HALTED lets nothing through (or, with ``kill(flatten=True)``,
    only reducing orders)."""

    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"


class RiskCode(StrEnum):
    """Why an intent was approved or denied (stable strings for logs and the database)."""

    APPROVED = "approved"
    HALTED = "halted"
    REDUCING = "reducing"
    REDUCE_ONLY = "reduce_only"  # flagged reduce-only but would not reduce
    RATE_LIMIT = "rate_limit"
    NO_MARK = "no_mark"
    PRICE_BAND = "price_band"
    LEVERAGE_SETTING = "leverage_setting"  # the account's own leverage is above the cap
    NO_EQUITY = "no_equity"
    MAX_DRAWDOWN = "max_drawdown"
    DAILY_LOSS = "daily_loss"
    DRAWDOWN_LOCK = "drawdown_lock"
    STOPOUT_LOCK = "stopout_lock"
    COOLDOWN = "cooldown"
    MAX_POSITION_NOTIONAL = "max_position_notional"
    MAX_TOTAL_NOTIONAL = "max_total_notional"
    MAX_LEVERAGE = "max_leverage"


@dataclass(frozen=True)
class OrderIntent:
    """What a strategy wants to do: trade ``qty`` (> 0) of ``symbol`` on ``side`` at about
    ``reference_price`` (the limit price, or the price a market order is expected near)."""

    symbol: str
    side: OrderSide
    qty: float
    reference_price: float
    ts: pd.Timestamp
    reduce_only: bool = False
    target_exposure: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "side", OrderSide(self.side))
        object.__setattr__(self, "ts", utc_timestamp(self.ts))
        for name in ("qty", "reference_price"):
            value = getattr(self, name)
            number = _valid_price(value) if not isinstance(value, bool | str) else None
            if number is None:
                raise ValueError(f"intent {self.symbol}: {name} must be > 0 and finite, "
                                 f"got {value!r}")
            object.__setattr__(self, name, number)

    @property
    def signed_qty(self) -> float:
        return self.side.sign * self.qty


@dataclass(frozen=True)
class RiskContext:
    """The account as the caller sees it when it checks an intent.

    ``positions``: signed quantity per symbol; ``marks``: mark price per symbol (needed for
    the intent's symbol and every open position); ``leverage``: the account's configured
    leverage (must not exceed ``max_leverage``).
    """

    now: pd.Timestamp
    equity: float
    high_water_mark: float
    day_start_equity: float
    positions: Mapping[str, float] = field(default_factory=dict)
    marks: Mapping[str, float] = field(default_factory=dict)
    leverage: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "now", utc_timestamp(self.now, "now"))
        object.__setattr__(self, "positions", MappingProxyType(dict(self.positions)))
        object.__setattr__(self, "marks", MappingProxyType(dict(self.marks)))
        for name in ("equity", "high_water_mark", "day_start_equity", "leverage"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"risk context: {name} must be finite")

    @property
    def drawdown(self) -> float:
        """Fraction below the high-water mark (0 when there is none)."""
        hwm = self.high_water_mark
        return max(hwm - self.equity, 0.0) / hwm if hwm > 0 else 0.0

    @property
    def daily_loss(self) -> float:
        """Fraction lost since the day started (0 when it gained)."""
        start = self.day_start_equity
        return max(start - self.equity, 0.0) / start if start > 0 else 0.0


@dataclass(frozen=True)
class RiskDecision:
    """The answer to one intent; ``code`` is a ``RiskCode`` (a str), ``reason`` one line
    for logs and the order's ``status_reason`` when it is denied."""

    approved: bool
    reason: str
    code: RiskCode
    reducing: bool = False  # the intent only reduces |position|


@dataclass
class RiskState:
    """Everything the manager remembers; persist ``to_dict()`` to survive a restart."""

    trading_state: TradingState = TradingState.ACTIVE
    reason: str = ""
    #: the code entries are denied with while not ACTIVE ("halted", "reducing" or
    #: "max_drawdown" for the latched drawdown stop); "" while ACTIVE
    code: str = ""
    flatten_allowed: bool = False
    since: pd.Timestamp | None = None
    order_times: list[pd.Timestamp] = field(default_factory=list)
    protections: ProtectionState = field(default_factory=ProtectionState)

    def to_dict(self) -> dict[str, Any]:
        return {
            "trading_state": self.trading_state.value,
            "reason": self.reason,
            "code": self.code,
            "flatten_allowed": self.flatten_allowed,
            "since": None if self.since is None else self.since.isoformat(),
            "order_times": [t.isoformat() for t in self.order_times],
            "protections": self.protections.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RiskState:
        since = data.get("since")
        return cls(
            trading_state=TradingState(data.get("trading_state", "active")),
            reason=str(data.get("reason", "")),
            code=str(data.get("code", "")),
            flatten_allowed=bool(data.get("flatten_allowed", False)),
            since=None if since is None else utc_timestamp(since),
            order_times=[utc_timestamp(t) for t in data.get("order_times", [])],
            protections=ProtectionState.from_dict(data.get("protections", {})),
        )


def _deny(code: RiskCode, reason: str) -> RiskDecision:
    return RiskDecision(False, reason, code)


class RiskManager:
    """Checks intents against ``limits`` and remembers what it needs in ``state``.

    ``check`` does not count the intent as sent: call ``record_order(ts)`` when an order is
    actually submitted (the rate limit counts submissions), and ``record_exit`` when a
    position is closed (cooldown, stop-out lock). ``timeframe`` resolves durations given
    as bar counts.
    """

    def __init__(self, limits: RiskLimits | None = None, state: RiskState | None = None,
                 *, timeframe: str | None = None) -> None:
        self.limits = limits if limits is not None else RiskLimits()
        self.state = state if state is not None else RiskState()
        self.timeframe = timeframe
        spans = {}
        for key in ("cooldown_after_exit", "stopout_lock_window", "stopout_lock_duration"):
            value = getattr(self.limits, key)
            try:
                spans[key] = resolve_duration(value, timeframe)
            except ValueError as exc:
                raise RiskConfigError(f"risk limit {key}={value}: {exc}") from None
        self.cooldown = spans["cooldown_after_exit"]
        self.lock_window = spans["stopout_lock_window"]
        self.lock_duration = spans["stopout_lock_duration"]

    @property
    def trading_state(self) -> TradingState:
        return self.state.trading_state

    # ---- the check -----------------------------------------------------------------------
    def check(self, intent: OrderIntent, ctx: RiskContext) -> RiskDecision:
        """Approve or deny ``intent``. Only side effect: a drawdown beyond ``max_drawdown``
        latches the state into REDUCING (a hard stop that waits for ``resume()``)."""
        lim = self.limits
        self._latch_drawdown(ctx)
        pre = float(ctx.positions.get(intent.symbol, 0.0))
        post, reducing = _after(pre, intent)
        if intent.reduce_only and not reducing:
            return _deny(RiskCode.REDUCE_ONLY, f"reduce-only {intent.side.value} "
                         f"{intent.qty:g} {intent.symbol} would not reduce position {pre:g}")
        if lim.max_orders_per_minute is not None:
            start = ctx.now - RATE_WINDOW
            sent = sum(1 for t in self.state.order_times if t > start)
            if sent >= lim.max_orders_per_minute:
                return _deny(RiskCode.RATE_LIMIT, f"{sent} orders in the last minute "
                             f"(max_orders_per_minute={lim.max_orders_per_minute})")
        mark = _valid_price(ctx.marks.get(intent.symbol))
        if mark is None and not reducing:
            return _deny(RiskCode.NO_MARK, f"no mark price for {intent.symbol}")
        if mark is not None and lim.price_band is not None:
            off = abs(intent.reference_price / mark - 1.0)
            if off > lim.price_band:
                return _deny(RiskCode.PRICE_BAND, f"{intent.symbol} price "
                             f"{intent.reference_price:g} is {off:.2%} from the mark {mark:g} "
                             f"(price_band={lim.price_band:g})")
        if reducing:
            return self._check_reducing(intent, pre, post)
        return self._check_entry(intent, ctx, post)

    def _latch_drawdown(self, ctx: RiskContext) -> None:
        cap = self.limits.max_drawdown
        if (cap is not None and self.state.trading_state is TradingState.ACTIVE
                and ctx.drawdown >= cap):
            self._set(TradingState.REDUCING, f"drawdown {ctx.drawdown:.2%} >= max_drawdown "
                      f"{cap:.2%} of the high-water mark; resume() to trade again",
                      ctx.now, code=RiskCode.MAX_DRAWDOWN)

    def _check_reducing(self, intent: OrderIntent, pre: float, post: float) -> RiskDecision:
        st = self.state
        if st.trading_state is TradingState.HALTED and not st.flatten_allowed:
            return _deny(RiskCode.HALTED, f"kill switch on ({st.reason}); flattening not "
                         f"allowed")
        return RiskDecision(True, f"reduces {intent.symbol} from {pre:g} to {post:g}",
                            RiskCode.APPROVED, reducing=True)

    def _check_entry(self, intent: OrderIntent, ctx: RiskContext, post: float
                     ) -> RiskDecision:
        lim, st = self.limits, self.state
        if st.trading_state is TradingState.HALTED:
            return _deny(RiskCode.HALTED, f"kill switch on: {st.reason}")
        if st.trading_state is TradingState.REDUCING:
            code = RiskCode(st.code) if st.code else RiskCode.REDUCING
            return _deny(code, f"reducing only: {st.reason}")
        if ctx.leverage > lim.max_leverage * (1 + CAP_RTOL):
            return _deny(RiskCode.LEVERAGE_SETTING, f"account leverage {ctx.leverage:g} "
                         f"> max_leverage {lim.max_leverage:g}")
        if not ctx.equity > 0:
            return _deny(RiskCode.NO_EQUITY, f"equity {ctx.equity:g} <= 0")
        if lim.max_daily_loss is not None and ctx.daily_loss >= lim.max_daily_loss:
            return _deny(RiskCode.DAILY_LOSS, f"lost {ctx.daily_loss:.2%} today "
                         f"(max_daily_loss={lim.max_daily_loss:g})")
        if lim.drawdown_lock is not None and ctx.drawdown >= lim.drawdown_lock:
            return _deny(RiskCode.DRAWDOWN_LOCK, f"drawdown {ctx.drawdown:.2%} "
                         f"(drawdown_lock={lim.drawdown_lock:g})")
        blocked = st.protections.block(intent.symbol, ctx.now, self.cooldown)
        if blocked is not None:
            return _deny(RiskCode(blocked[0]), blocked[1])
        return self._check_exposure(intent, ctx, post)

    def _check_exposure(self, intent: OrderIntent, ctx: RiskContext, post: float
                        ) -> RiskDecision:
        """The post-trade guarantee: the position after this intent, valued at its
        reference price (other symbols at their marks), stays within every cap."""
        lim = self.limits
        own = abs(post) * intent.reference_price
        total = own
        for symbol, qty in ctx.positions.items():
            if symbol == intent.symbol or qty == 0:
                continue
            mark = _valid_price(ctx.marks.get(symbol))
            if mark is None:
                return _deny(RiskCode.NO_MARK, f"no mark price for open position {symbol}")
            total += abs(qty) * mark
        cap = lim.max_position_notional
        if cap is not None and own > cap * (1 + CAP_RTOL):
            return _deny(RiskCode.MAX_POSITION_NOTIONAL, f"{intent.symbol} notional "
                         f"{own:,.2f} > max_position_notional {cap:,.2f}")
        cap = lim.max_total_notional
        if cap is not None and total > cap * (1 + CAP_RTOL):
            return _deny(RiskCode.MAX_TOTAL_NOTIONAL, f"total notional {total:,.2f} > "
                         f"max_total_notional {cap:,.2f}")
        leverage = total / ctx.equity
        if leverage > lim.max_leverage * (1 + CAP_RTOL):
            return _deny(RiskCode.MAX_LEVERAGE, f"exposure {leverage:.3g}x equity > "
                         f"max_leverage {lim.max_leverage:g}")
        return RiskDecision(True, f"{intent.symbol} position {post:g} "
                            f"({leverage:.3g}x total exposure)", RiskCode.APPROVED)

    # ---- what happened -------------------------------------------------------------------
    def record_order(self, ts: Any) -> None:
        """An order was submitted at ``ts`` (feeds ``max_orders_per_minute``)."""
        ts = utc_timestamp(ts)
        self.state.order_times.append(ts)
        latest = max(self.state.order_times)
        self.state.order_times = sorted(t for t in self.state.order_times
                                        if t > latest - RATE_WINDOW)

    def record_exit(self, symbol: str, ts: Any, reason: str) -> None:
        """A position in ``symbol`` was closed at ``ts`` because of ``reason`` ("signal",
        "stop_loss", "take_profit", "trailing_stop", "liquidation", "stop", ...)."""
        self.state.protections.record_exit(
            symbol, ts, reason, lock_count=self.limits.stopout_lock_count,
            window=self.lock_window, duration=self.lock_duration)

    # ---- switches ------------------------------------------------------------------------
    def kill(self, reason: str, flatten: bool = False, ts: Any = None) -> None:
        """The kill switch: HALTED. With ``flatten`` reducing orders still pass (to get
        flat); without it nothing does."""
        self._set(TradingState.HALTED, reason, ts, flatten=flatten, code=RiskCode.HALTED)

    def reduce_only(self, reason: str, ts: Any = None) -> None:
        """REDUCING: only intents that reduce |position| pass."""
        if self.state.trading_state is TradingState.HALTED:
            raise RiskConfigError("the kill switch is on; resume() before reduce_only()")
        self._set(TradingState.REDUCING, reason, ts, code=RiskCode.REDUCING)

    def resume(self, *, clear_locks: bool = False, ts: Any = None) -> None:
        """Back to ACTIVE (the kill switch and a latched drawdown stop are lifted).
        Cooldowns and, unless ``clear_locks``, the stop-out lock stay."""
        self._set(TradingState.ACTIVE, "", ts)
        if clear_locks:
            self.state.protections.clear_locks()

    def _set(self, trading_state: TradingState, reason: str, ts: Any, *,
             flatten: bool = False, code: str = "") -> None:
        self.state.trading_state = trading_state
        self.state.reason = reason
        self.state.code = code
        self.state.flatten_allowed = flatten
        self.state.since = None if ts is None else utc_timestamp(ts)


def _valid_price(value: Any) -> float | None:
    try:
        price = float(value)
    except (TypeError, ValueError):
        return None
    return price if math.isfinite(price) and price > 0 else None


def _after(pre: float, intent: OrderIntent) -> tuple[float, bool]:
    """(position after the intent, whether it only reduces |position|).

    A reduce-only intent larger than the position is clipped to it, as the venues do. A
    flip (through zero to the other side) is not reducing: it opens new exposure.
    """
    delta = intent.signed_qty
    if pre == 0 or (pre > 0) == (delta > 0):
        return pre + delta, False
    size = abs(pre)
    if intent.qty <= size * (1 + CAP_RTOL) or intent.reduce_only:
        closed = min(intent.qty, size)
        post = pre - math.copysign(closed, pre)
        return (0.0 if abs(post) <= size * CAP_RTOL else post), True
    return pre + delta, False
