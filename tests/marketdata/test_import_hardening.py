"""Import hardening: no silent damage to stored data, every per-file problem reported
against its file, and exit codes scripts can rely on (docs/data.md, "Bad input")."""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from perptrader.cli import app
from perptrader.core.instruments import Instrument
from perptrader.marketdata.importer import import_paths
from perptrader.marketdata.kinds import Kind
from perptrader.marketdata.store.duckdb_store import DuckDBStore

H = 3_600_000
T0 = 1_735_689_600_000  # 2025-01-01 00:00 UTC
BTC = Instrument.parse("BTCUSDT")
runner = CliRunner()

KLINE_HEADER = ["open_time", "open", "high", "low", "close", "volume", "close_time",
                "quote_volume", "count", "taker_buy_volume", "taker_buy_quote_volume",
                "ignore"]


def klines(n: int = 48, start_ms: int = T0, step_ms: int = H) -> pd.DataFrame:
    """data.binance.vision kline rows: open != close, quote volume != volume."""
    i = np.arange(n)
    open_ = 100.0 + (i % 5)
    close = open_ + 0.5
    volume = 10.0 + i
    return pd.DataFrame({
        "open_time": start_ms + i * step_ms, "open": open_, "high": close + 1.0,
        "low": open_ - 1.0, "close": close, "volume": volume,
        "close_time": start_ms + (i + 1) * step_ms - 1, "quote_volume": volume * 100.0,
        "count": 50 + i, "taker_buy_volume": volume / 2, "taker_buy_quote_volume": volume * 50,
        "ignore": 0,
    })


def write_klines(folder: Path, frame: pd.DataFrame, name: str = "BTCUSDT-1h-2025-01.csv",
                 columns: list[str] | None = None, header: bool = True) -> Path:
    path = folder / "futures" / "um" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    frame[columns or KLINE_HEADER].to_csv(path, index=False, header=header)
    return path


def write_funding(folder: Path, rates: np.ndarray, name: str = "BTCUSDT-fundingRate.csv"
                  ) -> Path:
    path = folder / "futures" / "um" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    times = T0 + np.arange(len(rates)) * 8 * H + 6  # settlements a few ms late
    pd.DataFrame({"fundingTime": times, "fundingIntervalHours": 8, "fundingRate": rates}
                 ).to_csv(path, index=False)
    return path


def candles_json(n: int = 24) -> bytes:
    rows = [[T0 + i * H, 100.0, 101.0, 99.0, 100.5, 5.0] for i in range(n)]
    return json.dumps(rows).encode()


def cli(*args: str, input: str | None = None) -> object:
    result = runner.invoke(app, list(args), input=input)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def imported(*args: str) -> list[dict]:
    return json.loads(cli("data", "import", *args, "--json").stdout)


def stored_bars(timeframe: str = "1h") -> pd.DataFrame:
    from perptrader.config import load_settings

    with DuckDBStore(load_settings().embedded_store_path) as store:
        return store.read(Kind.OHLCV, BTC, timeframe)


def stored(kind: Kind) -> pd.DataFrame:
    from perptrader.config import load_settings

    with DuckDBStore(load_settings().embedded_store_path) as store:
        return store.read(kind, BTC)


# ----------------------------------------------------------------- kline headers


def test_kline_header_is_read_by_name_not_position(tmp_path: Path) -> None:
    frame = klines()
    reordered = ["open_time", "close", "high", "low", "open", "quote_volume", "volume",
                 "close_time", "count", "taker_buy_volume", "taker_buy_quote_volume", "ignore"]
    [report] = imported(str(write_klines(tmp_path, frame, columns=reordered)))
    assert report["status"] == "imported"
    bars = stored_bars()
    np.testing.assert_allclose(bars["open"], frame["open"])
    np.testing.assert_allclose(bars["close"], frame["close"])
    np.testing.assert_allclose(bars["volume"], frame["volume"])
    np.testing.assert_allclose(bars["quote_volume"], frame["quote_volume"])


