"""The alert cursor on both journal backends: it starts at the head, moves only when
the alerts were delivered (``commit``), and survives a restart of the notifier."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from perptrader.marketdata.store.duckdb_store import DuckDBStore
from perptrader.notify.alerts import JournalAlerts
from perptrader.persistence import open_trading_db
from perptrader.strategies import get_strategy
from perptrader.trading.engine import Engine
from perptrader.trading.feeds import ReplayFeed
from perptrader.trading.spec import RunSpec
from store_frames import fill_store

START, END = pd.Timestamp("2024-01-03", tz="UTC"), pd.Timestamp("2024-01-10", tz="UTC")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def journal_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "trading.sqlite")
    return str(request.getfixturevalue("pg_url"))


def test_cursor_moves_on_commit_and_survives_restart(journal_url: str, tmp_path: Path
                                                     ) -> None:
    with DuckDBStore(tmp_path / "market.duckdb") as store:
        store.migrate()
        fill_store(store, n=24 * 10, seed=5)
    store = DuckDBStore(tmp_path / "market.duckdb")
    spec = RunSpec(mode="paper", strategy="sma_cross", symbols=("BTCUSDT",), timeframe="1h",
                   params={"fast": "3", "slow": "8"}, replay=(START.isoformat(),
                                                              END.isoformat()))
    try:
        with open_trading_db(journal_url, tmp_path) as db:
            # history before the notifier's first start is not replayed
            db_seq_before = JournalAlerts(db).seq
            engine = Engine.open(db, spec, get_strategy("sma_cross", spec.params),
                                 ReplayFeed(store, spec.symbols, "1h", START, END))
            engine.run(max_bars=30)
            first = JournalAlerts(db).poll()  # not committed: a crash before delivery
            texts = [a.text for a in first]
            assert any("run started" in t for t in texts)
            assert any("fill BTCUSDT" in t for t in texts)
            again = JournalAlerts(db)
            assert again.seq == db_seq_before
            assert [a.text for a in again.poll()] == texts  # sent again, at least once
            again.commit()
            assert JournalAlerts(db).poll() == []  # delivered: nothing twice
            engine.run(max_bars=30)  # a day closes, more fills
            later = JournalAlerts(db).poll()
            kinds = {a.kind for a in later}
            assert "fill" in kinds and "daily" in kinds and "run" not in kinds
    finally:
        store.close()


def test_breaker_alert_when_the_risk_manager_latches(tmp_path: Path) -> None:
    """A drawdown stop (the risk manager's breaker: ACTIVE -> REDUCING) is alerted once,
    with its reason."""
    with DuckDBStore(tmp_path / "market.duckdb") as store:
        store.migrate()
        fill_store(store, n=24 * 10, seed=5)
    store = DuckDBStore(tmp_path / "market.duckdb")
    spec = RunSpec(mode="paper", strategy="sma_cross", symbols=("BTCUSDT",), timeframe="1h",
                   params={"fast": "3", "slow": "8"}, leverage=3.0,
                   risk=("max_drawdown=0.002",),
                   replay=(START.isoformat(), END.isoformat()))
    try:
        with open_trading_db(None, tmp_path) as db:
            engine = Engine.open(db, spec, get_strategy("sma_cross", spec.params),
                                 ReplayFeed(store, spec.symbols, "1h", START, END))
            watcher = JournalAlerts(db)
            engine.run(max_bars=2)
            watcher.poll()
            watcher.commit()
            engine.run(max_bars=100)
            assert engine.risk.trading_state.value == "reducing"
            breakers = [a for a in watcher.poll() if a.kind == "risk"]
            assert len(breakers) == 1 and "ACTIVE → REDUCING" in breakers[0].text
            assert "drawdown" in breakers[0].text
            watcher.commit()
            assert not [a for a in watcher.poll() if a.kind == "risk"]
    finally:
        store.close()
