"""Collector benchmark: REST download speed against the fake exchange, and the live
collector's sustained book-diff rate with its per-message latency.

    .venv/bin/python bench/bench_collect.py [--bars 60000] [--diffs 200000]

1. REST download: ``data download``'s path (``CcxtRestSource`` + ``download_series``,
   1000-kline pages, validate + DuckDB write per page) against the fake exchange in this
   process, with a tight weight limit so the budget has to wait: rows/s over the wall
   time and with the rate-limit sleeps taken out (reported apart).
2. Book diffs: raw depthUpdate messages (the real BTCUSDT USD-M depth@0ms capture of
   ../shared/data when present, and a long synthetic chain) through the collector's
   ``BookFeed`` (``scan_depth`` reads the bytes into level arrays, ``L2Book`` applies them
   with U/u/pu checks in a numba kernel, top-20 snapshot once per second of exchange
   time) with the snapshots written to DuckDB as the collector's flush does (every
   ``--flush`` messages). ONE UPDATE = ONE DEPTH MESSAGE with all its levels (the real
   stream averages ~44 levels a message, the synthetic one ~10); levels/s is printed
   too. Peers, measured in the same run on the same messages with the same writes: the
   previous pure-Python book (``orderbook_reference.PyL2Book``: orjson parse, dicts and
   heaps, the same ``BookFeed`` code and sequencing), and a naive dict book (no
   sequencing, ``sorted`` top-20 at the same instants). Target: >= 50,000 updates/s
   processed and stored on one core.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from perptrader.core.instruments import Instrument
from perptrader.marketdata.dataset import Dataset, validate
from perptrader.marketdata.download import SeriesRequest, download_series
from perptrader.marketdata.kinds import Kind
from perptrader.marketdata.orderbook import book_frame
from perptrader.marketdata.orderbook_reference import PyL2Book
from perptrader.marketdata.store.duckdb_store import DuckDBStore
from perptrader.venues.backfill import CcxtRestSource, SourceOptions
from perptrader.venues.bookfeed import BookFeed
from perptrader.venues.calls import RetryPolicy
from perptrader.venues.fake import FakeExchangeThread
from perptrader.venues.fake.data import Capture, MarketData, _parse_capture
from perptrader.venues.fake.server import FakeConfig

BTC = Instrument.parse("BTCUSDT")
TARGET = 50_000  # book diffs/s processed and stored
#: the capture with a REST snapshot, and the next day's file, whose diffs chain on (pu)
REAL_CAPTURE = "orderbook/hftbacktest/usdm/btcusdt_20240718.gz"
REAL_NEXT = "orderbook/hftbacktest/usdm/btcusdt_20240719.gz"


def shared_data() -> Path:
    here = Path(__file__).resolve()
    for base in here.parents:
        candidate = base / "shared" / "data"
        if (candidate / "MANIFEST.md").is_file():
            return candidate
    return here.parents[2] / "shared" / "data"


# -- 1. REST download --------------------------------------------------------------------
def minute_bars(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    close = 40_000 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    open_ = np.r_[40_000.0, close[:-1]]
    frame = pd.DataFrame(
        {
            "ts": pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC"),
            "open": open_,
            "high": np.maximum(open_, close) * 1.0005,
            "low": np.minimum(open_, close) * 0.9995,
            "close": close,
            "volume": rng.uniform(1, 500, n).round(3),
        }
    )
    frame["quote_volume"] = (frame["volume"] * close).round(4)
    frame["trade_count"] = rng.integers(100, 9000, n)
    frame["taker_buy_base"] = (frame["volume"] * 0.5).round(3)
    frame["taker_buy_quote"] = (frame["taker_buy_base"] * close).round(4)
    frame.index = frame.index + 1
    return frame


def bench_download(n_bars: int, weight_limit: int) -> dict[str, Any]:
    data = MarketData(None)
    frame = minute_bars(n_bars)
    data.add([Dataset(Kind.OHLCV, BTC, frame, "1m", "synthetic")])
    end = frame["ts"].iloc[-1] + pd.Timedelta(minutes=1)
    clock = int(end.value // 1_000_000) + 60_000
    config = FakeConfig(
        weight_limit=weight_limit, weight_window_s=1.0, clock_start_ms=clock, clock_speed=0.0
    )
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        time.sleep(s)

    with tempfile.TemporaryDirectory() as tmp, FakeExchangeThread(config, data=data) as fake:
        store = DuckDBStore(Path(tmp) / "m.duckdb")
        store.migrate()
        source = CcxtRestSource(
            "binanceusdm",
            SourceOptions(url=fake.url, policy=RetryPolicy(attempts=4, base_s=0.05), sleep=sleep),
        )
        source.open()
        t0 = time.perf_counter()
        report = download_series(
            source, store, SeriesRequest(BTC, Kind.OHLCV, "1m"), frame["ts"].iloc[0], end
        )
        wall = time.perf_counter() - t0
        stored = len(store.read(Kind.OHLCV, BTC, "1m"))
        store.close()
    slept = sum(sleeps)
    return {
        "rows": report.rows_inserted,
        "stored": stored,
        "pages": report.pages,
        "wall_s": wall,
        "sleep_s": slept,
        "sleeps": len(sleeps),
        "rows_per_s": report.rows_inserted / wall,
        "rows_per_s_without_sleeps": report.rows_inserted / max(1e-9, wall - slept),
        "weight_limit": weight_limit,
    }


# -- 2. book diffs -----------------------------------------------------------------------
def synthetic_stream(n: int, levels: int = 2000, seed: int = 5) -> Capture:
    """A chained USD-M depth stream: ~10 level changes per diff around a moving mid."""
    rng = np.random.default_rng(seed)
    tick = 0.1
    mid = 60_000.0
    snap = {
        "lastUpdateId": 1000,
        "E": 1_721_347_200_000,
        "T": 1_721_347_200_000,
        "bids": [[f"{mid - tick * (i + 1):.1f}", "1.000"] for i in range(levels)],
        "asks": [[f"{mid + tick * i:.1f}", "1.000"] for i in range(levels)],
    }
    diffs = []
    u = 995
    t = 1_721_347_200_000
    for _ in range(n):
        k = int(rng.integers(4, 16))
        offs = rng.integers(0, 400, k)
        qty = np.where(rng.random(k) < 0.25, 0.0, rng.uniform(0.001, 5, k).round(3))
        side = rng.random(k) < 0.5
        b = [
            [f"{mid - tick * (o + 1):.1f}", f"{q:.3f}"]
            for o, q, s in zip(offs, qty, side, strict=True)
            if s
        ]
        a = [
            [f"{mid + tick * o:.1f}", f"{q:.3f}"]
            for o, q, s in zip(offs, qty, side, strict=True)
            if not s
        ]
        t += int(rng.integers(1, 10))
        diffs.append(
            {
                "e": "depthUpdate",
                "E": t,
                "T": t,
                "s": "BTCUSDT",
                "U": u + 1,
                "u": u + 7,
                "pu": u,
                "b": b,
                "a": a,
            }
        )
        u += 7
    return Capture(snap, diffs, [])


def real_stream(path: Path) -> Capture:
    """The real capture, with the next day's diffs appended when they chain on."""
    from perptrader.marketdata.sources.depth_capture import read_capture_bytes

    cap = _parse_capture(path)
    nxt = path.with_name(Path(REAL_NEXT).name)
    if nxt.is_file() and cap.diffs:
        more = []
        for line in read_capture_bytes(nxt).split(b"\n"):
            sp = line.find(b" ")
            if sp > 0 and b"depthUpdate" in line:
                msg = orjson.loads(line[sp + 1 :])
                more.append(msg.get("data", msg))
        if more and more[0]["pu"] == cap.diffs[-1]["u"]:
            cap.diffs.extend(more)
    return cap


