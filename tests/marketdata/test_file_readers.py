"""Each reader on a small file built in the test, in the real formats' layouts."""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from perptrader.core.errors import DataFormatError, UnknownFormatError
from perptrader.core.instruments import Instrument
from perptrader.marketdata.dataset import validate
from perptrader.marketdata.kinds import Kind
from perptrader.marketdata.sources.base import ImportHints
from perptrader.marketdata.sources.binance_vision import BinanceVision
from perptrader.marketdata.sources.freqtrade import FreqtradeCandles, FreqtradeTrades
from perptrader.marketdata.sources.generic_csv import GenericCsv, KrakenTradesCsv
from perptrader.marketdata.sources.registry import file_readers, reader_for

H = 3_600_000
T0 = 1_735_689_600_000  # 2025-01-01


def read_all(path: Path, hints: ImportHints | None = None):
    reader = reader_for(path, file_readers())
    return reader, [validate(ds) for ds in reader.read(path, hints or ImportHints())]


def candles(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame({
        "date": pd.to_datetime([T0 + i * H for i in range(n)], unit="ms", utc=True),
        "open": [1.0, 2.0, 3.0][:n], "high": [2.0, 3.0, 4.0][:n], "low": [0.5, 1.5, 2.5][:n],
        "close": [1.5, 2.5, 3.5][:n], "volume": [10.0, 11.0, 12.0][:n]})


def test_freqtrade_feather_futures_and_spot(tmp_path: Path) -> None:
    perp = tmp_path / "BTC_USDT_USDT-1h-futures.feather"
    candles().to_feather(perp)
    reader, [ds] = read_all(perp)
    assert isinstance(reader, FreqtradeCandles)
    assert (ds.kind, ds.instrument, ds.timeframe, ds.rows) == (
        Kind.OHLCV, Instrument("binance", "perp", "BTCUSDT"), "1h", 3)
    spot = tmp_path / "BTC_USDT-1h.feather"
    candles().to_feather(spot)
    _, [ds] = read_all(spot)
    assert ds.instrument.market == "spot"


def test_freqtrade_funding_rate_in_open_with_late_milliseconds(tmp_path: Path) -> None:
    frame = candles()
    frame["date"] = frame["date"] + pd.to_timedelta([6, 9, 0], unit="ms")
    frame["date"] = pd.to_datetime([T0, T0 + 8 * H + 9, T0 + 16 * H], unit="ms", utc=True)
    frame["open"] = [0.0001, -0.0002, 0.00005]
    path = tmp_path / "ETH_USDT_USDT-8h-funding_rate.feather"
    frame.to_feather(path)
    _, [ds] = read_all(path)
    assert ds.kind is Kind.FUNDING
    assert ds.frame["rate"].tolist() == [0.0001, -0.0002, 0.00005]
    assert ds.frame["ts"].dt.second.eq(0).all() and ds.frame["ts"].dt.microsecond.eq(0).all()
    assert ds.frame["exchange_ts"].iloc[1].microsecond == 9000
    assert ds.frame["interval_hours"].tolist() == [8, 8, 8]


def test_freqtrade_mark_has_no_volume(tmp_path: Path) -> None:
    path = tmp_path / "BTC_USDT_USDT-8h-mark.feather"
    frame = candles()
    frame["date"] = pd.to_datetime([T0 + i * 8 * H for i in range(3)], unit="ms", utc=True)
    frame.to_feather(path)
    _, [ds] = read_all(path)
    assert ds.kind is Kind.MARK and ds.frame["volume"].isna().all()


def test_freqtrade_json_list_and_gz(tmp_path: Path) -> None:
    rows = [[T0 + i * 60_000, 1.0, 2.0, 0.5, 1.5, 3.0] for i in range(4)]
    path = tmp_path / "ETH_BTC-1m.json.gz"
    with gzip.open(path, "wt") as fh:
        json.dump(rows, fh)
    _, [ds] = read_all(path)
    assert (ds.instrument.symbol, ds.instrument.market, ds.timeframe, ds.rows) == (
        "ETHBTC", "spot", "1m", 4)


def test_candles_without_a_pair_need_symbol(tmp_path: Path) -> None:
    path = tmp_path / "candles.json"
    frame = candles()
    frame["date"] = frame["date"].astype("int64") // 1000  # epoch ms
    path.write_text(frame.to_json(orient="columns"))
    with pytest.raises(UnknownFormatError, match="--symbol"):
        read_all(path)
    _, [ds] = read_all(path, ImportHints(symbol="BTCUSDT", timeframe="1h"))
    assert ds.rows == 3 and ds.frame["ts"].iloc[0] == pd.Timestamp(T0, unit="ms", tz="UTC")


KLINE_HEADER = ("open_time,open,high,low,close,volume,close_time,quote_volume,count,"
                "taker_buy_volume,taker_buy_quote_volume,ignore\n")


def kline_rows(unit: int = 1) -> str:
    return "".join(
        f"{(T0 + i * H) * unit},100,110,90,105,10,{(T0 + (i + 1) * H - 1) * unit},1000,50,4,400,0\n"
        for i in range(3))


def test_vision_futures_zip_with_header(tmp_path: Path) -> None:
    path = tmp_path / "futures-um-klines-BTCUSDT-1h-2025-01-01.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("BTCUSDT-1h-2025-01-01.csv", KLINE_HEADER + kline_rows())
    reader, [ds] = read_all(path)
    assert isinstance(reader, BinanceVision)
    assert ds.instrument.market == "perp" and ds.frame["taker_buy_base"].tolist() == [4.0] * 3
    assert ds.frame["trade_count"].tolist() == [50] * 3


def test_vision_spot_without_header_in_microseconds(tmp_path: Path) -> None:
    path = tmp_path / "spot" / "BTCUSDT-1h-2025-01-01.csv"
    path.parent.mkdir()
    path.write_text(kline_rows(unit=1000))
    _, [ds] = read_all(path)
    assert ds.instrument.market == "spot"
    assert ds.frame["ts"].iloc[0] == pd.Timestamp(T0, unit="ms", tz="UTC")


def test_vision_market_must_be_known(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-1h-2025-01-01.csv"
    path.write_text(kline_rows())
    with pytest.raises(UnknownFormatError, match="--market"):
        read_all(path)


def test_vision_funding_with_interval_and_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "futures" / "BTCUSDT-funding.csv"
    path.parent.mkdir()
    path.write_text("fundingTime,fundingIntervalHours,fundingRate\n"
                    f"{T0 + 15},4,0.0001\n{T0 + 4 * H},4,0.0002\n")
    _, [ds] = read_all(path)
    assert ds.frame["interval_hours"].tolist() == [4, 4]
    path.write_text("fundingTime,fundingIntervalHours,fundingRate\n"
                    f"{T0},8,0.0001\n{T0 + 8 * H},8,oops\n")
    with pytest.raises(DataFormatError) as info:
        read_all(path)
    assert (info.value.row, info.value.field) == (3, "rate")


def test_vision_agg_trades_and_metrics(tmp_path: Path) -> None:
    agg = tmp_path / "futures-APEUSDT-aggTrades-2024-10-18.csv"
    agg.write_text("agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,"
                   "is_buyer_maker\n1,0.7,19,10,10,1729209603958,false\n"
                   "2,0.69,20,11,13,1729209604056,true\n")
    _, [ds] = read_all(agg)
    assert ds.kind is Kind.TRADES and ds.frame["side"].tolist() == ["buy", "sell"]
    assert ds.frame["last_trade_id"].tolist() == [10, 13]
    metrics = tmp_path / "futures" / "BTCUSDT-metrics-2024-10-18.csv"
    metrics.parent.mkdir()
    metrics.write_text(
        "create_time,symbol,sum_open_interest,sum_open_interest_value,"
        "count_toptrader_long_short_ratio,sum_toptrader_long_short_ratio,"
        "count_long_short_ratio,sum_taker_long_short_vol_ratio\n"
        "2024-10-18 00:05:00,BTCUSDT,80000,5.4e9,1.5,1.2,1.9,0.95\n")
    _, datasets = read_all(metrics)
    assert [d.kind for d in datasets] == [Kind.OPEN_INTEREST, Kind.LONG_SHORT, Kind.TAKER_RATIO]
    assert datasets[1].frame["global_account_ratio"].iloc[0] == 1.9


def test_rest_dump_csvs(tmp_path: Path) -> None:
    klines = tmp_path / "1h" / "ADAUSDT.csv"
    klines.parent.mkdir()
    klines.write_text("timestamp,open,high,low,close,volume,quote_volume,trades,close_time\n" +
                      "".join(f"{T0 + i * H},1,2,0.5,1.5,100,150,7,{T0 + (i + 1) * H - 1}\n"
                              for i in range(3)))
    reader, [ds] = read_all(klines)
    assert isinstance(reader, GenericCsv)
    assert (ds.instrument.symbol, ds.timeframe) == ("ADAUSDT", "1h")
    oi = tmp_path / "oi_4h" / "ADAUSDT.csv"
    oi.parent.mkdir()
    oi.write_text("timestamp,symbol,sum_open_interest,sum_open_interest_value\n"
                  f"{T0},ADAUSDT,100,50\n{T0 + 4 * H},ADAUSDT,110,56\n")
    _, [ds] = read_all(oi)
    assert ds.kind is Kind.OPEN_INTEREST and ds.frame["oi_value"].tolist() == [50.0, 56.0]


def test_generic_mapping(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text("time,px\n2025-01-01T00:00:00Z,1\n2025-01-01T01:00:00Z,2\n")
    reader = GenericCsv({"ts": "time", "buy_sell_ratio": "px"})
    [ds] = reader.read(path, ImportHints(kind=Kind.TAKER_RATIO, symbol="BTCUSDT"))
    assert validate(ds).rows == 2
    with pytest.raises(DataFormatError, match="not in the file"):
        list(GenericCsv({"ts": "nope"}).read(path, ImportHints(kind=Kind.TAKER_RATIO,
                                                               symbol="BTCUSDT")))


def test_trades_csvs(tmp_path: Path) -> None:
    ft = tmp_path / "public_trades_list.csv"
    ft.write_text(",timestamp,id,type,side,price,amount,cost,date\n"
                  "0,1675329600138,5,,buy ,1666.8,2,3333.6,x\n")
    with pytest.raises(UnknownFormatError, match="--symbol"):
        read_all(ft)
    reader, [ds] = read_all(ft, ImportHints(symbol="ETHUSDT"))
    assert isinstance(reader, FreqtradeTrades) and ds.frame["side"].tolist() == ["buy"]
    kraken = tmp_path / "kraken" / "BCHEUR.csv"
    kraken.parent.mkdir()
    kraken.write_text("1672531436,90.54,1.1\n1672531436,90.45,1.0\n1672531647,90.36,0.2\n")
    reader, [ds] = read_all(kraken)
    assert isinstance(reader, KrakenTradesCsv)
    assert ds.instrument == Instrument("kraken", "spot", "BCHEUR")
    assert ds.frame["trade_id"].is_unique


def test_unknown_file_is_refused_with_reason(tmp_path: Path) -> None:
    path = tmp_path / "notes.bin"
    path.write_bytes(b"\x00\x01garbage")
    with pytest.raises(UnknownFormatError, match="unrecognised format"):
        reader_for(path, file_readers())
