"""A request-weight budget kept honest by the venue's own count.

ccxt's built-in limiter is a local leaky bucket that never reads the venue's answer, so
another process on the same IP (or a restart) makes it wrong. Binance says the weight
used in the current window on every response (``X-MBX-USED-WEIGHT-1M``): this budget
adds each call's weight before it is made, replaces its estimate with the venue's number
after, and sleeps to the next window when a call would pass ``safety`` x limit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

WEIGHT_HEADERS = ("x-mbx-used-weight-1m", "x-mbx-used-weight")
_INTERVAL_S = {"SECOND": 1.0, "MINUTE": 60.0, "HOUR": 3600.0, "DAY": 86400.0}


@dataclass
class WeightBudget:
    limit: int = 2400
    window_s: float = 60.0
    safety: float = 0.9
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], float] = time.time
    used: int = 0
    waited_s: float = 0.0  # total time spent waiting for a window (reported)
    #: the response headers that carry the venue's own count for this window
    headers: tuple[str, ...] = WEIGHT_HEADERS
    _window: int = field(default=-1, repr=False)

    @classmethod
    def from_exchange_info(cls, info: Mapping[str, Any] | None, **kwargs: Any) -> WeightBudget:
        """The REQUEST_WEIGHT limit the venue publishes in exchangeInfo, if any."""
        for rule in (info or {}).get("rateLimits", []) or []:
            if rule.get("rateLimitType") == "REQUEST_WEIGHT":
                window = _INTERVAL_S.get(str(rule.get("interval")), 60.0) * float(
                    rule.get("intervalNum", 1) or 1)
                return cls(limit=int(rule["limit"]), window_s=window, **kwargs)
        return cls(**kwargs)

    def _roll(self) -> float:
        t = self.now()
        window = math.floor(t / self.window_s)
        if window != self._window:
            self._window, self.used = window, 0
        return t

    def acquire(self, weight: int) -> None:
        """Wait, if needed, until ``weight`` fits in the current window; then count it."""
        t = self._roll()
        if self.used + weight > self.limit * self.safety and self.used > 0:
            wait = (self._window + 1) * self.window_s - t + 0.01
            self.waited_s += wait
            self.sleep(wait)
            self._roll()
        self.used += weight

    def observe(self, headers: Mapping[str, Any] | None) -> None:
        """Correct the estimate with the venue's count from a response's headers."""
        if not headers:
            return
        lowered = {str(k).lower(): v for k, v in headers.items()}
        for name in self.headers:
            if name in lowered:
                try:
                    self._roll()
                    self.used = int(lowered[name])
                except (TypeError, ValueError):
                    pass
                return


@dataclass
class OrderBudget:
    """Binance's order-count limits (300 per 10 s and 1,200 per minute on USD-M), each a
    window budget corrected by the ``X-MBX-ORDER-COUNT-10S`` / ``-1M`` headers that
    order responses carry. Exceeding them answers 429 (-1015) like the weight limit."""

    per_10s: int = 300
    per_minute: int = 1200
    safety: float = 0.9
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], float] = time.time
    windows: tuple[WeightBudget, ...] = field(default=(), init=False)

    def __post_init__(self) -> None:
        self.windows = (
            WeightBudget(self.per_10s, 10.0, self.safety, self.sleep, self.now,
                         headers=("x-mbx-order-count-10s",)),
            WeightBudget(self.per_minute, 60.0, self.safety, self.sleep, self.now,
                         headers=("x-mbx-order-count-1m",)))

    @classmethod
    def from_exchange_info(cls, info: Mapping[str, Any] | None, **kwargs: Any) -> OrderBudget:
        """The ORDERS limits the venue publishes in exchangeInfo, if any."""
        limits: dict[float, int] = {}
        for rule in (info or {}).get("rateLimits", []) or []:
            if rule.get("rateLimitType") == "ORDERS":
                window = _INTERVAL_S.get(str(rule.get("interval")), 60.0) * float(
                    rule.get("intervalNum", 1) or 1)
                limits[window] = int(rule["limit"])
        return cls(per_10s=limits.get(10.0, 300), per_minute=limits.get(60.0, 1200),
                   **kwargs)

    def acquire(self) -> None:
        for window in self.windows:
            window.acquire(1)

    def observe(self, headers: Mapping[str, Any] | None) -> None:
        for window in self.windows:
            window.observe(headers)

    @property
    def waited_s(self) -> float:
        return sum(w.waited_s for w in self.windows)
