from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from perptrader.core.errors import DataFormatError
from perptrader.core.instruments import Instrument
from perptrader.marketdata.dataset import Dataset, to_utc, validate
from perptrader.marketdata.kinds import Kind
from perptrader.marketdata.store.duckdb_store import DuckDBStore

BTC = Instrument.parse("BTCUSDT")
H = 3_600_000
T0 = 1_700_000_000_000 // H * H


def bar_ds(n: int = 5, volume: float = 10.0, start: int = 0, **extra: object) -> Dataset:
    frame = pd.DataFrame({
        "ts": to_utc(T0 + (start + np.arange(n)) * H, "ms"),
        "open": 100.0, "high": 101.0, "low": 99.0, "close": 100.5, "volume": volume, **extra,
    })
    return validate(Dataset(Kind.OHLCV, BTC, frame, "1h", "test"))


def test_migrate_is_idempotent(store: DuckDBStore) -> None:
    assert store.migrate() == "0001"
    assert store.migrate() == "0001"


def test_second_write_adds_nothing(store: DuckDBStore) -> None:
    first = store.write([bar_ds()])[0]
    second = store.write([bar_ds()])[0]
    assert (first.rows_inserted, first.rows_updated) == (5, 0)
    assert (second.rows_inserted, second.rows_updated) == (0, 0)
    assert len(store.read(Kind.OHLCV, BTC, "1h")) == 5


def test_larger_volume_wins_and_extras_fill(store: DuckDBStore) -> None:
    store.write([bar_ds(volume=5.0)])  # a truncated download
    result = store.write([bar_ds(volume=10.0)])[0]
    assert result.rows_updated == 5
    smaller = store.write([bar_ds(volume=7.0)])[0]
    assert smaller.rows_updated == 0
    filled = store.write([bar_ds(volume=7.0, taker_buy_base=3.0)])[0]
    assert filled.rows_updated == 5
    back = store.read(Kind.OHLCV, BTC, "1h")
    assert back["volume"].tolist() == [10.0] * 5
    assert back["taker_buy_base"].tolist() == [3.0] * 5


def test_write_is_all_or_nothing(store: DuckDBStore) -> None:
    bad = bar_ds(start=100)
    bad.frame["close"] = np.nan  # bypasses validation on purpose: NOT NULL must reject it
    with pytest.raises(Exception):  # noqa: B017 - any database error
        store.write([bar_ds(), bad])
    assert store.inventory() == []


def test_read_range_and_inventory_gaps(store: DuckDBStore) -> None:
    store.write([bar_ds(n=5), bar_ds(n=3, start=10)])
    part = store.read(Kind.OHLCV, BTC, "1h", start=pd.Timestamp(T0 + H, unit="ms", tz="UTC"),
                      end=pd.Timestamp(T0 + 3 * H, unit="ms", tz="UTC"))
    assert len(part) == 2
    [info] = store.inventory()
    assert (info.rows, info.gaps, info.timeframe) == (8, 1, "1h")
    js = info.as_json()
    assert list(js) == ["symbol", "kind", "timeframe", "first", "last", "rows", "gaps"]
    assert js["first"].endswith("Z")


def test_validation_error_type() -> None:
    with pytest.raises(DataFormatError):
        bar_ds(volume=-1.0)
