"""Helpers of the API tests (import as ``api.helpers``: tests/ is on the path)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from perptrader.marketdata.store.duckdb_store import DuckDBStore

USER, PASSWORD = "alice", "correct horse battery"
START, END = pd.Timestamp("2024-01-03", tz="UTC"), pd.Timestamp("2024-01-20", tz="UTC")


def paper_run(market: Path, db: str | None = None, *, end: pd.Timestamp = END,
              max_bars: int | None = None, speed: float | None = None) -> str:
    """A sma_cross paper replay into the default journal; returns its run id."""
    from perptrader.persistence import open_trading_db
    from perptrader.strategies import get_strategy
    from perptrader.trading.engine import Engine
    from perptrader.trading.feeds import ReplayFeed
    from perptrader.trading.spec import RunSpec

    spec = RunSpec(mode="paper", strategy="sma_cross", symbols=("BTCUSDT",), timeframe="1h",
                   params={"fast": "5", "slow": "30"},
                   replay=(START.isoformat(), end.isoformat()))
    with DuckDBStore(market, read_only=True) as store, \
            open_trading_db(db, market.parent) as journal:
        feed = ReplayFeed(store, spec.symbols, spec.timeframe, START, end, speed=speed)
        engine = Engine.open(journal, spec, get_strategy("sma_cross", spec.params), feed,
                             commit_every=1 if speed or max_bars else 64)
        engine.run(max_bars=max_bars)
        return engine.run_id


def login(client, username: str = USER, password: str = PASSWORD) -> dict:
    res = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert res.status_code == 200, res.text
    return res.json()


def bearer(pair: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {pair['access_token']}"}


def make_client(app):
    """FastAPI's TestClient (Starlette 1.10 warns that it prefers httpx2: not here)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    return TestClient(app)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_serve(port: int, log_path: Path, *args: str):
    """`perptrader serve` in a subprocess on a loopback port (console into log_path);
    returns the Popen once /api/v1/health answers."""
    import os
    import subprocess
    import sys
    import time

    import httpx

    out = log_path.open("w")
    proc = subprocess.Popen([sys.executable, "-m", "perptrader.cli", "serve", "--host",
                             "127.0.0.1", "--port", str(port), *args],
                            stdout=out, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"})
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, log_path.read_text()[-2000:]
        assert time.monotonic() < deadline, "perptrader serve did not start"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1).is_success:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
