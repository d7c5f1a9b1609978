"""Security properties that must hold for every route, present and future: the OpenAPI
route list is walked, so a new route cannot slip through unprotected.

- every route but health / login / refresh (which takes a refresh token in its body)
  refuses a missing, expired, forged (wrong secret, ``alg: none``) and revoked token;
  so do the report tickets and the WebSocket;
- failed logins are rate-limited (429 + Retry-After);
- CORS is closed: a cross-origin request gets no Access-Control-Allow-Origin;
- passwords and tokens never reach the logs (the JSON log file and the console of a real
  `perptrader serve`).
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import jwt
import pytest
from starlette.routing import Mount, Route, WebSocketRoute

from api.helpers import PASSWORD, USER, bearer, free_port, login, start_serve
from perptrader.api.auth import ALGORITHM, AUDIENCE

#: operations that need no access token (refresh: a refresh token in the body)
PUBLIC = {("get", "/api/v1/health"), ("post", "/api/v1/auth/login"),
          ("post", "/api/v1/auth/refresh")}
SAMPLE = {"backtest_id": "x", "name": "x", "version": "1", "report": "eval-a/r.html"}


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims(kind: str = "access", **extra) -> dict:
    now = int(time.time())
    return {"sub": USER, "typ": kind, "jti": "0" * 32, "iat": now, "exp": now + 600,
            "aud": AUDIENCE, **extra}


def bad_tokens(client) -> dict[str, str]:
    """Every kind of token a protected route must refuse (None: no header at all)."""
    tokens = client.app.state.ctx.tokens
    expired, _, _ = tokens._encode(USER, "access", -5)
    pair = login(client)
    res = client.post("/api/v1/auth/logout", json={"refresh_token": pair["refresh_token"]},
                      headers=bearer(pair))
    assert res.status_code == 204
    return {
        "expired": expired,
        "wrong secret": jwt.encode(claims(), "another secret of at least 32 chars!",
                                   algorithm=ALGORITHM),
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims())}.",
        "alg none signed": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims())}."
                           + expired.rsplit(".", 1)[1],
        "tampered": _tamper(tokens._encode(USER, "access", 600)[0]),
        "revoked": pair["access_token"],
        "refresh as access": login(client)["refresh_token"],
        "garbage": "not-a-jwt",
    }


def _tamper(token: str) -> str:
    """A valid token with its payload changed (another user), signature kept."""
    head, _, sig = token.split(".")
    return f"{head}.{_b64(claims(sub='root'))}.{sig}"


def operations(client) -> list[tuple[str, str, bool]]:
    """(method, concrete path, declares security) of every OpenAPI operation."""
    spec = client.get("/api/v1/openapi.json").json()
    out = []
    for path, ops in spec["paths"].items():
        concrete = path
        for name, value in SAMPLE.items():
            concrete = concrete.replace("{" + name + "}", value)
        for method, op in ops.items():
            out.append((method, concrete, bool(op.get("security"))))
    return out


def call(client, method: str, path: str, headers: dict | None = None):
    body = {"path": "/api/v1/backtests/x/report"} if path.endswith("/auth/link") else \
        {"run": None} if "/control/" in path else {}
    return client.request(method.upper(), path, json=None if method == "get" else body,
                          headers=headers)


def test_only_health_and_login_are_public(client) -> None:
    ops = operations(client)
    assert len(ops) >= 20
    public = {(m, p) for m, p, secured in ops if not secured}
    assert public == PUBLIC, f"a route without the bearer scheme: {public - PUBLIC}"
    # nothing is served outside the OpenAPI document but the dashboard, the docs, / and
    # the WebSocket
    documented = {p for _, p, _ in ops}
    for route in _routes(client.app.routes):
        if isinstance(route, Mount):
            assert route.path == "/dashboard"
        elif isinstance(route, WebSocketRoute):
            assert route.path == "/api/v1/ws"
        elif isinstance(route, Route) and route.include_in_schema is False:
            assert route.path in ("/", "/api/v1/openapi.json", "/api/v1/docs",
                                  "/docs/oauth2-redirect"), route.path
        elif isinstance(route, Route):
            path = route.path.replace(":path}", "}")
            for name, value in SAMPLE.items():
                path = path.replace("{" + name + "}", value)
            assert path in documented, route.path


def _routes(routes):
    """Routes, included routers flattened (FastAPI wraps them in recent versions)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            prefix = getattr(getattr(route, "include_context", None), "prefix", "/api/v1")
            for sub in _routes(inner.routes):
                if isinstance(sub, Route | WebSocketRoute) and \
                        not sub.path.startswith("/api/v1"):
                    sub = type(sub)(prefix + sub.path, sub.endpoint,
                                    **({"methods": list(sub.methods or [])}
                                       if isinstance(sub, Route) else {}))
                yield sub
        else:
            yield route


