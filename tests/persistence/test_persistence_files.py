"""What is not a usable trading database is refused with one line and left as it was;
URLs are understood and never leak a password."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from perptrader.persistence import TradingStateError, open_trading_db
from perptrader.persistence.engine import parse_target
from perptrader.persistence.migrate import VERSION_TABLE


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def real_db(path: Path, rows: int = 300) -> Path:
    with open_trading_db(str(path), path.parent) as db, db.transaction() as tx:
        for i in range(rows):
            tx.audit("filler", {"i": i, "pad": "x" * 200})
    assert not path.with_name(path.name + "-wal").exists()  # checkpointed at close
    return path


def refused(path: Path, why: str, **kwargs: object) -> str:
    before = digest(path) if path.is_file() else None
    names = sorted(os.listdir(path.parent))
    with pytest.raises(TradingStateError) as info:
        open_trading_db(str(path), path.parent, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    assert why in message, message
    assert str(path) in message
    if before is not None:
        assert digest(path) == before  # byte-identical
    assert sorted(os.listdir(path.parent)) == names  # no -wal/-shm/journal left behind
    return message


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "trading.sqlite"
    path.write_bytes(os.urandom(8192))
    message = refused(path, "file is not a database")
    assert message == (f"{path} is not a valid trading database (file is not a database); "
                       "move it away or point PERPTRADER__TRADING__DB_URL elsewhere")


def test_truncated_database(tmp_path: Path) -> None:
    path = real_db(tmp_path / "trading.sqlite")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    refused(path, "file is truncated")
    path.write_bytes(data[:60])
    refused(path, "file is truncated")


def test_corrupted_schema_page(tmp_path: Path) -> None:
    path = real_db(tmp_path / "trading.sqlite")
    data = bytearray(path.read_bytes())
    data[100:4096] = os.urandom(3996)  # page 1 after the header: the schema table
    path.write_bytes(bytes(data))
    refused(path, "is not a valid trading database (")


def test_other_applications_database(tmp_path: Path) -> None:
    path = tmp_path / "trading.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    con.execute("INSERT INTO users VALUES (1, 'ann')")
    con.commit()
    con.close()
    refused(path, "it holds tables of another application (users)")


def test_lookalike_tables_without_our_history(tmp_path: Path) -> None:
    path = tmp_path / "trading.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    con.commit()
    con.close()
    refused(path, "tables not created by perptrader's migrations (orders)")


def test_database_of_a_newer_version(tmp_path: Path) -> None:
    path = real_db(tmp_path / "trading.sqlite", rows=1)
    con = sqlite3.connect(path)
    con.execute(f"UPDATE {VERSION_TABLE} SET version_num = '9999'")
    con.commit()
    con.close()
    refused(path, "schema revision 9999 is unknown to this perptrader")


def test_directory_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "trading.sqlite").mkdir()
    refused(tmp_path / "trading.sqlite", "it is a directory")


def test_missing_file_is_created_or_refused(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "trading.sqlite"
    with pytest.raises(TradingStateError, match="no trading database at"):
        open_trading_db(str(path), tmp_path, create=False)
    assert not path.parent.exists()
    with open_trading_db(None, path.parent) as db:
        assert db.url == str(path) and db.verify_audit().ok
    assert path.is_file()
    empty = tmp_path / "empty.sqlite"
    empty.touch()  # an empty file is an empty database: it becomes ours
    with open_trading_db(f"sqlite:///{empty}", tmp_path) as db:
        assert db.backend == "sqlite"
    with sqlite3.connect(empty) as con:
        assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_urls() -> None:
    assert parse_target(None, "ud").path == Path("ud/trading.sqlite")
    assert parse_target("", "ud").path == Path("ud/trading.sqlite")
    assert parse_target("sqlite:////abs/t.db", "ud").path == Path("/abs/t.db")
    assert parse_target("rel/t.db", "ud").path == Path("rel/t.db")
    pg = parse_target("postgres://bob:s3cret@db.example:6543/trade?schema=live", "ud")
    assert (pg.backend, pg.schema, pg.url.drivername) == ("postgresql", "live",
                                                          "postgresql+psycopg")
    assert "schema" not in pg.url.query
    assert "s3cret" not in pg.display and "***" in pg.display
    assert parse_target("postgresql+asyncpg://h/db", "ud").url.drivername == \
        "postgresql+psycopg"
    for bad, why in [("mysql://bob:s3cret@h/db", "unknown trading DB URL"),
                     ("sqlite://", "must be a file"),
                     ("postgresql://h/db?schema=a;drop", "invalid schema name")]:
        with pytest.raises(TradingStateError, match=why) as info:
            parse_target(bad, "ud")
        assert "s3cret" not in str(info.value)


def test_unreachable_server_hides_the_password() -> None:
    with pytest.raises(TradingStateError) as info:
        open_trading_db("postgresql://bob:s3cret@127.0.0.1:1/db", "ud")
    message = str(info.value)
    assert message.startswith("cannot open the trading database "
                              "postgresql://bob:***@127.0.0.1:1/db: ")
    assert "s3cret" not in message and "\n" not in message
