"""Several processes on one SQLite file (WAL): writers in separate transactions while a
reader reads, and processes opening (migrating) a fresh file at the same moment."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from perptrader.persistence import open_trading_db

pytestmark = pytest.mark.slow

WRITER = """
import sys
from perptrader.persistence import open_trading_db

path, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
# NORMAL: this test is about locking, not fsync (FULL makes it 3x slower on a busy disk)
with open_trading_db(path, ".", synchronous="NORMAL") as db:
    for i in range(n):
        with db.transaction() as tx:
            tx.audit("tick", {"writer": name, "i": i}, run_id="r1")
"""


def spawn(path: Path, name: str, n: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, str(n)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen[bytes]) -> None:
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-2000:]


def test_reader_while_writers_write(tmp_path: Path) -> None:
    path = tmp_path / "trading.sqlite"
    with open_trading_db(str(path), tmp_path) as db:
        with db.transaction() as tx:
            tx.create_run("r1", mode="paper", strategy="s", timeframe="1m", symbols=["BTCUSDT"])
        writers = [spawn(path, "a", 500), spawn(path, "b", 100)]
        seen, reads = 0, 0
        deadline = time.monotonic() + 120
        while any(w.poll() is None for w in writers) and time.monotonic() < deadline:
            report = db.verify_audit()  # one read snapshot while the writers commit
            assert report.ok, report.summary()
            assert report.rows >= seen
            seen, reads = report.rows, reads + 1
            time.sleep(0.005)  # leave the writers some CPU on a small machine
        for w in writers:
            finish(w)
        report = db.verify_audit()
        assert report.ok and report.rows == 600
        assert reads > 1
        payloads = [orjson.loads(r["payload"]) for r in db.audit_rows(limit=None)]
        assert sorted(p["i"] for p in payloads if p["writer"] == "a") == list(range(500))
        assert sorted(p["i"] for p in payloads if p["writer"] == "b") == list(range(100))


def test_processes_opening_a_fresh_file_at_once(tmp_path: Path) -> None:
    path = tmp_path / "new" / "trading.sqlite"
    bootstrap = ("from perptrader.persistence import open_trading_db\n"
                 "import sys\n"
                 "with open_trading_db(sys.argv[1], '.') as db, db.transaction() as tx:\n"
                 "    tx.create_run(sys.argv[2], mode='paper', strategy='s', timeframe='1m',"
                 " symbols=['X'])\n"
                 "    tx.audit('start', {}, run_id=sys.argv[2])\n")
    procs = [subprocess.Popen([sys.executable, "-c", bootstrap, str(path), f"r{i}"],
                              stderr=subprocess.PIPE) for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()[-2000:]
    with open_trading_db(str(path), tmp_path) as db:
        assert sorted(r["run_id"] for r in db.list_runs()) == ["r0", "r1"]
        assert db.verify_audit().rows == 2