def test_kline_camelcase_header_of_rest_dumps_is_read_by_name(tmp_path: Path) -> None:
    frame = klines().rename(columns={"open_time": "openTime", "close_time": "closeTime",
                                     "quote_volume": "quoteVolume", "count": "trades",
                                     "taker_buy_volume": "takerBuyBase",
                                     "taker_buy_quote_volume": "takerBuyQuote"})
    cols = ["openTime", "open", "high", "low", "close", "volume", "closeTime", "quoteVolume",
            "trades", "takerBuyBase", "takerBuyQuote", "ignore"]
    [report] = imported(str(write_klines(tmp_path, frame, columns=cols)))
    assert report["status"] == "imported"
    assert stored_bars()["trade_count"].tolist() == frame["trades"].tolist()


def test_kline_header_of_unknown_layout_is_refused(tmp_path: Path) -> None:
    frame = klines().rename(columns={"quote_volume": "turnover_usd"})
    cols = [*KLINE_HEADER[:7], "turnover_usd", *KLINE_HEADER[8:]]
    result = cli("data", "import", str(write_klines(tmp_path, frame, columns=cols)), "--json")
    [report] = json.loads(result.stdout)
    assert result.exit_code == 1
    assert report["status"] == "refused" and "turnover_usd" in report["reason"]
    assert "not in a known layout" in report["reason"]


# ----------------------------------------------------------------- conflicts


def test_changed_close_with_the_same_volume_is_kept_and_reported(tmp_path: Path) -> None:
    imported(str(write_klines(tmp_path / "a", klines())))
    bad = klines()
    bad.loc[3, "close"] += 0.2  # a different close, same volume: not a forming bar
    [report] = imported(str(write_klines(tmp_path / "b", bad)))
    assert report["status"] == "imported"
    assert report["conflicts"]["rows"] == 1 and report["conflicts"]["kept"] == 1
    assert "close" in report["conflicts"]["examples"][0]
    assert any("conflict" in n for n in report["notes"])
    assert stored_bars()["close"].iloc[3] == pytest.approx(klines()["close"].iloc[3])


def test_conflicts_are_shown_by_the_table_output(tmp_path: Path) -> None:
    imported(str(write_klines(tmp_path / "a", klines())))
    bad = klines()
    bad["close"] = bad["close"] + 0.1
    result = cli("data", "import", str(write_klines(tmp_path / "b", bad)))
    assert result.exit_code == 0
    assert "48 row(s) conflict with stored values" in result.stdout
    assert "conflicting rows" in result.stdout


def test_funding_rates_that_conflict_are_reported_not_silent(tmp_path: Path) -> None:
    rates = np.full(10, 0.0001)
    imported(str(write_funding(tmp_path / "a", rates)))
    [report] = imported(str(write_funding(tmp_path / "b", rates * -5)))
    assert report["conflicts"]["rows"] == 10 and report["rows_updated"] == 0
    assert (stored(Kind.FUNDING)["rate"] == 0.0001).all()


def test_a_bar_saved_while_forming_still_gives_way(tmp_path: Path) -> None:
    final = klines()
    forming = final.copy()
    forming.loc[47, ["close", "high", "volume", "quote_volume", "taker_buy_volume",
                     "taker_buy_quote_volume"]] = [100.0 + 47 % 5 + 0.2, 100.0 + 47 % 5 + 0.5,
                                                   3.0, 300.0, 1.0, 100.0]
    imported(str(write_klines(tmp_path / "a", forming)))
    [report] = imported(str(write_klines(tmp_path / "b", final)))
    assert report["conflicts"]["rows"] == 0 and report["rows_updated"] == 1
    assert stored_bars()["volume"].iloc[47] == final["volume"].iloc[47]


