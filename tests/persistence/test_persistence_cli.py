"""``perptrader audit verify`` (the commands/audit.py group, as the CLI will mount it)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from perptrader.commands.audit import app
from perptrader.persistence import open_trading_db

runner = CliRunner()


def make_db(path: Path, rows: int = 5) -> str:
    with open_trading_db(str(path), path.parent) as db:
        for i in range(rows):
            with db.transaction() as tx:
                tx.audit("tick", {"i": i})
        return db.verify_audit().head_hash or ""


def test_good_db(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    head = make_db(path)
    result = runner.invoke(app, ["verify", "--db", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"audit log ok: 5 rows, head {head[:12]}"
    result = runner.invoke(app, ["verify", "--db", f"sqlite:///{path}", "--json"])
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report == {"db": str(path), "ok": True, "rows": 5, "first_bad_seq": None,
                      "problem": None, "head_seq": 5, "head_hash": head}


def test_tampered_db(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    make_db(path)
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("DROP TRIGGER audit_log_no_update")
    con.execute("""UPDATE audit_log SET payload = '{"i":9}' WHERE seq = 3""")
    con.close()
    result = runner.invoke(app, ["verify", "--db", str(path)])
    assert result.exit_code == 1
    assert "audit log BROKEN at seq 3: hash mismatch" in result.output
    result = runner.invoke(app, ["verify", "--db", str(path), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["first_bad_seq"] == 3


def test_db_from_env_then_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the root conftest points PERPTRADER__DATA_DIR at tmp_path/user_data
    result = runner.invoke(app, ["verify"])
    assert result.exit_code == 1
    assert "no trading database at" in result.output
    assert not (tmp_path / "user_data" / "trading.sqlite").exists()
    make_db(tmp_path / "user_data" / "trading.sqlite", rows=2)
    result = runner.invoke(app, ["verify"])
    assert result.exit_code == 0 and "2 rows" in result.stdout
    other = tmp_path / "other.sqlite"
    make_db(other, rows=3)
    monkeypatch.setenv("PERPTRADER__TRADING__DB_URL", f"sqlite:///{other}")
    result = runner.invoke(app, ["verify"])
    assert result.exit_code == 0 and "3 rows" in result.stdout


def test_bad_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    path.write_bytes(b"not a database at all" * 100)
    result = runner.invoke(app, ["verify", "--db", str(path)])
    assert result.exit_code == 1
    # one line (the shared error console wraps it at its width)
    assert "is not a valid trading database (file is not a database)" in \
        " ".join(result.output.split())
