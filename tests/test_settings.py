"""Misspelled settings are refused with the nearest valid name, in the file and in
PERPTRADER__ variables (they used to be ignored: the store fell back to DuckDB)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from perptrader.cli import app
from perptrader.config import load_settings, unknown_keys
from perptrader.core.errors import ConfigError

runner = CliRunner()


def _toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Path:
    path = tmp_path / "perptrader.toml"
    path.write_text(text)
    monkeypatch.setenv("PERPTRADER_CONFIG", str(path))
    return path


@pytest.mark.parametrize(("var", "message"), [
    ("PERPTRADER__STORE__UR", "PERPTRADER__STORE__UR (did you mean PERPTRADER__STORE__URL?)"),
    ("PERPTRADER__STOR__URL", "PERPTRADER__STOR (did you mean PERPTRADER__STORE?)"),
    ("perptrader__trading__dburl", "(did you mean PERPTRADER__TRADING__DB_URL?)"),
    ("PERPTRADER__LOGGING__LEVL", "(did you mean PERPTRADER__LOGGING__LEVEL?)"),
])
def test_unknown_environment_keys_are_refused(monkeypatch: pytest.MonkeyPatch, var: str,
                                              message: str) -> None:
    monkeypatch.setenv(var, "postgresql://u@h/d")
    with pytest.raises(ConfigError, match=r"unknown setting .*" + message.replace(
            "(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        load_settings()


def test_unknown_keys_in_the_file_are_refused(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path = _toml(tmp_path, monkeypatch, '[store]\nur = "postgresql://u@h/d"\n'
                                        '[loging]\nlevel = "DEBUG"\n')
    with pytest.raises(ConfigError) as err:
        load_settings()
    text = str(err.value)
    assert f"{path}: unknown setting store.ur (did you mean store.url?)" in text
    assert "unknown setting loging (did you mean logging?)" in text


def test_valid_settings_still_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _toml(tmp_path, monkeypatch, '[store]\nurl = "postgresql://u@h/d"\n')
    monkeypatch.setenv("PERPTRADER__TRADING__DB_URL", "postgresql://t@h/t")
    monkeypatch.setenv("PERPTRADER__STORE", '{"url": "postgresql://env@h/d"}')
    cfg = load_settings()
    assert cfg.store.url == "postgresql://env@h/d"  # env beats the file
    assert cfg.trading.db_url == "postgresql://t@h/t"
    monkeypatch.setenv("PERPTRADER__STORE", '{"ur": "x"}')  # a section as JSON is checked
    with pytest.raises(ConfigError, match="did you mean PERPTRADER__STORE__URL"):
        load_settings()


def test_keyword_overrides_are_checked_too() -> None:
    with pytest.raises(Exception, match="ur"):
        load_settings(store={"ur": "x"})


def test_unknown_keys_without_a_close_match_list_the_valid_ones() -> None:
    found = unknown_keys({"store": {"zzzz": 1}})
    assert found == [(("store", "zzzz"), None)]


def test_cli_refuses_a_misspelled_setting_with_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERPTRADER__STORE__UR", "postgresql://trader:hunter2@db/m")
    res = runner.invoke(app, ["data", "list"])
    assert res.exit_code == 2
    output = " ".join(res.output.split())  # rich wraps long lines
    assert "did you mean PERPTRADER__STORE__URL?" in output
    assert "hunter2" not in output
