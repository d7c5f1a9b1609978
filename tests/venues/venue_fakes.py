"""Synthetic venue data and a fake exchange on it, for tests that run without
../shared/data (tests/venues and tests/marketdata/test_download*)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

from perptrader.marketdata.dataset import Dataset
from perptrader.marketdata.kinds import Kind
from perptrader.venues.backfill import CcxtRestSource, SourceOptions
from perptrader.venues.calls import RetryPolicy
from perptrader.venues.fake import FakeExchangeThread
from perptrader.venues.fake.data import Capture, MarketData
from perptrader.venues.fake.server import FakeConfig
from perptrader.venues.fake.synthetic import BTC, START, bars, funding
from perptrader.venues.fake.synthetic import synthetic_market as _synthetic_market

HOURS = 2500  # three pages of 1000 klines


def synthetic_market(hours: int = HOURS) -> MarketData:
    """The package's synthetic BTCUSDT market plus a tiny order-book capture."""
    data = _synthetic_market(hours)
    data.set_capture("BTCUSDT", synthetic_capture())
    return data


def synthetic_capture(n: int = 40, t0: int = 1_704_067_200_000, step_ms: int = 20,
                      seed: int | None = None) -> Capture:
    """A snapshot at update id 1000 and a chain of diffs (pu = previous u) and trades.

    ``seed``: diffs that also add, change and delete levels at random depths (so a book
    that misses one diff differs from the true one), else the fixed small pattern."""
    snap = {"lastUpdateId": 1000, "E": t0, "T": t0,
            "bids": [[f"{40000 - i}.0", "1.000"] for i in range(50)],
            "asks": [[f"{40001 + i}.0", "1.000"] for i in range(50)]}
    rng = np.random.default_rng(seed) if seed is not None else None
    diffs, trades = [], []
    u = 995
    for i in range(n):
        first, last = u + 1, u + 10
        t = t0 + step_ms * (i + 1)
        bids = [[f"{40000 - i % 5}.0", f"{1 + i / 10:.3f}"]]
        asks = [[f"{40001 + i % 5}.0", f"{2 + i / 10:.3f}"]]
        if rng is not None:
            for _ in range(4):
                bids.append([f"{40000 - int(rng.integers(0, 60))}.0",
                             "0" if rng.random() < 0.3 else f"{rng.uniform(0.1, 5):.3f}"])
                asks.append([f"{40001 + int(rng.integers(0, 60))}.0",
                             "0" if rng.random() < 0.3 else f"{rng.uniform(0.1, 5):.3f}"])
            bids = list({p: [p, q] for p, q in bids}.values())
            asks = list({p: [p, q] for p, q in asks}.values())
        diffs.append({"e": "depthUpdate", "E": t, "T": t, "s": "BTCUSDT", "U": first,
                      "u": last, "pu": u, "b": bids, "a": asks})
        trades.append({"e": "trade", "E": t, "T": t, "s": "BTCUSDT", "t": 5000 + i,
                       "p": "40000.5", "q": "0.010", "m": bool(i % 2)})
        u = last
    return Capture(snap, diffs, trades)


def reference_book(capture: Capture, update_id: int) -> Any:
    """The L2 replayer's book (orderbook.L2Book over the capture's snapshot and every
    recorded diff) at ``update_id``, which must end one of the diffs."""
    from perptrader.marketdata.orderbook import L2Book

    book = L2Book(max_buffer=len(capture.diffs) + 1)
    snap = capture.snapshot
    assert snap is not None
    book.apply_snapshot(int(snap["lastUpdateId"]), snap["bids"], snap["asks"])
    for d in capture.diffs:
        if book.last_update_id == update_id:
            break
        book.apply_diff(d["U"], d["u"], d["pu"], d["b"], d["a"], d["E"])
    assert book.last_update_id == update_id and not book.gaps, "no diff ends there"
    return book


def reference_tops(capture: Capture, update_ids: set[int], n: int) -> dict[int, Any]:
    """The replayer's top ``n`` levels at each of ``update_ids`` (one pass)."""
    from perptrader.marketdata.orderbook import L2Book

    book = L2Book(max_buffer=len(capture.diffs) + 1)
    snap = capture.snapshot
    assert snap is not None
    book.apply_snapshot(int(snap["lastUpdateId"]), snap["bids"], snap["asks"])
    out = {}
    for d in [None, *capture.diffs]:
        if d is not None:
            book.apply_diff(d["U"], d["u"], d["pu"], d["b"], d["a"], d["E"])
        if book.last_update_id in update_ids:
            out[book.last_update_id] = book.top(n)
    assert set(out) == update_ids, "stored update ids the replayer never reached"
    return out


def minute_market(minutes: int = 600, capture: Capture | None = None) -> MarketData:
    """BTCUSDT 1m trade and mark bars, funding, open interest and a capture (default: a
    200-diff synthetic one, one diff every 500 ms)."""
    data = MarketData(None)
    frame = bars(minutes, seed=3)
    frame["ts"] = pd.date_range(START, periods=minutes, freq="1min")
    mark = bars(minutes, seed=4, extras=False)
    mark["ts"] = frame["ts"].to_numpy()
    mark["volume"] = np.nan
    data.add([Dataset(Kind.OHLCV, BTC, frame, "1m", "synthetic"),
              Dataset(Kind.MARK, BTC, mark, "1m", "synthetic"),
              Dataset(Kind.FUNDING, BTC, funding(40), None, "synthetic")])
    # hourly mark bars too: premiumIndex / the markPrice stream read them
    data.add([Dataset(Kind.MARK, BTC, bars(40, seed=5, extras=False).assign(volume=np.nan),
                      "1h", "synthetic")])
    oi = pd.DataFrame({"ts": pd.date_range(START, periods=minutes, freq="1min"),
                       "oi_contracts": np.linspace(80_000, 90_000, minutes).round(3),
                       "oi_value": np.linspace(3.2e9, 3.9e9, minutes).round(2)})
    data.add_open_interest("BTCUSDT", "5m", oi)
    data.set_capture("BTCUSDT", capture or synthetic_capture(200, step_ms=500, seed=7))
    return data


