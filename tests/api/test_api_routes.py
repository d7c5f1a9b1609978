"""Every route on a real journal (a synthetic paper replay), the kill switch through the
API applied by the engine, the WebSocket events, the market store opened per request
(and busy), research artifacts, and the OpenAPI document."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import orjson
import pandas as pd
import pytest

from api.helpers import bearer, login, make_client, paper_run
from perptrader.persistence import open_trading_db


@pytest.fixture
def auth(client, user) -> dict[str, str]:
    return bearer(login(client))


def get(client, path: str, headers: dict) -> dict:
    res = client.get(f"/api/v1{path}", headers=headers)
    assert res.status_code == 200, (path, res.text)
    return res.json()


def test_fresh_data_dir_answers_404_with_a_hint(client, auth) -> None:
    for path in ("/status", "/positions", "/orders", "/fills", "/equity", "/decisions",
                 "/risk"):
        res = client.get(f"/api/v1{path}", headers=auth)
        assert res.status_code == 404 and "trade paper" in res.json()["detail"], path
    res = client.post("/api/v1/control/stop", json={}, headers=auth)
    assert res.status_code == 404
    inv = get(client, "/data/inventory", auth)
    assert inv["available"] is False and "no market store yet" in inv["message"]
    assert get(client, "/backtests", auth) == [] and get(client, "/models", auth) == []
    assert get(client, "/agents", auth) == []


def test_trading_routes_match_the_journal(client, auth, finished_run, data_dir) -> None:
    runs = get(client, "/runs", auth)
    assert [r["run_id"] for r in runs] == [finished_run]
    status = get(client, "/status", auth)
    assert status["run_id"] == finished_run and status["status"] == "finished"
    assert get(client, f"/status?run={finished_run}", auth) == status
    with open_trading_db(None, data_dir, create=False) as db:
        fills, curve = db.fills(finished_run), db.equity_curve(finished_run)
        decisions, orders = db.decisions(finished_run), db.orders(finished_run)
    assert status["fills"] == len(fills) > 3
    got = get(client, "/fills", auth)["rows"]
    assert [f["fill_id"] for f in got] == [f["fill_id"] for f in fills]
    assert [f["fill_id"] for f in get(client, "/fills?limit=2", auth)["rows"]] == \
        [f["fill_id"] for f in fills[-2:]]
    eq = get(client, "/equity", auth)
    assert len(eq["points"]) == len(curve) == status["bars"]
    assert eq["points"][-1][1] == pytest.approx(status["final_equity"])
    equity = curve["equity"].to_numpy()
    hwm = pd.Series(equity).cummax().clip(lower=eq["initial_cash"]).to_numpy()
    assert [p[2] for p in eq["points"]] == pytest.approx(list(equity / hwm - 1))
    assert len(get(client, "/decisions", auth)["rows"]) == len(decisions)
    assert len(get(client, "/orders", auth)["rows"]) == len(orders)
    assert get(client, "/orders?open=true", auth)["rows"] == []
    positions = get(client, "/positions", auth)["rows"]
    assert positions[0]["symbol"] == "BTCUSDT" and positions[0]["qty"] == 0.0
    risk = get(client, "/risk", auth)
    assert risk["trading_state"] == "active" and risk["kill_switch"] is False
    assert risk["limits"]["max_leverage"] == 10.0 and "breakers" in risk
    res = client.get("/api/v1/status?run=nope", headers=auth)
    assert res.status_code == 404 and "no run 'nope'" in res.json()["detail"]
    assert client.get("/api/v1/fills?limit=0", headers=auth).status_code == 422


def test_kill_switch_through_the_api_is_applied_by_the_engine(client, auth, market,
                                                              data_dir) -> None:
    run_id = paper_run(market, max_bars=60)
    res = client.post("/api/v1/control/stop", json={"flatten": True}, headers=auth)
    assert res.status_code == 200, res.text
    sent = res.json()
    assert sent["run_id"] == run_id and sent["command"]["command"] == "stop"
    assert sent["command"]["by"] == "alice" and sent["command"]["flatten"] is True
    risk = get(client, "/risk", auth)
    assert risk["kill_switch"] is True and risk["control_pending"] is True
    assert risk["trading_state"] == "active"  # not applied before the engine's next bar
    paper_run(market, max_bars=5)
    risk = get(client, "/risk", auth)
    assert risk["trading_state"] == "halted" and risk["control_pending"] is False
    assert risk["flatten_allowed"] is True
    res = client.post("/api/v1/control/resume", json={"run": run_id}, headers=auth)
    assert res.status_code == 200 and res.json()["command"]["id"] == 2
    paper_run(market, max_bars=5)
    risk = get(client, "/risk", auth)
    assert risk["trading_state"] == "active" and risk["kill_switch"] is False
    with open_trading_db(None, data_dir, create=False) as db:
        kinds = [r["kind"] for r in db.audit_rows(run_id, limit=None)]
        assert db.verify_audit().ok
    assert kinds.index("control.stop") < kinds.index("kill") < kinds.index("control.resume") \
        < kinds.index("resume")


def test_cli_stop_and_api_stop_write_the_same_command(client, auth, finished_run,
                                                      data_dir) -> None:
    from typer.testing import CliRunner

    from perptrader.cli import app

    res = CliRunner().invoke(app, ["trade", "stop", "--reason", "cli"])
    assert res.exit_code == 0, res.output
    assert get(client, "/risk", auth)["control"] == {"id": 1, "command": "stop",
                                                      "flatten": False, "reason": "cli"}
    client.post("/api/v1/control/resume", json={}, headers=auth)
    assert get(client, "/risk", auth)["control"] == {"id": 2, "command": "resume",
                                                      "by": "alice", "via": "api"}


def test_websocket_pushes_events_as_they_happen(client, auth, market) -> None:
    token = auth["Authorization"].split()[1]
    with client.websocket_connect("/api/v1/ws") as ws:
        ws.send_json({"type": "auth", "token": token})
        hello = ws.receive_json()
        assert hello["type"] == "hello" and hello["data"]["user"] == "alice"
        time.sleep(0.4)  # the tail starts from "now" at its first poll
        run_id = paper_run(market, max_bars=150)
        seen: dict[str, list] = {}
        deadline = time.monotonic() + 30
        while not {"equity", "fill", "order", "position", "alert"} <= set(seen):
            assert time.monotonic() < deadline, sorted(seen)
            ev = ws.receive_json()
            seen.setdefault(ev["type"], []).append(ev)
        client.post("/api/v1/control/stop", json={}, headers=auth)
        paper_run(market, max_bars=3)
        while True:
            ev = ws.receive_json()
            if ev["type"] == "risk" and ev["data"]["trading_state"] == "halted":
                break
            assert time.monotonic() < deadline + 30
        ws.send_json({"type": "ping"})
        while ws.receive_json()["type"] != "pong":
            pass
    assert all(e["run_id"] == run_id for t in seen for e in seen[t])
    assert seen["alert"][0]["data"]["kind"] == "run.start"
    fill = seen["fill"][0]["data"]
    assert {"fill_id", "symbol", "side", "qty", "price", "fee"} <= set(fill)
    points = [p for e in seen["equity"] for p in e["data"]["points"]]
    assert len(points) == len({p[0] for p in points}) and points == sorted(points)
    assert {"client_order_id", "status", "event"} <= set(seen["order"][0]["data"])


def test_websocket_refuses_bad_and_expired_tokens(client, user) -> None:
    from starlette.websockets import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect) as info, \
            client.websocket_connect("/api/v1/ws?token=garbage") as ws:
        ws.receive_json()
    assert info.value.code == 1008
    with client.websocket_connect("/api/v1/ws") as ws:
        ws.send_json({"type": "hello"})
        assert ws.receive_json()["type"] == "error"
    tokens = client.app.state.ctx.tokens
    short, _, _ = tokens._encode("alice", "access", 1)
    with client.websocket_connect(f"/api/v1/ws?token={short}") as ws:
        assert ws.receive_json()["type"] == "hello"
        with pytest.raises(WebSocketDisconnect) as info:
            while True:
                ws.receive_json()
    assert info.value.code == 4401


def test_inventory_opens_the_store_per_request_and_says_when_it_is_busy(
        client, auth, market: Path) -> None:
    inv = get(client, "/data/inventory", auth)
    assert inv["available"] and {s["kind"] for s in inv["series"]} >= {"ohlcv", "funding"}
    fresh = get(client, "/data/freshness", auth)
    bars = next(s for s in fresh["series"] if s["kind"] == "ohlcv")
    assert bars["state"] == "stale" and bars["lag_s"] > 3600
    # the API does not keep the file: a writer can open it between requests
    from perptrader.marketdata.store.duckdb_store import DuckDBStore

    DuckDBStore(market).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
         "print('held', flush=True); time.sleep(60)", str(market)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        inv = get(client, "/data/inventory", auth)
        assert inv["available"] is False and "in use by another process" in inv["message"]
        assert get(client, "/data/freshness", auth)["available"] is False
    finally:
        holder.kill()
        holder.wait()
    assert get(client, "/data/inventory", auth)["available"] is True


def test_backtests_models_agents(client, auth, data_dir: Path) -> None:
    folder = data_dir / "backtests" / "demo" / "sma"
    folder.mkdir(parents=True)
    result = {"symbol": "BTCUSDT", "timeframe": "1h", "strategy": "sma_cross",
              "params": {"fast": 5}, "final_equity": 11000.0, "total_return": 0.1,
              "sharpe": 1.2, "max_drawdown": 0.05, "benchmark": {"strategy": "buy_and_hold"}}
    (folder / "result.json").write_bytes(orjson.dumps(result))
    (folder / "report.html").write_text("<html>sma report</html>")
    listed = get(client, "/backtests", auth)
    assert listed[0]["id"] == "demo/sma" and listed[0]["has_report"] is True
    assert get(client, "/backtests/demo/sma/result", auth)["final_equity"] == 11000.0
    res = client.get("/api/v1/backtests/demo/sma/report", headers=auth)
    assert res.status_code == 200 and "sma report" in res.text
    assert res.headers["content-type"].startswith("text/html")
    for bad in ("demo%2F..%2F..%2Fx", "demo/nope", "%2e%2e/%2e%2e/etc", "/etc"):
        res = client.get(f"/api/v1/backtests/{bad}/result", headers=auth)
        assert res.status_code == 404, bad
    model = data_dir / "models" / "gbdt-a" / "2"
    model.mkdir(parents=True)
    (model / "manifest.json").write_bytes(orjson.dumps({
        "name": "gbdt-a", "version": 2, "kind": "gbdt", "created": "2026-01-01",
        "symbol": "BTCUSDT", "timeframe": "1h", "feature_set": "default",
        "metrics": {"oos": {"macro_f1": 0.4}}}))
    (model / "report.html").write_text("<html>model report</html>")
    models = get(client, "/models", auth)
    assert models[0]["name"] == "gbdt-a" and models[0]["has_report"] is True
    assert "path" not in models[0]
    res = client.get("/api/v1/models/gbdt-a/2/report", headers=auth)
    assert res.status_code == 200 and "model report" in res.text
    agent = data_dir / "agents" / "ppo-a"
    (agent / "eval-2024-01-01-2024-02-01").mkdir(parents=True)
    (agent / "manifest.json").write_bytes(orjson.dumps({
        "name": "ppo-a", "agent": "fused", "symbol": "BTCUSDT", "timeframe": "1h",
        "windows": {"train": ["a", "b"], "valid": ["b", "c"]}, "timesteps": 1000,
        "models": {"pattern": {"name": "x", "version": 1}}, "created": "2026-01-02"}))
    (agent / "eval-2024-01-01-2024-02-01" / "report.html").write_text("<html>agent</html>")
    agents = get(client, "/agents", auth)
    assert agents[0]["reports"] == ["eval-2024-01-01-2024-02-01/report.html"]
    assert agents[0]["models"] == {"pattern": "x v1"}
    res = client.get("/api/v1/agents/ppo-a/reports/eval-2024-01-01-2024-02-01/report.html",
                     headers=auth)
    assert res.status_code == 200 and "agent" in res.text
    assert client.get("/api/v1/models/x/1/report", headers=auth).status_code == 404
    assert client.get("/api/v1/models/..%2f/1/report", headers=auth).status_code == 404
    res = client.get("/api/v1/agents/a/reports/eval-x/../../../secret.html", headers=auth)
    assert res.status_code == 404


def test_openapi_and_dashboard_are_served(client) -> None:
    spec = client.get("/api/v1/openapi.json").json()
    paths = set(spec["paths"])
    for path in ("/api/v1/health", "/api/v1/auth/login", "/api/v1/auth/refresh",
                 "/api/v1/auth/logout", "/api/v1/status", "/api/v1/positions",
                 "/api/v1/orders", "/api/v1/fills", "/api/v1/equity", "/api/v1/decisions",
                 "/api/v1/risk", "/api/v1/control/stop", "/api/v1/control/resume",
                 "/api/v1/backtests", "/api/v1/backtests/{backtest_id}/result",
                 "/api/v1/backtests/{backtest_id}/report", "/api/v1/models",
                 "/api/v1/agents", "/api/v1/data/inventory", "/api/v1/data/freshness"):
        assert path in paths, path
    assert all(p.startswith("/api/v1/") for p in paths)
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    root = client.get("/", follow_redirects=False)
    assert root.status_code in (302, 307) and root.headers["location"] == "/dashboard/"
    page = client.get("/dashboard/")
    assert page.status_code == 200 and "perptrader" in page.text
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert client.get("/dashboard/app.js").status_code == 200
    assert "cdn" not in page.text.lower()


def test_serve_binds_to_loopback_by_default() -> None:
    from perptrader.commands.serve import _is_loopback
    from perptrader.config import load_settings

    assert load_settings().api.host == "127.0.0.1" and load_settings().api.port == 8080
    assert _is_loopback("127.0.0.1") and _is_loopback("::1") and _is_loopback("localhost")
    assert not _is_loopback("0.0.0.0")



@pytest.mark.postgres
def test_api_on_a_postgresql_journal(market, user, pg_url: str, monkeypatch) -> None:
    """The same routes, kill switch and event tail with `trading.db_url` on PostgreSQL."""
    from perptrader.api import create_app
    from perptrader.config import load_settings

    monkeypatch.setenv("PERPTRADER__TRADING__DB_URL", pg_url)
    with make_client(create_app(load_settings(), poll_interval=0.05)) as client:
        auth = bearer(login(client))
        with client.websocket_connect("/api/v1/ws") as ws:
            ws.send_json({"type": "auth", "token": auth["Authorization"].split()[1]})
            assert ws.receive_json()["type"] == "hello"
            time.sleep(0.4)
            run_id = paper_run(market, pg_url, max_bars=120)
            types: set[str] = set()
            deadline = time.monotonic() + 30
            while not {"equity", "fill"} <= types:
                assert time.monotonic() < deadline, types
                types.add(ws.receive_json()["type"])
        assert get(client, "/status", auth)["run_id"] == run_id
        assert client.post("/api/v1/control/stop", json={}, headers=auth).status_code == 200
        paper_run(market, pg_url, max_bars=2)
        assert get(client, "/risk", auth)["trading_state"] == "halted"
        assert len(get(client, "/equity", auth)["points"]) == 122
