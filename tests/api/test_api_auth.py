"""Authentication: no users -> everything refused; bad passwords; expired, forged and
revoked tokens; refresh rotation and reuse; logout; removed users; report tickets; the
signing secret; the `users` commands."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from api.helpers import PASSWORD, USER, bearer, login, make_client
from perptrader.api.auth import SECRET_FILE, load_secret
from perptrader.core.errors import PerptraderError

FORGED = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsInR5cCI6ImFjY2VzcyJ9."
          "c2lnbmF0dXJl")


def protected_routes(client) -> list[tuple[str, str]]:
    """(method, path) of every route of the OpenAPI that declares the bearer scheme."""
    spec = client.get("/api/v1/openapi.json").json()
    out = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if op.get("security"):
                concrete = (path.replace("{backtest_id}", "x").replace("{name}", "x")
                            .replace("{version}", "1").replace("{report}", "eval-a/r.html"))
                out.append((method, concrete))
    return out


def call(client, method: str, path: str, headers: dict | None = None):
    body = {"path": "/api/v1/backtests/x/report"} if path.endswith("/auth/link") else {}
    if method == "get":
        return client.get(path, headers=headers)
    return client.request(method.upper(), path, json=body, headers=headers)


def test_no_users_refuses_everything(client, finished_run) -> None:
    health = client.get("/api/v1/health").json()
    assert health["status"] == "ok" and health["users"] is False
    res = client.post("/api/v1/auth/login", json={"username": USER, "password": PASSWORD})
    assert res.status_code == 401 and "perptrader users add" in res.json()["detail"]
    routes = protected_routes(client)
    assert len(routes) >= 20
    for method, path in routes:
        for headers in (None, {"Authorization": f"Bearer {FORGED}"}):
            res = call(client, method, path, headers)
            assert res.status_code == 401, (method, path, res.text)
            assert "no users yet" in res.json()["detail"]
    refresh = client.post("/api/v1/auth/refresh", json={"refresh_token": FORGED})
    assert refresh.status_code == 401
    with client.websocket_connect("/api/v1/ws") as ws:
        ws.send_json({"type": "auth", "token": FORGED})
        msg = ws.receive_json()
        assert msg["type"] == "error" and "no users yet" in msg["data"]["message"]


def test_every_protected_route_needs_a_valid_token(client, user, finished_run) -> None:
    for method, path in protected_routes(client):
        assert call(client, method, path).status_code == 401, path
        res = call(client, method, path, {"Authorization": f"Bearer {FORGED}"})
        assert res.status_code == 401 and res.json()["detail"] == "invalid token", path


def test_bad_password_and_unknown_user(client, user) -> None:
    for name, password in ((USER, "wrong password"), ("bob", PASSWORD), (USER, "")):
        res = client.post("/api/v1/auth/login", json={"username": name, "password": password})
        assert res.status_code in (401, 422)
        assert "access_token" not in res.text
    pair = login(client)
    assert pair["token_type"] == "bearer" and pair["expires_in"] == 15 * 60
    assert client.get("/api/v1/auth/me", headers=bearer(pair)).json()["username"] == USER


def test_failed_logins_are_throttled(client, user) -> None:
    for _ in range(10):
        client.post("/api/v1/auth/login", json={"username": USER, "password": "nope-nope"})
    res = client.post("/api/v1/auth/login", json={"username": USER, "password": PASSWORD})
    assert res.status_code == 429 and int(res.headers["Retry-After"]) > 0


def test_expired_and_wrong_kind_tokens(client, user) -> None:
    tokens = client.app.state.ctx.tokens
    expired, _, _ = tokens._encode(USER, "access", -5)
    res = client.get("/api/v1/status", headers={"Authorization": f"Bearer {expired}"})
    assert res.status_code == 401 and res.json()["detail"] == "token expired"
    assert res.headers["WWW-Authenticate"] == "Bearer"
    pair = login(client)
    as_access = client.get("/api/v1/auth/me",
                           headers={"Authorization": f"Bearer {pair['refresh_token']}"})
    assert as_access.status_code == 401 and "not an access token" in as_access.text
    wrong = client.post("/api/v1/auth/refresh", json={"refresh_token": pair["access_token"]})
    assert wrong.status_code == 401
    expired_refresh, _, _ = tokens._encode(USER, "refresh", -5)
    res = client.post("/api/v1/auth/refresh", json={"refresh_token": expired_refresh})
    assert res.status_code == 401 and res.json()["detail"] == "token expired"


def test_refresh_rotates_and_reuse_revokes_the_family(client, user) -> None:
    first = login(client)
    second = client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    second = second.json()
    assert client.get("/api/v1/auth/me", headers=bearer(second)).status_code == 200
    again = client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert again.status_code == 401 and again.json()["detail"] == "refresh token revoked"
    # a reused (stolen) refresh token revokes every refresh token of the user
    third = client.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert third.status_code == 401


def test_logout_revokes_both_tokens(client, user) -> None:
    pair = login(client)
    res = client.post("/api/v1/auth/logout", json={"refresh_token": pair["refresh_token"]},
                      headers=bearer(pair))
    assert res.status_code == 204
    assert client.get("/api/v1/auth/me", headers=bearer(pair)).json()["detail"] == \
        "token revoked"
    res = client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert res.status_code == 401 and res.json()["detail"] == "refresh token revoked"
    assert login(client)["access_token"]  # a new login works


def test_removed_user_tokens_stop_working(client, user, data_dir: Path) -> None:
    from perptrader.api.users import UserStore

    pair = login(client)
    store = UserStore.in_data_dir(data_dir)
    store.add("bob", "another password")
    store.remove(USER)
    res = client.get("/api/v1/auth/me", headers=bearer(pair))
    assert res.status_code == 401 and res.json()["detail"] == "unknown user"
    res = client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert res.status_code == 401


def test_report_ticket_is_bound_to_its_path(client, user, data_dir: Path) -> None:
    folder = data_dir / "backtests" / "a"
    folder.mkdir(parents=True)
    (folder / "result.json").write_text('{"strategy": "x", "benchmark": {}}')
    (folder / "report.html").write_text("<html><body>report a</body></html>")
    pair = login(client)
    link = client.post("/api/v1/auth/link", json={"path": "/api/v1/backtests/a/report"},
                       headers=bearer(pair)).json()
    assert link["url"].startswith("/api/v1/backtests/a/report?ticket=")
    res = client.get(link["url"])
    assert res.status_code == 200 and "report a" in res.text
    assert "sandbox" in res.headers["Content-Security-Policy"]
    ticket = link["url"].split("ticket=")[1]
    other = client.get(f"/api/v1/backtests/b/report?ticket={ticket}")
    assert other.status_code == 401
    assert client.get(f"/api/v1/status?ticket={ticket}").status_code == 401


def test_secret_file_is_private_and_reused(data_dir: Path, monkeypatch) -> None:
    first = load_secret(None, data_dir)
    mode = stat.S_IMODE(os.stat(data_dir / SECRET_FILE).st_mode)
    assert mode == 0o600 and len(first) >= 32
    assert load_secret(None, data_dir) == first
    assert load_secret("x" * 40, data_dir) == "x" * 40
    with pytest.raises(PerptraderError, match="at least 32"):
        load_secret("short", data_dir)


def test_env_secret_signs_tokens(data_dir: Path, monkeypatch, user) -> None:
    import jwt

    from perptrader.api import create_app
    from perptrader.config import load_settings

    monkeypatch.setenv("PERPTRADER__API__JWT_SECRET", "s" * 48)
    with make_client(create_app(load_settings())) as client:
        pair = login(client)
    claims = jwt.decode(pair["access_token"], "s" * 48, algorithms=["HS256"],
                        audience="perptrader-api")
    assert claims["sub"] == USER and claims["typ"] == "access"
    assert not (data_dir / SECRET_FILE).exists()
    assert "s" * 48 not in str(load_settings().model_dump(mode="json"))  # `config` hides it


def test_users_commands(data_dir: Path) -> None:
    from perptrader.commands.users import app

    runner = CliRunner()
    res = runner.invoke(app, ["add", "carol", "--password-stdin"], input="a long password\n")
    assert res.exit_code == 0, res.output
    assert stat.S_IMODE(os.stat(data_dir / "users.sqlite").st_mode) == 0o600
    res = runner.invoke(app, ["add", "carol", "--password-stdin"], input="another one!\n")
    assert res.exit_code == 1 and "exists" in res.output
    res = runner.invoke(app, ["add", "dave", "--password-stdin"], input="short\n")
    assert res.exit_code == 1 and "at least 8" in res.output
    res = runner.invoke(app, ["add", "../x", "--password-stdin"], input="a long password\n")
    assert res.exit_code == 1 and "invalid user name" in res.output
    listed = orjson.loads(runner.invoke(app, ["list", "--json"]).stdout)
    assert [u["username"] for u in listed] == ["carol"]
    assert "hash" not in runner.invoke(app, ["list", "--json"]).stdout
    assert runner.invoke(app, ["remove", "carol"]).exit_code == 0
    res = runner.invoke(app, ["remove", "carol"])
    assert res.exit_code == 1 and "no user" in res.output
