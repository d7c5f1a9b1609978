"""A collector run over a replayed stream window: the stored bars equal the recorded
klines, the final book equals the L2 replayer's book at the same update id."""

from __future__ import annotations

from perptrader.marketdata.kinds import Kind
from venues.venue_fakes import (
    BTC,
    check_bars,
    check_book,
    minute_market,
    run_collector,
)


def test_replayed_window_bars_and_book_match(store) -> None:
    data = minute_market()
    collector, _ = run_collector(store, data, duration=2.0)
    check_bars(store, data)
    capture = data.capture("BTCUSDT")
    check_book(collector, capture, store)
    feed = collector.books["BTCUSDT"]
    assert feed.stats.gaps == 0 and feed.stats.applied > 20
    trades = store.read(Kind.TRADES, BTC)
    assert trades["trade_id"].is_unique and len(trades) > 20
    status = collector.status()
    assert status["rows_written"] > 0 and status["last_write"] is not None
    assert status["streams"]["BTCUSDT book"]["messages_per_s"] > 0


def test_real_capture_replayed_book_matches(store) -> None:
    """The same over a real Binance USD-M capture (snapshot + ~11k depth@0ms diffs of
    BTCUSDT, 2024-07-18), replayed by the fake at 120x."""
    from perptrader.venues.fake.data import _parse_capture
    from shared_data import real_file

    capture = _parse_capture(real_file("orderbook/hftbacktest/usdm/btcusdt_20240718.gz"))
    data = minute_market(capture=capture)
    collector, _ = run_collector(store, data, duration=2.0, speed=120.0, streams=("klines", "book"))
    check_bars(store, data)
    # the REST snapshot holds 1000 levels a side (as Binance's): levels past those stay
    # unknown to any client, so the books are compared over the top 500
    check_book(collector, capture, store, depth=500)
    feed = collector.books["BTCUSDT"]
    assert feed.stats.gaps == 0 and feed.stats.level_changes > 5000
    assert feed.book.last_update_id > capture.snapshot["lastUpdateId"]


def test_replayed_window_into_postgresql(pg_url) -> None:
    """The same run writing to PostgreSQL (one connection, used one call at a time)."""
    from perptrader.marketdata.store.postgres_store import PostgresStore

    data = minute_market()
    with PostgresStore(pg_url) as store:
        store.migrate()
        collector, _ = run_collector(store, data, duration=2.0)
        check_bars(store, data)
        check_book(collector, data.capture("BTCUSDT"), store)
        ids = store.read(Kind.TRADES, BTC)["trade_id"].to_numpy()
        assert len(ids) > 20 and set(ids) == set(range(5000, int(ids.max()) + 1))
