"""The array book (numba kernels) against the pure-Python reference book it replaced:
level by level on the real BTCUSDT capture and on synthetic diffs; the byte-level depth
reader against orjson + float(); the collector's fast path against its orjson path."""

from __future__ import annotations

import random

import numpy as np
import orjson
import pytest

from perptrader.marketdata.book_kernels import DEPTH, FALLBACK, HEADER_SIZE, OTHER, scan_depth
from perptrader.marketdata.orderbook import L2Book
from perptrader.marketdata.orderbook_reference import PyL2Book
from perptrader.venues.bookfeed import BookFeed
from perptrader.venues.fake.data import _parse_capture
from shared_data import real_file


def same_books(a: L2Book, b: PyL2Book, depth: int = 50) -> None:
    assert a.bids == b.bids and a.asks == b.asks
    assert a.best_bid() == b.best_bid() and a.best_ask() == b.best_ask()
    for x, y in zip(a.top(depth), b.top(depth), strict=True):
        np.testing.assert_array_equal(x, y)
    assert (a.last_update_id, a.in_sync, a.applied, a.stale) == (
        b.last_update_id,
        b.in_sync,
        b.applied,
        b.stale,
    )


def test_books_agree_on_the_real_capture_after_every_diff() -> None:
    cap = _parse_capture(real_file("orderbook/hftbacktest/usdm/btcusdt_20240718.gz"))
    snap = cap.snapshot
    assert snap is not None
    fast, ref = L2Book(), PyL2Book()
    feed = BookFeed()  # the collector's path: raw bytes -> scan_depth -> arrays
    for book in (fast, ref):
        book.apply_snapshot(int(snap["lastUpdateId"]), snap["bids"], snap["asks"], snap["T"])
    feed.on_snapshot(snap)
    for i, d in enumerate(cap.diffs):
        got = fast.apply_diff(d["U"], d["u"], d["pu"], d["b"], d["a"], d["E"])
        want = ref.apply_diff(d["U"], d["u"], d["pu"], d["b"], d["a"], d["E"])
        feed.on_raw(orjson.dumps(d))
        assert got == want
        if i % 200 == 0:
            assert fast.top(20)[0].tolist() == ref.top(20)[0].tolist()
            assert fast.top(20)[1].tolist() == ref.top(20)[1].tolist()
    assert fast.applied > 1000 and not fast.gaps
    same_books(fast, ref, depth=1000)
    same_books(feed.book, ref, depth=1000)


def synthetic_diffs(n: int, seed: int) -> list[dict]:
    """Chained USD-M diffs over a 0.1 grid: adds, changes, deletes at any depth, prices
    that leave and come back (tombstones), the mid drifting far (relayouts)."""
    rng = random.Random(seed)
    out, u, mid = [], 100, 1000.0
    for k in range(n):
        if k % 500 == 0:
            mid += rng.choice([-40.0, 40.0])
        b, a = [], []
        for _ in range(rng.randint(0, 30)):
            off = int(rng.expovariate(1 / 60)) + 1
            q = "0" if rng.random() < 0.35 else f"{rng.randint(1, 99999) / 1000:.3f}"
            b.append([f"{mid - off / 10:.1f}", q])
        for _ in range(rng.randint(0, 30)):
            off = int(rng.expovariate(1 / 60))
            q = "0.000" if rng.random() < 0.35 else f"{rng.randint(1, 99999) / 1000:.3f}"
            a.append([f"{mid + off / 10:.1f}", q])
        out.append({"e": "depthUpdate", "E": 1000 + k, "T": 1000 + k, "s": "X",
                    "U": u + 1, "u": u + 3, "pu": u, "b": b, "a": a})
        u += 3
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_books_agree_on_synthetic_diffs_with_gaps_and_resyncs(seed: int) -> None:
    diffs = synthetic_diffs(4_000, seed)
    rng = random.Random(seed)
    fast, ref, feed = L2Book(max_buffer=50), PyL2Book(max_buffer=50), BookFeed(max_buffer=50)
    ref_snap = PyL2Book()  # what a REST snapshot would answer
    ref_snap.apply_snapshot(101, [], [])  # the first diff covers 101..103
    for book in (fast, ref, feed.book):
        book.apply_snapshot(101, [], [])
    for i, d in enumerate(diffs):
        ref_snap.apply_diff(d["U"], d["u"], d["pu"], d["b"], d["a"], d["E"])
        if rng.random() < 0.01:
            continue  # a lost message: a gap for all three
        raw = orjson.dumps(d)
        if rng.random() < 0.1:  # spaces / wrapper: the reader's other layouts
            raw = orjson.dumps({"stream": "x@depth", "data": d}, option=orjson.OPT_INDENT_2)
        got = fast.apply_diff(d["U"], d["u"], d["pu"], d["b"], d["a"], d["E"])
        want = ref.apply_diff(d["U"], d["u"], d["pu"], d["b"], d["a"], d["E"])
        feed.on_raw(raw)
        assert got == want
        if not ref.in_sync and rng.random() < 0.2:  # resync from a full snapshot
            bids, asks = ref_snap.top(10**6)
            # (an id inside the next diff's U..u, as a venue's snapshot has)
            snap_id = ref_snap.last_update_id + 1
            for book in (fast, ref):
                book.apply_snapshot(snap_id, bids.tolist(), asks.tolist(), i)
            feed.on_snapshot({"lastUpdateId": snap_id, "bids": bids.tolist(),
                              "asks": asks.tolist(), "E": i})
        if i % 97 == 0:
            same_books(fast, ref)
            same_books(feed.book, ref)
    assert ref.gaps and ref.snapshots > 1
    same_books(fast, ref, depth=10**6)
    same_books(feed.book, ref, depth=10**6)
    assert fast.gaps == ref.gaps == feed.book.gaps and fast.buffered == ref.buffered
    assert feed.stats.applied == ref.applied and feed.stats.gaps >= 10


