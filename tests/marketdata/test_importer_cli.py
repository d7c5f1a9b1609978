"""The import path end to end, through the CLI as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from perptrader.cli import app
from shared_data import real_file, shared_data_dir

H = 3_600_000
T0 = 1_735_689_600_000
runner = CliRunner()


def run(*args: str) -> object:
    result = runner.invoke(app, list(args))
    assert result.exit_code in (0, 1), result.output
    return result


def write_candles(path: Path, n: int = 24, bad_row: int | None = None) -> None:
    frame = pd.DataFrame({
        "date": pd.to_datetime([T0 + i * H for i in range(n)], unit="ms", utc=True),
        "open": 100.0, "high": 101.0, "low": 99.0, "close": 100.5, "volume": 5.0})
    if bad_row is not None:
        frame.loc[bad_row, "low"] = 102.0
    frame.to_feather(path)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "files"
    path.mkdir()
    return path


def test_import_twice_then_list(folder: Path) -> None:
    write_candles(folder / "BTC_USDT_USDT-1h-futures.feather")
    first = json.loads(run("data", "import", str(folder), "--json").stdout)
    assert first == [{**first[0], "status": "imported", "rows_inserted": 24}]
    second = json.loads(run("data", "import", str(folder), "--json").stdout)
    assert second[0]["rows_inserted"] == 0 and second[0]["rows_updated"] == 0
    listed = json.loads(run("data", "list", "--json").stdout)
    assert listed == [{"symbol": "BTCUSDT", "kind": "ohlcv", "timeframe": "1h",
                       "first": "2025-01-01T00:00:00Z", "last": "2025-01-01T23:00:00Z",
                       "rows": 24, "gaps": 0}]


def test_relative_folder_with_dotdot_is_walked(folder: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    write_candles(folder / "BTC_USDT_USDT-1h-futures.feather")
    (folder / ".hidden").mkdir()
    write_candles(folder / ".hidden" / "ETH_USDT_USDT-1h-futures.feather")
    work = folder.parent / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    reports = json.loads(run("data", "import", "../files", "--json").stdout)
    assert [Path(r["path"]).name for r in reports] == ["BTC_USDT_USDT-1h-futures.feather"]


def test_bad_file_is_refused_and_writes_nothing(folder: Path) -> None:
    write_candles(folder / "BTC_USDT_USDT-1h-futures.feather", bad_row=5)
    result = run("data", "import", str(folder), "--json")
    [report] = json.loads(result.stdout)
    assert result.exit_code == 1
    assert report["status"] == "refused"
    assert "row 6" in report["reason"] and "field 'low'" in report["reason"]
    assert json.loads(run("data", "list", "--json").stdout) == []


def test_demo_without_data_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERPTRADER_DEMO_DATA", raising=False)
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 1
    assert "perptrader data import" in result.output


def test_demo_imports_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "demo"
    folder.mkdir()
    write_candles(folder / "ETH_USDT_USDT-1h-futures.feather")
    monkeypatch.setenv("PERPTRADER_DEMO_DATA", str(folder))
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    assert "ETHUSDT" in result.output and "Stored market data" in result.output


@pytest.mark.integration
def test_real_btc_1h_stitched_coverage(tmp_path: Path) -> None:
    """BTCUSDT 1h from the freqtrade feather and the data.binance.vision CSV (which adds
    taker-buy volume and carries two truncated candles): 2023-01-01 .. 2025-06-30, 0 gaps,
    and the larger-volume candles survive whichever file comes first."""
    vision = real_file("binance_vision/futures_um/BTCUSDT-1h-futures.csv")
    feather = real_file("freqtrade/binance/futures/BTC_USDT_USDT-1h-futures.feather")
    first = json.loads(run("data", "import", str(vision), str(feather), "--json").stdout)
    assert [r["status"] for r in first] == ["imported", "imported"]
    assert first[1]["rows_updated"] == 2  # the two truncated 2025-01-14 candles repaired
    again = json.loads(run("data", "import", str(feather), str(vision), "--json").stdout)
    assert sum(r["rows_inserted"] + r["rows_updated"] for r in again) == 0
    listed = json.loads(run("data", "list", "--json").stdout)
    [btc] = [s for s in listed if s["symbol"] == "BTCUSDT" and s["kind"] == "ohlcv"]
    assert btc == {"symbol": "BTCUSDT", "kind": "ohlcv", "timeframe": "1h",
                   "first": "2023-01-01T00:00:00Z", "last": "2025-06-30T23:00:00Z",
                   "rows": 21888, "gaps": 0}


@pytest.mark.integration
@pytest.mark.slow
def test_real_data_folder_imports_and_is_idempotent(tmp_path: Path) -> None:
    """Every file of ../shared/data is imported or refused with a reason; a second
    import adds no row."""
    folder = shared_data_dir()
    if not folder.exists():
        pytest.skip(f"real data absent: {folder}")
    first = json.loads(run("data", "import", str(folder), "--json").stdout)
    assert all(r["status"] == "imported" or r["reason"] for r in first)
    imported = [r for r in first if r["status"] == "imported"]
    assert len(imported) > 100
    second = json.loads(run("data", "import", str(folder), "--json").stdout)
    assert sum(r["rows_inserted"] for r in second) == 0
    assert sum(r["rows_updated"] for r in second) == 0
