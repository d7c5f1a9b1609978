"""``perptrader serve``: the API, its WebSocket and the dashboard in one process."""

from __future__ import annotations

import ipaddress

import typer

from perptrader.commands.common import console, err_console, settings, user_errors


def serve(
    host: str | None = typer.Option(None, "--host", help="Bind address (default: the "
                                    "api.host setting, 127.0.0.1). Anything but loopback "
                                    "exposes the API: put TLS in front of it."),
    port: int | None = typer.Option(None, "--port", min=1, max=65535,
                                    help="Port (default: the api.port setting, 8080)."),
    log_level: str = typer.Option("info", help="uvicorn's log level."),
) -> None:
    """Serve the API under /api/v1 (OpenAPI at /api/v1/openapi.json), the live event
    WebSocket /api/v1/ws and the dashboard at /. Protected routes refuse everything
    until a user exists (`perptrader users add NAME`)."""
    import uvicorn

    from perptrader.api import create_app

    cfg = settings()
    host = host or cfg.api.host
    port = port or cfg.api.port
    with user_errors():
        app = create_app(cfg)
    if not _is_loopback(host):
        err_console.print(f"[yellow]warning:[/yellow] binding to {host}: the API is reachable "
                          "from other machines; use TLS (a reverse proxy) and strong passwords")
    if app.state.ctx.users.count() == 0:
        err_console.print("[yellow]No users yet:[/yellow] every protected route is refused "
                          "until `perptrader users add NAME`")
    console.print(f"dashboard http://{host}:{port}/  ·  API http://{host}:{port}/api/v1  ·  "
                  f"data dir {cfg.data_dir}")
    uvicorn.run(app, host=host, port=port, log_level=log_level, ws="websockets-sansio",
                server_header=False)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
