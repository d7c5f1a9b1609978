"""Shared fixtures: where the real data lives, and a fresh embedded store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from perptrader.marketdata.store.duckdb_store import DuckDBStore


@pytest.fixture
def store(tmp_path: Path):
    s = DuckDBStore(tmp_path / "market.duckdb")
    s.migrate()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the developer's perptrader.toml or writes to ./user_data."""
    monkeypatch.setenv("PERPTRADER_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("PERPTRADER__DATA_DIR", str(tmp_path / "user_data"))
    for key in list(os.environ):
        if key.startswith("PERPTRADER__") and key != "PERPTRADER__DATA_DIR":
            monkeypatch.delenv(key)
