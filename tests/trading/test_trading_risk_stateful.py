"""The risk manager under random intents, prices, equity paths, exits and switches.

Besides the manager, the machine keeps its own model of what must be true (kill switch,
latched drawdown stop, cooldowns, stop-out locks) and checks every approval against it. A
twin manager restored from ``state.to_dict()`` mid-sequence must decide identically.
"""

from __future__ import annotations

import json
import math

import pandas as pd
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from perptrader.trading.protections import STOPOUT_REASONS, resolve_duration
from perptrader.trading.risk import (
    CAP_RTOL,
    OrderIntent,
    RiskCode,
    RiskContext,
    RiskLimits,
    RiskManager,
    RiskState,
    TradingState,
)

T0 = pd.Timestamp("2024-06-01", tz="UTC")
TIMEFRAME = "15m"
SYMBOLS = ("BTCUSDT", "ETHUSDT")
MINUTE = pd.Timedelta(seconds=60)
PRICE_DEVIATIONS = st.sampled_from([0.0, 0.0, 0.01, -0.03, 0.06])

limits_strategy = st.builds(
    RiskLimits,
    max_leverage=st.sampled_from([1.0, 2.0, 5.0]),
    max_position_notional=st.sampled_from([None, 5_000.0, 15_000.0]),
    max_total_notional=st.sampled_from([None, 8_000.0, 25_000.0]),
    max_daily_loss=st.sampled_from([None, 0.1, 0.3]),
    max_drawdown=st.sampled_from([None, 0.25, 0.5]),
    max_orders_per_minute=st.sampled_from([None, 1, 3, 10]),
    price_band=st.sampled_from([None, 0.02, 0.05]),
    cooldown_after_exit=st.sampled_from([0, "10m", 2]),
    stopout_lock_count=st.sampled_from([None, 1, 2]),
    stopout_lock_window=st.sampled_from(["1h", 4]),
    stopout_lock_duration=st.sampled_from(["30m", "2h", 1]),
    drawdown_lock=st.sampled_from([None, 0.15, 0.4]),
)


