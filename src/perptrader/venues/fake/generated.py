"""Series no recorded file holds, GENERATED (seeded, deterministic): long/short account
and position ratios, the taker buy/sell ratio and liquidation orders.

Each value is a function of (seed, symbol, series, timestamp) only, so pagination in
any order returns the same rows, and two runs with one seed agree. Every response that
carries generated values says so (``X-Fake-Generated: true`` and a ``fakeGenerated``
field), and docs/exchanges.md lists them.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np


def _unit(seed: int, *parts: object) -> float:
    """A uniform number in [0, 1) from the hash of its arguments."""
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def ratio(seed: int, symbol: str, series: str, ts_ms: int) -> float:
    """A long/short-like ratio around 1..2.5: a slow daily-scale wave plus noise."""
    hours = ts_ms / 3_600_000
    phase = _unit(seed, symbol, series, "phase") * 2 * math.pi
    wave = 0.35 * math.sin(hours / 37.0 + phase) + 0.15 * math.sin(hours / 5.3 + 2 * phase)
    noise = (_unit(seed, symbol, series, ts_ms) - 0.5) * 0.2
    return round(math.exp(0.4 + wave + noise), 4)


def taker_volumes(seed: int, symbol: str, ts_ms: int) -> tuple[float, float]:
    """(buy volume, sell volume) of takers in a period."""
    base = 500 + 1500 * _unit(seed, symbol, "taker-size", ts_ms)
    share = 0.5 + (_unit(seed, symbol, "taker-share", ts_ms) - 0.5) * 0.3
    return round(base * share, 3), round(base * (1 - share), 3)


def liquidations(seed: int, symbol: str, start_ms: int, end_ms: int,
                 price: float) -> list[dict[str, object]]:
    """forceOrder events in [start, end): a Poisson-like trickle around ``price``."""
    out: list[dict[str, object]] = []
    second = start_ms // 1000
    while second * 1000 < end_ms:
        if second * 1000 >= start_ms and _unit(seed, symbol, "liq", second) < 0.02:
            sell = _unit(seed, symbol, "liq-side", second) < 0.5
            qty = round(0.001 + 2.0 * _unit(seed, symbol, "liq-qty", second) ** 3, 3)
            slip = 1 + (-1 if sell else 1) * 0.002 * _unit(seed, symbol, "liq-px", second)
            px = float(np.round(price * slip, 2))
            out.append({"T": second * 1000 + int(1000 * _unit(seed, symbol, "ms", second)),
                        "side": "SELL" if sell else "BUY", "q": qty, "p": px})
        second += 1
    return out
