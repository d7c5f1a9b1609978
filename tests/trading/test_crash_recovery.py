"""20 ``kill -9`` at random moments of a paper replay, each followed by a restart of the
same command: the journal ends equal to an uninterrupted run's, no order is placed twice,
and the audit chain verifies."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from perptrader.config import load_settings
from perptrader.marketdata.store.duckdb_store import DuckDBStore
from perptrader.persistence import open_trading_db
from store_frames import fill_store

KILLS = 20
ARGS = ["trade", "paper", "--strategy", "random", "--param", "p_entry=0.05", "--param",
        "p_exit=0.1", "--symbol", "BTCUSDT", "--replay", "2024-01-02..2024-04-25", "--json"]


def cli(db: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "perptrader.cli", *ARGS, "--db", str(db), *extra]


def committed_bars(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return int(con.execute("SELECT count(*) FROM balances").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def journal(db: Path) -> dict:
    with open_trading_db(str(db), db.parent, create=False) as j:
        run = j.latest_run()
        run_id = run["run_id"]
        drop = {"created_at", "updated_at"}
        return {
            "run": {k: v for k, v in run.items() if k not in drop},
            "orders": [{k: v for k, v in o.items() if k not in drop} for o in j.orders(run_id)],
            "events": [(e["client_order_id"], e["kind"], e["from_status"], e["to_status"],
                        e["ts"]) for e in j.order_events(run_id)],
            "fills": [{k: v for k, v in f.items() if k != "created_at"} for f in j.fills(run_id)],
            "balances": j.balances(run_id),
            "decisions": j.decisions(run_id),
            "positions": j.positions(run_id),
            "audit_ok": j.verify_audit().ok,
        }


@pytest.mark.slow
def test_twenty_kill_9_then_restart_equal_an_uninterrupted_run(tmp_path: Path) -> None:
    path = load_settings().data_dir / "market.duckdb"
    path.parent.mkdir(parents=True, exist_ok=True)
    with DuckDBStore(path) as store:
        store.migrate()
        fill_store(store, n=2_800, seed=11)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    clean = tmp_path / "clean.sqlite"
    done = subprocess.run(cli(clean), env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]

    crashed = tmp_path / "crashed.sqlite"
    rng = random.Random(20261207)
    kills = 0
    while kills < KILLS:
        proc = subprocess.Popen(cli(crashed, "--speed", "600"), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        start = committed_bars(crashed)
        deadline = time.monotonic() + 120
        # wait for this process to commit something, then kill it at a random moment
        while committed_bars(crashed) <= start and proc.poll() is None:
            assert time.monotonic() < deadline, "the restarted run made no progress"
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.25))
        if proc.poll() is not None:
            break  # it finished before the kill
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
    assert kills == KILLS, f"the replay finished after {kills} kills; make it longer"
    final = subprocess.run(cli(crashed), env=env, capture_output=True, text=True,
                           timeout=600)
    assert final.returncode == 0, final.stderr[-2000:]

    want, got = journal(clean), journal(crashed)
    assert got["audit_ok"] and want["audit_ok"]
    assert got["run"]["status"] == "finished"
    for key in ("orders", "events", "fills", "balances", "decisions", "positions"):
        assert got[key] == want[key], f"{key} differ after {KILLS} crashes"
    ids = [o["client_order_id"] for o in got["orders"]]
    assert len(ids) == len(set(ids))
    assert [o["seq"] for o in got["orders"]] == list(range(1, len(ids) + 1))
    assert len(got["fills"]) > 20
