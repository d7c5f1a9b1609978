"""What every command shares: settings, the store, JSON output, error reporting."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import orjson
import typer
from rich.console import Console

from perptrader.config import Settings, load_settings
from perptrader.core.errors import PerptraderError
from perptrader.core.logging import configure_logging
from perptrader.marketdata.store import MarketStore, open_store

# Piped output (CI logs, files) gets wide tables instead of Rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)


def settings() -> Settings:
    try:
        cfg = load_settings()
    except Exception as exc:  # pydantic ValidationError, TOML errors
        err_console.print(f"[red]Invalid configuration:[/red] {exc}")
        raise typer.Exit(2) from None
    configure_logging(cfg.logging.level, cfg.log_file)
    return cfg


@contextlib.contextmanager
def store_session(cfg: Settings) -> Iterator[MarketStore]:
    with user_errors(), open_store(cfg) as store:
        yield store


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Known errors become one red line and exit code 1, not a traceback."""
    try:
        yield
    except PerptraderError as exc:
        err_console.print(f"[red]Error:[/red] {exc}")
        raise typer.Exit(1) from None


def print_json(data: object) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()


def has_perp_bars(store: MarketStore, symbol: str, timeframe: str) -> bool:
    """Whether ``symbol``'s perpetual ``timeframe`` bars are stored (what each demo stage
    checks before it runs, so an empty or partial store skips it with a word)."""
    return any(s.instrument.symbol == symbol and s.instrument.market == "perp"
               and s.kind == "ohlcv" and s.timeframe == timeframe for s in store.inventory())
