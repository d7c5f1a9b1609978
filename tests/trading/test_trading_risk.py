"""Every risk rule by hand: which intents pass, which are denied, and with which code."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from pydantic import ValidationError

from perptrader.core.errors import PerptraderError
from perptrader.trading.risk import (
    OrderIntent,
    RiskCode,
    RiskConfigError,
    RiskContext,
    RiskLimits,
    RiskManager,
    RiskState,
    TradingState,
)

T0 = pd.Timestamp("2024-05-01 00:00", tz="UTC")
C = RiskCode


def ctx(positions=None, marks=None, *, equity=10_000.0, hwm=None, day_start=None, now=T0,
        leverage=1.0) -> RiskContext:
    return RiskContext(now=now, equity=equity,
                       high_water_mark=equity if hwm is None else hwm,
                       day_start_equity=equity if day_start is None else day_start,
                       positions=positions or {},
                       marks={"BTCUSDT": 100.0, "ETHUSDT": 10.0} if marks is None else marks,
                       leverage=leverage)


def intent(side="buy", qty=10.0, price=100.0, symbol="BTCUSDT", reduce_only=False,
           ts=T0) -> OrderIntent:
    return OrderIntent(symbol, side, qty, price, ts, reduce_only=reduce_only)


def manager(timeframe=None, **limits) -> RiskManager:
    return RiskManager(RiskLimits(**limits), timeframe=timeframe)


def code(rm: RiskManager, i: OrderIntent, c: RiskContext) -> RiskCode:
    decision = rm.check(i, c)
    assert decision.approved == (decision.code is C.APPROVED)
    assert decision.reason
    return decision.code


# ---- defaults: a backtest at leverage <= 3 is never denied --------------------------------
def test_defaults_never_deny_backtest_like_trading() -> None:
    rm = RiskManager()
    assert code(rm, intent(qty=300.0), ctx(leverage=3.0)) is C.APPROVED  # 3x long
    flip = intent("sell", qty=600.0)  # +3x -> -3x at once
    decision = rm.check(flip, ctx({"BTCUSDT": 300.0}, leverage=3.0))
    assert decision.approved and not decision.reducing
    # a two-symbol portfolio at 1.5x each, then the second leg
    assert code(rm, intent(qty=1500.0, symbol="ETHUSDT", price=10.0),
                ctx({"BTCUSDT": 150.0}, leverage=3.0)) is C.APPROVED
    # a reference price 5% from the mark (e.g. last vs mark in a fast market)
    assert code(rm, intent(qty=300.0, price=105.0), ctx(leverage=3.0)) is C.APPROVED
    # deep losses do not stop a default run (loss stops are off until set)
    assert code(rm, intent(qty=30.0), ctx(equity=1_000.0, hwm=10_000.0,
                                          day_start=5_000.0)) is C.APPROVED
    for _ in range(100):
        rm.record_order(T0)
    assert code(rm, intent(), ctx()) is C.APPROVED
    assert rm.trading_state is TradingState.ACTIVE


def test_default_limits_are_real_limits() -> None:
    limits = RiskLimits()
    assert limits.max_leverage == 10.0
    assert limits.max_orders_per_minute == 120
    assert limits.price_band == 0.1
    assert limits.as_pairs() == []


# ---- exposure caps ------------------------------------------------------------------------
def test_max_leverage_post_trade() -> None:
    rm = manager(max_leverage=2.0)
    assert code(rm, intent(qty=200.0), ctx()) is C.APPROVED  # exactly 2x
    assert code(rm, intent(qty=201.0), ctx()) is C.MAX_LEVERAGE
    # the other symbol's position counts at its mark: 500 ETH * 10 = 0.5x
    assert code(rm, intent(qty=151.0), ctx({"ETHUSDT": -500.0})) is C.MAX_LEVERAGE
    assert code(rm, intent(qty=150.0), ctx({"ETHUSDT": -500.0})) is C.APPROVED
    # valued at the intent's reference price, not the mark
    assert code(rm, intent(qty=200.0, price=101.0), ctx()) is C.MAX_LEVERAGE


def test_account_leverage_above_cap() -> None:
    rm = manager(max_leverage=5.0)
    assert code(rm, intent(), ctx(leverage=20.0)) is C.LEVERAGE_SETTING
    decision = rm.check(intent("sell", qty=5.0), ctx({"BTCUSDT": 10.0}, leverage=20.0))
    assert decision.approved and decision.reducing


def test_max_position_notional() -> None:
    rm = manager(max_position_notional=5_000.0)
    assert code(rm, intent(qty=50.0), ctx()) is C.APPROVED
    assert code(rm, intent(qty=51.0), ctx()) is C.MAX_POSITION_NOTIONAL
    assert code(rm, intent(qty=1.0), ctx({"BTCUSDT": 50.0})) is C.MAX_POSITION_NOTIONAL
    assert code(rm, intent("sell", qty=101.0), ctx({"BTCUSDT": 50.0})) is C.MAX_POSITION_NOTIONAL
    assert code(rm, intent("sell", qty=100.0), ctx({"BTCUSDT": 50.0})) is C.APPROVED  # flip
    # the cap is per symbol
    assert code(rm, intent(qty=500.0, symbol="ETHUSDT", price=10.0),
                ctx({"BTCUSDT": 50.0})) is C.APPROVED


def test_max_total_notional_and_marks_of_open_positions() -> None:
    rm = manager(max_total_notional=6_000.0)
    held = {"ETHUSDT": 300.0}  # 3000 at the mark 10
    assert code(rm, intent(qty=30.0), ctx(held)) is C.APPROVED
    assert code(rm, intent(qty=31.0), ctx(held)) is C.MAX_TOTAL_NOTIONAL
    no_mark = ctx(held, marks={"BTCUSDT": 100.0})
    assert code(rm, intent(qty=1.0), no_mark) is C.NO_MARK


def test_no_equity() -> None:
    rm = RiskManager()
    assert code(rm, intent(), ctx(equity=0.0, hwm=1.0)) is C.NO_EQUITY
    assert rm.check(intent("sell", 5.0), ctx({"BTCUSDT": 5.0}, equity=-3.0)).approved


# ---- rate and price ------------------------------------------------------------------------
def test_orders_per_minute_counts_every_order() -> None:
    rm = manager(max_orders_per_minute=3)
    for seconds in (0, 10, 20):
        rm.record_order(T0 + pd.Timedelta(seconds=seconds))
    now = T0 + pd.Timedelta(seconds=30)
    assert code(rm, intent(), ctx(now=now)) is C.RATE_LIMIT
    assert code(rm, intent("sell", 5.0), ctx({"BTCUSDT": 10.0}, now=now)) is C.RATE_LIMIT
    later = T0 + pd.Timedelta(seconds=60)  # the order at T0 is out of (now - 60 s, now]
    assert code(rm, intent(), ctx(now=later)) is C.APPROVED
    assert len(rm.state.order_times) == 3
    rm.record_order(T0 + pd.Timedelta(seconds=200))
    assert len(rm.state.order_times) == 1  # old ones pruned


def test_price_band() -> None:
    rm = manager(price_band=0.05)
    assert code(rm, intent(price=104.9), ctx()) is C.APPROVED
    assert code(rm, intent(price=105.1), ctx()) is C.PRICE_BAND
    assert code(rm, intent(price=94.9), ctx()) is C.PRICE_BAND
    # a fat-fingered reducing order is refused too; without a mark it is let through
    assert code(rm, intent("sell", 5.0, price=80.0), ctx({"BTCUSDT": 10.0})) is C.PRICE_BAND
    no_mark = ctx({"BTCUSDT": 10.0}, marks={})
    assert code(rm, intent("sell", 5.0, price=80.0), no_mark) is C.APPROVED
    assert code(rm, intent(), no_mark) is C.NO_MARK
    assert code(manager(price_band=None), intent(price=150.0), ctx(
        marks={"BTCUSDT": 100.0})) is C.APPROVED


# ---- loss stops ----------------------------------------------------------------------------
def test_daily_loss() -> None:
    rm = manager(max_daily_loss=0.1)
    assert code(rm, intent(), ctx(equity=9_001.0, day_start=10_000.0)) is C.APPROVED
    assert code(rm, intent(), ctx(equity=9_000.0, day_start=10_000.0)) is C.DAILY_LOSS
    assert code(rm, intent("sell", 5.0), ctx({"BTCUSDT": 10.0}, equity=8_000.0,
                                             day_start=10_000.0)) is C.APPROVED
    # a new day (the caller moves day_start_equity) lifts it
    assert code(rm, intent(), ctx(equity=9_000.0, day_start=9_000.0)) is C.APPROVED
    assert rm.trading_state is TradingState.ACTIVE


def test_max_drawdown_latches_until_resume() -> None:
    rm = manager(max_drawdown=0.3)
    assert code(rm, intent(), ctx(equity=7_100.0, hwm=10_000.0)) is C.APPROVED
    deep = ctx({"BTCUSDT": 10.0}, equity=7_000.0, hwm=10_000.0)
    assert code(rm, intent(), deep) is C.MAX_DRAWDOWN
    assert rm.trading_state is TradingState.REDUCING
    assert "max_drawdown" in rm.state.reason
    assert code(rm, intent("sell", 10.0), deep) is C.APPROVED  # flattening passes
    # recovered, but the stop stays until a person resumes
    assert code(rm, intent(), ctx(equity=9_000.0, hwm=10_000.0)) is C.MAX_DRAWDOWN
    rm.resume()
    assert code(rm, intent(), ctx(equity=9_000.0, hwm=10_000.0)) is C.APPROVED
    # still beyond it after resume: latches again
    assert code(rm, intent(), ctx(equity=6_000.0, hwm=10_000.0)) is C.MAX_DRAWDOWN


def test_drawdown_lock_lifts_by_itself() -> None:
    rm = manager(drawdown_lock=0.2)
    assert code(rm, intent(), ctx(equity=8_000.0, hwm=10_000.0)) is C.DRAWDOWN_LOCK
    assert code(rm, intent("sell", 5.0), ctx({"BTCUSDT": 10.0}, equity=8_000.0,
                                             hwm=10_000.0)) is C.APPROVED
    assert code(rm, intent(), ctx(equity=8_100.0, hwm=10_000.0)) is C.APPROVED
    assert rm.trading_state is TradingState.ACTIVE


# ---- protections ---------------------------------------------------------------------------
def test_cooldown_after_exit_as_span() -> None:
    rm = manager(cooldown_after_exit="30m")
    rm.record_exit("BTCUSDT", T0, "signal")
    soon = T0 + pd.Timedelta(minutes=29)
    assert code(rm, intent(), ctx(now=soon)) is C.COOLDOWN
    assert code(rm, intent(symbol="ETHUSDT", price=10.0), ctx(now=soon)) is C.APPROVED
    assert code(rm, intent("sell", 5.0), ctx({"BTCUSDT": 10.0}, now=soon)) is C.APPROVED
    assert code(rm, intent(), ctx(now=T0 + pd.Timedelta(minutes=30))) is C.APPROVED


def test_cooldown_in_bars_needs_the_timeframe() -> None:
    rm = manager(timeframe="15m", cooldown_after_exit=2)
    assert rm.cooldown == pd.Timedelta(minutes=30)
    rm.record_exit("BTCUSDT", T0, "take_profit")
    assert code(rm, intent(), ctx(now=T0 + pd.Timedelta(minutes=15))) is C.COOLDOWN
    assert code(rm, intent(), ctx(now=T0 + pd.Timedelta(minutes=30))) is C.APPROVED
    with pytest.raises(RiskConfigError, match=r"cooldown_after_exit=2.*timeframe"):
        manager(cooldown_after_exit=2)
    assert manager(cooldown_after_exit=0).cooldown == pd.Timedelta(0)


def test_stopout_lock() -> None:
    rm = manager(stopout_lock_count=2, stopout_lock_window="1h", stopout_lock_duration="2h")
    rm.record_exit("BTCUSDT", T0, "stop_loss")
    rm.record_exit("ETHUSDT", T0 + pd.Timedelta(minutes=10), "take_profit")  # not a stop
    assert code(rm, intent(), ctx(now=T0 + pd.Timedelta(minutes=20))) is C.APPROVED
    rm.record_exit("ETHUSDT", T0 + pd.Timedelta(minutes=50), "liquidation")
    locked = T0 + pd.Timedelta(minutes=51)
    assert code(rm, intent(), ctx(now=locked)) is C.STOPOUT_LOCK  # every symbol
    assert code(rm, intent(symbol="ETHUSDT", price=10.0), ctx(now=locked)) is C.STOPOUT_LOCK
    assert code(rm, intent("sell", 1.0), ctx({"BTCUSDT": 3.0}, now=locked)) is C.APPROVED
    end = T0 + pd.Timedelta(minutes=170)
    assert code(rm, intent(), ctx(now=end - pd.Timedelta(seconds=1))) is C.STOPOUT_LOCK
    assert code(rm, intent(), ctx(now=end)) is C.APPROVED
    # resume() keeps the lock unless asked to clear it
    rm.record_exit("BTCUSDT", end, "stop")
    rm.record_exit("BTCUSDT", end, "trailing_stop")
    rm.resume()
    assert code(rm, intent(), ctx(now=end)) is C.STOPOUT_LOCK
    rm.resume(clear_locks=True)
    assert code(rm, intent(), ctx(now=end)) is C.APPROVED


def test_stopouts_outside_the_window_do_not_lock() -> None:
    rm = manager(stopout_lock_count=2, stopout_lock_window="1h", stopout_lock_duration="2h")
    rm.record_exit("BTCUSDT", T0, "stop_loss")
    rm.record_exit("BTCUSDT", T0 + pd.Timedelta(minutes=60), "stop_loss")
    assert code(rm, intent(), ctx(now=T0 + pd.Timedelta(minutes=61))) is C.APPROVED
    assert len(rm.state.protections.stopouts) == 1


# ---- switches and reducing ----------------------------------------------------------------
def test_kill_switch_without_and_with_flatten() -> None:
    rm = RiskManager()
    held = {"BTCUSDT": 10.0}
    rm.kill("operator", ts=T0)
    assert rm.trading_state is TradingState.HALTED and rm.state.since == T0
    assert code(rm, intent(), ctx(held)) is C.HALTED
    assert code(rm, intent("sell", 10.0), ctx(held)) is C.HALTED
    rm.kill("operator", flatten=True)
    decision = rm.check(intent("sell", 10.0), ctx(held))
    assert decision.approved and decision.reducing and "to 0" in decision.reason
    assert code(rm, intent("sell", 11.0), ctx(held)) is C.HALTED  # a flip is not flattening
    assert code(rm, intent(), ctx(held)) is C.HALTED
    with pytest.raises(RiskConfigError):
        rm.reduce_only("x")
    rm.resume()
    assert code(rm, intent(), ctx(held)) is C.APPROVED


def test_reducing_state() -> None:
    rm = RiskManager()
    rm.reduce_only("end of the week")
    held = {"BTCUSDT": -10.0}
    assert code(rm, intent("sell", 1.0), ctx(held)) is C.REDUCING
    assert code(rm, intent("buy", 4.0), ctx(held)) is C.APPROVED
    assert code(rm, intent("buy", 30.0), ctx(held)) is C.REDUCING  # flip
    rm.resume()
    assert code(rm, intent("buy", 30.0), ctx(held)) is C.APPROVED


def test_reduce_only_flag() -> None:
    rm = RiskManager()
    assert code(rm, intent(reduce_only=True), ctx()) is C.REDUCE_ONLY
    assert code(rm, intent("buy", 1.0, reduce_only=True), ctx({"BTCUSDT": 5.0})) is C.REDUCE_ONLY
    # larger than the position: the venue clips it to the position, so it flattens
    rm.kill("stop", flatten=True)
    decision = rm.check(intent("sell", 8.0, reduce_only=True), ctx({"BTCUSDT": 5.0}))
    assert decision.approved and decision.reducing and "to 0" in decision.reason


def test_reducing_is_computed_from_positions_not_the_flag() -> None:
    rm = manager(max_position_notional=100.0)
    rm.kill("stop", flatten=True)
    held = {"BTCUSDT": 50.0}  # 5000, far over the cap after a move
    decision = rm.check(intent("sell", 10.0), ctx(held))
    assert decision.approved and decision.reducing


# ---- state and construction --------------------------------------------------------------
def test_state_round_trip_keeps_decisions() -> None:
    rm = manager(max_orders_per_minute=2, cooldown_after_exit="1h", stopout_lock_count=1)
    rm.record_order(T0)
    rm.record_exit("ETHUSDT", T0, "stop_loss")
    rm.kill("restart test", flatten=True, ts=T0)
    data = json.loads(json.dumps(rm.state.to_dict()))
    restored = RiskState.from_dict(data)
    assert restored == rm.state
    twin = RiskManager(rm.limits, restored)
    checks = [(intent(), ctx()), (intent("sell", 1.0), ctx({"BTCUSDT": 2.0}))]
    for i, c in checks:
        assert twin.check(i, c) == rm.check(i, c)
    for m in (rm, twin):
        m.resume()
    for i, c in [*checks, (intent(symbol="ETHUSDT", price=10.0), ctx())]:
        assert twin.check(i, c) == rm.check(i, c)
    assert RiskState.from_dict({}) == RiskState()


def test_context_and_intent_validation() -> None:
    with pytest.raises(ValueError):
        intent(qty=0.0)
    with pytest.raises(ValueError):
        intent(price=float("nan"))
    with pytest.raises(ValueError):
        intent(side="long")
    with pytest.raises(ValueError):
        RiskContext(now=pd.Timestamp("2024-01-01"), equity=1.0, high_water_mark=1.0,
                    day_start_equity=1.0)
    with pytest.raises(ValueError):
        ctx(equity=float("nan"))
    c = ctx({"BTCUSDT": 1.0}, equity=8.0, hwm=10.0, day_start=16.0)
    assert c.drawdown == pytest.approx(0.2) and c.daily_loss == pytest.approx(0.5)
    with pytest.raises(TypeError):
        c.positions["BTCUSDT"] = 2.0  # read-only


# ---- limits from the command line ---------------------------------------------------------
def test_from_pairs() -> None:
    limits = RiskLimits.from_pairs(["max_leverage=3", "max_daily_loss=0.1",
                                    "cooldown_after_exit=4h", "stopout_lock_count=3",
                                    "price_band=off", "stopout_lock_window=12"])
    assert limits.max_leverage == 3.0 and limits.max_daily_loss == 0.1
    assert limits.cooldown_after_exit == "4h" and limits.stopout_lock_count == 3
    assert limits.price_band is None and limits.stopout_lock_window == 12
    assert RiskLimits.from_pairs(limits.as_pairs()) == limits
    over = RiskLimits.from_pairs(["max_leverage=5"], base=limits)
    assert over.max_leverage == 5.0 and over.max_daily_loss == 0.1
    assert RiskLimits.from_pairs([]) == RiskLimits()


@pytest.mark.parametrize("pairs, match", [
    (["max_levrage=3"], r"unknown risk limit 'max_levrage' \(did you mean 'max_leverage'\?\)"),
    (["colour=red"], "unknown risk limit 'colour'; valid keys: max_leverage, "),
    (["max_leverage"], "expected key=value"),
    (["=3"], "expected key=value"),
    (["max_leverage=0"], "max_leverage=0: must be > 0"),
    (["max_leverage=abc"], "max_leverage=abc: Input should be a valid number"),
    (["max_leverage=inf"], "max_leverage=inf"),
    (["max_leverage=off"], "max_leverage=None: cannot be switched off"),
    (["max_daily_loss=1.5"], r"max_daily_loss=1.5: must be a fraction in \(0, 1\]"),
    (["max_drawdown=0"], "max_drawdown=0: must be a fraction"),
    (["price_band=-0.1"], "price_band=-0.1: must be a fraction"),
    (["max_orders_per_minute=0"], "max_orders_per_minute=0: must be an integer >= 1"),
    (["max_orders_per_minute=1.5"], "max_orders_per_minute=1.5"),
    (["cooldown_after_exit=4 hours"], "cooldown_after_exit=4 hours: a duration is"),
    (["stopout_lock_duration=0h"], "stopout_lock_duration=0h: must be longer than 0"),
    (["max_leverage=3", "max_leverage=4"], "max_leverage given twice"),
])
def test_from_pairs_errors_are_one_line(pairs, match) -> None:
    with pytest.raises(RiskConfigError, match=match) as info:
        RiskLimits.from_pairs(pairs)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, PerptraderError)


def test_limits_are_frozen_and_strict() -> None:
    limits = RiskLimits()
    with pytest.raises(ValidationError):
        limits.max_leverage = 2.0  # type: ignore[misc]
    with pytest.raises(ValidationError):
        RiskLimits(max_levrage=2.0)  # type: ignore[call-arg]
    with pytest.raises(RiskConfigError, match="did you mean"):
        RiskLimits.from_mapping({"max_levrage": 2})
