"""``perptrader audit ...``: check the trading audit log's hash chain."""

from __future__ import annotations

import os

import typer

from perptrader.commands.common import console, err_console, print_json, settings, user_errors

app = typer.Typer(help="Check the trading audit log.", no_args_is_help=True)

#: the environment variable that names the trading database (settings: trading.db_url)
DB_URL_ENV = "PERPTRADER__TRADING__DB_URL"


@app.callback()
def _group() -> None:
    """Check the trading audit log."""


def trading_db_url(option: str | None) -> tuple[str | None, str]:
    """The trading DB to open and the data_dir for the default file: ``--db``, else the
    ``trading.db_url`` setting (``PERPTRADER__TRADING__DB_URL``), else
    ``<data_dir>/trading.sqlite``. Settings are read only when needed."""
    if option:
        return option, "."
    env = os.environ.get(DB_URL_ENV)
    if env:
        return env, "."
    cfg = settings()
    trading = getattr(cfg, "trading", None)
    return getattr(trading, "db_url", None), str(cfg.data_dir)


@app.command("verify")
def verify(
    db: str | None = typer.Option(
        None, "--db",
        help="Trading DB: postgresql://..., sqlite:///path or a path "
             "(default: trading.db_url, else <data_dir>/trading.sqlite)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Check every audit row's hash and link, and the head: exit 0 when intact, 1 naming
    the first bad seq otherwise."""
    from perptrader.persistence import open_trading_db

    url, data_dir = trading_db_url(db)
    with user_errors(), open_trading_db(url, data_dir, create=False) as trading:
        report = trading.verify_audit()
    if as_json:
        print_json({"db": trading.url, **report.as_json()})
    elif report.ok:
        console.print(report.summary(), markup=False, highlight=False, soft_wrap=True)
    else:
        err_console.print(report.summary(), style="red", markup=False, highlight=False,
                          soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)
