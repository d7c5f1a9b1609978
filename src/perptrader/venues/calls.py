"""One way to call a venue: pace by weight, classify failures, retry what is worth it.

- 429: wait ``Retry-After`` (never sooner: Binance bans an IP that calls during the
  back-off with 418), then call again;
- 5xx and time-outs: retry with exponential backoff and jitter, at most ``attempts``;
- connection errors: retried like 5xx, then :class:`VenueUnreachable`;
- 418 and the venue's refusals (bad symbol, interval, parameter, keys): raised at once.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import ccxt

from perptrader.venues.errors import (
    RateLimited,
    VenueError,
    VenueUnavailable,
    VenueUnreachable,
    classify,
)
from perptrader.venues.ratelimit import WeightBudget

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class RetryPolicy:
    """Backoff ``base_s * 2**n`` (capped at ``max_s``) with +-``jitter`` fraction; tests
    pass tiny values so that faults cost milliseconds. ``max_retry_after_s`` bounds a
    429 wait: a venue asking for longer is treated as a stop."""

    attempts: int = 6
    base_s: float = 0.5
    max_s: float = 30.0
    jitter: float = 0.2
    max_retry_after_s: float = 300.0
    seed: int | None = None
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        if self.seed is not None:
            self._rng = random.Random(self.seed)

    def backoff(self, attempt: int) -> float:
        delay = min(self.max_s, self.base_s * 2 ** attempt)
        return max(0.0, delay * (1 + self.jitter * (2 * self._rng.random() - 1)))


@dataclass
class CallStats:
    calls: int = 0
    retries: int = 0
    rate_limited: int = 0
    waited_s: float = 0.0


class VenueClient:
    """A ccxt exchange plus the budget and retry rules every call goes through."""

    def __init__(self, exchange: Any, *, policy: RetryPolicy | None = None,
                 budget: WeightBudget | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.ex = exchange
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self.budget = budget or WeightBudget(sleep=sleep)
        self.stats = CallStats()
        self._status: int | None = None
        original = exchange.on_rest_response

        def on_rest_response(code: Any, reason: Any, url: Any, method: Any, headers: Any,
                             body: Any, *rest: Any) -> Any:
            self._status = int(code) if code is not None else None
            return original(code, reason, url, method, headers, body, *rest)

        # ccxt keeps the headers and body of the last response but not its status
        exchange.on_rest_response = on_rest_response

    def last_body(self) -> Any:
        """The JSON body of the last response (ccxt keeps only its text)."""
        raw = getattr(self.ex, "last_http_response", None)
        if not raw:
            return None
        try:
            return json.loads(raw)
        except (TypeError, ValueError):
            return None

    def call(self, what: str, fn: Callable[..., T], *args: Any, weight: int = 1,
             retry_unreachable: bool = True, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` under the budget and retry rules; ``what`` names the
        call in errors (e.g. 'klines BTCUSDT 1h'). ``retry_unreachable=False`` for a
        first contact: a refused connection there means a wrong URL, not a blip."""
        label = f"{self.ex.id} {what}"
        attempt = 0
        while True:
            self.budget.acquire(weight)
            self._status = None
            self.ex.last_http_response = None
            self.ex.last_response_headers = None
            self.stats.calls += 1
            try:
                result = fn(*args, **kwargs)
            except ccxt.BaseError as exc:
                self.budget.observe(self.ex.last_response_headers)
                error = classify(exc, status=self._status, body=self.last_body(),
                                 headers=self.ex.last_response_headers, what=label)
            else:
                self.budget.observe(self.ex.last_response_headers)
                return result
            if isinstance(error, RateLimited):
                if error.retry_after_s > self.policy.max_retry_after_s:
                    raise VenueError(f"{error} asks to wait {error.retry_after_s:.0f} s, more "
                                     f"than the {self.policy.max_retry_after_s:.0f} s allowed")
                self.stats.rate_limited += 1
                self.stats.waited_s += error.retry_after_s
                log.warning("%s: waiting Retry-After %.1f s", label, error.retry_after_s)
                self.sleep(error.retry_after_s)
                continue  # a 429 wait is not a failed attempt
            if not (error.retryable or (retry_unreachable and
                                        isinstance(error, VenueUnreachable))):
                raise error
            attempt += 1
            if attempt >= self.policy.attempts:
                if isinstance(error, VenueUnreachable | VenueUnavailable):
                    raise type(error)(f"{error} (gave up after {attempt} attempts)") from None
                raise error
            delay = self.policy.backoff(attempt - 1)
            self.stats.retries += 1
            self.stats.waited_s += delay
            log.warning("%s failed (%s); retry %d in %.2f s", label, error, attempt, delay)
            self.sleep(delay)
