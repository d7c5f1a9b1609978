"""What every command shares: settings, the store, JSON output, error reporting."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import typer
from rich.console import Console
from rich.markup import escape

from perptrader.config import Settings, load_settings
from perptrader.core.errors import PerptraderError, StoreError
from perptrader.core.logging import configure_logging, get_logger
from perptrader.core.secrets import mask_data, mask_secrets
from perptrader.marketdata.store import MarketStore, open_store

# Piped output (CI logs, files) gets wide tables instead of Rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)
# error lines stay one line whatever the terminal width (scripts and logs read them)
err_console = Console(stderr=True, soft_wrap=True)


#: seconds a command waits while another process holds the embedded store (a writer
#: holds it for one transaction at a time, a reader for one read)
STORE_LOCK_WAIT_S = 60.0


def settings() -> Settings:
    try:
        cfg = load_settings()
    except Exception as exc:  # ConfigError (unknown key), pydantic ValidationError, TOML
        message = mask_secrets(str(exc))
        # the file named by the (unreadable) settings is unknown: log where it defaults to
        data_dir = Path(os.environ.get("PERPTRADER__DATA_DIR", "user_data"))
        with contextlib.suppress(OSError):
            configure_logging("CRITICAL", data_dir / "logs" / "perptrader.jsonl")
            get_logger("perptrader.cli").error("invalid configuration", error=message,
                                               argv=" ".join(sys.argv))
        err_console.print(f"[red]Invalid configuration:[/red] {escape(message)}")
        raise typer.Exit(2) from None
    try:
        configure_logging(cfg.logging.level, cfg.log_file)
    except (ValueError, TypeError, OSError) as exc:  # unknown level, unwritable data_dir
        err_console.print(f"[red]Invalid configuration:[/red] logging.level "
                          f"{cfg.logging.level!r}, log file {cfg.log_file}: "
                          f"{escape(_one_line(exc))}")
        raise typer.Exit(2) from None
    return cfg


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@contextlib.contextmanager
def store_session(cfg: Settings, *, read_only: bool = False) -> Iterator[MarketStore]:
    """The store for one command. The embedded store is held only during each call
    (``transient``), so a long command does not lock others out between its reads or
    transactions; ``read_only`` (commands that only read) shares it with other readers."""
    with user_errors():
        try:
            opened = open_store(cfg, read_only=read_only, transient=True,
                                lock_timeout=STORE_LOCK_WAIT_S)
        except (OSError, ValueError) as exc:  # a path that cannot be made, a bad URL/port
            raise StoreError(f"cannot open the store: {mask_secrets(_one_line(exc))} "
                             "(check store.url / data_dir)") from None
    with user_errors(), opened as store:
        yield store


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Known errors become one red line and exit code 1, not a traceback; the JSON log
    gets the refusal with its context."""
    try:
        yield
    except PerptraderError as exc:
        message = mask_secrets(str(exc))
        get_logger("perptrader.cli").error("refused", error=message,
                                           error_type=type(exc).__name__,
                                           argv=" ".join(sys.argv))
        err_console.print(f"[red]Error:[/red] {escape(message)}", soft_wrap=True)
        raise typer.Exit(1) from None


def log_warnings(warnings: list[str], **context: object) -> None:
    """A command's warnings (also printed) into the JSON log, with their context."""
    log = get_logger("perptrader.cli")
    for line in warnings:
        log.warning("warning", detail=line, **context)


def writable_folder(path: Path, hint: str) -> None:
    """An output folder option: created now (with parents), or a usage error naming why
    not, before any work is done."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".perptrader-write-check"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise typer.BadParameter(f"cannot write to {path}: {exc.strerror or exc}",
                                 param_hint=hint) from None


def print_json(data: object) -> None:
    """Every JSON a command prints passes the secrets mask (core/secrets.py)."""
    text = orjson.dumps(mask_data(data), option=orjson.OPT_INDENT_2).decode()
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def has_perp_bars(store: MarketStore, symbol: str, timeframe: str) -> bool:
    """Whether ``symbol``'s perpetual ``timeframe`` bars are stored (what each demo stage
    checks before it runs, so an empty or partial store skips it with a word)."""
    return any(s.instrument.symbol == symbol and s.instrument.market == "perp"
               and s.kind == "ohlcv" and s.timeframe == timeframe for s in store.inventory())
