"""Errors of the trading-state database."""

from __future__ import annotations

from perptrader.core.errors import PerptraderError


class TradingStateError(PerptraderError):
    """The trading database cannot be opened, migrated, read or written.

    The message is one line naming the database (passwords hidden) and what is wrong, so
    that the CLI can print it as is and an operator knows what to fix."""


class DuplicateError(TradingStateError):
    """A row that may be recorded only once was recorded again (an order id, a run, a
    decision for the same bar). A subclass so that callers replaying after a crash can
    tell "already there" from a broken database."""


def db_reason(exc: BaseException) -> str:
    """The first line of a driver error (SQLAlchemy appends SQL and a link after it)."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__
