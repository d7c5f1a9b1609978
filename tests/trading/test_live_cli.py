"""``perptrader trade live`` and ``trade drill`` as a user runs them, against the fake
exchange: the refusals (no confirmation, no keys, unknown symbol) write nothing; a run
trades, shows in ``trade status|orders|fills|positions`` like a paper run, and resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from perptrader.cli import app
from perptrader.venues.fake.runner import FakeExchangeThread
from perptrader.venues.fake.server import FakeConfig
from perptrader.venues.fake.synthetic import synthetic_market

runner = CliRunner()
KEYS = {"PERPTRADER_BINANCEUSDM_API_KEY": "fake-key",
        "PERPTRADER_BINANCEUSDM_API_SECRET": "fake-secret"}


@pytest.fixture(scope="module")
def fake():
    data = synthetic_market(24 * 40)
    first = data.first_bar_ms("BTCUSDT")
    # one hour of replay per 0.15 s: a few bars close while a test waits
    config = FakeConfig(clock_start_ms=first + 48 * 3_600_000, clock_speed=24_000.0)
    with FakeExchangeThread(config, data=data) as f:
        yield f


def live_args(fake, db: Path, *extra: str) -> list[str]:
    return ["trade", "live", "--strategy", "random", "--param", "p_entry=0.6", "--param",
            "p_exit=0.6", "--symbol", "BTCUSDT", "--exchange-url", fake.url, "--db", str(db),
            "--poll", "0.02", "--history-bars", "30", "--retries", "2", "--backoff", "0.01",
            *extra]


def one_line_error(result) -> str:
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def test_refuses_without_confirmation(fake, tmp_path: Path) -> None:
    db = tmp_path / "t.sqlite"
    result = runner.invoke(app, live_args(fake, db, "--max-bars", "1"), env=KEYS)
    assert result.exit_code != 0
    assert "--confirm-live" in one_line_error(result)
    assert not db.exists()


def test_refuses_without_keys(fake, tmp_path: Path, monkeypatch) -> None:
    for name in KEYS:
        monkeypatch.delenv(name, raising=False)
    db = tmp_path / "t.sqlite"
    result = runner.invoke(app, live_args(fake, db, "--confirm-live", "--max-bars", "1"))
    assert result.exit_code != 0
    assert "PERPTRADER_BINANCEUSDM_API_KEY" in one_line_error(result)
    assert not db.exists()


def test_unknown_symbol_writes_nothing(fake, tmp_path: Path) -> None:
    db = tmp_path / "t.sqlite"
    args = live_args(fake, db, "--confirm-live", "--max-bars", "1")
    args[args.index("BTCUSDT")] = "NOPEUSDT"
    result = runner.invoke(app, args, env=KEYS)
    assert result.exit_code != 0
    assert "NOPEUSDT" in one_line_error(result)
    assert not db.exists()


def test_live_run_journal_and_resume(fake, tmp_path: Path) -> None:
    db = tmp_path / "t.sqlite"
    result = runner.invoke(app, live_args(fake, db, "--confirm-live", "--max-bars", "6"),
                           env=KEYS)
    assert result.exit_code == 0, result.output
    assert "reconciled: 0 open order(s) checked" in result.output
    assert "kill switch" in result.output  # the human status table
    status = json.loads(runner.invoke(app, ["trade", "status", "--db", str(db),
                                            "--json"]).stdout)
    assert status["mode"] == "live" and status["bars"] == 6
    account = fake.account()
    ours = [o for o in account["orders"] if o["clientOrderId"].startswith("pt-")]
    assert status["fills"] == len(account["trades"]) == len(ours)
    positions = json.loads(runner.invoke(app, ["trade", "positions", "--db", str(db),
                                               "--json"]).stdout)
    venue_qty = account["positions"].get("BTCUSDT", {}).get("positionAmt", 0.0)
    assert {p["symbol"]: p["qty"] for p in positions}.get("BTCUSDT", 0.0) == venue_qty
    # the same command resumes the same run (reconciled again) and adds bars
    again = runner.invoke(app, live_args(fake, db, "--confirm-live", "--max-bars", "2",
                                         "--json"), env=KEYS)
    assert again.exit_code == 0, again.output
    resumed = json.loads(again.stdout)
    assert resumed["run_id"] == status["run_id"] and resumed["bars"] == 8


def test_drill_command_reports_counts(tmp_path: Path) -> None:
    result = runner.invoke(app, ["trade", "drill", "--lifecycles", "6", "--json",
                                 "--workdir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["lifecycles"] >= 6
    assert report["lost_fills"] == 0 and report["duplicate_client_ids"] == 0