def test_update_levels_and_replace_agree_and_tombstones_stay_bounded() -> None:
    rng = random.Random(9)
    fast, ref = L2Book(), PyL2Book()
    fast.replace([], [])
    ref.replace([], [])
    for _ in range(20_000):
        rows = [(round(rng.uniform(1, 500), 1), rng.choice([0.0, 0.0, 1.5, 2.25]))
                for _ in range(rng.randint(1, 20))]
        fast.update_levels(rows, rows[::-1])
        ref.update_levels(rows, rows[::-1])
    assert fast.bids == ref.bids and fast.asks == ref.asks
    side = fast._bids
    assert side.st[3] <= side.st[2] + 256  # tombstones <= live + 256
    assert len(side.keys) <= 2 * (side.st[2] + side.st[3]) + 4096
    fast.replace([["1.0", "2"]], [])
    ref.replace([["1.0", "2"]], [])
    same_books(fast, ref)


def test_array_levels_are_checked() -> None:
    book = L2Book()
    book.replace([], [])
    for bad in ([[0.0, 1.0]], [[1.0, -1.0]], [[np.nan, 1.0]], [[1.0, np.inf]]):
        with pytest.raises(ValueError):
            book.update_levels(np.array(bad), [])
    assert book.depth() == (0, 0)


# -- the byte reader ---------------------------------------------------------------------


def scan(raw: bytes) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    b, a = np.empty((len(raw) // 9 + 2, 2)), np.empty((len(raw) // 9 + 2, 2))
    hdr = np.zeros(HEADER_SIZE, dtype=np.int64)
    code = scan_depth(np.frombuffer(raw, dtype=np.uint8), b, a, hdr)
    return code, hdr, b[: hdr[4]], a[: hdr[5]]


def test_scan_depth_gives_float_exactly() -> None:
    rng = random.Random(4)
    texts = ["0.001", "1", "63850.60", "0.10000000", "999999999999999", "123456.789012345",
             "0.3", "7.000", "100000000.00000001", "5e3", "0", "00012.50", "1.", "-1"]
    for _ in range(3000):
        digits = rng.randint(1, 17)
        text = str(rng.randint(1, 10**digits))
        cut = rng.randint(0, len(text) - 1)
        texts.append(text[:cut] + "." + text[cut:] if cut else "0." + text)
    for t in texts:
        raw = orjson.dumps({"e": "depthUpdate", "E": 1, "U": 2, "u": 3, "pu": 1,
                            "b": [[t, t]], "a": []})
        code, _hdr, b, _ = scan(raw)
        try:
            want = float(t)
        except ValueError:
            want = None
        if code == DEPTH:
            assert want is not None and b[0, 0] == want and b[0, 1] == want, t
        else:  # the feed parses it with orjson + float instead
            assert code == FALLBACK, t
            assert want is None or want <= 0 or "e" in t or "-" in t or len(t) > 16, t


def test_scan_depth_reads_headers_wrappers_and_refuses_what_it_does_not_know() -> None:
    d = {"e": "depthUpdate", "E": 17, "T": 16, "s": "BTCUSDT", "U": 4984028727787,
         "u": 4984028730563, "pu": 4984028727293, "b": [["1.5", "2"]], "a": [["2.5", "0"]]}
    for raw in (orjson.dumps(d), orjson.dumps({"stream": "s", "data": d}),
                orjson.dumps(d, option=orjson.OPT_INDENT_2)):
        code, hdr, b, a = scan(raw)
        assert code == DEPTH
        assert hdr[:4].tolist() == [17, d["U"], d["u"], d["pu"]]
        assert b.tolist() == [[1.5, 2.0]] and a.tolist() == [[2.5, 0.0]]
    assert scan(orjson.dumps({"e": "bookTicker", "s": "X", "E": 1}))[0] == OTHER
    assert scan(orjson.dumps({"result": None, "id": 1}))[0] == OTHER
    for bad in (b"", b"[1]", b'{"e":"depthUpdate"', orjson.dumps({**d, "pu": None}),
                orjson.dumps({k: v for k, v in d.items() if k != "pu"}),
                orjson.dumps({**d, "b": [["0", "1"]]}), orjson.dumps({**d, "x": [1]}),
                orjson.dumps({"e": "depthUpdate", "data": d}), b'{"e":"depth\\u0055pdate"}',
                orjson.dumps({"e": "bookTicker", "b": "1"})):
        assert scan(bad)[0] == FALLBACK, bad


def test_feed_fast_path_and_orjson_path_keep_the_same_errors() -> None:
    feed = BookFeed()
    feed.on_snapshot({"lastUpdateId": 10, "bids": [["1", "1"]], "asks": [["2", "1"]]})
    d = {"e": "depthUpdate", "E": 5, "U": 9, "u": 12, "pu": 8, "b": [["0", "1"]], "a": []}
    with pytest.raises(ValueError):
        feed.on_raw(orjson.dumps(d))  # a zero price: refused, as before
    with pytest.raises(orjson.JSONDecodeError):
        feed.on_raw(b"{not json")
    feed.on_raw(orjson.dumps({**d, "b": [["1.5", "3"]]}))
    assert feed.book.best_bid() == (1.5, 3.0) and feed.stats.applied == 1
