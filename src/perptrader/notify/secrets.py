"""The bot token: from ``PERPTRADER__NOTIFY__TELEGRAM_TOKEN`` (the ``notify.telegram_token``
setting) or a file (``notify.token_file``, default ``<data_dir>/secrets/telegram_token``)
that only its owner may read. It is never printed: errors name its source, and a logging
filter replaces it in every record (python-telegram-bot logs its API URL, which holds the
token, at DEBUG; httpx logs request URLs at INFO)."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

from perptrader.config import Settings
from perptrader.core.errors import PerptraderError

ENV_VAR = "PERPTRADER__NOTIFY__TELEGRAM_TOKEN"
MASK = "<telegram-token>"


class TokenError(PerptraderError):
    """No usable token (the message names where it looked, never the token)."""


def token_path(cfg: Settings) -> Path:
    return cfg.notify.token_file or cfg.data_dir / "secrets" / "telegram_token"


def load_token(cfg: Settings) -> tuple[str, str]:
    """(token, where it came from). The environment / settings win over the file; a file
    that its group or others may read is refused (``chmod 600``)."""
    secret = cfg.notify.telegram_token
    if secret is not None and secret.get_secret_value().strip():
        return secret.get_secret_value().strip(), ENV_VAR
    path = token_path(cfg)
    if not path.exists():
        raise TokenError(f"no Telegram bot token: set {ENV_VAR} or write it to {path} "
                         f"(mode 0600)")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise TokenError(f"{path} is readable by others (mode {mode:04o}): "
                         f"chmod 600 {path}")
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise TokenError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not token:
        raise TokenError(f"{path} is empty")
    return token, str(path)


def mask(text: str, token: str) -> str:
    """``text`` with the token (and its secret half) replaced."""
    if not token:
        return text
    out = text.replace(token, MASK)
    _, _, secret = token.partition(":")
    return out.replace(secret, MASK) if len(secret) >= 8 else out


class RedactToken(logging.Filter):
    """Replaces the token in a record's message, arguments and exception text."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            try:
                message = record.getMessage()
            except Exception:  # a bad format string: leave it to the handler
                message = record.msg
            record.msg, record.args = mask(message, self.token), None
        elif isinstance(record.msg, dict):  # structlog's event dict
            record.msg = {k: mask(v, self.token) if isinstance(v, str) else v
                          for k, v in record.msg.items()}
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = mask(logging.Formatter().formatException(record.exc_info),
                                   self.token)
            record.exc_info = None
        return True


def install_redaction(token: str) -> RedactToken:
    """Mask the token in every handler of the root logger (and of later ones added by
    ``configure_logging`` only if called again). Returns the filter (to remove it)."""
    redactor = RedactToken(token)
    root = logging.getLogger()
    for handler in root.handlers:
        handler.addFilter(redactor)
    # records that never reach a root handler still get it (a caplog handler, a handler
    # a library adds to its own logger)
    for name in ("telegram", "httpx", "httpcore", "perptrader.notify"):
        logging.getLogger(name).addFilter(redactor)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return redactor


def remove_redaction(redactor: RedactToken) -> None:
    for handler in logging.getLogger().handlers:
        handler.removeFilter(redactor)
    for name in ("telegram", "httpx", "httpcore", "perptrader.notify"):
        logging.getLogger(name).removeFilter(redactor)
