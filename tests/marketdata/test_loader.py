"""load(): aligned frame, as-of joins without look-ahead, resampling, truncation."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perptrader.config import load_settings
from perptrader.core.errors import PerptraderError
from perptrader.core.instruments import Instrument
from perptrader.core.timeframes import timeframe_delta
from perptrader.marketdata.dataset import Dataset, validate
from perptrader.marketdata.kinds import Kind
from perptrader.marketdata.loader import load
from perptrader.marketdata.store.duckdb_store import DuckDBStore
from shared_data import read_futures_feather

BTC = Instrument.parse("BTCUSDT")
T0 = pd.Timestamp("2024-01-01", tz="UTC")


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def make_bars(start: pd.Timestamp = T0, n: int = 72, tf: str = "1h",
              seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.date_range(start, periods=n, freq=timeframe_delta(tf)).as_unit("us")
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    open_ = np.r_[100.0, close[:-1]]
    volume = rng.uniform(900, 1100, n)
    return pd.DataFrame({
        "ts": ts, "open": open_, "high": np.maximum(open_, close) * 1.001,
        "low": np.minimum(open_, close) * 0.999, "close": close, "volume": volume,
        "quote_volume": volume * close,
        "trade_count": pd.array(rng.integers(100, 200, n), dtype="Int64"),
        "taker_buy_base": volume / 2, "taker_buy_quote": volume * close / 2,
    })


def funding_frame(start: pd.Timestamp = T0, n: int = 9) -> pd.DataFrame:
    slots = pd.date_range(start, periods=n, freq="8h").as_unit("us")
    return pd.DataFrame({
        "ts": slots,
        "rate": 0.0001 * np.arange(1, n + 1),  # a distinct rate per settlement
        "exchange_ts": slots + pd.Timedelta(milliseconds=7),
    })


def oi_frame(start: pd.Timestamp = T0 + pd.Timedelta("5min"), n: int = 60) -> pd.DataFrame:
    ts = pd.date_range(start, periods=n, freq="1h").as_unit("us")  # at hh:05
    return pd.DataFrame({"ts": ts, "oi_contracts": 1000.0 + np.arange(n),
                         "oi_value": 1e5 + np.arange(n)})


def liq_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "ts": pd.DatetimeIndex([utc("2024-01-01 10:00"), utc("2024-01-01 10:59:59.999"),
                                utc("2024-01-01 11:00"), utc("2024-01-01 13:30")]).as_unit("us"),
        "side": ["buy", "sell", "sell", "buy"],
        "price": [100.0, 101.0, 102.0, 99.0],
        "qty": [1.0, 2.0, 3.0, 4.0],
    })


def fill(store: DuckDBStore, *, bars: pd.DataFrame | None = None, tf: str = "1h",
         mark: pd.DataFrame | None = None, funding: pd.DataFrame | None = None,
         oi: pd.DataFrame | None = None, liqs: pd.DataFrame | None = None) -> DuckDBStore:
    datasets = []
    if bars is not None:
        datasets.append(Dataset(Kind.OHLCV, BTC, bars, tf, source="test"))
    if mark is not None:
        datasets.append(Dataset(Kind.MARK, BTC, mark, tf, source="test"))
    if funding is not None:
        datasets.append(Dataset(Kind.FUNDING, BTC, funding, source="test"))
    if oi is not None:
        datasets.append(Dataset(Kind.OPEN_INTEREST, BTC, oi, source="test"))
    if liqs is not None:
        datasets.append(Dataset(Kind.LIQUIDATIONS, BTC, liqs, source="test"))
    store.write([validate(ds) for ds in datasets])
    return store


@pytest.fixture
def full(store: DuckDBStore) -> DuckDBStore:
    mark = make_bars(seed=1)
    return fill(store, bars=make_bars(), mark=mark, funding=funding_frame(), oi=oi_frame(),
                liqs=liq_frame())


def test_frame_layout_and_sources(full: DuckDBStore) -> None:
    frame = load("BTCUSDT", "1h", store=full)
    assert isinstance(frame.index, pd.DatetimeIndex) and frame.index.name == "ts"
    assert str(frame.index.dtype) == "datetime64[us, UTC]"
    assert len(frame) == 72 and frame.index.is_monotonic_increasing
    assert list(frame.columns[:9]) == ["open", "high", "low", "close", "volume",
                                       "quote_volume", "trade_count", "taker_buy_base",
                                       "taker_buy_quote"]
    for name in ("mark_open", "mark_close", "funding_rate", "funding_interval_hours",
                 "funding_time", "oi_contracts", "oi_value", "liq_count", "liq_buy_notional"):
        assert name in frame.columns
    sources = frame.attrs["sources"]
    assert sources["bars"]["resampled"] is False
    assert set(sources) == {"bars", "mark", "funding", "open_interest", "liquidations"}
    assert frame.attrs["timeframe"] == "1h" and frame.attrs["symbol"] == "BTCUSDT"
    np.testing.assert_allclose(frame["mark_close"], make_bars(seed=1)["close"])


def test_no_look_ahead_funding_appears_only_on_bars_closing_at_or_after_it(
        full: DuckDBStore) -> None:
    frame = load("BTCUSDT", "1h", store=full)
    closes = frame.index + pd.Timedelta("1h")
    known = frame["funding_time"].notna()
    assert (frame.loc[known, "funding_time"] <= closes[known]).all()
    # the 08:00 settlement: not on the bar closing at 07:00, first on the bar closing at 08:00
    assert frame.loc[utc("2024-01-01 06:00"), "funding_time"] == utc("2024-01-01 00:00")
    assert frame.loc[utc("2024-01-01 07:00"), "funding_time"] == utc("2024-01-01 08:00")
    assert frame.loc[utc("2024-01-01 07:00"), "funding_rate"] == pytest.approx(0.0002)
    # every bar carries the latest settlement at or before its close
    slots = funding_frame()["ts"].to_numpy()
    latest = slots[np.searchsorted(slots, closes.to_numpy(), side="right") - 1]
    np.testing.assert_array_equal(frame["funding_time"].to_numpy(), latest)
    # the stored interval is absent: time since the previous settlement (NaN for the first)
    assert np.isnan(frame["funding_interval_hours"].iloc[0])
    assert (frame["funding_interval_hours"].iloc[8:] == 8.0).all()


def test_no_look_ahead_open_interest_joins_on_bar_close(full: DuckDBStore) -> None:
    frame = load("BTCUSDT", "1h", store=full)
    # OI stamped 10:05 is published inside the 10:00 bar: the bar opening 09:00 (close
    # 10:00) still shows the 09:05 value, the 10:00 bar (close 11:00) the 10:05 one
    assert frame.loc[utc("2024-01-01 09:00"), "oi_contracts"] == 1009.0
    assert frame.loc[utc("2024-01-01 10:00"), "oi_contracts"] == 1010.0
    assert frame["oi_contracts"].iloc[0] == 1000.0  # 00:05 is before the 00:00 bar's close


def test_stale_values_are_not_carried_across_holes(store: DuckDBStore) -> None:
    fill(store, bars=make_bars(), oi=oi_frame(n=20))  # OI stops at 19:05
    frame = load("BTCUSDT", "1h", store=store)
    assert frame.loc[utc("2024-01-01 21:00"), "oi_contracts"] == 1019.0  # 2h old at close
    assert np.isnan(frame.loc[utc("2024-01-01 23:00"), "oi_contracts"])  # > 3 steps old


def test_liquidations_are_summed_inside_each_bar(full: DuckDBStore) -> None:
    frame = load("BTCUSDT", "1h", store=full)
    row = frame.loc[utc("2024-01-01 10:00")]
    assert row["liq_count"] == 2
    assert row["liq_buy_qty"] == 1.0 and row["liq_sell_qty"] == 2.0
    assert row["liq_buy_notional"] == 100.0 and row["liq_sell_notional"] == 202.0
    assert frame.loc[utc("2024-01-01 11:00"), "liq_sell_qty"] == 3.0
    assert frame.loc[utc("2024-01-01 12:00"), "liq_count"] == 0
    assert frame.loc[utc("2024-01-01 13:00"), "liq_buy_qty"] == 4.0
    # before the first event nothing is known: NaN, not zero
    assert np.isnan(frame.loc[utc("2024-01-01 09:00"), "liq_count"])
    assert frame["liq_count"].sum() == 4


def test_truncated_data_gives_the_same_rows_up_to_the_cut(tmp_path: Path) -> None:
    cut = utc("2024-01-02 05:30")
    parts = {"bars": make_bars(), "mark": make_bars(seed=1), "funding": funding_frame(),
             "oi": oi_frame(), "liqs": liq_frame()}
    whole = DuckDBStore(tmp_path / "whole.duckdb")
    whole.migrate()
    fill(whole, **parts)
    cut_store = DuckDBStore(tmp_path / "cut.duckdb")
    cut_store.migrate()
    # data known at the cut: bars closed by then, events stamped before it
    fill(cut_store,
         bars=parts["bars"][parts["bars"]["ts"] + pd.Timedelta("1h") <= cut],
         mark=parts["mark"][parts["mark"]["ts"] + pd.Timedelta("1h") <= cut],
         funding=parts["funding"][parts["funding"]["ts"] <= cut],
         oi=parts["oi"][parts["oi"]["ts"] <= cut],
         liqs=parts["liqs"][parts["liqs"]["ts"] <= cut])
    for tf in ("1h", "4h"):
        a = load("BTCUSDT", tf, store=whole)
        b = load("BTCUSDT", tf, store=cut_store)
        done = a.index + timeframe_delta(tf) <= cut
        assert len(b) == done.sum() > 0
        pd.testing.assert_frame_equal(a[done], b)
    whole.close()
    cut_store.close()


def test_window_equals_slice_of_the_full_load(full: DuckDBStore) -> None:
    everything = load("BTCUSDT", "1h", store=full)
    part = load("BTCUSDT", "1h", "2024-01-02 03:00", "2024-01-02T20:00:00", store=full)
    expected = everything.loc[utc("2024-01-02 03:00"):utc("2024-01-02 19:00")]
    pd.testing.assert_frame_equal(part, expected)


def test_missing_timeframe_is_resampled_without_unfinished_bars(store: DuckDBStore) -> None:
    fill(store, bars=make_bars(n=70), mark=make_bars(n=70, seed=1), funding=funding_frame())
    frame = load("BTCUSDT", "4h", store=store)
    assert len(frame) == 17  # 70 h: 17 whole buckets, the forming 18th is dropped
    assert frame.index[-1] == utc("2024-01-03 16:00")
    src = frame.attrs["sources"]["bars"]
    assert src["resampled"] is True and src["stored_timeframe"] == "1h"
    assert src["incomplete_buckets_dropped"] == 1
    assert frame.attrs["sources"]["mark"]["resampled"] is True
    hourly = make_bars(n=70).set_index("ts")
    assert frame["high"].iloc[0] == hourly["high"].iloc[:4].max()
    assert frame["volume"].iloc[1] == pytest.approx(hourly["volume"].iloc[4:8].sum())
    # funding is joined on the 4h bar close
    assert frame.loc[utc("2024-01-01 04:00"), "funding_time"] == utc("2024-01-01 08:00")
    assert frame.loc[utc("2024-01-01 00:00"), "funding_time"] == utc("2024-01-01 00:00")


def test_resampling_prefers_the_timeframe_covering_the_window(store: DuckDBStore) -> None:
    # 15m bars for one day only, 1h bars for three days: the 1h bars serve a 4h load
    fill(store, bars=make_bars(n=72), tf="1h")
    fill(store, bars=make_bars(n=96, tf="15m", seed=5), tf="15m")
    frame = load("BTCUSDT", "4h", store=store)
    assert frame.attrs["sources"]["bars"]["stored_timeframe"] == "1h"
    assert len(frame) == 18
    # inside the day both cover, the coarser one wins too
    day = load("BTCUSDT", "4h", "2024-01-01", "2024-01-02", store=store)
    assert day.attrs["sources"]["bars"]["stored_timeframe"] == "1h"


def test_no_bars_raises_a_helpful_error(store: DuckDBStore) -> None:
    with pytest.raises(PerptraderError, match=r"no 1h bars for ETHUSDT.*perptrader data import"):
        load("ETHUSDT", "1h", store=store)
    fill(store, bars=make_bars(n=3))  # too few 1h bars for one 4h bucket
    with pytest.raises(PerptraderError, match="no complete 4h bucket"):
        load("BTCUSDT", "4h", store=store)


def test_symbol_notations_and_default_store_from_settings(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    s = DuckDBStore(settings.embedded_store_path)
    s.migrate()
    fill(s, bars=make_bars(n=10))
    s.close()
    a = load("BTC/USDT:USDT", "1h", settings=settings)
    b = load("btcusdt", "1h", settings=settings, exchange="binance", market="perp")
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(PerptraderError, match="BTCUSDT"):
        load("BTCUSDT", "1h", settings=settings, market="spot")


# ------------------------------------------------------------------ real data


def read_feather(name: str) -> pd.DataFrame:
    return read_futures_feather(name)


@pytest.mark.integration
def test_real_funding_joins_onto_real_1h_bars(store: DuckDBStore) -> None:
    bars = read_feather("BTC_USDT_USDT-1h-futures.feather").rename(columns={"date": "ts"})
    raw = read_feather("BTC_USDT_USDT-8h-funding_rate.feather")
    # the raw fundingTime is a few ms late: the slot goes to ts, the raw time to exchange_ts
    funding = pd.DataFrame({"ts": raw["date"].dt.floor("min"), "rate": raw["open"],
                            "exchange_ts": raw["date"]})
    assert (funding["ts"] != raw["date"]).sum() > 1000
    fill(store, bars=bars, funding=funding)

    started = time.perf_counter()
    frame = load("BTCUSDT", "1h", store=store)
    elapsed = time.perf_counter() - started
    assert len(frame) == 21888 and elapsed < 2.0

    closes = frame.index + pd.Timedelta("1h")
    assert frame["funding_rate"].notna().all()
    assert (frame["funding_time"] <= closes).all()
    # independent check: the latest settlement at or before each close
    slots = funding["ts"].astype("datetime64[us, UTC]").to_numpy()
    idx = np.searchsorted(slots, closes.to_numpy(), side="right") - 1
    np.testing.assert_array_equal(frame["funding_time"].to_numpy(), slots[idx])
    np.testing.assert_allclose(frame["funding_rate"].to_numpy(),
                               funding["rate"].to_numpy()[idx])
    # a settlement appears first on the bar that closes at it
    first = frame.index[frame["funding_time"] == utc("2024-03-01 08:00")][0]
    assert first == utc("2024-03-01 07:00")
    assert (frame["funding_interval_hours"].dropna() == 8.0).all()


@pytest.mark.integration
def test_real_1h_resampled_to_4h_by_the_loader(store: DuckDBStore) -> None:
    bars = read_feather("BTC_USDT_USDT-1h-futures.feather").rename(columns={"date": "ts"})
    ref = read_feather("BTC_USDT_USDT-4h-futures.feather").rename(columns={"date": "ts"})
    fill(store, bars=bars)
    frame = load("BTCUSDT", "4h", store=store)
    assert frame.attrs["sources"]["bars"]["stored_timeframe"] == "1h"
    ref = ref.set_index(pd.DatetimeIndex(ref["ts"]).as_unit("us"))
    assert len(frame) == len(ref) == 5472
    same = np.isclose(frame["volume"], ref["volume"], rtol=1e-7) & (
        frame["close"].to_numpy() == ref["close"].to_numpy())
    assert same.sum() >= 5470  # MANIFEST: 2 known mismatches
