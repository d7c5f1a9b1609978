"""The fake exchange's clock: real time, scaled real time, or stepped by hand.

Streams replay recorded data as of this clock and ``/fapi/v1/time`` reports it, so a
test can step through an hour of klines in milliseconds and get the same messages every
run; weight windows use real monotonic time (a client's waiting is what they measure).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class FakeClock:
    """``now_ms()`` = start + (elapsed real time x speed) + manual steps.

    ``speed=0`` freezes time so only :meth:`step` moves it (deterministic tests);
    ``start_ms=None`` starts at the wall clock.
    """

    start_ms: int | None = None
    speed: float = 1.0
    _origin: float = field(default_factory=time.monotonic, repr=False)
    _offset_ms: int = 0

    def __post_init__(self) -> None:
        if self.start_ms is None:
            self.start_ms = int(time.time() * 1000)

    def now_ms(self) -> int:
        elapsed = (time.monotonic() - self._origin) * 1000.0 * self.speed
        return int(self.start_ms or 0) + int(elapsed) + self._offset_ms

    def step(self, ms: int) -> int:
        """Move the clock forward by ``ms``; returns the new time."""
        if ms < 0:
            raise ValueError("the clock only moves forward")
        self._offset_ms += int(ms)
        return self.now_ms()

    def set(self, *, start_ms: int | None = None, speed: float | None = None) -> None:
        """Restart from ``start_ms`` (default: the current time) at ``speed``."""
        now = self.now_ms()
        self.start_ms = now if start_ms is None else int(start_ms)
        if speed is not None:
            self.speed = float(speed)
        self._origin = time.monotonic()
        self._offset_ms = 0

    def as_json(self) -> dict[str, object]:
        return {"now_ms": self.now_ms(), "speed": self.speed}
