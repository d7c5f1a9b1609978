"""The circuit breaker in front of the venue, and the ban latch.

A burst of failures (5xx, time-outs, refused connections, 429s) means the venue or the
path to it is in trouble; sending more orders then piles up unknown outcomes. pybreaker's
breaker counts consecutive failures of venue calls: after ``fail_max`` it OPENS and every
new order is refused locally (``TradingHalted``) without a request; after
``reset_timeout_s`` it lets ONE call through (half-open): success closes it, failure
opens it again. Refusals by the venue (a rejected order, a bad parameter) prove the venue
works and do not count.

A 418 (IP banned) is different: nothing may be sent until its ``Retry-After`` has passed,
whatever the breaker says, so it latches its own deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pybreaker

from perptrader.core.errors import PerptraderError
from perptrader.venues.errors import (
    IpBanned,
    RateLimited,
    VenueError,
    VenueUnavailable,
    VenueUnreachable,
)

T = TypeVar("T")
#: failures that say the venue (or the way to it) is unwell
COUNTED = (VenueUnavailable, VenueUnreachable, RateLimited)


class TradingHalted(PerptraderError):
    """No order may be sent now (breaker open or IP banned); nothing was sent."""


class _Listener(pybreaker.CircuitBreakerListener):  # type: ignore[misc]
    def __init__(self, on_change: Callable[[str, str], None]) -> None:
        self.on_change = on_change

    def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
        self.on_change(getattr(old_state, "name", str(old_state)),
                       getattr(new_state, "name", str(new_state)))


@dataclass
class VenueGuard:
    """Breaker + ban latch; ``call(fn)`` runs a venue call under both."""

    fail_max: int = 5
    reset_timeout_s: float = 30.0
    clock: Callable[[], float] = time.time
    #: (old state, new state) on every breaker change: the engine journals them
    transitions: list[tuple[str, str]] = field(default_factory=list)
    banned_until: float = 0.0
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        excluded = [lambda e: isinstance(e, VenueError) and not isinstance(e, COUNTED)]
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=self.fail_max, reset_timeout=self.reset_timeout_s, exclude=excluded,
            listeners=[_Listener(lambda a, b: self.transitions.append((a, b)))],
            name="venue", throw_new_error_on_trip=False)  # keep the failure's own type:
        # a time-out that trips the breaker is still an unknown outcome to resolve

    @property
    def state(self) -> str:
        """closed | open | half-open (pybreaker's names)."""
        return str(self.breaker.current_state)

    def check(self) -> None:
        """Raise ``TradingHalted`` when no order may leave now (without calling)."""
        now = self.clock()
        if now < self.banned_until:
            raise TradingHalted(f"the venue banned this IP (418); no order until "
                                f"{self.banned_until - now:.0f} s from now")
        if self.state == pybreaker.STATE_OPEN:
            opened = self.breaker._state_storage.opened_at
            if opened is None or (time.time() - opened.timestamp() < self.reset_timeout_s):
                raise TradingHalted(f"circuit breaker open after "
                                    f"{self.breaker.fail_counter} venue failures; "
                                    f"no order until it half-opens")

    def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A read (query, positions, bars...): it may not fail the bar because orders are
        halted, so it waits out a ban and an open breaker (nothing could be asked
        meanwhile anyway), then calls; a 418 on the read itself is waited out too."""
        while True:
            self._wait_ready()
            try:
                return self.call(fn, *args, **kwargs)
            except (IpBanned, TradingHalted):
                continue  # latched: wait it out, then ask again

    def _wait_ready(self) -> None:
        while True:
            wait = self.banned_until - self.clock()
            if wait <= 0 and self.state == pybreaker.STATE_OPEN:
                opened = self.breaker._state_storage.opened_at
                if opened is not None:
                    wait = self.reset_timeout_s - (time.time() - opened.timestamp())
            if wait <= 0:
                return
            self.sleep(min(wait, 1.0) + 0.001)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` if allowed; failures feed the breaker and ban latch."""
        self.check()
        try:
            return self.breaker.call(fn, *args, **kwargs)
        except pybreaker.CircuitBreakerError as exc:
            raise TradingHalted(f"circuit breaker open: {exc}") from None
        except IpBanned as exc:
            self.banned_until = self.clock() + float(exc.retry_after_s or 120.0)
            raise
