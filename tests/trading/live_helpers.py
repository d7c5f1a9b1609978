"""Shared pieces of the live-trading fault tests: the fake exchange on synthetic bars, a
``LiveEngine`` on a temporary SQLite journal driven bar by bar (the fake's clock is
frozen and every wait for a bar steps it one hour), and the checks every test ends
with: no duplicate order at the venue, and the journal equal to the venue."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perptrader.persistence import open_trading_db
from perptrader.persistence.db import TradingDB
from perptrader.strategies import get_strategy
from perptrader.strategies.base import AccountView, PolicyBase
from perptrader.trading.breaker import VenueGuard
from perptrader.trading.engine import _Work
from perptrader.trading.live import LiveEngine
from perptrader.trading.livefeed import VenueBarFeed
from perptrader.trading.orders import Order, OrderSide, OrderStatus, OrderType
from perptrader.trading.reconcile import reconcile
from perptrader.trading.spec import RunSpec
from perptrader.trading.userstream import UserStream
from perptrader.trading.venue import VenueTrader
from perptrader.venues.calls import RetryPolicy
from perptrader.venues.ccxt_client import Credentials
from perptrader.venues.fake.runner import FakeExchangeThread
from perptrader.venues.fake.server import FakeConfig
from perptrader.venues.fake.synthetic import synthetic_market

H = 3_600_000
SYMBOL = "BTCUSDT"
KEY, SECRET = "fake-key", "fake-secret"
DATA = synthetic_market(24 * 20)
FIRST_MS = int(DATA.first_bar_ms(SYMBOL))
#: inside the 31st hourly bar: 30 closed bars of history behind it
START_MS = FIRST_MS + 30 * H + 1_000
RANDOM_PARAMS = {"p_entry": "0.6", "p_exit": "0.6"}


@contextmanager
def fake_venue(**config: Any) -> Iterator[FakeExchangeThread]:
    """The fake on a frozen clock at ``START_MS`` (one per test module: reset between)."""
    config.setdefault("stream_interval_s", 0.02)
    with FakeExchangeThread(FakeConfig(clock_start_ms=START_MS, clock_speed=0.0, **config),
                            data=DATA) as fake:
        yield fake


def reset(fake: FakeExchangeThread, *, initial_balance: float = 10_000.0) -> None:
    """Fresh accounts, no faults, no weight used, the clock back at ``START_MS``."""
    fake.venue.config.initial_balance = initial_balance
    fake.admin("POST", "/_fake/reset")
    fake.admin("POST", "/_fake/account/reset")
    fake.admin("POST", "/_fake/account/config", {"partial_fill_parts": 1,
                                                 "slippage_bps": 0.0})
    fake.admin("POST", "/_fake/clock", {"start_ms": START_MS, "speed": 0})
    fake.venue.requests.clear()


class TargetList(PolicyBase):
    """Answers the next target of a list at each bar (then 0): a scripted policy."""

    name = "target_list"

    def __init__(self, targets: Sequence[float], default: float = 0.0) -> None:
        self.script = [float(t) for t in targets]
        self.default = default
        self.calls = 0

    @property
    def params(self) -> dict[str, Any]:
        return {"targets": ",".join(f"{t:g}" for t in self.script)}

    def targets(self, frame: pd.DataFrame) -> np.ndarray:  # pragma: no cover - unused
        return np.zeros(len(frame))

    def decide(self, bars: pd.DataFrame, account: AccountView) -> float:
        n = self.calls
        self.calls += 1
        return self.script[n] if n < len(self.script) else self.default


def spec_for(strategy: str = "random", params: dict[str, str] | None = None,
             risk: Sequence[str] = (), leverage: float = 1.0) -> RunSpec:
    return RunSpec(mode="live", strategy=strategy, symbols=(SYMBOL,), timeframe="1h",
                   params=dict(RANDOM_PARAMS if params is None else params),
                   venue="binanceusdm", risk=tuple(risk), leverage=leverage)


def make_trader(fake: FakeExchangeThread, *, guard: VenueGuard | None = None,
                timeout_ms: int = 1500) -> VenueTrader:
    trader = VenueTrader("binanceusdm", url=fake.url, credentials=Credentials(KEY, SECRET),
                         guard=guard or VenueGuard(fail_max=3, reset_timeout_s=0.3),
                         retry=RetryPolicy(attempts=3, base_s=0.01, max_s=0.05, jitter=0.0),
                         timeout_ms=timeout_ms)
    trader.load([SYMBOL])
    return trader


@dataclass
class Live:
    fake: FakeExchangeThread
    trader: VenueTrader
    engine: LiveEngine
    db: TradingDB
    feed: VenueBarFeed
    stream: UserStream | None
    summaries: list[Any] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return self.engine.run_id

    def run(self, bars: int) -> str:
        """``bars`` more bars (each wait for a bar steps the fake clock one hour)."""
        self.engine.stop_requested.clear()
        return self.engine.run(on_bar=self.summaries.append, max_bars=bars)

    def step(self, hours: int = 1) -> None:
        self.fake.venue.clock.step(hours * H)

    def order_posts(self) -> int:
        """Order requests (POST and GET alike: the endpoint name) the fake has served."""
        return self.fake.venue.requests.count("order")


@contextmanager
def live(fake: FakeExchangeThread, tmp_path: Path, *, policy: Any = None,
         spec: RunSpec | None = None, stream: bool = False, guard: VenueGuard | None = None,
         timeout_ms: int = 1500, history_bars: int = 20) -> Iterator[Live]:
    """A fresh live run against ``fake`` (reset first) on a temporary journal."""
    spec = spec or spec_for()
    policy = policy or get_strategy(spec.strategy, spec.params)
    trader = make_trader(fake, guard=guard, timeout_ms=timeout_ms)
    user = None
    if stream:
        user = UserStream("binanceusdm", url=fake.url, credentials=Credentials(KEY, SECRET),
                          backoff_s=0.02, max_backoff_s=0.1).start()
        wait_for(user.connected.is_set, what="the user stream to connect")
    feed = VenueBarFeed(trader, spec.symbols, spec.timeframe, history_bars=history_bars,
                        poll_s=0.01)
    feed.idle = lambda: fake.venue.clock.step(H)
    try:
        with open_trading_db(f"sqlite:///{tmp_path}/journal.sqlite", tmp_path,
                             create=True) as db:
            engine = LiveEngine.open_live(db, spec, policy, feed, trader, stream=user,
                                          reconcile=reconcile)
            feed.stop = engine.stop_requested
            yield Live(fake, trader, engine, db, feed, user)
    finally:
        if user is not None:
            user.stop()
        trader.close()


def wait_for(predicate: Any, *, timeout: float = 3.0, what: str = "a condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


# ---- orders by hand ------------------------------------------------------------------------
def limit_buy(lv, below: float = 0.999) -> Order:
    """A resting LIMIT buy under the market, sent through the engine's own path."""
    engine = lv.engine
    now = pd.Timestamp.now(tz="UTC")
    market = venue_open(lv.fake)
    price = math.floor(market * below * 10) / 10
    seq = int(engine.state["seq"])
    engine.state["seq"] = seq + 1
    order = Order.create(run_id=lv.run_id, seq=seq, symbol=SYMBOL, side=OrderSide.BUY,
                         type=OrderType.LIMIT, qty=0.03, ts=now, price=price,
                         reason="test limit")
    work = _Work()
    work.new_orders.append({"client_order_id": order.client_order_id, "seq": seq,
                            "symbol": SYMBOL, "decided_ts": pd.Timestamp(
                                engine.state["last_ts"])})
    work.order_events.append((order.to_dict(), "create", now, {}))
    engine._send(SYMBOL, math.nan, order, now, work)
    engine.commit(work)
    assert order.status is OrderStatus.ACCEPTED
    return order


