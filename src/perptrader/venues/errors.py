"""What went wrong talking to a venue, decided from the HTTP status and the exchange's
own error code in the response body.

Why not ccxt's exception classes alone: ccxt picks its error-code table by URL, so against
any other host (the fake exchange, a proxy) a Binance ``-1121 Invalid symbol`` arrives as
a generic ``ExchangeError``, and it maps 418 and 429 to the same ``DDoSProtection``
although one means "wait Retry-After" and the other "stop: the IP is banned".
"""

from __future__ import annotations

import re
import time
from typing import Any

import ccxt

from perptrader.core.errors import PerptraderError


class VenueError(PerptraderError):
    """A venue call failed; the message is one line a user can act on."""

    retryable = False
    #: the venue's error code from the body (Binance ``code``, Bybit ``retCode``), if any
    code: int | None = None
    #: the HTTP status, if an answer came
    status: int | None = None


class VenueUnreachable(VenueError):
    """No answer (connection refused, DNS, reset, time-outs) after every retry."""


class VenueUnavailable(VenueError):
    """5xx or a time-out: worth retrying with backoff."""

    retryable = True


class RateLimited(VenueError):
    """429: wait ``retry_after_s`` and call again (calling earlier earns a 418 ban)."""

    retryable = True

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class IpBanned(VenueError):
    """418: the venue banned this IP for a while; the run must stop."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class BadRequest(VenueError):
    """The venue refused the request itself (bad parameter, unknown symbol/interval)."""


class UnknownSymbol(BadRequest):
    """The venue does not list the symbol."""


class UnsupportedTimeframe(BadRequest):
    """The venue has no such interval (for this kind of data)."""


class AuthenticationFailed(VenueError):
    """Keys missing, wrong, or without the permission the call needs."""


# Binance USD-M error codes (body ``{"code": ..., "msg": ...}``)
_BINANCE_BAD_SYMBOL = {-1121}
_BINANCE_BAD_INTERVAL = {-1120}
_BINANCE_AUTH = {-1002, -1022, -2014, -2015}
_BINANCE_OVERLOAD = {-1001, -1007, -1008}
# Bybit v5 (body ``{"retCode": ..., "retMsg": ...}``)
_BYBIT_RATE = {10006, 10018}
_BYBIT_AUTH = {10003, 10004, 10005, 10007}
_BYBIT_OVERLOAD = {10016, 10019}
_BYBIT_BAD_SYMBOL = {10001}  # params error: "symbol invalid" and others


def body_code(body: Any) -> tuple[int | None, str]:
    """(code, message) of an error body from either venue; (None, '') if none."""
    if isinstance(body, dict):
        for code_key, msg_key in (("code", "msg"), ("retCode", "retMsg")):
            code = body.get(code_key)
            if code is not None:
                try:
                    return int(code), str(body.get(msg_key, ""))
                except (TypeError, ValueError):
                    return None, str(body.get(msg_key, ""))
    return None, ""


def _retry_after(headers: Any, default: float) -> float:
    """Seconds to wait: Binance's ``Retry-After``, or Bybit's reset time (epoch ms)."""
    if headers is None:
        return default
    try:
        value = headers.get("Retry-After")
        if value is not None:
            return float(value)
        reset = headers.get("X-Bapi-Limit-Reset-Timestamp")
        if reset is not None:
            return max(0.0, float(reset) / 1000 - time.time())
    except (TypeError, ValueError):
        pass
    return default


def classify(exc: Exception, *, status: int | None, body: Any, headers: Any,
             what: str) -> VenueError:
    """Turn one failed call into a VenueError. ``what`` names the call for messages
    (e.g. ``binanceusdm klines BTCUSDT``); the venue's own code and HTTP status stay on
    the error (``code``, ``status``) for callers that act on a particular answer."""
    error = _classify(exc, status=status, body=body, headers=headers, what=what)
    error.code, _ = body_code(body)
    error.status = status
    return error


def _classify(exc: Exception, *, status: int | None, body: Any, headers: Any,
              what: str) -> VenueError:
    code, msg = body_code(body)
    detail = f" (code {code}: {msg})" if code is not None else ""
    if status == 418:
        wait = _retry_after(headers, 0.0)
        until = f" for {wait:.0f} s" if wait else ""
        return IpBanned(f"{what}: the venue banned this IP{until} (HTTP 418) for calling "
                        f"during a rate-limit back-off; stop and retry later{detail}", wait)
    if status == 403:
        return IpBanned(f"{what}: the venue refuses this IP (HTTP 403: firewall or IP rate "
                        f"limit); stop and retry later{detail}")
    if status == 429 or code in _BYBIT_RATE:
        return RateLimited(f"{what}: rate limited (HTTP 429){detail}",
                           _retry_after(headers, 60.0))
    if code in _BINANCE_BAD_SYMBOL:
        return UnknownSymbol(f"{what}: the venue does not list this symbol{detail}")
    if code in _BINANCE_BAD_INTERVAL:
        return UnsupportedTimeframe(f"{what}: the venue has no such interval{detail}")
    if code in _BINANCE_AUTH or code in _BYBIT_AUTH or isinstance(
            exc, ccxt.AuthenticationError | ccxt.PermissionDenied):
        return AuthenticationFailed(f"{what}: authentication failed{detail}")
    if (status is not None and status >= 500) or code in _BINANCE_OVERLOAD or \
            code in _BYBIT_OVERLOAD:
        return VenueUnavailable(f"{what}: the venue is unavailable (HTTP {status}){detail}")
    if isinstance(exc, ccxt.RequestTimeout):
        return VenueUnavailable(f"{what}: timed out")
    if isinstance(exc, ccxt.ExchangeNotAvailable):
        return VenueUnavailable(f"{what}: the venue is unavailable")
    if isinstance(exc, ccxt.NetworkError):
        return VenueUnreachable(f"{what}: cannot reach the venue ({_first_line(exc)})")
    if code in _BYBIT_BAD_SYMBOL or (status is not None and 400 <= status < 500) or \
            isinstance(exc, ccxt.BadRequest | ccxt.BadSymbol):
        return BadRequest(f"{what}: the venue refused the request{detail or _tail(exc)}")
    return VenueError(f"{what}: {_first_line(exc)}{detail}")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return re.sub(r"\s+", " ", text[0])[:300] if text else type(exc).__name__


def _tail(exc: Exception) -> str:
    return f" ({_first_line(exc)})"
