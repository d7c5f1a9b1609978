"""Structured logging: readable lines on the console, JSON lines in a file.

Every event goes through structlog so later stages (trading, the API) can attach
context (symbol, order id) once and have it in both outputs. Every event, traceback
included, passes ``core.secrets.mask_data`` before it is written, so a URL with a
password never reaches a log line. Python warnings and uncaught exceptions (crashes)
are logged too, so the JSON file holds warnings, refusals and errors with context.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

import structlog

from perptrader.core.secrets import mask_data

_configured: tuple[str, Path | None] | None = None
_previous_hook: Any = None


def mask_event(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: secrets masked in every value (event, context, traceback)."""
    return {k: mask_data(v, k) if k not in ("exc_info", "_record", "_from_structlog") else v
            for k, v in event_dict.items()}


def _crash_hook(kind: type[BaseException], value: BaseException,
                tb: TracebackType | None) -> None:
    """Uncaught exceptions go to the log (with the traceback) before the usual report."""
    if not issubclass(kind, KeyboardInterrupt | SystemExit):
        get_logger("perptrader.crash").critical(
            "uncaught exception", error=f"{kind.__name__}: {value}",
            argv=" ".join(sys.argv), exc_info=(kind, value, tb))
    hook = _previous_hook or sys.__excepthook__
    hook(kind, value, tb)


def install_crash_hook() -> None:
    """Idempotent: wraps whatever ``sys.excepthook`` is now (Typer's pretty one)."""
    global _previous_hook
    if sys.excepthook is not _crash_hook:
        _previous_hook = sys.excepthook
        sys.excepthook = _crash_hook


#: loggers whose records go to the JSON file only: the CLI already printed them as its
#: one-line error or warning, and a second copy on the console would not be one line
FILE_ONLY_LOGGERS = frozenset({"perptrader.cli"})


def _not_file_only(record: logging.LogRecord) -> bool:
    return record.name not in FILE_ONLY_LOGGERS


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record, not the stream of
    the moment the handler was made (a test runner, a daemon or a notebook swaps it)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure_logging(level: str = "INFO", json_file: Path | None = None) -> None:
    """Idempotent: calling again with the same arguments does nothing."""
    global _configured
    if _configured == (level, json_file):
        return
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        mask_event,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_perptrader", False):
            root.removeHandler(handler)
    console = _StderrHandler()
    console.setLevel(level.upper())
    console.addFilter(_not_file_only)
    console.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, mask_event,
                    structlog.dev.ConsoleRenderer(colors=False)],
        foreign_pre_chain=shared))
    console._perptrader = True  # type: ignore[attr-defined]
    root.addHandler(console)
    if json_file is not None:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(json_file, encoding="utf-8")
        to_file.setLevel(logging.DEBUG)
        to_file.setFormatter(structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                        structlog.processors.format_exc_info, mask_event,
                        structlog.processors.JSONRenderer()],
            foreign_pre_chain=shared))
        to_file._perptrader = True  # type: ignore[attr-defined]
        root.addHandler(to_file)
    root.setLevel(logging.DEBUG if json_file is not None else level.upper())
    for noisy in ("alembic", "asyncio", "numba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.captureWarnings(True)
    install_crash_hook()
    _configured = (level, json_file)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A logger; configures the console defaults first when no command did (structlog's
    own default would print every event, file-only ones included, to the console)."""
    if _configured is None:
        configure_logging()
    return structlog.get_logger(name)
