"""What a user sees at the end of a command: its own output and nothing else (no
"nanobind: leaked" lines from DuckDB's module teardown, no log lines doubling the one
error line), and the right exit code. Real processes, as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from perptrader.config import load_settings
from perptrader.marketdata.store.duckdb_store import DuckDBStore
from store_frames import fill_store


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "perptrader.cli", *args], env=dict(os.environ),
                          capture_output=True, text=True, timeout=300)


def test_a_store_command_ends_with_its_own_output(tmp_path: Path) -> None:
    path = load_settings().data_dir / "market.duckdb"
    path.parent.mkdir(parents=True, exist_ok=True)
    with DuckDBStore(path) as store:
        store.migrate()
        fill_store(store, n=300)
    done = run("backtest", "run", "--symbol", "BTCUSDT", "--strategy", "sma_cross",
               "--out", str(tmp_path / "bt"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "nanobind" not in done.stdout + done.stderr
    assert (tmp_path / "bt" / "result.json").is_file()
    listed = run("data", "list", "--json")
    assert listed.returncode == 0 and "nanobind" not in listed.stderr


def test_a_refusal_is_one_line_and_exit_1(tmp_path: Path) -> None:
    done = run("trade", "status", "--db", str(tmp_path / "absent.sqlite"))
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), done.stderr