class NaiveBook:
    """The peer: two dicts, no sequence checks, sorted() for the top levels."""

    def __init__(self) -> None:
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}

    def snapshot(self, snap: dict[str, Any]) -> None:
        self.bids = {float(p): float(q) for p, q in snap["bids"]}
        self.asks = {float(p): float(q) for p, q in snap["asks"]}

    def apply(self, d: dict[str, Any]) -> None:
        for side, rows in ((self.bids, d["b"]), (self.asks, d["a"])):
            for p, q in rows:
                price, qty = float(p), float(q)
                if qty == 0.0:
                    side.pop(price, None)
                else:
                    side[price] = qty

    def top(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        b = sorted(self.bids.items(), reverse=True)[:n]
        a = sorted(self.asks.items())[:n]
        return np.array(b, dtype="float64").reshape(-1, 2), np.array(a).reshape(-1, 2)


def _store_frame(store: DuckDBStore, frame: pd.DataFrame, inst: Instrument = BTC) -> None:
    if len(frame):
        frame.index = pd.RangeIndex(1, len(frame) + 1)
        store.write([validate(Dataset(Kind.BOOK, inst, frame, None, "bench"))])


def _warm_store(store: DuckDBStore) -> None:
    """One small write of another symbol before timing: DuckDB's first write into a
    table costs ~40 ms once per process and table (a running collector pays it once),
    which would otherwise be a fifth of a 9k-message run."""
    b = np.array([[100.0, 1.0]])
    frame = book_frame([1_721_347_200_000], [1], [b], [np.array([[101.0, 1.0]])], 1)
    _store_frame(store, frame, Instrument.parse("ETHUSDT"))


def run_ours(
    cap: Capture, messages: list[bytes], store: DuckDBStore, flush_every: int, book: Any = None
) -> dict[str, Any]:
    feed = BookFeed(depth=20, interval_ms=1000, book=book)
    feed.on_snapshot(cap.snapshot or {})
    lat = np.empty(len(messages), dtype="int64")
    clock = time.perf_counter_ns
    on_raw = feed.on_raw
    t0 = time.perf_counter()
    store_ns = 0
    for i, msg in enumerate(messages):
        s = clock()
        on_raw(msg)
        lat[i] = clock() - s
        if (i + 1) % flush_every == 0:
            s = clock()
            _store_frame(store, feed.drain())
            store_ns += clock() - s
    s = clock()
    _store_frame(store, feed.finish())
    store_ns += clock() - s
    wall = time.perf_counter() - t0
    assert feed.stats.gaps == 0 and feed.book.in_sync, "the stream did not chain"
    return {
        "wall_s": wall,
        "store_s": store_ns / 1e9,
        "lat": lat,
        "applied": feed.stats.applied,
        "levels": feed.stats.level_changes,
        "update_id": feed.book.last_update_id,
        "book": feed.book,
    }


def run_reference(
    cap: Capture, messages: list[bytes], store: DuckDBStore, flush_every: int
) -> dict[str, Any]:
    """The collector's feed over the previous pure-Python book (orjson parse path)."""
    return run_ours(cap, messages, store, flush_every, book=PyL2Book())


def run_naive(
    cap: Capture, messages: list[bytes], store: DuckDBStore, flush_every: int
) -> dict[str, Any]:
    book = NaiveBook()
    book.snapshot(cap.snapshot or {})
    lat = np.empty(len(messages), dtype="int64")
    clock = time.perf_counter_ns
    ts: list[int] = []
    ids: list[int] = []
    bids: list[np.ndarray] = []
    asks: list[np.ndarray] = []
    bucket = None
    pending: dict[str, Any] | None = None
    t0 = time.perf_counter()

    def take() -> None:
        assert pending is not None
        b, a = book.top(20)
        ts.append(pending["E"])
        ids.append(pending["u"])
        bids.append(b)
        asks.append(a)

    for i, msg in enumerate(messages):
        s = clock()
        d = orjson.loads(msg)
        if pending is not None and d["E"] // 1000 != bucket:
            take()  # the state after the last change of the previous second
        book.apply(d)
        pending, bucket = d, d["E"] // 1000
        lat[i] = clock() - s
        if (i + 1) % flush_every == 0:
            _store_frame(store, book_frame(ts, ids, bids, asks, 20))
            ts, ids, bids, asks = [], [], [], []
    if pending is not None:
        take()
    _store_frame(store, book_frame(ts, ids, bids, asks, 20))
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "lat": lat, "book": book}


