"""The crash drill: live trading against the fake exchange, killed with SIGKILL over and
over at the moments that lose or double orders, restarted each time, then checked
against the exchange.

Each child process is one ``trade live`` run of the same spec (same run id, same
journal) that dies at a chosen point:

* ``before_send``: the intent is committed, the request not sent;
* ``after_send``: the venue has (and may have filled) the order, the answer is not stored;
* ``after_fill``: fills are applied in memory, not committed;
* ``reconcile``: in the middle of the startup reconciliation;
* ``random``: an external ``kill -9`` after a random delay, wherever the process is;
* none: the child ends by itself after a few bars.

Children fork from a ``forkserver`` that imported everything once, so a restart costs
milliseconds instead of a Python start-up, and hundreds of lifecycles fit in a test.
The fake exchange lives in this process, so its orders and trades outlast every child.

The verdict (``DrillReport``): orders at the venue per client id and per decision (0
duplicates), venue trades missing from the journal (0 lost fills), and positions and
wallet equal between the journal and the venue after a final clean reconciliation.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import random
import signal
import sqlite3
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from perptrader.trading.crashpoints import POINTS

KILL_POINTS = (*POINTS, "random")
KEY, SECRET = "fake-key", "fake-secret"
_PRELOAD = ["perptrader.trading.drill", "perptrader.trading.live",
            "perptrader.trading.livefeed", "perptrader.trading.reconcile",
            "perptrader.trading.userstream", "perptrader.persistence", "ccxt",
            "perptrader.strategies", "perptrader.trading.drill_warmup"]


@dataclass
class DrillReport:
    lifecycles: int = 0  # orders the venue received
    restarts: int = 0
    kills: dict[str, int] = field(default_factory=dict)
    clean_exits: int = 0
    venue_orders: int = 0
    venue_trades: int = 0
    journal_orders: int = 0
    journal_fills: int = 0
    duplicate_client_ids: int = 0
    duplicate_decisions: int = 0
    orders_unknown_to_journal: int = 0
    lost_fills: int = 0
    position_venue: float = 0.0
    position_journal: float = 0.0  # the run's starting position + its journaled fills
    position_table: float = 0.0  # the journal's positions row
    wallet_venue: float = 0.0
    wallet_journal: float = 0.0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (self.duplicate_client_ids == 0 and self.duplicate_decisions == 0
                and self.orders_unknown_to_journal == 0 and self.lost_fills == 0
                and abs(self.position_venue - self.position_journal) < 1e-9
                and abs(self.position_venue - self.position_table) < 1e-9
                and abs(self.wallet_venue - self.wallet_journal) < 1e-6)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def lines(self) -> list[str]:
        kills = ", ".join(f"{k} {v}" for k, v in sorted(self.kills.items())) or "none"
        return [
            f"lifecycles (orders at the venue): {self.lifecycles}",
            f"restarts: {self.restarts} (kill -9: {kills}; clean exits {self.clean_exits})",
            f"duplicate orders: {self.duplicate_client_ids} by client id, "
            f"{self.duplicate_decisions} by decision; venue orders unknown to the journal: "
            f"{self.orders_unknown_to_journal}",
            f"lost fills: {self.lost_fills} of {self.venue_trades} venue trades "
            f"({self.journal_fills} in the journal)",
            f"position: venue {self.position_venue:g}, journal fills "
            f"{self.position_journal:g}, positions row {self.position_table:g}; "
            f"wallet: venue {self.wallet_venue:.6f}, journal {self.wallet_journal:.6f}",
            f"verdict: {'PASS' if self.ok else 'FAIL'} in {self.seconds:.0f} s"]


@dataclass(frozen=True)
class ChildArgs:
    url: str
    db_url: str
    data_dir: str
    plan: str
    max_bars: int
    user_stream: bool


def _spec() -> Any:
    from perptrader.trading.spec import RunSpec

    return RunSpec(mode="live", strategy="random", symbols=("BTCUSDT",), timeframe="1h",
                   params={"p_entry": "0.6", "p_exit": "0.6"}, venue="binanceusdm")


def run_child(args: ChildArgs) -> None:
    """One life of the live run (in a forked child): open, reconcile, trade, maybe die."""
    from perptrader.persistence import open_trading_db
    from perptrader.strategies import get_strategy
    from perptrader.trading import crashpoints
    from perptrader.trading.breaker import VenueGuard
    from perptrader.trading.live import LiveEngine
    from perptrader.trading.livefeed import VenueBarFeed
    from perptrader.trading.reconcile import reconcile
    from perptrader.trading.userstream import UserStream
    from perptrader.trading.venue import VenueTrader
    from perptrader.venues.calls import RetryPolicy
    from perptrader.venues.ccxt_client import Credentials

    crashpoints.arm(args.plan)
    trace = _child_trace()
    trace("start")
    spec = _spec()
    credentials = Credentials(KEY, SECRET)
    trader = VenueTrader("binanceusdm", url=args.url, credentials=credentials,
                         guard=VenueGuard(fail_max=50, reset_timeout_s=0.5),
                         retry=RetryPolicy(attempts=6, base_s=0.05, max_s=0.5),
                         timeout_ms=5000)
    trader.load(spec.symbols)
    trace("markets")
    stream = UserStream("binanceusdm", url=args.url, credentials=credentials,
                        backoff_s=0.05).start() if args.user_stream else None
    feed = VenueBarFeed(trader, spec.symbols, spec.timeframe, history_bars=20, poll_s=0.02)
    try:
        with open_trading_db(args.db_url, Path(args.data_dir), create=True) as db:
            trace("db")
            engine = LiveEngine.open_live(db, spec, get_strategy("random", spec.params), feed,
                                          trader, stream=stream, reconcile=reconcile)
            trace("reconciled")
            feed.idle, feed.stop = engine.poll, engine.stop_requested
            engine.run(max_bars=args.max_bars)
            trace("ran")
    finally:
        if stream is not None:
            stream.stop()
        trader.close()


def _kill(child: Any) -> None:
    """SIGKILL, unless the child has just ended by itself."""
    with contextlib.suppress(ProcessLookupError):
        if child.is_alive():
            os.kill(child.pid or 0, signal.SIGKILL)


def _child_trace() -> Any:
    """PERPTRADER_DRILL_TRACE=1: each child prints its phases with times (stderr)."""
    if not os.environ.get("PERPTRADER_DRILL_TRACE"):
        return lambda what: None
    t0 = time.monotonic()
    return lambda what: print(f"  child {os.getpid()} {what} {time.monotonic() - t0:.2f} s",
                              file=sys.stderr, flush=True)


def run_drill(lifecycles: int = 200, *, data: Any = None, workdir: Path, seed: int = 0,
              user_stream: bool = True,
              progress: Any = None, max_seconds: float = 1800.0,
              trace: Any = None) -> DrillReport:
    """Kill and restart the live run until the venue has seen ``lifecycles`` orders,
    then check everything. ``data``: the fake's MarketData (default: synthetic)."""
    from perptrader.venues.fake.runner import FakeExchangeThread
    from perptrader.venues.fake.server import FakeConfig
    from perptrader.venues.fake.synthetic import START, synthetic_market

    if data is None:
        data = synthetic_market(24 * 400)
    rng = random.Random(seed)
    workdir.mkdir(parents=True, exist_ok=True)
    db_path = workdir / "drill.sqlite"
    for leftover in workdir.glob("drill.sqlite*"):
        leftover.unlink()
    db_url = f"sqlite:///{db_path}"
    first = data.first_bar_ms("BTCUSDT") or int(START.value // 1_000_000)
    # hundreds of lives a minute would pass the venue's request-weight limit (2,400 a
    # minute) and spend the drill waiting out 429s: rate limits have their own tests
    config = FakeConfig(clock_start_ms=first + 30 * 3_600_000 + 1_000, clock_speed=0.0,
                        seed=seed, weight_limit=1_000_000, order_limit_10s=100_000,
                        order_limit_1m=100_000)
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    report = DrillReport()
    kills: Counter[str] = Counter()
    started = time.monotonic()
    with FakeExchangeThread(config, data=data) as fake:
        clock = _Metronome(fake, db_path, _spec().run_id)
        while True:
            orders = len(fake.account(KEY)["orders"])
            if orders >= lifecycles or time.monotonic() - started > max_seconds:
                break
            point = rng.choice((*KILL_POINTS, "none"))
            # reconciliation runs once per life: its point can only be the first pass
            count = 1 if point == "reconcile" else rng.randint(1, 2)
            plan = "" if point in ("random", "none") else f"{point}:{count}"
            args = ChildArgs(fake.url, db_url, str(workdir), plan,
                             max_bars=rng.randint(2, 6) if point in ("none", "random")
                             else 20, user_stream=user_stream)
            child = ctx.Process(target=run_child, args=(args,), daemon=True)
            life_start = time.monotonic()
            child.start()
            kill_at = time.monotonic() + rng.uniform(0.05, 0.7) if point == "random" else None
            deadline = time.monotonic() + 120
            while child.is_alive():
                clock.tick()
                child.join(0.01)
                if kill_at is not None and time.monotonic() >= kill_at:
                    _kill(child)
                if time.monotonic() > deadline:  # a hung child is a failure of its own
                    _kill(child)
                    child.join()
                    raise RuntimeError("a drill child hung for 120 s")
            report.restarts += 1
            if trace is not None:
                trace(f"life {report.restarts}: {plan or point} exit {child.exitcode} "
                      f"{time.monotonic() - life_start:.2f} s, venue orders {orders}")
            if child.exitcode == -signal.SIGKILL:
                kills[point if point != "none" else "unplanned"] += 1
            elif child.exitcode == 0:
                report.clean_exits += 1
            else:
                raise RuntimeError(f"a drill child failed (exit {child.exitcode}); "
                                   f"plan {plan or point}")
            if progress is not None:
                progress(min(orders, lifecycles), lifecycles)
        # a last clean life on a stopped clock, stepped one bar: it reconciles, trades
        # that bar and exits; nothing moves at the venue after it (no funding, no fills)
        final = ChildArgs(fake.url, db_url, str(workdir), "", 1, user_stream)
        child = ctx.Process(target=run_child, args=(final,), daemon=True)
        before = clock.done_ms()
        child.start()
        deadline = time.monotonic() + 120
        while child.is_alive() and time.monotonic() < deadline:
            # the clock stops once the last life has journaled its bar: a step while it
            # exits could settle funding the journal can no longer see
            if clock.done_ms() == before:
                clock.tick()
            child.join(0.01)
        if child.exitcode != 0:
            raise RuntimeError(f"the final reconciliation run failed (exit {child.exitcode})")
        _verify(report, fake.account(KEY), db_url, workdir)
    report.kills = dict(kills)
    report.seconds = time.monotonic() - started
    return report


class _Metronome:
    """Moves the fake's clock one bar forward once the trader has journaled the last
    closed bar: the replay runs as fast as the trader, and no bar is missed while a
    child is down (a clock running on its own would make the restarts skip bars)."""

    def __init__(self, fake: Any, db_path: Path, run_id: str) -> None:
        self.fake = fake
        self.db_path = db_path
        self.run_id = run_id
        self.step = 3_600_000
        self._last_step = 0.0

    def done_ms(self) -> int | None:
        """Open time of the last bar the trader journaled (None before the first)."""
        if not self.db_path.exists():
            return None
        try:
            with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=0.05) as c:
                row = c.execute("SELECT value FROM run_state WHERE run_id = ? AND "
                                "key = 'checkpoint'", (self.run_id,)).fetchone()
        except sqlite3.Error:
            return None
        last = json.loads(row[0]).get("last_ts") if row and row[0] else None
        return int(pd.Timestamp(last).value // 1_000_000) if last else None

    def tick(self) -> None:
        done = self.done_ms()
        now = int(self.fake.venue.clock.now_ms())
        if done is None:  # no bar journaled yet: a bar now and then until one is
            if time.monotonic() - self._last_step > 0.5:
                self._advance()
            return
        if done >= now // self.step * self.step - self.step:
            self._advance()

    def _advance(self) -> None:
        self.fake.venue.clock.step(self.step)
        self._last_step = time.monotonic()


def _verify(report: DrillReport, account: dict[str, Any], db_url: str, workdir: Path) -> None:
    from perptrader.persistence import open_trading_db

    spec = _spec()
    venue_orders = account["orders"]
    report.venue_orders = report.lifecycles = len(venue_orders)
    report.venue_trades = len(account["trades"])
    by_id = Counter(o["clientOrderId"] for o in venue_orders)
    report.duplicate_client_ids = sum(n - 1 for n in by_id.values() if n > 1)
    with open_trading_db(db_url, workdir, create=False) as db:
        journal = {o["client_order_id"]: o for o in db.orders(spec.run_id)}
        fills = {f["fill_id"]: f for f in db.fills(spec.run_id)}
        balances = db.balances(spec.run_id)
        positions = {p["symbol"]: p for p in db.positions(spec.run_id)}
        state = db.get_state(spec.run_id, "checkpoint")
    report.journal_orders, report.journal_fills = len(journal), len(fills)
    report.orders_unknown_to_journal = sum(1 for cid in by_id if cid not in journal)
    decisions = Counter((journal[cid]["symbol"], journal[cid]["decided_ts"])
                        for cid in by_id if cid in journal)
    report.duplicate_decisions = sum(n - 1 for n in decisions.values() if n > 1)
    report.lost_fills = sum(1 for t in account["trades"]
                            if f"binanceusdm:{t['symbol']}:{t['id']}" not in fills)
    pos = account["positions"].get("BTCUSDT", {})
    report.position_venue = float(pos.get("positionAmt", 0.0))
    baseline = float(((state.value or {}).get("baseline") or {}).get("BTCUSDT", 0.0)) \
        if state else 0.0
    signed = sum((1 if f["side"] == "buy" else -1) * float(f["qty"]) for f in fills.values())
    report.position_journal = round(baseline + signed, 12)
    row = positions.get("BTCUSDT")
    report.position_table = float(row["qty"]) if row is not None else 0.0
    report.wallet_venue = float(account["balance"])
    report.wallet_journal = float(balances[-1]["wallet_balance"]) if balances else 0.0


__all__ = ["DrillReport", "run_drill"]