def venue_open(fake) -> float:
    now = fake.venue.clock.now_ms()
    bar = fake.venue.accounts.bar_at(SYMBOL, now)
    return float(bar[1])


# ---- the checks ---------------------------------------------------------------------------
def venue_truth(fake: FakeExchangeThread) -> dict[str, Any]:
    return fake.account(KEY)


def assert_no_duplicates(lv: Live, *, exclude: Sequence[str] = ()) -> dict[str, Any]:
    """No client id twice at the venue, and no decision bar with two venue orders
    (``exclude``: client ids not tied to a bar's decision, e.g. a kill-switch flatten)."""
    truth = venue_truth(lv.fake)
    ids = Counter(o["clientOrderId"] for o in truth["orders"])
    assert all(n == 1 for n in ids.values()), f"duplicate client ids: {ids}"
    journal = {o["client_order_id"]: o for o in lv.db.orders(lv.run_id)}
    unknown = [cid for cid in ids if cid not in journal]
    assert not unknown, f"venue orders the journal does not know: {unknown}"
    decisions = Counter((journal[c]["symbol"], journal[c]["decided_ts"])
                        for c in ids if c not in exclude)
    assert all(n == 1 for n in decisions.values()), f"two orders for one bar: {decisions}"
    return truth


_STATUS = {"NEW": "accepted", "PARTIALLY_FILLED": "partially_filled", "FILLED": "filled",
           "CANCELED": "canceled", "EXPIRED": "expired", "REJECTED": "rejected"}


