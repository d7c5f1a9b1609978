"""The fast write path of book snapshots (and every canonical frame): ``validate``'s
shortcut for frames that are already canonical, and DuckDB's Arrow-staged insert-new-
then-merge write. Both must give exactly what the general path gives: the same
validated frame, the same error for a bad row, the same stored rows and counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perptrader.core.errors import DataFormatError
from perptrader.core.instruments import Instrument
from perptrader.marketdata import dataset as dataset_mod
from perptrader.marketdata.dataset import Dataset, to_utc, validate
from perptrader.marketdata.kinds import TABLES, Kind
from perptrader.marketdata.orderbook import book_frame
from perptrader.marketdata.store import sql
from perptrader.marketdata.store.common import staged_frame, write_spec
from perptrader.marketdata.store.duckdb_store import DuckDBStore

BTC = Instrument.parse("BTCUSDT")
T0 = 1_721_347_200_000


def book_ds(n: int = 40, start: int = 0, seed: int = 1, depth: int = 5) -> Dataset:
    """Snapshots with shallow and empty sides and missing update ids (empty cells)."""
    rng = np.random.default_rng(seed)
    ts = [T0 + (start + i) * 1000 + int(rng.integers(0, 999)) for i in range(n)]
    ids = [None if i % 7 == 3 else start + i for i in range(n)]

    def side(sign: float) -> list[np.ndarray]:
        out = []
        for k in rng.integers(0, depth + 3, n):
            px = 60_000 + sign * (0.1 + np.arange(k) * 0.1)
            out.append(np.column_stack([px, rng.uniform(0, 5, k).round(3)]))
        return out

    frame = book_frame(ts, ids, side(-1), side(1), depth)
    frame.index = pd.RangeIndex(1, len(frame) + 1)
    return Dataset(Kind.BOOK, BTC, frame, None, "test")


def general_validate(ds: Dataset, monkeypatch: pytest.MonkeyPatch) -> Dataset:
    with monkeypatch.context() as m:
        m.setattr(dataset_mod, "_validate_canonical", lambda *_: None)
        return validate(ds)


def old_write(store: DuckDBStore, ds: Dataset) -> tuple[int, int]:
    """The write as it was: a pandas frame staged, two counts, one upsert."""
    con = store._con.cursor()
    spec = write_spec(ds)
    con.execute("BEGIN TRANSACTION")
    con.register("staged", staged_frame(ds))
    inserted = con.execute(sql.count_new(spec)).fetchall()[0][0]
    changed = con.execute(sql.count_changed(spec)).fetchall()[0][0]
    if inserted or changed:
        con.execute(sql.upsert(spec)).fetchall()
    con.unregister("staged")
    con.execute("COMMIT")
    con.close()
    return int(inserted), int(changed)


def stored(store: DuckDBStore, table: str = "book_snapshots") -> list[tuple]:
    cols = ", ".join(sql.all_columns(TABLES[Kind.BOOK]))
    return store._con.execute(f"SELECT {cols} FROM {table} ORDER BY ALL").fetchall()


@pytest.fixture()
def two_stores(tmp_path: Path):
    stores = []
    for name in ("new", "old"):
        s = DuckDBStore(tmp_path / f"{name}.duckdb")
        s.migrate()
        stores.append(s)
    yield stores
    for s in stores:
        s.close()


def test_canonical_shortcut_equals_general_validate(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = book_ds()
    assert dataset_mod._validate_canonical(raw, None) is not None  # the shortcut applies
    fast = validate(raw)
    slow = general_validate(raw, monkeypatch)
    pd.testing.assert_frame_equal(fast.frame, slow.frame)
    assert fast.notes == slow.notes
    # bars built by a source (numpy dtypes) take it too, and give the same frame
    bars = pd.DataFrame({
        "ts": to_utc(T0 // 3_600_000 * 3_600_000 + np.arange(6) * 3_600_000, "ms"),
        "open": 100.0, "high": 101.0, "low": 99.0, "close": 100.5, "volume": 3.0,
        "quote_volume": 300.0, "trade_count": np.arange(6, dtype="int64"),
        "taker_buy_base": 1.0, "taker_buy_quote": np.nan,
    })
    ds = Dataset(Kind.OHLCV, BTC, bars, "1h", "test")
    assert dataset_mod._validate_canonical(ds, None) is not None
    pd.testing.assert_frame_equal(validate(ds).frame, general_validate(ds, monkeypatch).frame)
    # empty
    empty = Dataset(Kind.BOOK, BTC, book_frame([], [], [], [], 5), None, "test")
    pd.testing.assert_frame_equal(validate(empty).frame,
                                  general_validate(empty, monkeypatch).frame)


def test_unsorted_or_repeated_rows_take_the_general_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = book_ds()
    shuffled = raw.frame.sample(frac=1.0, random_state=3)
    repeated = pd.concat([raw.frame, raw.frame.iloc[:4]])
    for frame in (shuffled, repeated):
        ds = Dataset(Kind.BOOK, BTC, frame, None, "test")
        fast, slow = validate(ds), general_validate(ds, monkeypatch)
        pd.testing.assert_frame_equal(fast.frame, slow.frame)
        assert fast.notes == slow.notes
    assert validate(Dataset(Kind.BOOK, BTC, repeated, None, "t")).notes == [
        "4 exact duplicate row(s) dropped"]


@pytest.mark.parametrize("column,value,message", [
    ("bid_qty", -1.0, "quantity must not be negative"),
    ("ask_price", 0.0, "price must be positive"),
    ("ask_price", np.inf, "infinite value"),
    ("level", -2, "level must be >= 0"),
])
def test_bad_book_row_is_refused_naming_row_and_field(
    two_stores: list[DuckDBStore], monkeypatch: pytest.MonkeyPatch, column: str,
    value: object, message: str,
) -> None:
    ds = book_ds()
    row = int(ds.frame.index[17])
    ds.frame.loc[row, column] = value
    with pytest.raises(DataFormatError) as fast:
        validate(ds)
    with pytest.raises(DataFormatError) as slow:
        general_validate(ds, monkeypatch)
    assert str(fast.value) == str(slow.value)
    assert message in str(fast.value) and column in str(fast.value)
    assert f"row {row}" in str(fast.value)
    assert stored(two_stores[0]) == []  # validate-then-store: nothing reached the store


def test_fast_write_stores_what_the_old_write_stored(two_stores: list[DuckDBStore]) -> None:
    new, old = two_stores
    batches = [validate(book_ds(start=0)), validate(book_ds(start=30, seed=2)),
               validate(book_ds(start=0))]  # overlaps the first, then repeats it
    for ds in batches:
        res = new.write([ds])[0]
        assert (res.rows_inserted, res.rows_updated) == old_write(old, ds)
    assert stored(new) == stored(old)
    assert len(stored(new)) == len(new.read(Kind.BOOK, BTC))
    again = new.write([batches[1]])[0]  # idempotent: nothing stored twice
    assert (again.rows_inserted, again.rows_updated) == (0, 0)
    assert stored(new) == stored(old)
    # empty cells are NULL (not NaN) as before, and the merge rule fills them later
    nulls = new._con.execute(
        "SELECT count(*) FROM book_snapshots WHERE bid_price IS NULL OR update_id IS NULL"
    ).fetchall()[0][0]
    assert nulls > 0
    filled = validate(book_ds(start=0))
    filled.frame["update_id"] = filled.frame["update_id"].fillna(7)
    res = new.write([filled])[0]
    assert res.rows_inserted == 0 and res.rows_updated > 0
    assert (res.rows_inserted, res.rows_updated) == old_write(old, filled)
    assert stored(new) == stored(old)


def test_failed_write_leaves_nothing(two_stores: list[DuckDBStore]) -> None:
    new = two_stores[0]
    good = validate(book_ds())
    bad = validate(book_ds(start=100))
    bad.frame["level"] = pd.array([None] * len(bad.frame), dtype="Int64")  # NOT NULL key
    with pytest.raises(Exception):  # noqa: B017 - any database error
        new.write([good, bad])
    assert stored(new) == []


def test_a_stored_key_in_one_dataset_redoes_the_whole_batch(
    two_stores: list[DuckDBStore],
) -> None:
    new, old = two_stores
    first, second = validate(book_ds(start=0)), validate(book_ds(start=200, seed=3))
    for store in two_stores:
        store.write([first]) if store is new else old_write(old, first)
    fresh = validate(book_ds(start=100, seed=4))
    # the plain insert of `fresh` succeeds, that of `first` fails: both are redone
    res = new.write([fresh, first, second])
    expected = [old_write(old, ds) for ds in (fresh, first, second)]
    assert [(r.rows_inserted, r.rows_updated) for r in res] == expected
    assert expected[1] == (0, 0) and expected[0][0] == len(fresh.frame)
    assert stored(new) == stored(old)
