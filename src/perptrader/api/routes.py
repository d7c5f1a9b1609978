"""The ``/api/v1`` routes and the WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Annotated, Any

from fastapi import (
    APIRouter,
    Depends,
    HTTPException,
    Query,
    Request,
    WebSocket,
    WebSocketDisconnect,
)
from fastapi.responses import FileResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from perptrader import __version__
from perptrader.api import research
from perptrader.api.app import ApiContext
from perptrader.api.auth import AuthError, Claims

log = logging.getLogger(__name__)
router = APIRouter()
bearer = HTTPBearer(auto_error=False, description="An access token from /api/v1/auth/login.")
NO_USERS = ("no users yet: add one with `perptrader users add NAME` (every protected route is "
            "refused until then)")
UNAUTHORIZED = {401: {"description": "missing, invalid, expired or revoked token"}}
NOT_FOUND = {404: {"description": "no trading database / run / artifact of that name"}}
#: WebSocket close codes (4000-4999 are the application's)
WS_UNAUTHORIZED = 4401


def ctx_of(request: Request) -> ApiContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def current_user(request: Request,
                 creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
                 ) -> Claims:
    ctx = ctx_of(request)
    if ctx.users.count() == 0:
        raise _unauthorized(NO_USERS)
    if creds is None or creds.scheme.lower() != "bearer":
        raise _unauthorized("missing bearer token")
    try:
        return ctx.tokens.verify_access(creds.credentials)
    except AuthError as exc:
        raise _unauthorized(str(exc)) from None


User = Annotated[Claims, Depends(current_user)]
RunQ = Annotated[str | None, Query(description="Run id (default: the latest run).",
                                   max_length=200)]
LimitQ = Annotated[int | None, Query(ge=1, le=1_000_000,
                                     description="Only the newest N rows.")]


# ---- models ------------------------------------------------------------------------------
class Health(BaseModel):
    status: str
    version: str
    time: float
    users: bool = Field(description="Whether any user exists (none: everything is refused).")


class Login(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int
    refresh_expires_in: int


class Refresh(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=4096)


class Logout(BaseModel):
    refresh_token: str | None = Field(default=None, max_length=4096)


class Me(BaseModel):
    username: str
    expires_at: int


class LinkRequest(BaseModel):
    path: str = Field(min_length=1, max_length=1000, pattern=r"^/api/v1/",
                      description="An API path of an HTML report.")


class Link(BaseModel):
    url: str
    expires_in: int


class Stop(BaseModel):
    run: str | None = Field(default=None, max_length=200)
    flatten: bool = False
    reason: str = Field(default="kill switch (API)", max_length=500)


class Resume(BaseModel):
    run: str | None = Field(default=None, max_length=200)


class ControlSent(BaseModel):
    run_id: str
    command: dict[str, Any]
    message: str


# ---- public ------------------------------------------------------------------------------
@router.get("/health", response_model=Health, tags=["health"])
def health(request: Request) -> Health:
    """Liveness (no token needed)."""
    return Health(status="ok", version=__version__, time=time.time(),
                  users=ctx_of(request).users.count() > 0)


# ---- auth --------------------------------------------------------------------------------
@router.post("/auth/login", response_model=TokenPair, tags=["auth"],
             responses={**UNAUTHORIZED, 429: {"description": "too many failed logins"}})
def login(body: Login, request: Request) -> dict[str, Any]:
    """Username + password -> a short-lived access token and a refresh token."""
    ctx = ctx_of(request)
    key = (request.client.host if request.client else "?", body.username)
    wait = ctx.throttle.retry_after(key)
    if wait:
        raise HTTPException(429, f"too many failed logins; try again in {wait} s",
                            headers={"Retry-After": str(wait)})
    if ctx.users.count() == 0:
        raise _unauthorized(NO_USERS)
    if not ctx.users.verify(body.username, body.password):
        ctx.throttle.failed(key)
        log.warning("failed login for %r from %s", body.username, key[0])
        raise _unauthorized("wrong user name or password")
    ctx.throttle.succeeded(key)
    return ctx.tokens.issue(body.username)


@router.post("/auth/refresh", response_model=TokenPair, tags=["auth"], responses=UNAUTHORIZED)
def refresh(body: Refresh, request: Request) -> dict[str, Any]:
    """Spend a refresh token for a new pair (each refresh token works once)."""
    ctx = ctx_of(request)
    if ctx.users.count() == 0:
        raise _unauthorized(NO_USERS)
    try:
        return ctx.tokens.refresh(body.refresh_token)
    except AuthError as exc:
        raise _unauthorized(str(exc)) from None


@router.post("/auth/logout", status_code=204, tags=["auth"], responses=UNAUTHORIZED)
def logout(body: Logout, user: User, request: Request) -> None:
    """Revoke this access token and the given refresh token."""
    ctx_of(request).tokens.logout(user, body.refresh_token)


@router.get("/auth/me", response_model=Me, tags=["auth"], responses=UNAUTHORIZED)
def me(user: User) -> Me:
    return Me(username=user.username, expires_at=user.expires_at)


@router.post("/auth/link", response_model=Link, tags=["auth"], responses=UNAUTHORIZED)
def link(body: LinkRequest, user: User, request: Request) -> Link:
    """A 60-second URL for one HTML report (to open in a new browser tab)."""
    token = ctx_of(request).tokens.link(user.username, body.path)
    return Link(url=f"{body.path}?ticket={token}", expires_in=60)


def report_user(request: Request,
                creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
                ticket: Annotated[str | None, Query(max_length=4096)] = None) -> Claims:
    """A bearer token, or a link ticket for exactly this path."""
    if ticket:
        ctx = ctx_of(request)
        if ctx.users.count() == 0:
            raise _unauthorized(NO_USERS)
        try:
            return ctx.tokens.verify_link(ticket, request.url.path)
        except AuthError as exc:
            raise _unauthorized(str(exc)) from None
    return current_user(request, creds)


ReportUser = Annotated[Claims, Depends(report_user)]


# ---- trading -----------------------------------------------------------------------------
TRADING = {"tags": ["trading"], "responses": {**UNAUTHORIZED, **NOT_FOUND}}


@router.get("/runs", **TRADING)
def runs(user: User, request: Request) -> list[dict[str, Any]]:
    """Every run in the journal, newest first."""
    return ctx_of(request).journal.runs()


@router.get("/status", **TRADING)
def status(user: User, request: Request, run: RunQ = None) -> dict[str, Any]:
    """Engine status of a run (as `trade status --json`)."""
    return ctx_of(request).journal.status(run)


@router.get("/positions", **TRADING)
def positions(user: User, request: Request, run: RunQ = None) -> dict[str, Any]:
    return ctx_of(request).journal.rows("positions", run)


@router.get("/orders", **TRADING)
def orders(user: User, request: Request, run: RunQ = None,
           open: Annotated[bool, Query(description="Open orders only.")] = False,
           limit: LimitQ = None) -> dict[str, Any]:
    return ctx_of(request).journal.rows("orders", run, open_only=open, limit=limit)


@router.get("/fills", **TRADING)
def fills(user: User, request: Request, run: RunQ = None, limit: LimitQ = None
          ) -> dict[str, Any]:
    return ctx_of(request).journal.rows("fills", run, limit=limit)


@router.get("/equity", **TRADING)
def equity(user: User, request: Request, run: RunQ = None, limit: LimitQ = None
           ) -> dict[str, Any]:
    """The equity curve: ``points`` ``[[ts_ms, equity, drawdown], ...]``."""
    return ctx_of(request).journal.equity(run, limit=limit)


@router.get("/decisions", **TRADING)
def decisions(user: User, request: Request, run: RunQ = None, limit: LimitQ = None
              ) -> dict[str, Any]:
    return ctx_of(request).journal.rows("decisions", run, limit=limit)


@router.get("/risk", **TRADING)
def risk(user: User, request: Request, run: RunQ = None) -> dict[str, Any]:
    """Trading state (active / reducing / halted), kill switch, breakers and limits."""
    return ctx_of(request).journal.risk(run)


def _control(request: Request, user: Claims, run: str | None, command: str,
             **extra: Any) -> ControlSent:
    from perptrader.trading.control import send_control

    journal = ctx_of(request).journal
    run_id = journal.run_id(run)
    value = send_control(journal.db(), run_id, command, by=user.username, via="api", **extra)
    log.warning("%s sent %s to %s", user.username, command, run_id)
    return ControlSent(run_id=run_id, command=value,
                       message=f"{command} sent: the engine applies it at its next bar")


@router.post("/control/stop", response_model=ControlSent, **TRADING)
def stop(body: Stop, user: User, request: Request) -> ControlSent:
    """The kill switch (as `trade stop`): cancel the queued order, block new ones,
    flatten with ``flatten``. It survives restarts until resume."""
    return _control(request, user, body.run, "stop", flatten=body.flatten, reason=body.reason)


@router.post("/control/resume", response_model=ControlSent, **TRADING)
def resume(body: Resume, user: User, request: Request) -> ControlSent:
    """Lift the kill switch (and a latched drawdown stop), as `trade resume`."""
    return _control(request, user, body.run, "resume")


# ---- research ----------------------------------------------------------------------------
RESEARCH = {"tags": ["research"], "responses": {**UNAUTHORIZED, **NOT_FOUND}}
HTML = {"content": {"text/html": {}}, "description": "The self-contained HTML report."}


def _report(path_fn: Any, *args: Any) -> FileResponse:
    try:
        path = path_fn(*args)
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise HTTPException(404, f"no such report: {exc}") from None
    except Exception as exc:  # an invalid name
        raise HTTPException(404, str(exc)) from None
    if path.is_dir():
        path = path / "report.html"
    if not path.is_file():
        raise HTTPException(404, "no report for this run")
    return FileResponse(path, media_type="text/html")


@router.get("/backtests", **RESEARCH)
def backtests(user: User, request: Request) -> list[dict[str, Any]]:
    """Backtest result folders under ``<data_dir>/backtests``."""
    return research.list_backtests(ctx_of(request).settings)


@router.get("/backtests/{backtest_id:path}/result", **RESEARCH)
def backtest_result(backtest_id: str, user: User, request: Request) -> dict[str, Any]:
    from perptrader.backtest.artifacts import read_result

    try:
        folder = research.backtest_dir(ctx_of(request).settings, backtest_id)
    except FileNotFoundError:
        raise HTTPException(404, f"no backtest {backtest_id!r}") from None
    return read_result(folder)


@router.get("/backtests/{backtest_id:path}/report", response_class=FileResponse,
            tags=["research"], responses={200: HTML, **UNAUTHORIZED, **NOT_FOUND})
def backtest_report(backtest_id: str, user: ReportUser, request: Request) -> FileResponse:
    return _report(research.backtest_dir, ctx_of(request).settings, backtest_id)


@router.get("/models", **RESEARCH)
def models(user: User, request: Request) -> list[dict[str, Any]]:
    """Registered models (latest version of each name)."""
    return research.list_models(ctx_of(request).settings)


@router.get("/models/{name}/{version}/report", response_class=FileResponse, tags=["research"],
            responses={200: HTML, **UNAUTHORIZED, **NOT_FOUND})
def model_report(name: str, version: int, user: ReportUser, request: Request) -> FileResponse:
    return _report(research.model_report, ctx_of(request).settings, name, version)


@router.get("/agents", **RESEARCH)
def agents(user: User, request: Request) -> list[dict[str, Any]]:
    """Saved RL agents, with their evaluation reports."""
    return research.list_agents(ctx_of(request).settings)


@router.get("/agents/{name}/reports/{report:path}", response_class=FileResponse,
            tags=["research"], responses={200: HTML, **UNAUTHORIZED, **NOT_FOUND})
def agent_report(name: str, report: str, user: ReportUser, request: Request) -> FileResponse:
    return _report(research.agent_report, ctx_of(request).settings, name, report)


@router.get("/data/inventory", **RESEARCH)
def data_inventory(user: User, request: Request) -> dict[str, Any]:
    """Stored series (as `data list`); ``available: false`` with a message when the
    store is absent or held by another process."""
    return research.plain_inventory(ctx_of(request).settings)


@router.get("/data/freshness", **RESEARCH)
def data_freshness(user: User, request: Request) -> dict[str, Any]:
    """Per series: last stored time, lag behind now, fresh / stale."""
    return research.freshness(ctx_of(request).settings)


# ---- the event stream --------------------------------------------------------------------
@router.websocket("/ws")
async def events(websocket: WebSocket, token: str | None = None) -> None:
    """Live events (order, fill, position, equity, risk, alert). Authenticate with
    ``?token=<access>`` or, better (no token in access logs), with a first message
    ``{"type": "auth", "token": "<access>"}`` within 10 s. Send another auth message with
    a fresh token before the current one expires, or the server closes with 4401."""
    ctx: ApiContext = websocket.app.state.ctx
    claims: Claims | None = None
    if token:
        claims = await _ws_verify(ctx, token)
        if claims is None:
            await websocket.close(code=1008, reason="invalid token")
            return
    await websocket.accept()
    if claims is None:
        try:
            first = await asyncio.wait_for(websocket.receive_json(), timeout=10)
        except (TimeoutError, WebSocketDisconnect, ValueError, KeyError):
            first = {}
        if isinstance(first, dict) and first.get("type") == "auth":
            claims = await _ws_verify(ctx, str(first.get("token") or ""))
        if claims is None:
            with contextlib.suppress(Exception):
                await websocket.send_json({"type": "error", "data": {
                    "message": NO_USERS if ctx.users.count() == 0 else "authentication "
                    "failed: send {\"type\": \"auth\", \"token\": <access token>} first"}})
                await websocket.close(code=WS_UNAUTHORIZED, reason="unauthorized")
            return
    state = {"claims": claims}
    queue = ctx.hub.subscribe()
    try:
        await websocket.send_json({"type": "hello", "run_id": None, "seq": None, "at": None,
                                   "data": {"user": claims.username, "types": [
                                       "order", "fill", "position", "equity", "risk",
                                       "alert"], "interval_ms": int(ctx.hub.interval * 1000)}})
        reader = asyncio.create_task(_ws_reader(websocket, ctx, state))
        try:
            await _ws_writer(websocket, ctx, queue, state, reader)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
    except WebSocketDisconnect:
        pass
    finally:
        ctx.hub.unsubscribe(queue)


async def _ws_verify(ctx: ApiContext, token: str) -> Claims | None:
    try:
        return await asyncio.to_thread(ctx.tokens.verify_access, token)
    except AuthError:
        return None


async def _ws_reader(websocket: WebSocket, ctx: ApiContext, state: dict[str, Any]) -> None:
    """Client messages: ``auth`` (a fresh token), ``ping``."""
    while True:
        message = await websocket.receive_json()
        if not isinstance(message, dict):
            continue
        if message.get("type") == "auth":
            claims = await _ws_verify(ctx, str(message.get("token") or ""))
            if claims is not None and claims.username == state["claims"].username:
                state["claims"] = claims
                await websocket.send_json({"type": "auth_ok", "data": {
                    "expires_at": claims.expires_at}})
            else:
                await websocket.send_json({"type": "error", "data": {
                    "message": "auth refused"}})
        elif message.get("type") == "ping":
            await websocket.send_json({"type": "pong", "data": {"time": time.time()}})


async def _ws_writer(websocket: WebSocket, ctx: ApiContext, queue: asyncio.Queue[Any],
                     state: dict[str, Any], reader: asyncio.Task[None]) -> None:
    checked = time.monotonic()
    while not reader.done():
        claims: Claims = state["claims"]
        if time.time() >= claims.expires_at:
            await websocket.close(code=WS_UNAUTHORIZED, reason="token expired")
            return
        if time.monotonic() - checked > 5:  # a logout or a removed user ends the stream
            checked = time.monotonic()
            if await _ws_verify_claims(ctx, claims) is not None:
                await websocket.close(code=WS_UNAUTHORIZED, reason="token revoked")
                return
        try:
            event = await asyncio.wait_for(queue.get(), timeout=1.0)
        except TimeoutError:
            continue
        if event is None:  # the hub dropped a client that did not keep up
            await websocket.close(code=1013, reason="too slow: reconnect")
            return
        await websocket.send_json(event)
    with contextlib.suppress(Exception):
        reader.result()


async def _ws_verify_claims(ctx: ApiContext, claims: Claims) -> str | None:
    return await asyncio.to_thread(ctx.users.access_refused, claims.jti, claims.username)