@contextmanager
def fake_exchange(**config: Any) -> Iterator[FakeExchangeThread]:
    """The fake on synthetic data; one-second weight windows unless told otherwise."""
    config.setdefault("weight_window_s", 1.0)
    data = config.pop("data", None) or synthetic_market()
    with FakeExchangeThread(FakeConfig(**config), data=data) as fake:
        yield fake


def fast_policy(attempts: int = 4) -> RetryPolicy:
    return RetryPolicy(attempts=attempts, base_s=0.01, max_s=0.05, jitter=0.0)


def source_for(fake: FakeExchangeThread, *, timeout_ms: int = 2000, attempts: int = 4,
               sleeps: list[float] | None = None) -> CcxtRestSource:
    """A Binance REST source pointed at ``fake``; ``sleeps`` records every wait."""
    import time

    def sleep(s: float) -> None:
        if sleeps is not None:
            sleeps.append(s)
        time.sleep(s)

    return CcxtRestSource("binanceusdm", SourceOptions(
        url=fake.url, policy=fast_policy(attempts), timeout_ms=timeout_ms, sleep=sleep))


T0_MS = int(START.value // 1_000_000)


def run_collector(store: Any, data: MarketData, *, duration: float = 3.0,
                  faults: dict[str, Any] | None = None, speed: float = 60.0,
                  start_min: int = 200, timeout_ms: int = 2000,
                  streams: tuple[str, ...] = ("klines", "trades", "book"),
                  **options: Any) -> tuple[Any, Any]:
    """Run a 1m collector against a fake on ``data`` for ``duration`` real seconds, the
    clock at ``start_min`` minutes after START going ``speed`` x; returns (collector,
    venue). ``faults`` as ``POST /_fake/faults`` takes them."""
    import asyncio

    from perptrader.venues.collector import Collector, CollectorOptions
    from perptrader.venues.fake import FakeExchange

    async def main() -> tuple[Any, Any]:
        config = FakeConfig(clock_start_ms=T0_MS + start_min * 60_000, clock_speed=speed,
                            stream_interval_s=0.02, weight_window_s=60.0)
        async with FakeExchange(config, data=data) as fake:
            if faults:
                fake.venue.faults.configure(faults)
            clock = fake.venue.clock.now_ms

            def rest() -> CcxtRestSource:
                return CcxtRestSource("binanceusdm", SourceOptions(
                    url=fake.url, policy=fast_policy(6), now_ms=clock, timeout_ms=timeout_ms))

            opts = {"streams": streams, "timeframe": "1m", "url": fake.url, "rest": rest,
                    "now_ms": clock, "backoff_s": 0.05, "max_backoff_s": 0.2,
                    "flush_interval_s": 0.2, "book_interval_s": 1.0,
                    "status_interval_s": 0.5, "oi_interval_s": 0.5, **options}
            collector = Collector("binanceusdm", ["BTCUSDT"], store, CollectorOptions(**opts))
            await collector.run(duration)
            return collector, fake.venue

    return asyncio.run(asyncio.wait_for(main(), duration + 30))


def check_bars(store: Any, data: MarketData) -> pd.DataFrame:
    """Stored 1m bars: contiguous from START, equal to what the fake serves."""
    got = store.read(Kind.OHLCV, BTC, "1m")
    assert len(got) > 0
    steps = np.diff(got["ts"].to_numpy()).astype("timedelta64[s]").astype(int)
    assert got["ts"].iloc[0] == START and set(steps) <= {60}, "a gap or a duplicate"
    cols = ["ts", "open", "high", "low", "close", "volume"]
    served = data.store.read(Kind.OHLCV, BTC, "1m")[cols].iloc[:len(got)]
    pd.testing.assert_frame_equal(got[cols].reset_index(drop=True),
                                  served.reset_index(drop=True))
    return got


def check_book(collector: Any, capture: Capture, store: Any, depth: int | None = None) -> None:
    """The collector's final book equals the replayer's at the same update id (whole
    book, or the top ``depth`` levels when a resync loaded a REST snapshot of limited
    depth), and every stored snapshot equals the replayer's top levels at its id."""
    feed = collector.books["BTCUSDT"]
    assert feed.book.in_sync
    ref = reference_book(capture, feed.book.last_update_id)
    if depth is None:
        assert feed.book.bids == ref.bids and feed.book.asks == ref.asks
    else:
        for a, b in zip(feed.book.top(depth), ref.top(depth), strict=True):
            np.testing.assert_array_equal(a, b)
    snaps = store.read(Kind.BOOK, BTC)
    assert len(snaps) > 0
    n = int(snaps["level"].max()) + 1
    want = reference_tops(capture, set(snaps["update_id"].astype(int)), n)
    for uid, rows in snaps.groupby("update_id"):
        want_b, want_a = want[int(uid)]
        rows = rows.sort_values("level")
        got_b = rows[["bid_price", "bid_qty"]].dropna().to_numpy()
        got_a = rows[["ask_price", "ask_qty"]].dropna().to_numpy()
        np.testing.assert_array_equal(got_b, want_b[:len(rows)])
        np.testing.assert_array_equal(got_a, want_a[:len(rows)])
    assert snaps.groupby("ts")["level"].apply(lambda s: s.is_unique).all()
