"""The FastAPI application: ``create_app(settings)``.

Everything is under ``/api/v1`` (OpenAPI at ``/api/v1/openapi.json``, Swagger UI at
``/api/v1/docs``); the dashboard's static files are at ``/dashboard/`` (``/`` redirects
there). Only ``/api/v1/health``, login/refresh and the static files need no token.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from perptrader import __version__
from perptrader.api.auth import TokenService, load_secret
from perptrader.api.events import EventHub
from perptrader.api.journal import Journal, NoJournal
from perptrader.api.users import UserStore
from perptrader.config import Settings, load_settings
from perptrader.core.errors import PerptraderError

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
PREFIX = "/api/v1"
DASHBOARD_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                 "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                 "form-action 'self'")
#: the HTML reports inline plotly.js; they run sandboxed (an opaque origin: no access to
#: the dashboard's storage or to the API with its credentials)
REPORT_CSP = ("default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; "
              "style-src 'unsafe-inline'; img-src data: blob:; font-src data:; "
              "sandbox allow-scripts allow-popups")


class ApiContext:
    """What the routes share (``request.app.state.ctx``)."""

    def __init__(self, settings: Settings, poll_interval: float) -> None:
        self.settings = settings
        data_dir = Path(settings.data_dir)
        self.users = UserStore.in_data_dir(data_dir)
        secret = settings.api.jwt_secret
        self.tokens = TokenService(load_secret(secret.get_secret_value() if secret else None,
                                               data_dir), self.users,
                                   access_minutes=settings.api.access_minutes,
                                   refresh_days=settings.api.refresh_days)
        self.journal = Journal(settings.trading.db_url, data_dir)
        self.hub = EventHub(self.journal, poll_interval)
        self.throttle = LoginThrottle()


class LoginThrottle:
    """At most ``limit`` failed logins per (client, user name) in ``window`` seconds."""

    def __init__(self, limit: int = 10, window: float = 300.0) -> None:
        self.limit, self.window = limit, window
        self._failures: dict[tuple[str, str], list[float]] = {}

    def retry_after(self, key: tuple[str, str]) -> int:
        now = time.monotonic()
        recent = [t for t in self._failures.get(key, []) if t > now - self.window]
        self._failures[key] = recent
        return int(recent[0] + self.window - now) + 1 if len(recent) >= self.limit else 0

    def failed(self, key: tuple[str, str]) -> None:
        if len(self._failures) > 10_000:
            self._failures.clear()
        self._failures.setdefault(key, []).append(time.monotonic())

    def succeeded(self, key: tuple[str, str]) -> None:
        self._failures.pop(key, None)


#: a token in a query string (``/ws?token=``, a report ``?ticket=``) or a header line
_SECRET_IN_TEXT = re.compile(r"((?:\btoken|\bticket|access_token|refresh_token)=)[^&\s\"']+"
                             r"|(\bauthorization:\s*\w+\s+)\S+", re.IGNORECASE)


def redact(text: str) -> str:
    """Tokens in URLs (query strings) and Authorization headers replaced by ``***``."""
    return _SECRET_IN_TEXT.sub(lambda m: (m.group(1) or m.group(2)) + "***", text)


class RedactTokens(logging.Filter):
    """A handler filter: uvicorn's access log and the websockets debug lines print the
    request path with its query string, where ``?token=`` / ``?ticket=`` would leak."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v
                           for k, v in record.args.items()}
        return True


def install_log_redaction() -> None:
    """Add ``RedactTokens`` to every handler now configured (root, uvicorn's, ours);
    idempotent. Called at startup, after uvicorn configured its logging."""
    loggers = [logging.getLogger(), *(lg for lg in logging.Logger.manager.loggerDict.values()
                                      if isinstance(lg, logging.Logger))]
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, RedactTokens) for f in handler.filters):
                handler.addFilter(RedactTokens())


def _warm_imports() -> None:
    try:
        import perptrader.commands.trade
        import perptrader.ml.registry
        import perptrader.trading.risk  # noqa: F401
    except Exception as exc:  # pragma: no cover - the routes will report it
        log.warning("warm-up import failed: %s", exc)


def create_app(settings: Settings | None = None, *, poll_interval: float = 0.2) -> FastAPI:
    from perptrader.api.routes import router

    settings = settings or load_settings()
    ctx = ApiContext(settings, poll_interval)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        install_log_redaction()
        # the journal readers import the trading engine (numba kernels: seconds): do it
        # now, beside the server, not in the first request
        threading.Thread(target=_warm_imports, name="perptrader-api-warmup",
                         daemon=True).start()
        try:
            yield
        finally:
            await ctx.hub.stop()
            ctx.journal.close()

    app = FastAPI(
        title="perptrader API", version=__version__, lifespan=lifespan,
        description="Paper/live trading state, the kill switch, research artifacts and a "
                    "live event stream (`/api/v1/ws`). Log in at `/api/v1/auth/login` and send "
                    "`Authorization: Bearer <access_token>`.",
        openapi_url=f"{PREFIX}/openapi.json", docs_url=f"{PREFIX}/docs", redoc_url=None)
    app.state.ctx = ctx
    app.include_router(router, prefix=PREFIX)
    app.mount("/dashboard", StaticFiles(directory=STATIC, html=True), name="dashboard")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/dashboard/")

    @app.exception_handler(NoJournal)
    async def _no_journal(request: Request, exc: NoJournal) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(PerptraderError)
    async def _known(request: Request, exc: PerptraderError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.middleware("http")
    async def _headers(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if request.url.path == f"{PREFIX}/docs":
            pass  # Swagger UI: its own inline script and CDN assets
        elif request.url.path.endswith("/report") or "/reports/" in request.url.path:
            response.headers.setdefault("Content-Security-Policy", REPORT_CSP)
        else:
            response.headers.setdefault("Content-Security-Policy", DASHBOARD_CSP)
            response.headers.setdefault("X-Frame-Options", "DENY")
        if request.url.path.startswith(PREFIX):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    return app
