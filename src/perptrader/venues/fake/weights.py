"""Binance's request-weight accounting, as the real venue does it: every response says
the weight used in the current window (``X-MBX-USED-WEIGHT-1M``); a request that goes
over the limit gets 429 with ``Retry-After``; a client that calls again before that time
is banned with 418 (Binance bans for 2 minutes up to 3 days; here ``ban_s``).

The window is fixed and aligned like Binance's calendar minute; its length is a
parameter only so that tests can use a one-second "minute".
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

# endpoint (last path segment) -> weight, or a function of the query parameters;
# from Binance's USD-M documentation
_KLINE_ENDPOINTS = ("klines", "markPriceKlines", "indexPriceKlines", "premiumIndexKlines",
                    "continuousKlines")


def _kline_weight(params: dict[str, str]) -> int:
    limit = int(params.get("limit", 500) or 500)
    return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10


def _depth_weight(params: dict[str, str]) -> int:
    limit = int(params.get("limit", 500) or 500)
    return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20


_WEIGHTS: dict[str, int | Callable[[dict[str, str]], int]] = {
    "ping": 1, "time": 1, "exchangeInfo": 1, "depth": _depth_weight, "trades": 5,
    "historicalTrades": 20, "aggTrades": 20, "fundingRate": 1, "fundingInfo": 1,
    "premiumIndex": lambda p: 1 if p.get("symbol") else 10, "openInterest": 1,
    "ticker": 1, "openInterestHist": 0, "globalLongShortAccountRatio": 0,
    "topLongShortAccountRatio": 0, "topLongShortPositionRatio": 0,
    "takerlongshortRatio": 0,
    **{k: _kline_weight for k in _KLINE_ENDPOINTS},
}


def _all_symbols(weight: int) -> Callable[[dict[str, str]], int]:
    return lambda p: 1 if p.get("symbol") else weight


#: private endpoints by (method, last path segment): placing orders costs no IP weight
#: (it counts against the order-rate limits instead); v2 and v3 of positionRisk,
#: balance and account weigh the same
_PRIVATE: dict[tuple[str, str], int | Callable[[dict[str, str]], int]] = {
    ("POST", "order"): 0, ("GET", "order"): 1, ("DELETE", "order"): 1,
    ("GET", "openOrders"): _all_symbols(40), ("GET", "openOrder"): 1,
    ("DELETE", "allOpenOrders"): 1, ("GET", "allOrders"): 5, ("GET", "userTrades"): 5,
    ("POST", "algoOrder"): 0, ("GET", "algoOrder"): 1, ("DELETE", "algoOrder"): 1,
    ("GET", "openAlgoOrders"): _all_symbols(40), ("GET", "allAlgoOrders"): 5,
    ("DELETE", "algoOpenOrders"): 1,
    ("GET", "positionRisk"): 5, ("GET", "balance"): 5, ("GET", "account"): 5,
    ("POST", "leverage"): 1, ("POST", "marginType"): 1, ("GET", "dual"): 30,
    ("POST", "dual"): 1, ("GET", "multiAssetsMargin"): 30, ("GET", "commissionRate"): 20,
    ("GET", "income"): 30, ("GET", "leverageBracket"): 1, ("POST", "listenKey"): 1,
    ("PUT", "listenKey"): 1, ("DELETE", "listenKey"): 1,
}


def request_weight(endpoint: str, params: dict[str, str], method: str = "GET") -> int:
    """The weight Binance charges for one call (unknown endpoints: 1)."""
    w = _PRIVATE.get((method, endpoint), _WEIGHTS.get(endpoint, 1))
    try:
        return w(params) if callable(w) else w
    except ValueError:
        return 1


@dataclass
class Verdict:
    """What the ledger says about a request: ``ok``, ``429`` or ``418``."""

    status: int
    used: int
    retry_after_s: int = 0


class WeightLedger:
    """Used weight per fixed window, plus the 429 back-off and 418 ban states."""

    def __init__(self, limit: int = 2400, window_s: float = 60.0, ban_s: float = 120.0,
                 now: Callable[[], float] = time.time) -> None:
        self.limit = limit
        self.window_s = window_s
        self.ban_s = ban_s
        self._now = now
        self._lock = threading.Lock()
        self._window = -1
        self._used = 0
        self.back_off_until = 0.0  # set by a 429: calling before this earns a ban
        self.banned_until = 0.0

    def _roll(self, t: float) -> None:
        window = math.floor(t / self.window_s)
        if window != self._window:
            self._window, self._used = window, 0

    def used(self) -> int:
        with self._lock:
            self._roll(self._now())
            return self._used

    def window_end_s(self) -> float:
        """Epoch seconds at which the current window ends."""
        with self._lock:
            self._roll(self._now())
            return (self._window + 1) * self.window_s

    def _window_left(self, t: float) -> int:
        return max(1, math.ceil((self._window + 1) * self.window_s - t))

    def charge(self, weight: int) -> Verdict:
        """Account one request of ``weight``; say whether it may proceed."""
        with self._lock:
            t = self._now()
            self._roll(t)
            if t < self.banned_until:
                return Verdict(418, self._used, math.ceil(self.banned_until - t))
            if t < self.back_off_until:
                self.banned_until = t + self.ban_s
                return Verdict(418, self._used, math.ceil(self.ban_s))
            self._used += weight
            if self._used > self.limit:
                left = self._window_left(t)
                self.back_off_until = t + left
                return Verdict(429, self._used, left)
            return Verdict(200, self._used)

    def force_back_off(self, seconds: float) -> int:
        """A 429 fault: the client must wait ``seconds`` or be banned."""
        with self._lock:
            self.back_off_until = self._now() + seconds
            return math.ceil(seconds)

    def force_ban(self, seconds: float) -> int:
        with self._lock:
            self.banned_until = self._now() + seconds
            return math.ceil(seconds)

    def reset(self) -> None:
        with self._lock:
            self._used, self.back_off_until, self.banned_until = 0, 0.0, 0.0

    def as_json(self) -> dict[str, object]:
        t = self._now()
        return {"limit": self.limit, "window_s": self.window_s, "used": self.used(),
                "back_off_s": max(0.0, self.back_off_until - t),
                "banned_s": max(0.0, self.banned_until - t)}