def test_a_zero_volume_placeholder_gives_way_to_the_traded_bar(tmp_path: Path) -> None:
    placeholder = klines()
    flat = placeholder.loc[30, "open"]
    placeholder.loc[30, ["high", "low", "close", "volume", "quote_volume", "count",
                         "taker_buy_volume", "taker_buy_quote_volume"]] = [flat, flat, flat,
                                                                           0, 0, 0, 0, 0]
    placeholder.loc[30, "open"] = flat
    imported(str(write_klines(tmp_path / "a", placeholder)))
    [report] = imported(str(write_klines(tmp_path / "b", klines())))
    assert report["conflicts"]["rows"] == 0 and report["rows_updated"] == 1
    assert stored_bars()["volume"].iloc[30] == klines()["volume"].iloc[30]


def test_one_bad_print_with_more_volume_does_not_replace_a_good_bar(tmp_path: Path) -> None:
    imported(str(write_klines(tmp_path / "a", klines())))
    bad = klines()
    bad.loc[20, "high"] = bad.loc[20, "high"] * 10  # a bad print: high 10x
    bad.loc[20, "volume"] += 100  # ... with more volume
    [report] = imported(str(write_klines(tmp_path / "b", bad)))
    assert report["conflicts"]["implausible"] == 1 and report["rows_updated"] == 0
    assert "implausible" in report["conflicts"]["examples"][0]
    assert stored_bars()["high"].iloc[20] == pytest.approx(klines()["high"].iloc[20])


def test_on_conflict_replace_replaces_plausible_rows_only(tmp_path: Path) -> None:
    imported(str(write_klines(tmp_path / "a", klines())))
    new = klines()
    new.loc[5, "close"] += 0.3  # plausible revision
    new.loc[9, "low"] = new.loc[9, "low"] / 50  # implausible: a 98% wick no bar supports
    [report] = imported(str(write_klines(tmp_path / "b", new)), "--on-conflict", "replace")
    c = report["conflicts"]
    assert (c["rows"], c["replaced"], c["kept"], c["implausible"]) == (2, 1, 1, 1)
    bars = stored_bars()
    assert bars["close"].iloc[5] == pytest.approx(new["close"].iloc[5])
    assert bars["low"].iloc[9] == pytest.approx(klines()["low"].iloc[9])


def test_on_conflict_fail_refuses_the_file_and_exits_1(tmp_path: Path) -> None:
    imported(str(write_klines(tmp_path / "a", klines())))
    new = klines()
    new.loc[7, "open"] -= 0.5
    new.loc[7, "low"] -= 0.5
    result = cli("data", "import", str(write_klines(tmp_path / "b", new)), "--on-conflict",
                 "fail", "--json")
    [report] = json.loads(result.stdout)
    assert result.exit_code == 1 and report["status"] == "refused"
    assert "1 row(s) conflict" in report["reason"] and "row 9" in report["reason"]
    assert stored_bars()["open"].iloc[7] == pytest.approx(klines()["open"].iloc[7])


def test_identical_reimport_reports_no_conflict(tmp_path: Path) -> None:
    path = write_klines(tmp_path, klines())
    imported(str(path))
    [report] = imported(str(path))
    assert report["conflicts"]["rows"] == 0
    assert (report["rows_inserted"], report["rows_updated"]) == (0, 0)


# ----------------------------------------------------------------- grid and bounds


