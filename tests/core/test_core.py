from __future__ import annotations

from pathlib import Path

import pytest

from perptrader.config import load_settings
from perptrader.core.errors import DataFormatError
from perptrader.core.instruments import Instrument, normalize_symbol
from perptrader.core.timeframes import ms_to_timeframe, timeframe_ms


@pytest.mark.parametrize("text,expected", [
    ("BTC/USDT:USDT", "BTCUSDT"), ("BTC_USDT_USDT", "BTCUSDT"), ("btcusdt", "BTCUSDT"),
    ("ETH/BTC", "ETHBTC"), ("BTC-PERPETUAL", "BTCPERPETUAL"),
])
def test_normalize_symbol(text: str, expected: str) -> None:
    assert normalize_symbol(text) == expected


def test_instrument_parse_and_display() -> None:
    assert Instrument.parse("BTCUSDT") == Instrument("binance", "perp", "BTCUSDT")
    assert Instrument.parse("BTC/USDT:USDT") == Instrument("binance", "perp", "BTCUSDT")
    kraken = Instrument.parse("kraken:BCHEUR", "spot")
    assert (kraken.exchange, kraken.market, kraken.display) == ("kraken", "spot", "kraken:BCHEUR")
    with pytest.raises(ValueError, match="market"):
        Instrument("binance", "options", "BTCUSDT")


def test_timeframes() -> None:
    assert timeframe_ms("1m") == 60_000
    assert timeframe_ms("4h") == 14_400_000
    assert ms_to_timeframe(86_400_000) == "1d"
    assert ms_to_timeframe(14_400_000) == "4h"
    with pytest.raises(ValueError):
        timeframe_ms("1x")


def test_settings_from_toml_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "perptrader.toml"
    toml.write_text('data_dir = "from_toml"\n[store]\nurl = "postgresql://x@h/db"\n'
                    '[logging]\nlevel = "DEBUG"\n')
    monkeypatch.setenv("PERPTRADER_CONFIG", str(toml))
    monkeypatch.delenv("PERPTRADER__DATA_DIR")
    cfg = load_settings()
    assert cfg.data_dir == Path("from_toml")
    assert cfg.store.url == "postgresql://x@h/db"
    assert cfg.logging.level == "DEBUG"
    monkeypatch.setenv("PERPTRADER__STORE__URL", "postgresql://y@h/db")
    monkeypatch.setenv("PERPTRADER__DATA_DIR", str(tmp_path / "env"))
    cfg = load_settings()
    assert cfg.store.url == "postgresql://y@h/db"  # environment beats the file
    assert cfg.embedded_store_path == tmp_path / "env" / "market.duckdb"


def test_unknown_setting_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    toml = tmp_path / "perptrader.toml"
    toml.write_text("data_dri = 'typo'\n")
    monkeypatch.setenv("PERPTRADER_CONFIG", str(toml))
    with pytest.raises(ValueError, match="data_dri"):
        load_settings()


def test_data_format_error_names_file_row_field() -> None:
    err = DataFormatError("not a number", path="x.csv", row=7, field="close")
    assert str(err) == "x.csv, row 7, field 'close': not a number"
