"""Fault injection: what the fake exchange does wrong, per endpoint and per stream.

Faults are plain data (constructor arguments or JSON posted to ``/_fake/faults``) so a
test states exactly which request fails how, e.g. "the 2nd klines call answers 503" or
"every 10th depth message is dropped". Each rule can fire on a number of matching
requests (``times``), after letting some through (``skip``), with a probability drawn
from a seeded generator, so a run is reproducible.
"""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass, field, fields
from typing import Any

REST_KINDS = ("latency", "timeout_before", "timeout_after", "status", "rate_limit", "ban")
STREAM_KINDS = ("close", "drop", "duplicate", "reorder", "gap")


class FaultConfigError(ValueError):
    """A fault description that cannot be applied (unknown kind, bad value)."""


@dataclass
class RestFault:
    """One REST misbehaviour.

    kinds: ``latency`` (answer after ``delay_s``), ``timeout_before`` (hang ``delay_s``
    before the request is processed: no weight used), ``timeout_after`` (process it, use
    its weight, then hang), ``status`` (answer ``status``: 500/502/503/504...),
    ``rate_limit`` (429 with ``Retry-After: retry_after_s``), ``ban`` (418 for
    ``retry_after_s`` seconds).
    """

    kind: str
    endpoint: str = "*"  # last path segment: klines, fundingRate, exchangeInfo, ... or *
    status: int = 503
    delay_s: float = 5.0
    retry_after_s: int = 1
    times: int | None = 1  # None: every matching request
    skip: int = 0
    probability: float = 1.0
    _seen: int = field(default=0, repr=False)
    _fired: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in REST_KINDS:
            raise FaultConfigError(f"unknown REST fault kind {self.kind!r} (one of {REST_KINDS})")
        if self.kind == "status" and not 400 <= int(self.status) <= 599:
            raise FaultConfigError(f"status fault needs a 4xx/5xx status, got {self.status}")
        if not 0.0 <= self.probability <= 1.0:
            raise FaultConfigError("probability must be within [0, 1]")


@dataclass
class StreamFault:
    """One websocket misbehaviour on a stream (``kline``, ``markPrice``, ``aggTrade``,
    ``depth``, ``forceOrder``, ``user`` (the user data stream) or ``*``).

    kinds: ``close`` (close the connection with ``close_code``: 1000 clean, 1006
    abnormal: the socket is dropped without a close frame), ``drop`` (skip a message),
    ``duplicate`` (send it twice), ``reorder`` (hold it back and send it after the
    next one), ``gap`` (depth: skip one diff so the ``pu`` chain breaks).
    """

    kind: str
    stream: str = "*"
    close_code: int = 1006
    times: int | None = 1
    skip: int = 0
    probability: float = 1.0
    _seen: int = field(default=0, repr=False)
    _fired: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in STREAM_KINDS:
            raise FaultConfigError(
                f"unknown stream fault kind {self.kind!r} (one of {STREAM_KINDS})")
        if self.kind == "close" and self.close_code not in (1000, 1001, 1006, 1011):
            raise FaultConfigError("close_code must be 1000, 1001, 1006 or 1011")


def _public(obj: Any) -> dict[str, Any]:
    return {k: v for k, v in asdict(obj).items() if not k.startswith("_")}


def _build(cls: type, raw: dict[str, Any]) -> Any:
    allowed = {f.name for f in fields(cls) if not f.name.startswith("_")}
    unknown = set(raw) - allowed
    if unknown:
        raise FaultConfigError(f"unknown field(s) {sorted(unknown)} for {cls.__name__}")
    try:
        return cls(**raw)
    except TypeError as exc:
        raise FaultConfigError(str(exc)) from None


class FaultInjector:
    """The active rules; thread-safe because the admin endpoint and requests race."""

    def __init__(self, rest: list[RestFault] | None = None,
                 streams: list[StreamFault] | None = None, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self.rest: list[RestFault] = list(rest or [])
        self.streams: list[StreamFault] = list(streams or [])
        self._rng = random.Random(seed)
        self.seed = seed

    def configure(self, raw: dict[str, Any]) -> None:
        """Replace all rules from JSON ``{"rest": [...], "streams": [...], "seed": n}``."""
        if not isinstance(raw, dict):
            raise FaultConfigError("expected a JSON object with 'rest' and/or 'streams'")
        unknown = set(raw) - {"rest", "streams", "seed"}
        if unknown:
            raise FaultConfigError(f"unknown key(s) {sorted(unknown)}")
        rest = [_build(RestFault, r) for r in raw.get("rest", [])]
        streams = [_build(StreamFault, s) for s in raw.get("streams", [])]
        with self._lock:
            self.rest, self.streams = rest, streams
            self.seed = int(raw.get("seed", self.seed))
            self._rng = random.Random(self.seed)

    def clear(self) -> None:
        with self._lock:
            self.rest, self.streams = [], []

    def as_json(self) -> dict[str, Any]:
        with self._lock:
            return {"seed": self.seed, "rest": [_public(f) for f in self.rest],
                    "streams": [_public(f) for f in self.streams]}

    def _fires(self, rule: RestFault | StreamFault) -> bool:
        rule._seen += 1
        if rule._seen <= rule.skip:
            return False
        if rule.times is not None and rule._fired >= rule.times:
            return False
        if rule.probability < 1.0 and self._rng.random() >= rule.probability:
            return False
        rule._fired += 1
        return True

    def for_request(self, endpoint: str) -> list[RestFault]:
        """The rules that fire for this request (each counts the request once)."""
        with self._lock:
            return [r for r in self.rest
                    if r.endpoint in ("*", endpoint) and self._fires(r)]

    def for_message(self, stream: str) -> list[StreamFault]:
        """The rules that fire for this outgoing stream message."""
        with self._lock:
            return [s for s in self.streams
                    if s.stream in ("*", stream) and self._fires(s)]
