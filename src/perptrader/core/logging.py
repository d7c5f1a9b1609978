"""Structured logging: readable lines on the console, JSON lines in a file.

Every event goes through structlog so later stages (trading, the API) can attach
context (symbol, order id) once and have it in both outputs.
"""

from __future__ import annotations

import logging
from pathlib import Path

import structlog

_configured: tuple[str, Path | None] | None = None


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
    console = logging.StreamHandler()
    console.setLevel(level.upper())
    console.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
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
                        structlog.processors.format_exc_info,
                        structlog.processors.JSONRenderer()],
            foreign_pre_chain=shared))
        to_file._perptrader = True  # type: ignore[attr-defined]
        root.addHandler(to_file)
    root.setLevel(logging.DEBUG if json_file is not None else level.upper())
    for noisy in ("alembic", "asyncio", "numba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _configured = (level, json_file)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
