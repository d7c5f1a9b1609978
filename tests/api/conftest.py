"""API fixtures: a data dir with a synthetic market store, a finished paper run in the
default journal (<data_dir>/trading.sqlite), a user, and a TestClient."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.helpers import PASSWORD, USER, make_client, paper_run
from perptrader.config import load_settings
from perptrader.marketdata.store.duckdb_store import DuckDBStore
from store_frames import fill_store


@pytest.fixture
def data_dir() -> Path:
    path = Path(load_settings().data_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def market(data_dir: Path) -> Path:
    """600 synthetic 1h BTCUSDT bars in the embedded store (closed again)."""
    path = data_dir / "market.duckdb"
    with DuckDBStore(path) as store:
        store.migrate()
        fill_store(store, n=600, seed=7)
    return path


@pytest.fixture
def finished_run(market: Path) -> str:
    return paper_run(market)


@pytest.fixture
def user(data_dir: Path) -> tuple[str, str]:
    from perptrader.api.users import UserStore

    UserStore.in_data_dir(data_dir).add(USER, PASSWORD)
    return USER, PASSWORD


@pytest.fixture
def client(data_dir: Path):
    from perptrader.api import create_app

    app = create_app(load_settings(), poll_interval=0.05)
    with make_client(app) as c:
        yield c


@pytest.fixture
def server(data_dir: Path):
    """`perptrader serve`'s app under uvicorn on a free loopback port (in a thread)."""
    import threading
    import time

    import uvicorn

    from api.helpers import free_port
    from perptrader.api import create_app

    port = free_port()
    config = uvicorn.Config(create_app(load_settings()), host="127.0.0.1", port=port,
                            log_level="warning", ws="websockets-sansio")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=15)
