from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from perptrader.core.errors import DataFormatError
from perptrader.core.instruments import Instrument
from perptrader.marketdata.dataset import Dataset, to_utc, validate
from perptrader.marketdata.kinds import Kind
from perptrader.marketdata.sources.funding import derive_interval_hours

BTC = Instrument.parse("BTCUSDT")
H = 3_600_000


def bars(n: int = 4, step_ms: int = H, **override: object) -> pd.DataFrame:
    frame = pd.DataFrame({
        "ts": to_utc(1_700_000_000_000 // H * H + np.arange(n) * step_ms, "ms"),
        "open": 100.0, "high": 101.0, "low": 99.0, "close": 100.5, "volume": 10.0,
    })
    for key, value in override.items():
        frame[key] = value
    frame.index = range(2, n + 2)
    return frame


def test_valid_bars_get_canonical_columns() -> None:
    ds = validate(Dataset(Kind.OHLCV, BTC, bars(), "1h", "f.csv"))
    assert list(ds.frame.columns) == ["ts", "open", "high", "low", "close", "volume",
                                      "quote_volume", "trade_count", "taker_buy_base",
                                      "taker_buy_quote"]
    assert str(ds.frame["ts"].dtype) == "datetime64[us, UTC]"


@pytest.mark.parametrize("column,value,field,message", [
    ("close", "abc", "close", "not a number"),
    ("high", 99.5, "high", "high is below"),
    ("low", 100.8, "low", "low is above"),
    ("open", -1.0, "open", "positive"),
    ("volume", -5.0, "volume", "negative"),
])
def test_bad_row_names_file_row_and_field(column: str, value: object, field: str,
                                          message: str) -> None:
    frame = bars()
    frame[column] = frame[column].astype(object)
    frame.loc[4, column] = value  # the third data row, line 4 of the file
    with pytest.raises(DataFormatError, match=message) as info:
        validate(Dataset(Kind.OHLCV, BTC, frame, "1h", "f.csv"))
    assert (info.value.path, info.value.row, info.value.field) == ("f.csv", 4, field)


def test_exact_duplicates_dropped_conflicting_refused() -> None:
    frame = pd.concat([bars(), bars().iloc[[1]]])
    ds = validate(Dataset(Kind.OHLCV, BTC, frame, "1h"))
    assert ds.rows == 4 and "duplicate" in ds.notes[0]
    conflicting = bars().iloc[[1]].copy()
    conflicting["close"] = 100.7
    with pytest.raises(DataFormatError, match="share the key"):
        validate(Dataset(Kind.OHLCV, BTC, pd.concat([bars(), conflicting]), "1h"))


def test_bars_must_fit_their_timeframe() -> None:
    with pytest.raises(DataFormatError, match="do not fit the timeframe 8m"):
        validate(Dataset(Kind.OHLCV, BTC, bars(step_ms=60_000), "8m", "x-8m.json"))


def test_funding_rate_sanity() -> None:
    frame = pd.DataFrame({"ts": to_utc(np.array([0, 8 * H]) + 1_700_000_000_000, "ms"),
                          "rate": [0.0001, 5.0]})
    with pytest.raises(DataFormatError, match="funding rate"):
        validate(Dataset(Kind.FUNDING, BTC, frame))


def test_funding_interval_is_read_from_the_data() -> None:
    us = 3_600_000_000
    # 8h settlements, one missing (16h jump), then the venue switches to 4h
    slots = np.array([0, 8, 16, 32, 40, 44, 48, 52]) * us
    assert derive_interval_hours(slots).tolist() == [8, 8, 8, 8, 8, 4, 4, 4]
