"""Live order round trips against the fake exchange: what the engine adds to an order
over a bare ccxt call, and where its time goes.

    .venv/bin/python bench/bench_orders.py [--orders 300] [--warmup 10] [--qty 0.01]

The fake (``FakeExchangeThread``, synthetic BTCUSDT bars, clock frozen inside a bar, no
faults, rate limits raised so that no budget ever waits) runs in this process on its own
event-loop thread, as in the tests and the crash drill.

ENGINE: ``--orders`` market orders of ``--qty`` BTC, buy and sell alternating (the
position stays within one lot), each through the real live path of ``LiveEngine``
(``VenueTrader`` + ``LiveEngine.open_live`` on a temporary SQLite journal with
``synchronous=FULL`` as ``trade live`` opens it, startup reconciliation, no user
stream): the order and its ``_Work`` are built as ``LiveEngine._flatten_all`` /
``_new_order`` build them, then ``engine._send`` (intent committed, sent, acknowledged,
fills fetched) and ``engine.commit`` (fills, events and checkpoint committed) are timed
as one round trip. The split comes from timing wrappers the bench sets on the instances
(not the library): ``engine.commit`` (journal: 2 FULL commits an order),
``trader.place`` / ``trader.trades`` / ``trader.query`` (venue: HTTP round trips through
ccxt); the rest is engine overhead (state, events, order objects, checkpoint JSON).

FAKE: a timing middleware wrapped around the fake's own (``fake.venue._middleware``,
set on the instance before the app is built) gives the server-side time of every
request (weights, routing, the handler, the matching); the venue calls minus that are
the client side (ccxt signing and parsing, requests, the socket, aiohttp's HTTP layer).

PEER: ``create_order`` on a bare ccxt exchange of the same class pointed at the same fake
(no journal, no client id, no fills fetch, no checks), measured interleaved with the
engine's orders (engine, peer, engine, peer...) so that both see the same load.

Wall-clock latencies on a shared machine partly measure the other processes (and the
fake's thread shares this process's GIL): the load average is printed before and after,
nothing is asserted on time.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SYMBOL, UNIFIED = "BTCUSDT", "BTC/USDT:USDT"
KEY, SECRET = "fake-key", "fake-secret"
H = 3_600_000
BIG = 10_000_000  # rate limits nobody reaches (the bench measures latency, not pacing)


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:  # not Linux
        return "n/a"


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5
                              ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"load average {loadavg()}"


# ---- the fake, with a server-side timer ----------------------------------------------------
def timed_fake(data: Any, start_ms: int) -> tuple[Any, list[tuple[str, float]]]:
    """A FakeExchangeThread (not started) whose middleware logs (endpoint, seconds)."""
    from aiohttp import web

    from perptrader.venues.fake import FakeExchangeThread
    from perptrader.venues.fake.server import FakeConfig

    # the published ORDERS limits are what VenueTrader's budget paces itself by
    for rule in data.info.get("rateLimits", []):
        if rule.get("rateLimitType") == "ORDERS":
            rule["limit"] = BIG
    config = FakeConfig(clock_start_ms=start_ms, clock_speed=0, weight_limit=BIG,
                        order_limit_10s=BIG, order_limit_1m=BIG)
    fake = FakeExchangeThread(config, data=data)
    inner = fake.venue._middleware
    log: list[tuple[str, float]] = []

    @web.middleware
    async def timing(request: web.Request, handler: Any) -> web.StreamResponse:
        t0 = time.perf_counter()
        try:
            return await inner(request, handler)
        finally:
            if request.path.startswith(("/fapi/", "/v5/")):
                log.append((request.path.rsplit("/", 1)[-1], time.perf_counter() - t0))

    fake.venue._middleware = timing  # the app is built at start(), from this attribute
    return fake, log


class Timer:
    """Wraps ``obj.name`` (an instance attribute shadowing the method) and adds the time
    of each call to ``self.spent``."""

    def __init__(self, obj: Any, name: str) -> None:
        self.fn: Callable[..., Any] = getattr(obj, name)
        self.spent = 0.0
        self.calls = 0
        setattr(obj, name, self)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.spent += time.perf_counter() - t0
            self.calls += 1


# ---- the two paths ------------------------------------------------------------------------
def engine_order(engine: Any, i: int, qty: float, decided: pd.Timestamp) -> Any:
    """One order through the live engine: built as ``_new_order`` builds it, then
    ``_send`` (intent commit, place, ack, fills fetch) and ``commit`` (fills)."""
    from perptrader.trading.engine import _Work
    from perptrader.trading.orders import Order, OrderSide, OrderType

    now = pd.Timestamp.now(tz="UTC")
    seq = int(engine.state["seq"])
    engine.state["seq"] = seq + 1
    side = OrderSide.BUY if i % 2 == 0 else OrderSide.SELL
    target = 0.0 if side is OrderSide.SELL else math.nan
    order = Order.create(run_id=engine.run_id, seq=seq, symbol=SYMBOL, side=side,
                         type=OrderType.MARKET, qty=qty, ts=now, reason="bench")
    work = _Work()
    work.new_orders.append({"client_order_id": order.client_order_id, "seq": seq,
                            "symbol": SYMBOL, "decided_ts": decided})
    work.order_events.append((order.to_dict(), "create", now, {}))
    engine._send(SYMBOL, target, order, now, work)
    engine.commit(work)
    return order


def peer_order(ex: Any, i: int, qty: float) -> Any:
    side = "buy" if i % 2 == 0 else "sell"
    return ex.create_order(UNIFIED, "market", side, qty, None, {"newOrderRespType": "RESULT"})


def pct(xs: list[float] | np.ndarray, q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1000.0, q))


def row(xs: list[float] | np.ndarray) -> tuple[float, float, float, float]:
    ms = np.asarray(xs) * 1000.0
    return (float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), float(ms.max()),
            float(ms.mean()))


# ---- the run ------------------------------------------------------------------------------
def run(orders: int, warmup: int, qty: float, tmp: Path) -> dict[str, Any]:
    from perptrader.persistence import open_trading_db
    from perptrader.strategies import get_strategy
    from perptrader.trading.breaker import VenueGuard
    from perptrader.trading.live import LiveEngine
    from perptrader.trading.livefeed import VenueBarFeed
    from perptrader.trading.orders import OrderStatus
    from perptrader.trading.reconcile import reconcile
    from perptrader.trading.spec import RunSpec
    from perptrader.trading.venue import VenueTrader
    from perptrader.venues.calls import RetryPolicy
    from perptrader.venues.ccxt_client import Credentials, create_exchange
    from perptrader.venues.fake.synthetic import synthetic_market

    data = synthetic_market(24 * 60)
    first = int(data.first_bar_ms(SYMBOL))
    start_ms = first + 30 * H + 1_000  # inside the 31st hourly bar, as the live tests
    fake, server_log = timed_fake(data, start_ms)
    slept: list[float] = []

    def sleep(s: float) -> None:  # a budget wait would be pacing, not latency: counted
        slept.append(s)
        time.sleep(s)

    spec = RunSpec(mode="live", strategy="random", symbols=(SYMBOL,), timeframe="1h",
                   params={"p_entry": "0.6", "p_exit": "0.6"}, venue="binanceusdm")
    credentials = Credentials(KEY, SECRET)
    out: dict[str, Any] = {}
    with fake:
        trader = VenueTrader("binanceusdm", url=fake.url, credentials=credentials,
                             guard=VenueGuard(fail_max=50, reset_timeout_s=0.5),
                             retry=RetryPolicy(attempts=6, base_s=0.05, max_s=0.5),
                             timeout_ms=5000, sleep=sleep)
        trader.load(spec.symbols)
        peer = create_exchange("binanceusdm", url=fake.url, credentials=credentials,
                               timeout_ms=5000)
        peer.load_markets()
        feed = VenueBarFeed(trader, spec.symbols, spec.timeframe, history_bars=20, poll_s=0.01)
        try:
            with open_trading_db(f"sqlite:///{tmp}/journal.sqlite", tmp, create=True) as db:
                engine = LiveEngine.open_live(db, spec, get_strategy("random", spec.params),
                                              feed, trader, reconcile=reconcile)
                commit = Timer(engine, "commit")
                venue = [Timer(trader, n) for n in ("place", "trades", "query")]
                bar0 = pd.Timestamp(start_ms, unit="ms", tz="UTC").floor("1h")
                eng: dict[str, list[float]] = {k: [] for k in (
                    "total", "commit", "venue", "fake", "place", "trades")}
                peer_s: list[float] = []
                peer_fake: list[float] = []
                requests = commits = 0
                statuses: dict[str, int] = {}
                for i in range(warmup + orders):
                    timed = i >= warmup
                    # -- engine
                    c0, v0 = commit.spent, [t.spent for t in venue]
                    k0, n0 = len(server_log), commit.calls
                    t0 = time.perf_counter()
                    order = engine_order(engine, i, qty, bar0 + pd.Timedelta(hours=i))
                    total = time.perf_counter() - t0
                    if timed:
                        spent = [t.spent - v for t, v in zip(venue, v0, strict=True)]
                        eng["total"].append(total)
                        eng["commit"].append(commit.spent - c0)
                        eng["venue"].append(sum(spent))
                        eng["place"].append(spent[0])
                        eng["trades"].append(spent[1])
                        eng["fake"].append(sum(dt for _, dt in server_log[k0:]))
                        requests += len(server_log) - k0
                        commits += commit.calls - n0
                        statuses[order.status.value] = statuses.get(order.status.value, 0) + 1
                    # -- peer (same fake, right after: same load)
                    k0 = len(server_log)
                    t0 = time.perf_counter()
                    peer_order(peer, i, qty)
                    dt = time.perf_counter() - t0
                    if timed:
                        peer_s.append(dt)
                        peer_fake.append(sum(d for _, d in server_log[k0:]))
                out["eng"] = {k: np.asarray(v) for k, v in eng.items()}
                out["peer"] = np.asarray(peer_s)
                out["peer_fake"] = np.asarray(peer_fake)
                out["requests_per_order"] = requests / orders
                out["commits_per_order"] = commits / orders
                out["statuses"] = statuses
                out["filled"] = statuses.get(OrderStatus.FILLED.value, 0)
                out["journal_orders"] = len(db.orders(engine.run_id))
                out["journal_fills"] = len(db.fills(engine.run_id))
                out["query_calls"] = venue[2].calls
        finally:
            trader.close()
        truth = fake.account(KEY)
        out["venue_orders"] = len(truth["orders"])
        out["venue_position"] = float(truth["positions"].get(SYMBOL, {})
                                      .get("positionAmt", 0.0))
    out["slept_s"], out["sleeps"] = sum(slept), len(slept)
    out["synchronous"] = "FULL"
    return out


def report(r: dict[str, Any], orders: int) -> None:
    e = r["eng"]
    rest = e["total"] - e["commit"] - e["venue"]
    client = e["venue"] - e["fake"]
    total_mean = float(e["total"].mean()) * 1000.0
    lines: list[tuple[str, np.ndarray, str]] = [
        ("engine round trip (decision -> fills committed)", e["total"], ""),
        (f"  journal commits ({r['commits_per_order']:.0f}/order, SQLite FULL)",
         e["commit"], ""),
        ("  venue calls (place + fills fetch)", e["venue"], ""),
        ("    place (POST order)", e["place"], ""),
        ("    fills fetch (GET userTrades)", e["trades"], ""),
        ("    inside the fake's handler", e["fake"], ""),
        ("    client side (ccxt + HTTP + socket)", client, ""),
        ("  engine overhead (the rest)", rest, ""),
        ("peer: bare ccxt create_order", r["peer"], "peer"),
        ("  inside the fake's handler", r["peer_fake"], "peer"),
        ("  client side (ccxt + HTTP + socket)", r["peer"] - r["peer_fake"], "peer"),
    ]
    title = (f"{orders} market orders of BTCUSDT against the fake (engine and peer "
             f"interleaved), ms")
    header = ("path", "p50", "p99", "max", "mean", "% of engine mean")
    body = []
    for name, xs, kind in lines:
        p50, p99, mx, mean = row(xs)
        share = "" if kind else f"{100.0 * mean / total_mean:5.1f}%"
        body.append((name, f"{p50:7.2f}", f"{p99:7.2f}", f"{mx:7.1f}", f"{mean:7.2f}", share))
    try:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title)
        for k, h in enumerate(header):
            table.add_column(h, justify="left" if k == 0 else "right")
        for b in body:
            table.add_row(*b)
        Console(width=120).print(table)
    except ImportError:  # plain table
        print(title)
        print(f"{header[0]:52s}" + "".join(f"{h:>10s}" for h in header[1:]))
        for b in body:
            print(f"{b[0]:52s}" + "".join(f"{c:>10s}" for c in b[1:]))
    p50e, p99e = pct(e["total"], 50), pct(e["total"], 99)
    p50p, p99p = pct(r["peer"], 50), pct(r["peer"], 99)
    print(f"ratio engine / peer: p50 x{p50e / p50p:.2f}, p99 x{p99e / p99p:.2f}  "
          f"(engine {p50e:.2f} / {p99e:.2f} ms, peer {p50p:.2f} / {p99p:.2f} ms)")
    print(f"checks: {r['requests_per_order']:.1f} venue requests and "
          f"{r['commits_per_order']:.1f} commits per engine order; statuses {r['statuses']}; "
          f"journal {r['journal_orders']} orders / {r['journal_fills']} fills, venue "
          f"{r['venue_orders']} orders (engine + peer + warm-up), position "
          f"{r['venue_position']:g}; order-status queries {r['query_calls']}; budget waits "
          f"{r['sleeps']} ({r['slept_s']:.2f} s)")
    own_e, own_p = e["total"] - e["fake"], r["peer"] - r["peer_fake"]
    print(f"without the fake's handler time: engine p50 {pct(own_e, 50):.2f} ms, peer p50 "
          f"{pct(own_p, 50):.2f} ms, ratio x{pct(own_e, 50) / pct(own_p, 50):.2f}")
    m = {k: float(np.median(v)) * 1000.0 for k, v in (
        ("commit", e["commit"]), ("trades", e["trades"]), ("rest", rest),
        ("fake", e["fake"]), ("peer_fake", r["peer_fake"]), ("client", client))}
    print(f"what this means: an order through the engine takes {p50e:.1f} ms (p50) against "
          f"{p50p:.1f} ms for a bare ccxt order; the fake's own handlers account for "
          f"{m['fake']:.1f} ms of it ({m['peer_fake']:.1f} ms of the bare order). What the "
          f"engine adds on top (medians): {m['commit']:.1f} ms for its two fsynced journal "
          f"commits, {m['trades']:.1f} ms for the second round trip that fetches the fills, "
          f"{m['rest']:.1f} ms of its own bookkeeping; ccxt and the HTTP stack take "
          f"{m['client']:.1f} ms per engine order outside the fake.")

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--orders", type=int, default=300, help="timed orders per path")
    ap.add_argument("--warmup", type=int, default=10, help="untimed orders first, per path")
    ap.add_argument("--qty", type=float, default=0.01, help="BTC per order")
    args = ap.parse_args()
    print(f"# bench_orders  {platform.processor() or platform.machine()}  "
          f"{os.cpu_count()} CPUs  python {platform.python_version()}")
    print(f"# before: {uptime()}")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        r = run(args.orders, args.warmup, args.qty, Path(tmp))
        wall = time.perf_counter() - t0
    print(f"# journal synchronous={r['synchronous']} (as `trade live` opens it); "
          f"{args.orders} + {args.warmup} warm-up orders per path in {wall:.1f} s")
    report(r, args.orders)
    print(f"# after: {uptime()}")


if __name__ == "__main__":
    main()
