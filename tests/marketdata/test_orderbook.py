"""L2 book replay (Binance sequencing rules), sampling, and the bookTicker agreement check.

Unit tests build their inputs by hand; the integration tests replay the real captures of
../shared/data and skip when they are absent.
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import numpy as np
import pytest

from perptrader.core.instruments import Instrument
from perptrader.marketdata.bookcheck import (
    AFTER_LAST_DIFF,
    BEFORE_SYNC,
    INSIDE_DIFF,
    OUT_OF_SYNC,
    check_book_against_ticker,
)
from perptrader.marketdata.dataset import Dataset, validate
from perptrader.marketdata.kinds import Kind
from perptrader.marketdata.orderbook import BookSampler, L2Book, book_frame
from shared_data import real_file

SNAP_BIDS = [["100.0", "1.0"], ["99.5", "2.0"], ["99.0", "3.0"]]
SNAP_ASKS = [["100.5", "1.5"], ["101.0", "2.5"]]


def seeded(spot: bool = False, last_id: int = 100) -> L2Book:
    book = L2Book(spot=spot)
    book.apply_snapshot(last_id, SNAP_BIDS, SNAP_ASKS, ts=1_000)
    return book


# -- USD-M futures rules ---------------------------------------------------------------


def test_snapshot_then_diffs_follow_the_pu_chain() -> None:
    book = seeded()
    assert book.in_sync and book.last_update_id == 100
    assert book.best_bid() == (100.0, 1.0) and book.best_ask() == (100.5, 1.5)
    # u < lastUpdateId: already in the snapshot, dropped
    assert not book.apply_diff(90, 99, 89, [["100.0", "9.0"]], [])
    assert book.best_bid() == (100.0, 1.0) and book.stale == 1
    # first applied diff must straddle: U <= 100 <= u
    assert book.apply_diff(95, 105, 94, [["100.2", "0.5"]], [["100.5", "0"]], ts=1_010)
    assert book.best_bid() == (100.2, 0.5)
    assert book.best_ask() == (101.0, 2.5)  # 100.5 deleted by qty 0
    # then pu must equal the previous u
    assert book.apply_diff(106, 110, 105, [], [["100.4", "4.0"]], ts=1_020)
    assert book.best_ask() == (100.4, 4.0)
    assert book.last_update_id == 110 and book.last_ts == 1_020
    assert book.applied == 2 and not book.gaps


def test_diffs_before_the_snapshot_are_buffered_and_caught_up() -> None:
    """How a capture starts: the stream runs before the REST snapshot comes back."""
    book = L2Book()
    assert not book.apply_diff(80, 90, 79, [["100.0", "5.0"]], [])  # older than snapshot
    assert not book.apply_diff(91, 104, 90, [["99.5", "0"]], [])  # straddles 100
    assert not book.apply_diff(105, 107, 104, [["100.1", "0.1"]], [])
    assert book.buffered == 3 and not book.in_sync
    book.apply_snapshot(100, SNAP_BIDS, SNAP_ASKS)
    assert book.in_sync and book.last_update_id == 107 and book.buffered == 0
    assert book.stale == 1 and book.applied == 2
    bids, _ = book.top(5)
    assert bids[:, 0].tolist() == [100.1, 100.0, 99.0]  # 99.5 deleted; snapshot's 100.0 kept
    assert bids[1, 1] == 1.0  # the stale diff's 5.0 was not applied


def test_pu_gap_is_reported_and_book_waits_for_a_new_snapshot() -> None:
    book = seeded()
    assert book.apply_diff(95, 105, 94, [], [])
    assert not book.apply_diff(108, 112, 107, [["100.3", "1"]], [])  # pu 107 != 105
    assert not book.in_sync and len(book.gaps) == 1
    gap = book.gaps[0]
    assert (gap.expected, gap.first_id, gap.prev_last_id) == (105, 108, 107)
    # the state before the gap is untouched; later diffs are held, not applied
    assert book.best_bid() == (100.0, 1.0)
    assert not book.apply_diff(113, 120, 112, [["100.4", "1"]], [])
    assert book.best_bid() == (100.0, 1.0) and book.buffered == 2
    # a new snapshot at 115 resyncs: 108..112 is stale, 113..120 straddles
    book.apply_snapshot(115, [["100.35", "7"]], [["100.6", "1"]])
    assert book.in_sync and book.last_update_id == 120 and book.snapshots == 2
    assert book.best_bid() == (100.4, 1.0)


def test_first_diff_that_does_not_straddle_is_a_gap() -> None:
    book = seeded()
    assert not book.apply_diff(102, 105, 101, [], [])  # U > lastUpdateId: snapshot too old
    assert not book.in_sync and len(book.gaps) == 1


def test_repeated_message_is_stale_not_a_gap() -> None:
    book = seeded()
    assert book.apply_diff(95, 105, 94, [], [])
    assert book.apply_diff(106, 110, 105, [], [])
    assert not book.apply_diff(106, 110, 105, [["1", "1"]], [])
    assert book.in_sync and not book.gaps and book.stale == 1


def test_snapshot_older_than_the_in_sync_book_is_ignored() -> None:
    book = seeded()
    assert book.apply_diff(95, 105, 94, [["100.2", "1"]], [])
    book.apply_snapshot(103, [["1.0", "1"]], [["2.0", "1"]])
    assert book.snapshots_ignored == 1 and book.best_bid() == (100.2, 1.0)


def test_futures_diff_without_pu_is_refused() -> None:
    with pytest.raises(ValueError, match="pu"):
        seeded().apply_diff(95, 105, None, [], [])


@pytest.mark.parametrize(
    "level", [["abc", "1"], ["100", "-1"], ["0", "1"], ["100", "nan"], ["inf", "1"]]
)
def test_bad_levels_raise_value_error(level: list[str]) -> None:
    with pytest.raises(ValueError):
        seeded().apply_diff(95, 105, 94, [level], [])


# -- spot rules -----------------------------------------------------------------------


def test_spot_rules() -> None:
    book = seeded(spot=True)
    assert not book.apply_diff(90, 100, None, [], [])  # u <= lastUpdateId: stale on spot
    assert book.apply_diff(99, 104, None, [["100.0", "0"]], [])  # U <= 101 <= u
    assert book.best_bid() == (99.5, 2.0)
    assert book.apply_diff(105, 107, None, [], [])  # U == previous u + 1
    assert not book.apply_diff(109, 110, None, [], [])  # 108 missing
    assert not book.in_sync and book.gaps[0].expected == 108


def test_spot_first_diff_must_cover_last_update_id_plus_one() -> None:
    book = seeded(spot=True)
    assert not book.apply_diff(102, 104, None, [], [])
    assert book.gaps and not book.in_sync


# -- levels and top-N -----------------------------------------------------------------


def test_top_n_orders_sides_and_handles_shallow_books() -> None:
    book = seeded()
    bids, asks = book.top(2)
    assert bids.tolist() == [[100.0, 1.0], [99.5, 2.0]]
    assert asks.tolist() == [[100.5, 1.5], [101.0, 2.5]]
    bids, asks = book.top(10)
    assert bids.shape == (3, 2) and asks.shape == (2, 2)
    empty = L2Book()
    assert empty.best_bid() is None and empty.top(5)[0].shape == (0, 2)


def test_levels_match_a_sorted_reference_under_random_updates() -> None:
    """Deletes and re-adds leave stale and repeated heap entries: best/top must skip them."""
    rng = random.Random(7)
    book = L2Book()
    book.replace([], [])
    ref_b: dict[float, float] = {}
    ref_a: dict[float, float] = {}
    for _ in range(3_000):
        bids, asks = [], []
        for _ in range(rng.randint(1, 6)):
            p = round(100 - rng.randint(1, 60) * 0.1, 1)
            q = 0.0 if rng.random() < 0.4 else rng.randint(1, 9) / 10
            bids.append((p, q))
            ref_b.pop(p, None) if q == 0 else ref_b.__setitem__(p, q)
        for _ in range(rng.randint(1, 6)):
            p = round(100 + rng.randint(1, 60) * 0.1, 1)
            q = 0.0 if rng.random() < 0.4 else rng.randint(1, 9) / 10
            asks.append((p, q))
            ref_a.pop(p, None) if q == 0 else ref_a.__setitem__(p, q)
        book.update_levels(bids, asks)
        want_b = max(ref_b) if ref_b else None
        assert (book.best_bid() or (None,))[0] == want_b
        if rng.random() < 0.2:
            top_b, top_a = book.top(5)
            assert top_b[:, 0].tolist() == sorted(ref_b, reverse=True)[:5]
            assert top_a[:, 0].tolist() == sorted(ref_a)[:5]
            assert top_a[:, 1].tolist() == [ref_a[p] for p in sorted(ref_a)[:5]]
    assert book.bids == ref_b and book.asks == ref_a


# -- sampling -------------------------------------------------------------------------


def test_sampler_keeps_the_last_state_of_each_second() -> None:
    book = seeded()
    sampler = BookSampler(book, depth=2, interval_ms=1_000)
    diffs = [  # (U, u, pu, ts, bid level)
        (95, 105, 94, 1_100, ["100.1", "1"]),
        (106, 107, 105, 1_900, ["100.2", "1"]),  # last of second 1
        (108, 109, 107, 2_500, ["100.3", "1"]),  # only one in second 2
        (111, 112, 110, 3_100, ["100.4", "1"]),  # gap: pu 110 != 109
    ]
    for row, (U, u, pu, ts, lvl) in enumerate(diffs, start=1):
        sampler.before(ts)
        was = book.in_sync
        if book.apply_diff(U, u, pu, [lvl], [], ts):
            sampler.mark(row)
        elif was and not book.in_sync:
            sampler.flush()
    sampler.flush()
    frame = sampler.frame()
    assert frame["update_id"].drop_duplicates().tolist() == [107, 109]
    assert frame.index.unique().tolist() == [2, 3]  # the rows that made those states
    level0 = frame[frame["level"] == 0]
    assert level0["bid_price"].tolist() == [100.2, 100.3]
    assert [t.value // 1_000_000 for t in level0["ts"]] == [1_900, 2_500]
    ds = validate(Dataset(Kind.BOOK, Instrument("binance", "perp", "BTCUSDT"), frame))
    assert ds.rows == 4


def test_book_frame_drops_levels_empty_on_both_sides() -> None:
    bids = [np.array([[10.0, 1.0], [9.0, 2.0]])]
    asks = [np.array([[11.0, 1.0]])]
    frame = book_frame([5_000], [None], bids, asks, depth=3)
    assert frame["level"].tolist() == [0, 1]
    assert np.isnan(frame["ask_price"].iloc[1]) and frame["update_id"].isna().all()


# -- the bookTicker check on a hand-built capture ----------------------------------------


def _line(local_ts: int, stream: str | None, data: dict) -> bytes:
    msg = {"stream": stream, "data": data} if stream else data
    return f"{local_ts} {json.dumps(msg)}".encode()


def _diff(U: int, u: int, pu: int, b: list, a: list, t: int) -> dict:
    return {
        "e": "depthUpdate",
        "E": t,
        "T": t,
        "s": "BTCUSDT",
        "U": U,
        "u": u,
        "pu": pu,
        "b": b,
        "a": a,
    }


def _ticker(u: int, b: str, bq: str, a: str, aq: str, t: int) -> dict:
    return {
        "e": "bookTicker",
        "u": u,
        "s": "BTCUSDT",
        "b": b,
        "B": bq,
        "a": a,
        "A": aq,
        "T": t,
        "E": t,
    }


def write_capture(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    return path


def test_check_compares_at_equal_update_ids(tmp_path: Path) -> None:
    d, t = "btcusdt@depth@0ms", "btcusdt@bookTicker"
    lines = [
        _line(1, t, _ticker(90, "100.0", "1.0", "100.5", "1.5", 1)),  # before the sync
        _line(2, d, _diff(91, 104, 90, [["100.1", "2.0"]], [], 2)),  # buffered
        _line(3, None, {"lastUpdateId": 100, "E": 3, "T": 3, "bids": SNAP_BIDS, "asks": SNAP_ASKS}),
        # ticker for 104 arrives after its diff was applied (during the snapshot catch-up)
        _line(4, t, _ticker(104, "100.1", "2.0", "100.5", "1.5", 4)),
        # a ticker ahead of its diff waits for it
        _line(5, t, _ticker(110, "100.1", "2.0", "100.4", "0.7", 5)),
        _line(6, t, _ticker(107, "100.1", "2.0", "100.5", "1.5", 5)),  # inside 105..110
        _line(7, d, _diff(105, 110, 104, [], [["100.4", "0.7"]], 6)),
        # a mismatch: the ticker says qty 9 where the book has 2
        _line(8, d, _diff(111, 112, 110, [], [], 7)),
        _line(9, t, _ticker(112, "100.1", "9.0", "100.4", "0.7", 7)),
        _line(10, t, _ticker(200, "100.1", "2.0", "100.4", "0.7", 8)),  # after the last diff
    ]
    path = write_capture(tmp_path / "btcusdt_20240101.gz", lines)
    rep = check_book_against_ticker(path)
    assert rep.tickers == 6 and rep.checks == 3 and rep.agreements == 2
    assert rep.mismatches_total == 1
    mm = rep.mismatches[0]
    assert (mm.row, mm.update_id, mm.ticker_bid, mm.book_bid) == (
        9,
        112,
        (100.1, 9.0),
        (100.1, 2.0),
    )
    assert rep.unmatched == {BEFORE_SYNC: 1, INSIDE_DIFF: 1, AFTER_LAST_DIFF: 1}
    assert rep.snapshots == 1 and rep.resyncs == 0 and rep.gaps == 0
    assert rep.agreement_rate == pytest.approx(2 / 3)
    out = json.loads(rep.as_json())
    assert out["checks"] == 3 and out["unmatched_total"] == 3
    assert out["mismatches"][0]["book_bid"] == [100.1, 2.0]


def test_check_counts_gaps_and_tickers_during_them(tmp_path: Path) -> None:
    d, t = "btcusdt@depth@0ms", "btcusdt@bookTicker"
    lines = [
        _line(1, None, {"lastUpdateId": 100, "E": 1, "T": 1, "bids": SNAP_BIDS, "asks": SNAP_ASKS}),
        _line(2, d, _diff(95, 105, 94, [], [], 2)),
        _line(3, d, _diff(108, 110, 107, [], [], 3)),  # gap
        _line(4, t, _ticker(110, "100.0", "1.0", "100.5", "1.5", 4)),
    ]
    rep = check_book_against_ticker(write_capture(tmp_path / "btcusdt_20240101.gz", lines))
    assert rep.gaps == 1 and rep.checks == 0 and not rep.in_sync_at_end
    assert rep.unmatched == {OUT_OF_SYNC: 1}


def test_check_seeds_a_day_file_from_the_previous_day(tmp_path: Path) -> None:
    d, t = "btcusdt@depth@0ms", "btcusdt@bookTicker"
    write_capture(
        tmp_path / "btcusdt_20240101.gz",
        [
            _line(
                1, None, {"lastUpdateId": 100, "E": 1, "T": 1, "bids": SNAP_BIDS, "asks": SNAP_ASKS}
            ),
            _line(2, d, _diff(95, 105, 94, [], [], 2)),
        ],
    )
    nxt = write_capture(
        tmp_path / "btcusdt_20240102.gz",
        [
            _line(3, d, _diff(106, 108, 105, [["100.2", "1.0"]], [], 3)),
            _line(4, t, _ticker(108, "100.2", "1.0", "100.5", "1.5", 3)),
        ],
    )
    rep = check_book_against_ticker(nxt)
    assert rep.seeded_from == ["btcusdt_20240101.gz"]
    assert rep.checks == rep.agreements == 1
    rep = check_book_against_ticker(nxt, chain_previous=False)
    assert rep.checks == 0 and rep.unmatched == {BEFORE_SYNC: 1}


# -- integration: the real captures -------------------------------------------------------

USDM = [
    "btcusdt_20230404.dat.gz",
    "btcusdt_20230405.dat.gz",
    "btcusdt_20240718.gz",
    "btcusdt_20240719.gz",
    "ethusdt_20240718.gz",
    "ethusdt_20240719.gz",
]


@pytest.mark.integration
@pytest.mark.parametrize("name", USDM)
def test_rebuilt_book_agrees_with_book_ticker_on_usdm_captures(name: str) -> None:
    """Every bookTicker whose update id the rebuilt book reached agrees exactly (price and
    quantity, both sides): 100% on all six files, without a gap or resync. The 20230405 /
    20240719 files have no snapshot of their own; they continue the previous day's stream
    (its last u is their first pu) and are seeded by replaying it. Only a few percent of
    the tickers can be checked: a depth@0ms diff still aggregates many update ids, and a
    ticker inside a diff's U..u range describes a state the diff stream never shows."""
    rep = check_book_against_ticker(real_file(f"orderbook/hftbacktest/usdm/{name}"))
    assert rep.market == "perp"
    assert rep.checks >= 150, rep.as_json()
    assert rep.agreement_rate == 1.0 and rep.mismatches_total == 0, rep.as_json()
    assert rep.gaps == 0 and rep.resyncs == 0 and rep.in_sync_at_end
    assert rep.diffs_applied >= rep.diffs - 10  # a few diffs predate the snapshot
    assert rep.unmatched.get(OUT_OF_SYNC, 0) == 0
    assert rep.checks + rep.unmatched_total == rep.tickers


@pytest.mark.integration
def test_spot_capture_cannot_be_checked_without_a_snapshot() -> None:
    """The spot capture holds no REST snapshot and no earlier day beside it, so the book is
    never in sync and nothing is checked. As a diagnostic only, a book started empty at
    the first diff (it knows just the levels that changed) agrees on every ticker whose
    update id ends a depth@100ms diff: the top of the BTCUSDT book changes so often that
    every best level has been rewritten by the time a ticker matches."""
    path = real_file("orderbook/hftbacktest/spot/btcusdt_20230405.dat.gz")
    rep = check_book_against_ticker(path)
    assert rep.market == "spot" and rep.checks == 0 and rep.agreement_rate is None
    assert rep.unmatched == {BEFORE_SYNC: rep.tickers}
    diag = check_book_against_ticker(path, unseeded=True)
    assert diag.checks > 500 and diag.agreement_rate == 1.0 and diag.gaps == 0