def assert_journal_matches_venue(lv: Live, *, exclude: Sequence[str] = (),
                                 account: bool = True) -> dict[str, Any]:
    """Every venue order journaled with its status and filled quantity, every venue
    trade stored once as ``binanceusdm:BTCUSDT:<id>``, the journaled position = the
    venue's ``positionAmt`` (stored position row and baseline + fills alike)."""
    truth = assert_no_duplicates(lv, exclude=exclude)
    journal = {o["client_order_id"]: o for o in lv.db.orders(lv.run_id)}
    for vo in truth["orders"]:
        row = journal[vo["clientOrderId"]]
        assert row["status"] == _STATUS[vo["status"]], (vo, dict(row))
        assert float(row["filled_qty"] or 0.0) == _approx(vo["executedQty"]), (vo, dict(row))
    fills = {f["fill_id"]: f for f in lv.db.fills(lv.run_id)}
    trade_ids = {f"binanceusdm:{t['symbol']}:{t['id']}" for t in truth["trades"]}
    assert set(fills) == trade_ids, (sorted(fills), sorted(trade_ids))
    for t in truth["trades"]:
        f = fills[f"binanceusdm:{t['symbol']}:{t['id']}"]
        assert float(f["qty"]) == _approx(t["qty"]) and f["side"] == t["side"].lower()
        assert f["client_order_id"] == t["clientOrderId"]
    venue_pos = float(truth["positions"].get(SYMBOL, {}).get("positionAmt", 0.0))
    state = lv.db.get_state(lv.run_id, "checkpoint")
    baseline = float(((state.value or {}).get("baseline") or {}).get(SYMBOL, 0.0))
    signed = sum((1 if f["side"] == "buy" else -1) * float(f["qty"]) for f in fills.values())
    assert baseline + signed == _approx(venue_pos)
    if not account:  # between bars: the engine's mirror is refreshed at the next bar
        return truth
    assert lv.engine.broker.accounts[SYMBOL].position == _approx(venue_pos)
    for p in lv.db.positions(lv.run_id):
        if p["symbol"] == SYMBOL and lv.summaries:
            assert float(p["qty"]) == _approx(venue_pos)
    return truth


def _approx(x: Any) -> Any:
    import pytest

    return pytest.approx(float(x), abs=1e-9)


def order_events(lv: Live, kind: str | None = None) -> list[Any]:
    rows = lv.db.order_events(lv.run_id)
    return [r for r in rows if kind is None or r["kind"] == kind]


def audit(lv: Live, kind: str) -> list[Any]:
    return [r for r in lv.db.audit_rows(lv.run_id) if r["kind"] == kind]


def finite(x: float) -> bool:
    return isinstance(x, float) and math.isfinite(x)