def test_bars_off_the_timeframe_grid_are_refused(tmp_path: Path) -> None:
    shifted = klines(start_ms=T0 + H // 2)  # every bar at hh:30 in a 1h file
    [report] = imported(str(write_klines(tmp_path, shifted)))
    assert report["status"] == "refused"
    assert "off the 1h grid" in report["reason"] and "row 2" in report["reason"]


@pytest.mark.parametrize("start_s", [1_000, -180_000_000])  # 1970 and 1964 dates
def test_implausible_epochs_are_refused(tmp_path: Path, start_s: int) -> None:
    frame = klines(start_ms=start_s, step_ms=3600)  # a REST dump in epoch seconds
    path = tmp_path / "1h" / "BTCUSDT.csv"
    path.parent.mkdir()
    frame.rename(columns={"open_time": "timestamp", "count": "trades"})[
        ["timestamp", "open", "high", "low", "close", "volume", "quote_volume", "trades"]
    ].to_csv(path, index=False)
    [report] = imported(str(path))
    assert report["status"] == "refused"
    assert "before 2009-01-03" in report["reason"] and "field 'ts'" in report["reason"]


@pytest.mark.parametrize("price", [1e300, 1e-300])
def test_implausible_prices_are_refused(tmp_path: Path, price: float) -> None:
    frame = klines()
    frame.loc[4, ["open", "high", "low", "close"]] = price
    [report] = imported(str(write_klines(tmp_path, frame)))
    assert report["status"] == "refused" and "implausible price" in report["reason"]


def test_price_bounds_are_configurable(tmp_path: Path) -> None:
    frame = klines()
    frame[["open", "high", "low", "close"]] *= 1e7  # ~1e9..1e10: above the default bound
    path = write_klines(tmp_path, frame)
    assert imported(str(path))[0]["status"] == "refused"
    assert imported(str(path), "--max-price", "1e12")[0]["status"] == "imported"


def test_url_encoded_file_names_are_decoded(tmp_path: Path) -> None:
    [report] = imported(str(write_klines(tmp_path, klines(), name="BTC%2FUSDT-1h-2025-01.csv")))
    assert report["status"] == "imported"
    assert report["series"] == ["BTCUSDT perp ohlcv 1h"]


# ----------------------------------------------------------------- delete


def test_data_delete_asks_then_removes_a_range(tmp_path: Path) -> None:
    imported(str(write_klines(tmp_path, klines())))
    args = ("data", "delete", "--symbol", "BTCUSDT", "--kind", "ohlcv", "--timeframe", "1h",
            "--start", "2025-01-01T10:00", "--end", "2025-01-01T20:00")
    no = cli(*args, input="n\n")
    assert no.exit_code == 1 and len(stored_bars()) == 48
    yes = cli(*args, input="y\n")
    assert yes.exit_code == 0 and "10 rows deleted" in yes.stdout
    assert len(stored_bars()) == 38
    everything = cli("data", "delete", "--symbol", "BTCUSDT", "--kind", "ohlcv",
                     "--timeframe", "1h", "--yes", "--json")
    assert json.loads(everything.stdout)["rows_deleted"] == 38
    assert stored_bars().empty


def test_data_delete_needs_a_timeframe_for_bars() -> None:
    result = cli("data", "delete", "--symbol", "BTCUSDT", "--kind", "ohlcv", "--yes")
    assert result.exit_code == 2 and "timeframe" in result.output


# ----------------------------------------------------------------- archives and exit codes


def _gz_variants(folder: Path) -> dict[str, str]:
    """Broken archives -> the words their refusal must contain."""
    data = candles_json()
    good = gzip.compress(data)
    (folder / "BTC_USDT_USDT-1h-futures.json.gz").write_bytes(good[: len(good) // 2])
    (folder / "ETH_USDT_USDT-1h-futures.json.gz").write_bytes(good + good)
    crc = bytearray(good)
    crc[-6] ^= 0xFF
    (folder / "SOL_USDT_USDT-1h-futures.json.gz").write_bytes(bytes(crc))
    csv = ("a,b\n" + "".join(f"{i},{i}\n" for i in range(5000))).encode()
    (folder / "BTCUSDT-1h-2025-01.csv.gz").write_bytes(gzip.compress(csv)[:200])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("BTCUSDT-1h-2025-02.csv", csv)
    raw = bytearray(buf.getvalue())
    raw[60:80] = b"\xff" * 20  # inside the compressed data
    (folder / "BTCUSDT-1h-2025-02.zip").write_bytes(bytes(raw))
    return {"BTC_USDT_USDT-1h-futures.json.gz": "truncated gzip",
            "ETH_USDT_USDT-1h-futures.json.gz": "two or more members",
            "SOL_USDT_USDT-1h-futures.json.gz": "bad CRC",
            "BTCUSDT-1h-2025-01.csv.gz": "truncated gzip",
            "BTCUSDT-1h-2025-02.zip": "corrupt zip"}


def test_broken_archives_are_named_and_the_run_goes_on(tmp_path: Path) -> None:
    folder = tmp_path / "futures"
    folder.mkdir()
    expected = _gz_variants(folder)
    (folder / "XRP_USDT_USDT-1h-futures.json").write_bytes(candles_json())  # a good one
    result = cli("data", "import", str(folder), "--json")
    reports = {Path(r["path"]).name: r for r in json.loads(result.stdout)}
    assert result.exit_code == 1  # some refused ...
    assert reports["XRP_USDT_USDT-1h-futures.json"]["status"] == "imported"  # ... good landed
    for name, words in expected.items():
        assert reports[name]["status"] == "refused", name
        assert words in reports[name]["reason"], reports[name]["reason"]
        assert "unrecognised format" not in reports[name]["reason"]


def test_an_unexpected_reader_error_is_reported_against_its_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from perptrader.marketdata.sources import freqtrade

    def boom(path: Path) -> pd.DataFrame:
        raise RuntimeError("reader bug")

    monkeypatch.setattr(freqtrade, "_read_candles", boom)
    (tmp_path / "BTC_USDT_USDT-1h-futures.json").write_bytes(candles_json())
    write_klines(tmp_path, klines())
    result = cli("data", "import", str(tmp_path), "--json")
    reports = {Path(r["path"]).name: r for r in json.loads(result.stdout)}
    assert result.exit_code == 1
    assert "RuntimeError: reader bug" in reports["BTC_USDT_USDT-1h-futures.json"]["reason"]
    assert reports["BTCUSDT-1h-2025-01.csv"]["status"] == "imported"


def test_a_bad_symbol_inside_a_file_refuses_that_file_only(tmp_path: Path) -> None:
    path = tmp_path / "1h" / "funding.csv"
    path.parent.mkdir()
    pd.DataFrame({"timestamp": T0 + np.arange(3) * 8 * H, "symbol": "BTC/USDT!!",
                  "funding_rate": 0.0001}).to_csv(path, index=False)
    write_klines(tmp_path, klines())
    result = cli("data", "import", str(tmp_path), "--json")
    reports = {Path(r["path"]).name: r for r in json.loads(result.stdout)}
    assert result.exit_code == 1
    assert "symbol must be alphanumeric" in reports["funding.csv"]["reason"]
    assert reports["BTCUSDT-1h-2025-01.csv"]["status"] == "imported"


def test_run_import_as_the_demo_calls_it_never_stops(tmp_path: Path, store: DuckDBStore
                                                     ) -> None:
    from perptrader.commands.data import run_import
    from perptrader.marketdata.sources.base import ImportHints

    folder = tmp_path / "futures"
    folder.mkdir()
    _gz_variants(folder)
    (folder / "XRP_USDT_USDT-1h-futures.json").write_bytes(candles_json())
    reports = run_import(store, [folder], ImportHints(), None, show_progress=False)
    assert sum(r.status == "imported" for r in reports) == 1
    assert sum(r.status == "refused" for r in reports) == 5


def test_import_paths_passes_the_policy(tmp_path: Path, store: DuckDBStore) -> None:
    path = write_klines(tmp_path, klines())
    import_paths([path], store)
    bad = klines()
    bad.loc[0, "close"] += 0.1
    [report] = import_paths([write_klines(tmp_path / "b", bad)], store, on_conflict="fail")
    assert report.status == "refused" and "conflict" in report.reason
