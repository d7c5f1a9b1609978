"""ccxt exchanges for the supported venues, optionally pointed at another base URL (the
fake exchange, a recording proxy) and optionally with API keys.

Why the URL surgery: ccxt has no single "base URL" setting; each API group has its own
entry in ``urls['api']`` (Binance: fapiPublic/fapiPrivate and their V2/V3 forms, fapiData;
ccxt.pro: ``ws.linear``, which must end in ``/ws`` because ccxt appends stream paths).
Keys come from the environment or a file, never from the command line (shell history)
and are never logged: :class:`Credentials` hides the secret in its repr.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import ccxt

from perptrader.core.instruments import DEFAULT_EXCHANGE
from perptrader.venues.errors import VenueError

#: ccxt id -> the exchange name used in stored instruments (binance USD-M is the default)
VENUES: dict[str, str] = {"binanceusdm": DEFAULT_EXCHANGE, "bybit": "bybit"}

_BINANCE_REST = {"fapiPublic": "/fapi/v1", "fapiPublicV2": "/fapi/v2",
                 "fapiPublicV3": "/fapi/v3", "fapiPrivate": "/fapi/v1",
                 "fapiPrivateV2": "/fapi/v2", "fapiPrivateV3": "/fapi/v3",
                 "fapiData": "/futures/data"}


class UnknownVenue(VenueError):
    """An exchange id perptrader does not support."""


@dataclass(frozen=True)
class Credentials:
    api_key: str
    secret: str = field(repr=False)
    password: str | None = field(default=None, repr=False)


def check_venue(exchange_id: str) -> str:
    if exchange_id not in VENUES:
        raise UnknownVenue(f"unknown exchange {exchange_id!r}: supported are "
                           f"{', '.join(sorted(VENUES))}")
    return exchange_id


def load_credentials(exchange_id: str, *, env: dict[str, str] | None = None,
                     path: Path | None = None) -> Credentials | None:
    """Keys from ``PERPTRADER_<VENUE>_API_KEY`` / ``_API_SECRET`` (e.g.
    PERPTRADER_BINANCEUSDM_API_KEY), else from a JSON file ``{"apiKey": ..., "secret":
    ...}`` named by ``path`` or ``PERPTRADER_<VENUE>_KEYS_FILE``; None when neither."""
    env = dict(os.environ) if env is None else env
    prefix = f"PERPTRADER_{exchange_id.upper()}_"
    key, secret = env.get(prefix + "API_KEY"), env.get(prefix + "API_SECRET")
    if key and secret:
        return Credentials(key, secret, env.get(prefix + "API_PASSWORD"))
    file = path or (Path(env[prefix + "KEYS_FILE"]) if env.get(prefix + "KEYS_FILE") else None)
    if file is None:
        return None
    try:
        raw = json.loads(Path(file).read_text())
        return Credentials(str(raw["apiKey"]), str(raw["secret"]), raw.get("password"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise VenueError(f"cannot read API keys from {file}: {type(exc).__name__}") from None


def _check_url(url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise VenueError(f"not an exchange URL: {url!r} (expected http://host:port)")
    return url.rstrip("/")


def ws_url_for(base: str) -> str:
    parsed = urlparse(base)
    scheme = "wss" if parsed.scheme == "https" else "ws"
    return f"{scheme}://{parsed.netloc}/ws"


def point_at(ex: Any, base_url: str) -> None:
    """Send every REST (and websocket) call of ``ex`` to ``base_url``."""
    base = _check_url(base_url)
    api = ex.urls["api"]
    if ex.id == "binanceusdm":
        for key, path in _BINANCE_REST.items():
            api[key] = base + path
        if isinstance(api.get("ws"), dict):
            api["ws"]["linear"] = ws_url_for(base)
    elif ex.id == "bybit":
        for key in list(api):
            if isinstance(api[key], str):
                api[key] = base
        if isinstance(api.get("ws"), dict):
            public = api["ws"].get("public")
            if isinstance(public, dict):
                public["linear"] = ws_url_for(base).removesuffix("/ws") + "/v5/public/linear"
    else:  # pragma: no cover - check_venue guards
        raise UnknownVenue(f"no URL override for {ex.id}")


def create_exchange(exchange_id: str, *, url: str | None = None,
                    credentials: Credentials | None = None, asynchronous: bool = False,
                    pro: bool = False, timeout_ms: int = 10_000) -> Any:
    """A ccxt exchange (sync, async or ccxt.pro) ready for perpetual-swap calls.

    ccxt's own limiter is off: :class:`~perptrader.venues.ratelimit.WeightBudget` paces
    calls from the venue's weight headers instead (two limiters would double the waits).
    """
    check_venue(exchange_id)
    if pro:
        import ccxt.pro as module
    elif asynchronous:
        import ccxt.async_support as module
    else:
        module = ccxt
    options: dict[str, Any] = {"defaultType": "swap"}
    if exchange_id == "bybit":
        options["fetchMarkets"] = {"types": ["linear"]}  # USDT perpetuals only
    config: dict[str, Any] = {"enableRateLimit": False, "timeout": timeout_ms,
                              "options": options}
    if credentials is not None:
        config.update(apiKey=credentials.api_key, secret=credentials.secret)
        if credentials.password:
            config["password"] = credentials.password
        options["fetchCurrencies"] = False  # a spot-wallet endpoint the fake does not have
    ex = getattr(module, exchange_id)(config)
    if url:
        point_at(ex, url)
    return ex
