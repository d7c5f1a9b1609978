"""Fixtures of the trading-database tests: the same tests on a SQLite file and on
PostgreSQL (``pg_url`` of tests/conftest.py: a fresh schema per test, dropped
afterwards; skipped with the reason when the server does not answer).

``raw_sql`` is the attacker's (or the test's) own connection, outside the package."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from perptrader.persistence import TradingDB, open_trading_db

RawSQL = Callable[..., list[tuple]]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "state" / "trading.sqlite")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def db(db_url: str, tmp_path: Path) -> Iterator[TradingDB]:
    opened = open_trading_db(db_url, tmp_path)
    yield opened
    opened.close()


@pytest.fixture
def raw_sql(db: TradingDB) -> RawSQL:
    """``raw_sql(statement, ...)``: run statements on a connection of our own (autocommit),
    returning the last one's rows."""

    def run(*statements: str) -> list[tuple]:
        if db.backend == "sqlite":
            con = sqlite3.connect(str(db.target.path), isolation_level=None, timeout=30)
            try:
                rows: list[tuple] = []
                for stmt in statements:
                    rows = con.execute(stmt).fetchall()
                return rows
            finally:
                con.close()
        url = db.target.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(url, autocommit=True,
                             options=f"-c search_path={db.target.schema}") as con:
            rows = []
            for stmt in statements:
                cur = con.execute(stmt)
                rows = cur.fetchall() if cur.description else []
            return rows

    return run