class RiskMachine(RuleBasedStateMachine):
    @initialize(limits=limits_strategy, btc=st.sampled_from([0.0, 20.0, -20.0, 60.0]),
                eth=st.sampled_from([0.0, 300.0, -300.0]))
    def setup(self, limits: RiskLimits, btc: float, eth: float) -> None:
        """Fresh limits and an account that may already hold positions (a restart)."""
        self.limits = limits
        self.rm = RiskManager(limits, timeframe=TIMEFRAME)
        self.twin: RiskManager | None = None
        self.now = T0
        self.equity = self.hwm = self.day_start = 10_000.0
        self.positions = {"BTCUSDT": btc, "ETHUSDT": eth}
        self.marks = {"BTCUSDT": 100.0, "ETHUSDT": 10.0}
        self.approvals: list[pd.Timestamp] = []
        # the model
        self.mode = TradingState.ACTIVE
        self.flatten = False
        self.cooldown = resolve_duration(limits.cooldown_after_exit, TIMEFRAME)
        self.window = resolve_duration(limits.stopout_lock_window, TIMEFRAME)
        self.lock_for = resolve_duration(limits.stopout_lock_duration, TIMEFRAME)
        self.last_exit: dict[str, pd.Timestamp] = {}
        self.stopouts: list[pd.Timestamp] = []
        self.locked_until: pd.Timestamp | None = None

    def managers(self) -> list[RiskManager]:
        return [self.rm] if self.twin is None else [self.rm, self.twin]

    def ctx(self) -> RiskContext:
        return RiskContext(now=self.now, equity=self.equity, high_water_mark=self.hwm,
                           day_start_equity=self.day_start, positions=self.positions,
                           marks=self.marks, leverage=1.0)

    # ---- the world moves ---------------------------------------------------------------
    @rule(seconds=st.sampled_from([0, 1, 15, 30, 59, 60, 61, 600, 1800, 3600, 7200]))
    def advance(self, seconds: int) -> None:
        self.now += pd.Timedelta(seconds=seconds)

    @rule(symbol=st.sampled_from(SYMBOLS), mark=st.floats(0.9, 1.1),
          equity=st.floats(0.6, 1.3), new_day=st.booleans())
    def move(self, symbol: str, mark: float, equity: float, new_day: bool) -> None:
        """Prices and equity move (independently: the manager is told, not computing)."""
        self.marks[symbol] *= mark
        self.equity *= equity
        self.hwm = max(self.hwm, self.equity)
        if new_day:
            self.day_start = self.equity

    # ---- the strategy trades -------------------------------------------------------------
    @rule(symbol=st.sampled_from(SYMBOLS), side=st.sampled_from(["buy", "sell"]),
          size=st.one_of(st.sampled_from(["flip", "half"]), st.floats(0.01, 4.0)),
          deviation=PRICE_DEVIATIONS, reduce_only=st.sampled_from([False, False, True]))
    def trade(self, symbol: str, side: str, size: float | str, deviation: float,
              reduce_only: bool) -> None:
        pre = self.positions[symbol]
        mark = self.marks[symbol]
        if isinstance(size, str):
            factor = {"flip": 2.0, "half": 0.5}[size]
            qty = abs(pre) * factor or 0.1 * self.equity / mark
        else:
            qty = size * self.equity / mark  # size = exposure in equity multiples
        self._submit(symbol, side, qty, deviation, reduce_only)

    #: trading is what is under test: give it twice the weight of the other rules
    trade_again = trade

    @rule(symbol=st.sampled_from(SYMBOLS), fraction=st.sampled_from([0.3, 1.0, 1.5]),
          deviation=PRICE_DEVIATIONS, reduce_only=st.booleans())
    def reduce(self, symbol: str, fraction: float, deviation: float,
               reduce_only: bool) -> None:
        """Trade against the position (a partial close, a close, or more than it)."""
        pre = self.positions[symbol]
        if pre != 0:
            self._submit(symbol, "sell" if pre > 0 else "buy", abs(pre) * fraction,
                         deviation, reduce_only)

    reduce_again = reduce

    def _submit(self, symbol: str, side: str, qty: float, deviation: float,
                reduce_only: bool) -> None:
        pre = self.positions[symbol]
        mark = self.marks[symbol]
        price = mark * (1 + deviation)
        intent = OrderIntent(symbol, side, qty, price, self.now, reduce_only=reduce_only)
        if (self.mode is TradingState.ACTIVE and self.limits.max_drawdown is not None
                and self.hwm > 0 and (self.hwm - self.equity) / self.hwm
                >= self.limits.max_drawdown):
            self.mode = TradingState.REDUCING  # the latched hard stop
        decisions = [m.check(intent, self.ctx()) for m in self.managers()]
        decision = decisions[0]
        assert all(d == decision for d in decisions)
        assert self.rm.trading_state is self.mode
        if not decision.approved:
            assert decision.code is not RiskCode.APPROVED
            return
        assert self._rate_ok()
        band = self.limits.price_band
        if band is not None:
            assert abs(price / mark - 1) <= band
        delta = intent.signed_qty
        if decision.reducing:
            assert pre != 0 and (pre > 0) != (delta > 0)
            assert reduce_only or qty <= abs(pre) * (1 + CAP_RTOL)
            if self.mode is TradingState.HALTED:
                assert self.flatten
            closed = min(qty, abs(pre))
            post = pre - math.copysign(closed, pre)
            if abs(post) <= abs(pre) * CAP_RTOL:
                post = 0.0
            assert abs(post) < abs(pre) and post * pre >= 0
        else:
            assert not reduce_only
            post = pre + delta
            self._assert_entry_allowed(symbol, post, price)
        self.positions[symbol] = post
        self.approvals.append(self.now)
        for m in self.managers():
            m.record_order(self.now)

    def _rate_ok(self) -> bool:
        cap = self.limits.max_orders_per_minute
        recent = [t for t in self.approvals if t > self.now - MINUTE]
        return cap is None or len(recent) + 1 <= cap

    def _assert_entry_allowed(self, symbol: str, post: float, price: float) -> None:
        lim = self.limits
        assert self.mode is TradingState.ACTIVE
        assert self.equity > 0
        if lim.max_daily_loss is not None:
            assert (self.day_start - self.equity) / self.day_start < lim.max_daily_loss
        if lim.drawdown_lock is not None:
            assert (self.hwm - self.equity) / self.hwm < lim.drawdown_lock
        assert self.locked_until is None or self.now >= self.locked_until
        last = self.last_exit.get(symbol)
        assert last is None or self.now >= last + self.cooldown
        own = abs(post) * price
        total = own + sum(abs(q) * self.marks[s] for s, q in self.positions.items()
                          if s != symbol)
        slack = 1 + CAP_RTOL
        if lim.max_position_notional is not None:
            assert own <= lim.max_position_notional * slack
        if lim.max_total_notional is not None:
            assert total <= lim.max_total_notional * slack
        assert total <= lim.max_leverage * self.equity * slack

    @rule(symbol=st.sampled_from(SYMBOLS),
          reason=st.sampled_from(["signal", "take_profit", "stop_loss", "trailing_stop",
                                  "liquidation", "stop"]))
    def exit(self, symbol: str, reason: str) -> None:
        self.positions[symbol] = 0.0
        for m in self.managers():
            m.record_exit(symbol, self.now, reason)
        self.last_exit[symbol] = self.now
        if reason in STOPOUT_REASONS:
            self.stopouts.append(self.now)
            count = self.limits.stopout_lock_count
            recent = [t for t in self.stopouts if self.now - self.window < t <= self.now]
            if count is not None and len(recent) >= count:
                until = self.now + self.lock_for
                if self.locked_until is None or until > self.locked_until:
                    self.locked_until = until

    # ---- the operator --------------------------------------------------------------------
    @rule(action=st.sampled_from(["kill", "kill_flatten", "reduce_only", "resume",
                                  "resume_clear"]))
    def switch(self, action: str) -> None:
        if action.startswith("kill"):
            flatten = action == "kill_flatten"
            for m in self.managers():
                m.kill("test", flatten=flatten, ts=self.now)
            self.mode, self.flatten = TradingState.HALTED, flatten
        elif action == "reduce_only":
            if self.mode is TradingState.HALTED:
                return
            for m in self.managers():
                m.reduce_only("test")
            self.mode = TradingState.REDUCING
        else:
            clear = action == "resume_clear"
            for m in self.managers():
                m.resume(clear_locks=clear)
            self.mode, self.flatten = TradingState.ACTIVE, False
            if clear:
                self.locked_until, self.stopouts = None, []

    @rule()
    def restart(self) -> None:
        """A restart: the state goes through JSON and a fresh manager continues with it."""
        data = json.loads(json.dumps(self.rm.state.to_dict()))
        state = RiskState.from_dict(data)
        assert state == self.rm.state
        self.twin = RiskManager(self.limits, state, timeframe=TIMEFRAME)

    @invariant()
    def rate_never_exceeded(self) -> None:
        cap = self.limits.max_orders_per_minute
        if cap is None or not hasattr(self, "approvals"):
            return
        for t in self.approvals:
            assert sum(1 for u in self.approvals if t - MINUTE < u <= t) <= cap


TestRiskMachine = RiskMachine.TestCase
TestRiskMachine.settings = settings(max_examples=400, stateful_step_count=50, deadline=None,
                                    suppress_health_check=[HealthCheck.too_slow])