def bench_book(name: str, cap: Capture, flush_every: int) -> dict[str, Any]:
    messages = [orjson.dumps(d) for d in cap.diffs]
    # the parsed capture is bench scaffolding: keep the cyclic GC from walking it (a
    # long-running collector holds no such pile of objects)
    with tempfile.TemporaryDirectory() as tmp:
        out = {}
        for label, fn in (("ours", run_ours), ("reference", run_reference), ("naive", run_naive)):
            store = DuckDBStore(Path(tmp) / f"{label}.duckdb")
            store.migrate()
            _warm_store(store)
            gc.collect()
            gc.freeze()
            try:
                out[label] = fn(cap, messages, store, flush_every)
            finally:
                gc.unfreeze()
            out[label]["stored_rows"] = len(store.read(Kind.BOOK, BTC))
            store.close()
    ours, ref, naive = out["ours"], out["reference"], out["naive"]
    # the books agree on every level at the end (same diffs, no gap), and the array
    # book stored the same snapshots as the previous one
    for other in (ref, naive):
        assert ours["book"].bids == other["book"].bids
        assert ours["book"].asks == other["book"].asks
    assert ours["stored_rows"] == ref["stored_rows"]
    n = len(messages)
    return {
        "ref_per_s": n / ref["wall_s"],
        "ref_p50_us": float(np.percentile(ref["lat"], 50)) / 1000,
        "ref_p99_us": float(np.percentile(ref["lat"], 99)) / 1000,
        "name": name,
        "messages": n,
        "level_changes": ours["levels"],
        "ours_per_s": n / ours["wall_s"],
        "naive_per_s": n / naive["wall_s"],
        "ours_p50_us": float(np.percentile(ours["lat"], 50)) / 1000,
        "ours_p99_us": float(np.percentile(ours["lat"], 99)) / 1000,
        "naive_p99_us": float(np.percentile(naive["lat"], 99)) / 1000,
        "ours_rows": ours["stored_rows"],
        "naive_rows": naive["stored_rows"],
        "ours_wall_s": ours["wall_s"],
        "ours_store_s": ours["store_s"],
        "ours_busy_per_s": n / (ours["lat"].sum() / 1e9 + ours["store_s"]),
        "ours_proc_per_s": n / (ours["lat"].sum() / 1e9),
        "exchange_s": (cap.diffs[-1]["E"] - cap.diffs[0]["E"]) / 1000,
        "naive_wall_s": naive["wall_s"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bars", type=int, default=60_000, help="1m bars to download")
    ap.add_argument(
        "--weight-limit",
        type=int,
        default=60,
        help="fake's weight per 1 s window (klines pages weigh 5)",
    )
    ap.add_argument("--diffs", type=int, default=200_000, help="synthetic depth diffs")
    ap.add_argument(
        "--flush",
        type=int,
        default=20_000,
        help="messages between snapshot writes (the collector's flush)",
    )
    args = ap.parse_args()
    print(
        f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} "
        f"cores, load average {os.getloadavg()[0]:.2f} (the measured loops use one)"
    )

    d = bench_download(args.bars, args.weight_limit)
    print(
        f"\nREST download against the fake: {d['rows']:,} 1m bars in {d['pages']} pages "
        f"(stored {d['stored']:,}), weight limit {d['weight_limit']}/s"
    )
    print(
        f"  wall {d['wall_s']:.2f} s -> {d['rows_per_s']:,.0f} rows/s; rate-limit sleeps "
        f"{d['sleep_s']:.2f} s in {d['sleeps']} waits; without them "
        f"{d['rows_per_s_without_sleeps']:,.0f} rows/s"
    )

    streams = []
    real = shared_data() / REAL_CAPTURE
    if real.is_file():
        streams.append(("real BTCUSDT depth@0ms capture (2024-07-18/19)", real_stream(real)))
    else:
        print(f"\n(real capture absent: {real})")
    streams.append((f"synthetic {args.diffs:,}-diff chain", synthetic_stream(args.diffs)))
    ok = True
    BookFeed().on_raw(orjson.dumps(synthetic_stream(1).diffs[0]))  # numba: load/compile
    for name, cap in streams:
        r = bench_book(name, cap, args.flush)
        ratio = r["ours_per_s"] / r["ref_per_s"]
        ok &= r["ours_per_s"] >= TARGET
        print(
            f"\nbook diffs, {r['name']}: {r['messages']:,} messages (updates), "
            f"{r['level_changes']:,} level changes = "
            f"{r['level_changes'] / r['messages']:.1f} levels per update"
        )
        print(
            f"  collector (array L2Book, sequence-checked): {r['ours_per_s']:,.0f} updates/s "
            f"processed and stored ({r['level_changes'] / r['ours_wall_s']:,.0f} levels/s), "
            f"p50 {r['ours_p50_us']:.1f} us, p99 {r['ours_p99_us']:.1f} us per message; "
            f"{r['ours_rows']:,} snapshot rows stored ({r['ours_store_s']:.3f} s of writes)"
        )
        print(
            f"  collector, time inside its own calls only (parse+apply+sample+store, not "
            f"the loop or other processes): {r['ours_busy_per_s']:,.0f} updates/s; "
            f"without the snapshot writes: {r['ours_proc_per_s']:,.0f} updates/s (the run "
            f"replays {r['exchange_s']:,.0f} s of exchange time, i.e. as many 1 s "
            f"snapshots to store, in {r['ours_wall_s']:.2f} s)"
        )
        print(
            f"  previous pure-Python L2Book (peer, same run, same feed): "
            f"{r['ref_per_s']:,.0f} updates/s, p50 {r['ref_p50_us']:.1f} us, "
            f"p99 {r['ref_p99_us']:.1f} us"
        )
        print(
            f"  naive dict book (peer, same run):    {r['naive_per_s']:,.0f} updates/s, "
            f"p99 {r['naive_p99_us']:.1f} us; {r['naive_rows']:,} rows stored"
        )
        print(
            f"  ratio collector / previous book: {ratio:.2f}x (/ naive: "
            f"{r['ours_per_s'] / r['naive_per_s']:.2f}x); target >= {TARGET:,} updates/s: "
            f"{'met' if r['ours_per_s'] >= TARGET else 'NOT met'}"
        )
    print("\nall targets met" if ok else "\nTARGET NOT MET")


if __name__ == "__main__":
    main()
