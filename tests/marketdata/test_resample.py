"""resample_bars: complete buckets only, epoch/Monday anchors, NaN-aware sums."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from perptrader.core.timeframes import timeframe_delta
from perptrader.marketdata.resample import anchor_ms, can_resample, resample_bars
from shared_data import read_futures_feather


def make_bars(start: str, n: int, tf: str = "1h", seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.date_range(start, periods=n, freq=timeframe_delta(tf), tz="UTC").as_unit("us")
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    open_ = np.r_[100.0, close[:-1]]
    volume = rng.uniform(900, 1100, n).round(3)
    return pd.DataFrame({
        "ts": ts,
        "open": open_,
        "high": np.maximum(open_, close) * 1.001,
        "low": np.minimum(open_, close) * 0.999,
        "close": close,
        "volume": volume,
        "quote_volume": volume * close,
        "trade_count": pd.array(rng.integers(100, 200, n), dtype="Int64"),
        "taker_buy_base": volume / 2,
        "taker_buy_quote": volume * close / 2,
    })


def reference(frame: pd.DataFrame, rule: str, per_bucket: int) -> pd.DataFrame:
    """Plain pandas groupby, for comparison (complete buckets only)."""
    g = frame.set_index("ts").resample(rule, origin="epoch", label="left", closed="left")
    out = g.agg({"open": "first", "high": "max", "low": "min", "close": "last",
                 "volume": "sum", "quote_volume": "sum", "trade_count": "sum",
                 "taker_buy_base": "sum", "taker_buy_quote": "sum"})
    return out[g.size() == per_bucket]


def test_complete_buckets_aggregate_like_binance() -> None:
    src = make_bars("2024-01-01", 8)
    out = resample_bars(src, "1h", "4h")
    assert list(out["ts"]) == [pd.Timestamp("2024-01-01 00:00", tz="UTC"),
                               pd.Timestamp("2024-01-01 04:00", tz="UTC")]
    first = src.iloc[:4]
    row = out.iloc[0]
    assert row["open"] == first["open"].iloc[0]
    assert row["close"] == first["close"].iloc[-1]
    assert row["high"] == first["high"].max()
    assert row["low"] == first["low"].min()
    for name in ("volume", "quote_volume", "taker_buy_base", "taker_buy_quote"):
        assert row[name] == pytest.approx(first[name].sum())
    assert row["trade_count"] == first["trade_count"].sum()
    assert str(out["ts"].dtype) == "datetime64[us, UTC]"
    assert str(out["trade_count"].dtype) == "Int64"
    assert out.attrs["incomplete_buckets"] == 0


def test_matches_pandas_reference() -> None:
    src = make_bars("2024-01-01", 24 * 10, seed=3)
    out = resample_bars(src, "1h", "4h").set_index("ts")
    ref = reference(src, "4h", 4)
    pd.testing.assert_frame_equal(out, ref, check_dtype=False, check_freq=False,
                                  check_index_type=False, check_names=False)


def test_bucket_with_a_missing_bar_is_dropped() -> None:
    src = make_bars("2024-01-01", 12).drop(index=5)  # 05:00 missing: bucket 04:00 incomplete
    out = resample_bars(src, "1h", "4h")
    assert [t.hour for t in out["ts"]] == [0, 8]
    assert out.attrs["incomplete_buckets"] == 1


def test_bucket_still_forming_at_the_end_is_dropped() -> None:
    src = make_bars("2024-01-01", 7)  # 00..03 complete, 04..06 still forming
    out = resample_bars(src, "1h", "4h")
    assert len(out) == 1 and out["ts"].iloc[0].hour == 0


def test_partial_bucket_at_the_start_is_dropped() -> None:
    src = make_bars("2024-01-01 02:00", 10)  # 02, 03 | 04..07 | 08..11
    out = resample_bars(src, "1h", "4h")
    assert [t.hour for t in out["ts"]] == [4, 8]


def test_off_grid_bar_makes_its_bucket_incomplete() -> None:
    src = make_bars("2024-01-01", 8)
    src.loc[2, "ts"] = src.loc[2, "ts"] + pd.Timedelta(minutes=30)
    out = resample_bars(src, "1h", "4h")
    assert [t.hour for t in out["ts"]] == [4]


def test_sums_stay_nan_when_a_part_is_unknown() -> None:
    src = make_bars("2024-01-01", 8)
    src.loc[1, "quote_volume"] = np.nan
    src.loc[6, "trade_count"] = pd.NA
    src["taker_buy_base"] = np.nan  # a source without taker volumes
    out = resample_bars(src, "1h", "4h")
    assert np.isnan(out["quote_volume"].iloc[0])
    assert out["quote_volume"].iloc[1] == pytest.approx(src["quote_volume"].iloc[4:].sum())
    assert out["trade_count"].iloc[0] == src["trade_count"].iloc[:4].sum()
    assert out["trade_count"].isna().iloc[1]
    assert out["taker_buy_base"].isna().all()
    assert out["volume"].notna().all()


def test_only_the_columns_present_are_returned() -> None:
    src = make_bars("2024-01-01", 8)[["ts", "open", "high", "low", "close", "volume"]]
    out = resample_bars(src, "1h", "2h")
    assert list(out.columns) == ["ts", "open", "high", "low", "close", "volume"]
    assert len(out) == 4


def test_daily_buckets_start_at_midnight_utc() -> None:
    src = make_bars("2024-01-01 20:00", 4 + 24 + 5, tf="1h")  # 20:00 .. day 3 04:00
    out = resample_bars(src, "1h", "1d")
    assert list(out["ts"]) == [pd.Timestamp("2024-01-02", tz="UTC")]


def test_weekly_buckets_start_on_monday() -> None:
    # 2024-01-04 is a Thursday; 2024-01-08 a Monday
    src = make_bars("2024-01-04", 14, tf="1d")
    out = resample_bars(src, "1d", "1w")
    assert list(out["ts"]) == [pd.Timestamp("2024-01-08", tz="UTC")]
    assert out["ts"].iloc[0].day_name() == "Monday"
    assert out["open"].iloc[0] == src.set_index("ts").loc["2024-01-08", "open"]
    assert anchor_ms("1w") == 4 * 86_400_000 and anchor_ms("1d") == 0


def test_datetime_index_in_datetime_index_out() -> None:
    src = make_bars("2024-01-01", 8).set_index("ts")
    out = resample_bars(src, "1h", "4h")
    assert isinstance(out.index, pd.DatetimeIndex) and "ts" not in out.columns
    assert len(out) == 2


def test_same_timeframe_keeps_every_aligned_bar() -> None:
    src = make_bars("2024-01-01", 5)
    out = resample_bars(src, "1h", "1h")
    pd.testing.assert_frame_equal(out, src, check_dtype=False)


def test_empty_input_gives_an_empty_frame() -> None:
    out = resample_bars(make_bars("2024-01-01", 3).iloc[:0], "1h", "4h")
    assert out.empty and "ts" in out.columns


@pytest.mark.parametrize(("src", "dst", "ok"), [
    ("1h", "4h", True), ("15m", "1h", True), ("1d", "1w", True), ("1h", "1w", True),
    ("2d", "1w", False), ("1h", "90m", False), ("4h", "1h", False), ("3m", "1h", True),
    ("7m", "1h", False),
])
def test_can_resample(src: str, dst: str, ok: bool) -> None:
    assert can_resample(src, dst) is ok


def test_impossible_combinations_and_duplicates_raise() -> None:
    src = make_bars("2024-01-01", 8)
    with pytest.raises(ValueError, match="whole multiple"):
        resample_bars(src, "1h", "90m")
    with pytest.raises(ValueError, match="duplicate"):
        resample_bars(pd.concat([src, src.iloc[[0]]]), "1h", "4h")


# ------------------------------------------------------------------ real data


def read_feather(name: str) -> pd.DataFrame:
    return read_futures_feather(name).rename(columns={"date": "ts"})


def compare(fine: pd.DataFrame, fine_tf: str, coarse: pd.DataFrame,
            coarse_tf: str) -> tuple[int, list[pd.Timestamp]]:
    agg = resample_bars(fine, fine_tf, coarse_tf)
    both = agg.merge(coarse.assign(ts=coarse["ts"].astype(agg["ts"].dtype)), on="ts",
                     suffixes=("", "_ref"))
    bad = np.zeros(len(both), dtype=bool)
    for name in ("open", "high", "low", "close"):
        bad |= both[name].to_numpy() != both[f"{name}_ref"].to_numpy()
    bad |= ~np.isclose(both["volume"], both["volume_ref"], rtol=1e-7, atol=0)
    return len(both), list(both.loc[bad, "ts"])


@pytest.mark.integration
def test_real_btc_1h_to_4h_matches_binance_4h() -> None:
    n, bad = compare(read_feather("BTC_USDT_USDT-1h-futures.feather"), "1h",
                     read_feather("BTC_USDT_USDT-4h-futures.feather"), "4h")
    # MANIFEST cross-check: 5472 complete buckets, 2 known mismatches
    assert n == 5472
    assert 1 - len(bad) / n > 0.999
    known = {pd.Timestamp("2023-11-10 12:00", tz="UTC"),  # catman77 truncated 1h candles
             pd.Timestamp("2024-10-28 20:00", tz="UTC")}  # Binance kline incident
    assert set(bad) <= known and len(bad) == 2


@pytest.mark.integration
def test_real_btc_15m_to_1h_mismatches_are_the_known_incidents() -> None:
    n, bad = compare(read_feather("BTC_USDT_USDT-15m-futures.feather"), "15m",
                     read_feather("BTC_USDT_USDT-1h-futures.feather"), "1h")
    assert n == 21888
    known = {pd.Timestamp(t, tz="UTC") for t in (
        "2024-03-27 12:00", "2024-03-28 10:00", "2024-03-28 11:00", "2024-03-28 12:00",
        "2024-10-28 20:00", "2024-10-28 21:00", "2025-01-14 13:00", "2025-01-14 15:00",
        "2025-01-29 01:00", "2025-01-29 02:00")}
    assert set(bad) == known
    assert 1 - len(bad) / n > 0.999