def test_every_protected_route_refuses_every_bad_token(client, user, finished_run) -> None:
    bad = bad_tokens(client)
    routes = [(m, p) for m, p, secured in operations(client) if secured]
    for method, path in routes:
        res = call(client, method, path)
        assert res.status_code == 401, (method, path, "missing", res.text)
        assert res.headers["WWW-Authenticate"] == "Bearer"
        for kind, token in bad.items():
            res = call(client, method, path, {"Authorization": f"Bearer {token}"})
            assert res.status_code == 401, (method, path, kind, res.text)
            assert "access_token" not in res.text and "points" not in res.text
        res = call(client, method, path, {"Authorization": f"Basic {_b64({'a': 1})}"})
        assert res.status_code == 401, (method, path, "basic")
    # a good token passes every one of them (nothing is refused for another reason)
    good = bearer(login(client))
    for method, path in sorted(routes, key=lambda r: r[1].endswith("/logout")):
        res = call(client, method, path, good)  # (logout last: it revokes the token)
        assert res.status_code != 401, (method, path, res.text)


def test_report_tickets_refuse_bad_tokens(client, user) -> None:
    bad = bad_tokens(client)
    tokens = client.app.state.ctx.tokens
    other_path = tokens.link(USER, "/api/v1/backtests/y/report")
    expired, _, _ = tokens._encode(USER, "link", -5, path="/api/v1/backtests/x/report")
    access = login(client)["access_token"]
    for path in [p for m, p, secured in operations(client)
                 if secured and m == "get" and ("/report" in p)]:
        for token in [*bad.values(), other_path, expired, access]:
            res = client.get(path, params={"ticket": token})
            assert res.status_code == 401, (path, res.text)


def test_refresh_refuses_bad_tokens(client, user) -> None:
    bad = {k: v for k, v in bad_tokens(client).items() if k != "refresh as access"}
    spent = login(client)["refresh_token"]
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": spent}).status_code == 200
    access = login(client)["access_token"]
    for token in [*bad.values(), spent, access]:
        res = client.post("/api/v1/auth/refresh", json={"refresh_token": token})
        assert res.status_code == 401, res.text
    assert client.post("/api/v1/auth/refresh", json={}).status_code == 422


def test_websocket_refuses_every_bad_token(client, user) -> None:
    from starlette.websockets import WebSocketDisconnect

    for kind, token in bad_tokens(client).items():
        with client.websocket_connect("/api/v1/ws") as ws:
            ws.send_json({"type": "auth", "token": token})
            msg = ws.receive_json()
            assert msg["type"] == "error", kind
        with pytest.raises(WebSocketDisconnect), \
                client.websocket_connect(f"/api/v1/ws?token={token}") as ws:
            ws.receive_json()
    with client.websocket_connect("/api/v1/ws") as ws:  # no auth message at all
        ws.send_json({"type": "ping"})
        assert ws.receive_json()["type"] == "error"


def test_login_is_rate_limited(client, user) -> None:
    for _ in range(10):
        res = client.post("/api/v1/auth/login", json={"username": USER, "password": "nope"})
        assert res.status_code == 401
    for password in ("nope", PASSWORD):  # the right password is refused too, for now
        res = client.post("/api/v1/auth/login", json={"username": USER, "password": password})
        assert res.status_code == 429 and int(res.headers["Retry-After"]) > 0
        assert "access_token" not in res.text
    # unknown user names are throttled the same way (no user enumeration)
    for _ in range(10):
        client.post("/api/v1/auth/login", json={"username": "mallory", "password": "x"})
    res = client.post("/api/v1/auth/login", json={"username": "mallory", "password": "x"})
    assert res.status_code == 429


def test_cors_is_closed_by_default(client, user) -> None:
    evil = {"Origin": "https://evil.example"}
    pair = login(client)
    for method, path in (("get", "/api/v1/health"), ("get", "/api/v1/auth/me"),
                         ("post", "/api/v1/auth/login")):
        headers = {**evil, **bearer(pair)}
        body = {"username": USER, "password": PASSWORD} if "login" in path else None
        res = client.request(method.upper(), path, headers=headers, json=body)
        assert not any(h.lower().startswith("access-control-") for h in res.headers), \
            (path, dict(res.headers))
        pre = client.options(path, headers={**evil, "Access-Control-Request-Method": "POST",
                                            "Access-Control-Request-Headers": "authorization"})
        assert pre.status_code >= 400, (path, pre.status_code)
        assert "access-control-allow-origin" not in pre.headers, path
    page = client.get("/dashboard/", headers=evil)
    assert "access-control-allow-origin" not in page.headers
    assert page.headers["X-Frame-Options"] == "DENY"


