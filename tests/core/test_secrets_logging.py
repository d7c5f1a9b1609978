"""Secrets never reach an output or a log line; the JSON log gets warnings, refusals and
crashes with their context."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from perptrader.cli import app
from perptrader.config import load_settings
from perptrader.core.logging import configure_logging, get_logger
from perptrader.core.secrets import mask_data, mask_secrets, mask_url

runner = CliRunner()


@pytest.mark.parametrize(("text", "expected"), [
    ("postgresql://user:s3cret@db:5432/market", "postgresql://user:***@db:5432/market"),
    ("postgresql+asyncpg://u:p@ss@h/d", "postgresql+asyncpg://u:***@h/d"),
    ("unknown store URL 'mysql://root:hunter2@localhost/x'",
     "unknown store URL 'mysql://root:***@localhost/x'"),
    ("host=db password=abc dbname=x", "host=db password=*** dbname=x"),
    ("https://h/x?api_key=K1&token=T2&a=1", "https://h/x?api_key=***&token=***&a=1"),
    ("postgresql://user@db/market", "postgresql://user@db/market"),  # nothing to hide
    ("http://127.0.0.1:8765/x@y", "http://127.0.0.1:8765/x@y"),
    ("", ""),
])
def test_mask_secrets(text: str, expected: str) -> None:
    assert mask_secrets(text) == expected
    assert mask_url(text) == expected


def test_mask_data_by_name_and_by_content() -> None:
    data = {"store": {"url": "postgresql://a:pw@h/d"}, "api": {"jwt_secret": "xyz"},
            "notify": {"telegram_token": "123:abc", "chat_ids": [1]},
            "trading": {"db_url": None}, "list": ["postgresql://a:pw@h/d"]}
    out = mask_data(data)
    assert out["store"]["url"] == "postgresql://a:***@h/d"
    assert out["api"]["jwt_secret"] == "***" and out["notify"]["telegram_token"] == "***"
    assert out["notify"]["chat_ids"] == [1] and out["trading"]["db_url"] is None
    assert out["list"] == ["postgresql://a:***@h/d"]
    assert "pw" not in json.dumps(out)


def test_config_command_masks_the_store_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERPTRADER__STORE__URL", "postgresql://trader:hunter2@db:5432/m")
    monkeypatch.setenv("PERPTRADER__TRADING__DB_URL", "postgresql://t:hunter3@db/t")
    res = runner.invoke(app, ["config"])
    assert res.exit_code == 0, res.output
    assert "hunter2" not in res.stdout and "hunter3" not in res.stdout
    cfg = json.loads(res.stdout)
    assert cfg["store"]["url"] == "postgresql://trader:***@db:5432/m"


def test_unknown_store_url_error_is_masked_on_screen_and_in_the_log(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERPTRADER__STORE__URL", "mysql://root:hunter2@db/x")
    res = runner.invoke(app, ["data", "list"])
    assert res.exit_code == 1
    assert "hunter2" not in res.output and "root:***@db" in res.output
    log = load_settings().log_file.read_text()
    assert "hunter2" not in log
    rec = [json.loads(line) for line in log.splitlines() if '"refused"' in line][-1]
    assert rec["level"] == "error" and "unknown store URL" in rec["error"]
    assert rec["error_type"] == "StoreError" and "argv" in rec  # the command line


def test_log_file_masks_events_context_and_tracebacks(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    configure_logging("CRITICAL", path)
    log = get_logger("perptrader.test")
    log.warning("connecting", url="postgresql://u:pw1@h/d", password="pw2")
    try:
        raise RuntimeError("cannot reach postgresql://u:pw3@h/d")
    except RuntimeError:
        log.error("failed", exc_info=True)
    logging.getLogger("plain.stdlib").error("dsn host=h password=pw4")
    text = path.read_text()
    for secret in ("pw1", "pw2", "pw3", "pw4"):
        assert secret not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["url"] == "postgresql://u:***@h/d" and lines[0]["password"] == "***"
    assert "RuntimeError" in lines[1]["exception"]
    assert lines[2]["event"] == "dsn host=h password=***"


def test_python_warnings_reach_the_json_log(tmp_path: Path) -> None:
    # in a child process: pytest replaces warnings.showwarning inside its tests
    path = tmp_path / "log.jsonl"
    code = ("import warnings; from pathlib import Path;"
            "from perptrader.core.logging import configure_logging;"
            f"configure_logging('CRITICAL', Path({str(path)!r}));"
            "warnings.warn('something odd at postgresql://u:pw8@h/d', UserWarning)")
    out = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    text = path.read_text()
    assert "something odd" in text and "pw8" not in text


def test_a_crash_is_logged_with_its_traceback(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    code = ("from pathlib import Path; from perptrader.core.logging import configure_logging;"
            f"configure_logging('CRITICAL', Path({str(path)!r}));"
            "raise ValueError('boom at postgresql://u:pw9@h/d')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 1 and "ValueError" in out.stderr  # the usual report, too
    rec = json.loads(path.read_text().splitlines()[-1])
    assert rec["level"] == "critical" and rec["event"] == "uncaught exception"
    assert "ValueError: boom" in rec["error"] and "Traceback" in rec["exception"]
    assert "pw9" not in path.read_text()


def test_refusal_and_backtest_warnings_reach_the_json_log(tmp_path: Path) -> None:
    res = runner.invoke(app, ["backtest", "run", "--symbol", "BTCUSDT", "--out",
                              str(tmp_path / "x")])
    assert res.exit_code == 1  # nothing stored: refused
    log = load_settings().log_file.read_text()
    rec = [json.loads(line) for line in log.splitlines()][-1]
    assert rec["event"] == "refused" and "BTCUSDT" in rec["error"]
    assert rec["error_type"] == "PerptraderError" and "argv" in rec
