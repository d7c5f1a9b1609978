"""Quality checks: one small hand-built frame per check, a store report, real files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perptrader.core.instruments import Instrument
from perptrader.core.timeframes import timeframe_delta
from perptrader.marketdata.dataset import Dataset, validate
from perptrader.marketdata.kinds import Kind
from perptrader.marketdata.quality import (
    Issue,
    QualityConfig,
    QualityReport,
    check_consistency,
    check_frame,
    check_store,
)
from perptrader.marketdata.resample import resample_bars
from perptrader.marketdata.store.duckdb_store import DuckDBStore
from shared_data import read_futures_feather, real_file

BTC = Instrument.parse("BTCUSDT")


def make_bars(start: str = "2024-01-01", n: int = 200, tf: str = "1h",
              seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.date_range(start, periods=n, freq=timeframe_delta(tf), tz="UTC").as_unit("us")
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    open_ = np.r_[100.0, close[:-1]]
    volume = rng.uniform(900, 1100, n)
    return pd.DataFrame({
        "ts": ts,
        "open": open_,
        "high": np.maximum(open_, close) * (1 + rng.uniform(0.0005, 0.002, n)),
        "low": np.minimum(open_, close) * (1 - rng.uniform(0.0005, 0.002, n)),
        "close": close,
        "volume": volume,
        "quote_volume": volume * close,
        "trade_count": pd.array(rng.integers(100, 200, n), dtype="Int64"),
        "taker_buy_base": volume / 2,
        "taker_buy_quote": volume * close / 2,
    })


def checks(issues: list[Issue]) -> dict[str, Issue]:
    return {i.check: i for i in issues}


def test_clean_bars_have_no_issues() -> None:
    assert check_frame(Kind.OHLCV, make_bars(), "1h") == []


def test_gaps_are_warnings_with_the_row_before_each_gap() -> None:
    bars = make_bars().drop(index=[50, 51, 52, 120]).reset_index(drop=True)
    issue = checks(check_frame(Kind.OHLCV, bars, "1h", series="BTCUSDT/ohlcv/1h"))["gaps"]
    assert issue.severity == "warning" and issue.count == 2
    assert issue.series == "BTCUSDT/ohlcv/1h"
    assert issue.timestamps == ("2024-01-03T01:00:00Z", "2024-01-05T23:00:00Z")
    assert "about 4 row(s) missing" in issue.message and "longest 4 h" in issue.message


def test_duplicates_and_non_monotonic_are_errors() -> None:
    bars = make_bars(n=50)
    dup = pd.concat([bars, bars.iloc[[10]]], ignore_index=True)  # exact copy, out of order
    found = checks(check_frame(Kind.OHLCV, dup, "1h"))
    assert found["duplicates"].severity == "error" and found["duplicates"].count == 1
    assert found["duplicates"].timestamps == ("2024-01-01T10:00:00Z",)
    assert found["non_monotonic"].severity == "error"
    assert found["non_monotonic"].timestamps == ("2024-01-01T10:00:00Z",)
    assert "gaps" not in found  # the checks after sorting see a regular series


def test_ohlc_violations_and_non_positive_prices_are_errors() -> None:
    bars = make_bars(n=60)
    bars.loc[5, "high"] = bars.loc[5, ["open", "close"]].max() * 0.99  # high below body
    bars.loc[9, "low"] = bars.loc[9, ["open", "close"]].min() * 1.01  # low above body
    bars.loc[20, "low"] = -1.0
    found = checks(check_frame(Kind.OHLCV, bars, "1h"))
    assert found["ohlc_violation"].severity == "error"
    assert found["ohlc_violation"].count == 2
    assert "high below open/close 1" in found["ohlc_violation"].message
    assert found["non_positive_price"].count == 1
    assert found["non_positive_price"].timestamps == ("2024-01-01T20:00:00Z",)


def test_negative_volume_is_an_error_zero_volume_a_warning() -> None:
    bars = make_bars(n=60)
    bars.loc[3, "volume"] = -5.0
    bars.loc[3, "taker_buy_base"] = -6.0
    bars.loc[[30, 31], ["volume", "quote_volume", "taker_buy_base", "taker_buy_quote"]] = 0.0
    bars.loc[[30, 31], ["open", "high", "low", "close"]] = bars.loc[29, "close"]
    found = checks(check_frame(Kind.OHLCV, bars, "1h"))
    assert found["negative_volume"].severity == "error" and found["negative_volume"].count == 1
    zero = found["zero_volume"]
    assert zero.severity == "warning" and zero.count == 2 and "2 flat" in zero.message


def test_taker_buy_above_volume_is_an_error() -> None:
    bars = make_bars(n=30)
    bars.loc[4, "taker_buy_base"] = bars.loc[4, "volume"] * 1.5
    assert checks(check_frame(Kind.OHLCV, bars, "1h"))["taker_buy_exceeds_volume"].count == 1


def test_partial_last_bar_is_flagged() -> None:
    bars = make_bars(n=60)
    bars.loc[59, ["volume", "quote_volume", "taker_buy_base", "taker_buy_quote"]] *= 0.1
    issue = checks(check_frame(Kind.OHLCV, bars, "1h"))["partial_last_bar"]
    assert issue.severity == "warning" and issue.timestamps == ("2024-01-03T11:00:00Z",)
    assert "still forming" in issue.message
    bars.loc[59, "volume"] = bars.loc[58, "volume"] * 0.5  # quiet, not partial
    assert "partial_last_bar" not in checks(check_frame(Kind.OHLCV, bars, "1h"))


def test_return_and_range_outliers_are_warnings_with_timestamps() -> None:
    bars = make_bars(n=300)
    # a bad print at 150: the close jumps 8% and comes back on the next bar
    bars.loc[150, "close"] *= 1.08
    bars.loc[150, "high"] = bars.loc[150, "close"] * 1.001
    bars.loc[151, "open"] = bars.loc[150, "close"]
    bars.loc[151, "high"] = bars.loc[151, "open"] * 1.001
    # a spike in the range only at 220
    bars.loc[220, "high"] = bars.loc[220, "high"] * 1.15
    found = checks(check_frame(Kind.OHLCV, bars, "1h"))
    ret = found["return_outlier"]
    assert ret.severity == "warning"
    assert ret.timestamps[:2] == ("2024-01-07T06:00:00Z", "2024-01-07T07:00:00Z")
    assert "1 of them revert" in ret.message
    rng = found["range_outlier"]
    assert rng.severity == "warning" and "2024-01-10T04:00:00Z" in rng.timestamps


def test_outlier_threshold_is_configurable() -> None:
    bars = make_bars(n=300)
    bars.loc[100:, ["open", "high", "low", "close"]] *= 1.03  # a 3% jump between bars
    assert "return_outlier" in checks(check_frame(Kind.OHLCV, bars, "1h"))
    loose = QualityConfig(outlier_k=100)
    assert "return_outlier" not in checks(check_frame(Kind.OHLCV, bars, "1h", config=loose))


def test_misaligned_bars_are_errors() -> None:
    bars = make_bars(n=20)
    bars["ts"] = bars["ts"] + pd.Timedelta(minutes=1)
    assert checks(check_frame(Kind.OHLCV, bars, "1h"))["misaligned"].count == 20


def test_mark_bars_skip_volume_checks() -> None:
    bars = make_bars(n=60)
    bars["volume"] = 0.0
    assert check_frame(Kind.MARK, bars, "1h") == []


def funding(ts: pd.DatetimeIndex, rate: float | np.ndarray = 0.0001, **extra) -> pd.DataFrame:
    return pd.DataFrame({"ts": ts.as_unit("us"), "rate": rate, **extra})


def test_funding_gaps_follow_the_interval_and_changes_are_info() -> None:
    slots = pd.date_range("2024-01-01", periods=30, freq="8h", tz="UTC")
    slots = slots.append(pd.date_range(slots[-1] + pd.Timedelta("4h"), periods=30,
                                       freq="4h", tz="UTC"))
    frame = funding(slots, interval_hours=np.r_[np.full(30, 8.0), np.full(30, 4.0)])
    found = checks(check_frame(Kind.FUNDING, frame))
    change = found["funding_interval_change"]
    assert change.severity == "info" and change.count == 1
    assert "8h -> 4h" in change.message and "stored interval_hours" in change.message
    assert "gaps" not in found
    # the same without stored intervals: inferred from the steps, same answer
    inferred = checks(check_frame(Kind.FUNDING, funding(slots)))
    assert "inferred" in inferred["funding_interval_change"].message
    assert "gaps" not in inferred
    # a missing 4h settlement is a gap even though 8h steps happened before
    holed = funding(slots.delete(45), interval_hours=np.r_[np.full(30, 8.0), np.full(29, 4.0)])
    assert checks(check_frame(Kind.FUNDING, holed))["gaps"].count == 1


def test_funding_rate_band() -> None:
    slots = pd.date_range("2024-01-01", periods=10, freq="8h", tz="UTC")
    rates = np.full(10, 0.0001)
    rates[3], rates[6] = 0.02, -0.06
    found = checks(check_frame(Kind.FUNDING, funding(slots, rates)))
    assert found["funding_rate_extreme"].severity == "warning"
    assert found["funding_rate_extreme"].timestamps == ("2024-01-02T00:00:00Z",)
    assert found["funding_rate_implausible"].severity == "error"
    assert found["funding_rate_implausible"].count == 1


def test_funding_times_off_the_slot_are_warned() -> None:
    slots = pd.date_range("2024-01-01", periods=10, freq="8h", tz="UTC")
    raw = slots + pd.Timedelta(milliseconds=6)
    assert checks(check_frame(Kind.FUNDING, funding(raw)))["funding_ts_off_slot"].count == 10
    ok = funding(slots, exchange_ts=raw.as_unit("us"))
    assert check_frame(Kind.FUNDING, ok) == []


def test_open_interest_negative_and_jumps() -> None:
    ts = pd.date_range("2024-01-01", periods=200, freq="5min", tz="UTC").as_unit("us")
    oi = 1000 * np.exp(np.cumsum(np.random.default_rng(1).normal(0, 0.001, 200)))
    frame = pd.DataFrame({"ts": ts, "oi_contracts": oi, "oi_value": oi * 100})
    assert check_frame(Kind.OPEN_INTEREST, frame) == []
    frame.loc[100, "oi_contracts"] *= 3
    frame.loc[150, "oi_value"] = -1
    found = checks(check_frame(Kind.OPEN_INTEREST, frame.drop(index=[60, 61])))
    assert found["oi_outlier"].severity == "warning"
    assert found["negative_value"].count == 1
    assert found["gaps"].count == 1


def test_taker_ratio_consistency() -> None:
    ts = pd.date_range("2024-01-01", periods=10, freq="5min", tz="UTC").as_unit("us")
    frame = pd.DataFrame({"ts": ts, "buy_sell_ratio": 1.0, "buy_volume": 10.0,
                          "sell_volume": 10.0})
    frame.loc[4, "buy_sell_ratio"] = 2.0
    assert checks(check_frame(Kind.TAKER_RATIO, frame))["taker_ratio_inconsistent"].count == 1


def test_trades_and_liquidations() -> None:
    ts = pd.date_range("2024-01-01", periods=6, freq="1s", tz="UTC").as_unit("us")
    trades = pd.DataFrame({"ts": ts, "trade_id": [1, 2, 3, 3, 4, 5], "price": 100.0,
                           "qty": [1.0, 0.0, 1.0, 1.0, 1.0, 1.0], "side": "buy"})
    found = checks(check_frame(Kind.TRADES, trades))
    assert found["duplicates"].count == 1 and found["non_positive_qty"].count == 1
    liqs = pd.DataFrame({"ts": ts, "side": ["buy", "sell", "long", "buy", "sell", "buy"],
                         "price": [100.0, -1, 100, 100, 100, 100], "qty": 1.0})
    found = checks(check_frame(Kind.LIQUIDATIONS, liqs))
    assert found["invalid_side"].count == 1 and found["non_positive_price"].count == 1
    assert "gaps" not in found  # event streams have no expected step


def test_crossed_and_unordered_books() -> None:
    ts = pd.Timestamp("2024-01-01", tz="UTC")
    book = pd.DataFrame({
        "ts": [ts, ts, ts + pd.Timedelta("1s"), ts + pd.Timedelta("1s")],
        "level": [0, 1, 0, 1],
        "bid_price": [99.0, 98.0, 101.0, 102.0],
        "bid_qty": 1.0,
        "ask_price": [100.0, 101.0, 100.5, 103.0],
        "ask_qty": 1.0,
    })
    found = checks(check_frame(Kind.BOOK, book))
    assert found["crossed_book"].timestamps == ("2024-01-01T00:00:01Z",)
    assert found["book_levels_unordered"].count == 1


def test_consistency_between_timeframes() -> None:
    fine = make_bars(n=48)
    coarse = resample_bars(fine, "1h", "4h")
    assert check_consistency(fine, "1h", coarse, "4h") == []
    coarse.loc[2, "volume"] *= 1.5  # the 1h bars of 08:00 look truncated
    coarse.loc[5, "high"] *= 1.01
    issue = check_consistency(fine, "1h", coarse, "4h", series="X")[0]
    assert issue.check == "cross_timeframe_mismatch" and issue.count == 2
    assert issue.timestamps == ("2024-01-01T08:00:00Z", "2024-01-01T20:00:00Z")
    assert "1 with less volume in the 1h bars" in issue.message


def test_report_json_and_error_flag() -> None:
    report = QualityReport(issues=check_frame(Kind.OHLCV, make_bars(n=30), "1h"))
    assert not report.has_errors
    bars = make_bars(n=30)
    bars.loc[3, "open"] = 0.0
    report = QualityReport(issues=check_frame(Kind.OHLCV, bars, "1h"))
    assert report.has_errors
    data = json.loads(json.dumps(report.as_json()))
    assert data["has_errors"] is True and data["ok"] is False
    assert data["counts"]["error"] >= 1
    assert {"series", "check", "severity", "count", "timestamps", "message"} <= set(
        data["issues"][0])
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(report.as_table())
    text = console.export_text()
    assert "non_positive_price" in text and "error" in text


def test_check_store(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "m.duckdb")
    store.migrate()
    bars = make_bars(n=96)
    bars.loc[[40, 41], ["volume", "quote_volume", "taker_buy_base", "taker_buy_quote"]] = 0.0
    bars = bars.drop(index=[70]).reset_index(drop=True)
    coarse = resample_bars(make_bars(n=96), "1h", "4h")
    slots = pd.date_range("2024-01-01", periods=12, freq="8h", tz="UTC")
    trades = pd.DataFrame({
        "ts": pd.date_range("2024-01-01", periods=1000, freq="1min", tz="UTC").as_unit("us"),
        "trade_id": np.arange(1000), "price": 100.0, "qty": 1.0, "side": "buy"})
    store.write([
        validate(Dataset(Kind.OHLCV, BTC, bars, "1h", source="t")),
        validate(Dataset(Kind.OHLCV, BTC, coarse, "4h", source="t")),
        validate(Dataset(Kind.FUNDING, BTC, funding(slots), source="t")),
        validate(Dataset(Kind.TRADES, BTC, trades, source="t")),
    ])
    report = check_store(store)
    store.close()
    data = json.loads(json.dumps(report.as_json()))
    assert not report.has_errors  # validation kept every error out of the store
    by_check = {(i["series"], i["check"]) for i in data["issues"]}
    assert ("BTCUSDT/ohlcv/1h", "gaps") in by_check
    assert ("BTCUSDT/ohlcv/1h", "zero_volume") in by_check
    assert ("BTCUSDT/ohlcv/4h", "cross_timeframe_mismatch") in by_check
    series = {s["series"]: s for s in data["series"]}
    assert set(series) == {"BTCUSDT/ohlcv/1h", "BTCUSDT/ohlcv/4h", "BTCUSDT/funding/8h",
                           "BTCUSDT/trades"}
    assert series["BTCUSDT/trades"]["sampled"] is True
    assert series["BTCUSDT/trades"]["checked_rows"] == 361  # the last 6 hours, both ends
    assert series["BTCUSDT/ohlcv/1h"]["checked_rows"] == 95


def test_check_store_flags_a_coarse_last_bar_past_the_finer_data(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "m.duckdb")
    store.migrate()
    hourly = make_bars(n=72).iloc[:68]  # ends with the 19:00 bar of day 3 (closes 20:00)
    daily = resample_bars(make_bars(n=72), "1h", "1d")  # day 3 complete in this copy ...
    daily.loc[2, "volume"] *= 0.8  # ... but stored as collected at 20:00
    store.write([validate(Dataset(Kind.OHLCV, BTC, hourly, "1h", source="t")),
                 validate(Dataset(Kind.OHLCV, BTC, daily, "1d", source="t"))])
    report = check_store(store)
    store.close()
    found = {(i.series, i.check): i for i in report.issues}
    issue = found[("BTCUSDT/ohlcv/1d", "last_bar_beyond_finer_data")]
    assert issue.timestamps == ("2024-01-03T00:00:00Z",) and "20:00" in issue.message
    # the two complete days agree with the hourly bars
    assert ("BTCUSDT/ohlcv/1d", "cross_timeframe_mismatch") not in found


# ------------------------------------------------------------------ real data


def read_feather(name: str) -> pd.DataFrame:
    return read_futures_feather(name).rename(columns={"date": "ts"})


@pytest.mark.integration
def test_real_btc_1h_is_clean_apart_from_market_outliers() -> None:
    found = checks(check_frame(Kind.OHLCV, read_feather("BTC_USDT_USDT-1h-futures.feather"),
                               "1h"))
    assert not [i for i in found.values() if i.severity == "error"]
    # no gaps or zero-volume candles in the stitched 1h file (MANIFEST), no partial bar
    assert set(found) <= {"return_outlier", "range_outlier"}
    assert found["return_outlier"].count < 0.005 * 21888


@pytest.mark.integration
def test_real_btc_5m_shows_the_known_gap_and_zero_volume_incidents() -> None:
    found = checks(check_frame(Kind.OHLCV, read_feather("BTC_USDT_USDT-5m-futures.feather"),
                               "5m"))
    assert not [i for i in found.values() if i.severity == "error"]
    gap = found["gaps"]
    assert gap.count == 1 and gap.timestamps == ("2025-02-18T10:25:00Z",)
    zero = found["zero_volume"]
    assert zero.count == 21 and zero.severity == "warning"
    assert zero.timestamps[:3] == ("2023-09-12T08:35:00Z", "2023-09-12T08:40:00Z",
                                   "2023-09-12T08:45:00Z")


@pytest.mark.integration
def test_real_funding_raw_times_are_flagged_until_floored() -> None:
    raw = read_feather("BTC_USDT_USDT-8h-funding_rate.feather")
    frame = pd.DataFrame({"ts": raw["ts"], "rate": raw["open"]})
    found = checks(check_frame(Kind.FUNDING, frame))
    assert found["funding_ts_off_slot"].count > 1000
    floored = pd.DataFrame({"ts": raw["ts"].dt.floor("min"), "rate": raw["open"],
                            "exchange_ts": raw["ts"]})
    assert check_frame(Kind.FUNDING, floored) == []


def test_frames_indexed_by_time_are_accepted() -> None:
    bars = make_bars(n=30).drop(index=[10]).set_index("ts")
    assert checks(check_frame(Kind.OHLCV, bars, "1h"))["gaps"].count == 1


@pytest.mark.integration
def test_real_gravestone_partial_last_bar() -> None:
    path = real_file("gravestone/data/1h/AVAXUSDT.csv")
    raw = pd.read_csv(path)
    frame = pd.DataFrame({"ts": pd.to_datetime(raw["timestamp"], unit="ms", utc=True),
                          **{k: raw[k] for k in ("open", "high", "low", "close", "volume")}})
    issue = checks(check_frame(Kind.OHLCV, frame, "1h"))["partial_last_bar"]
    assert issue.timestamps == ("2026-03-19T20:00:00Z",)  # collected minutes after 20:00