def test_log_records_are_redacted() -> None:
    import logging

    from perptrader.api.app import RedactTokens, redact

    assert redact('127.0.0.1 - "GET /api/v1/ws?token=aaa.bbb.ccc HTTP/1.1" 101') == \
        '127.0.0.1 - "GET /api/v1/ws?token=*** HTTP/1.1" 101'
    assert redact("/api/v1/backtests/a/report?x=1&ticket=t.u.v") == \
        "/api/v1/backtests/a/report?x=1&ticket=***"
    assert redact("< authorization: Bearer aaa.bbb.ccc") == "< authorization: Bearer ***"
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1,
                               '%s - "%s %s HTTP/%s" %d', ("127.0.0.1:5", "GET",
                                                          "/api/v1/ws?token=secret", "1.1",
                                                          101), None)
    assert RedactTokens().filter(record)
    assert "secret" not in record.getMessage() and record.args[4] == 101


@pytest.mark.slow
def test_passwords_and_tokens_never_reach_the_logs(user, market, finished_run,
                                                   data_dir: Path, tmp_path: Path) -> None:
    """A real `perptrader serve` (console and JSON log file captured): failed and good
    logins, authenticated calls, a refresh, a report ticket, the WebSocket (both ways of
    authenticating), a logout."""
    import httpx
    from websockets.sync.client import connect

    folder = data_dir / "backtests" / "a"
    folder.mkdir(parents=True)
    (folder / "result.json").write_text('{"strategy": "x", "benchmark": {}}')
    (folder / "report.html").write_text("<html><body>report a</body></html>")
    wrong = "Wr0ng-p4ssword-never-logged"
    port, console = free_port(), tmp_path / "serve.log"
    proc = start_serve(port, console, "--log-level", "debug")
    secrets = [PASSWORD, wrong]
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=30) as http:
            bad = http.post("/api/v1/auth/login", json={"username": USER, "password": wrong})
            assert bad.status_code == 401
            unknown = http.post("/api/v1/auth/login", json={"username": "bob",
                                                            "password": wrong})
            assert unknown.status_code == 401
            pair = http.post("/api/v1/auth/login",
                             json={"username": USER, "password": PASSWORD}).json()
            secrets += [pair["access_token"], pair["refresh_token"]]
            for path in ("/api/v1/auth/me", "/api/v1/status", "/api/v1/fills",
                         "/api/v1/risk", "/api/v1/backtests"):
                assert http.get(path, headers=bearer(pair)).status_code == 200, path
            new = http.post("/api/v1/auth/refresh",
                            json={"refresh_token": pair["refresh_token"]}).json()
            secrets += [new["access_token"], new["refresh_token"]]
            again = http.post("/api/v1/auth/refresh",  # reuse: a logged warning
                              json={"refresh_token": pair["refresh_token"]})
            assert again.status_code == 401
            pair = http.post("/api/v1/auth/login",
                             json={"username": USER, "password": PASSWORD}).json()
            secrets += [pair["access_token"], pair["refresh_token"]]
            url = http.post("/api/v1/auth/link", json={"path": "/api/v1/backtests/a/report"},
                            headers=bearer(pair)).json()["url"]
            secrets.append(url.split("ticket=", 1)[1])
            assert "report a" in http.get(url).text
            ws_url = f"ws://127.0.0.1:{port}/api/v1/ws"
            with connect(ws_url) as ws:
                ws.send(json.dumps({"type": "auth", "token": pair["access_token"]}))
                assert json.loads(ws.recv(timeout=10))["type"] == "hello"
            with connect(f"{ws_url}?token={pair['access_token']}") as ws:
                assert json.loads(ws.recv(timeout=10))["type"] == "hello"
            res = http.post("/api/v1/auth/logout", json={"refresh_token": pair["refresh_token"]},
                            headers=bearer(pair))
            assert res.status_code == 204
            assert http.get("/api/v1/status", headers=bearer(pair)).status_code == 401
        time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    json_log = data_dir / "logs" / "perptrader.jsonl"
    assert json_log.is_file()
    for name, text in (("console", console.read_text()), ("json log", json_log.read_text())):
        assert "/api/v1/auth/login" in text or name == "json log", text[-2000:]
        for secret in secrets:
            assert secret not in text, (name, secret[:12])
        # (the signature alone neither)
        for secret in secrets[2:]:
            assert secret.rsplit(".", 1)[-1] not in text, name
    assert "failed login" in json_log.read_text()
