"""The pure-Python L2 book that :class:`~perptrader.marketdata.orderbook.L2Book` replaced:
dicts of price -> qty plus a lazy heap per side, every level parsed with ``float``.

Kept as the REFERENCE implementation only: ``bench/bench_collect.py`` measures the array
book against it in the same run, and ``tests/marketdata/test_orderbook_arrays.py`` proves
both books agree level by level (on the real capture of ../shared/data and on synthetic
diffs). Nothing else should use it. Its sequencing is ``L2Book``'s own code: both books
subclass :class:`~perptrader.marketdata.orderbook.SequencedBook`; this module only brings
the dict+heap storage.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence

import numpy as np

from perptrader.marketdata.orderbook import SequencedBook

Level = Sequence[str | float]  # (price, qty): exchange strings or numbers

_INF = math.inf


class _Side:
    """One side of the book: price -> qty, plus a lazy heap that yields the best price.

    The heap holds ``sign * price`` (sign -1 for bids, so the largest bid is on top). A
    price is pushed when it enters the side; a removed price stays in the heap until it
    reaches the top and is found missing from the dict (lazy deletion), and the heap is
    rebuilt when stale entries outnumber live ones.
    """

    __slots__ = ("_heap", "_sign", "levels")

    def __init__(self, is_bid: bool) -> None:
        self.levels: dict[float, float] = {}
        self._heap: list[float] = []
        self._sign = -1.0 if is_bid else 1.0

    def clear(self) -> None:
        self.levels.clear()
        self._heap.clear()

    def apply(self, rows: Iterable[Level]) -> None:
        """Set each (price, qty); qty 0 deletes. ValueError on a bad number: the levels
        before it are already set, so callers treat that as fatal for the whole input."""
        levels, heap, sign = self.levels, self._heap, self._sign
        push = heapq.heappush
        for row in rows:
            price = float(row[0])
            qty = float(row[1])
            if not 0.0 < price < _INF:
                raise ValueError(f"price must be positive and finite, got {row[0]!r}")
            if not 0.0 <= qty < _INF:
                raise ValueError(f"quantity must be >= 0 and finite, got {row[1]!r}")
            if qty == 0.0:
                levels.pop(price, None)
            else:
                if price not in levels:
                    push(heap, sign * price)
                levels[price] = qty
        if len(heap) > 2 * len(levels) + 256:
            self._heap = [sign * p for p in levels]
            heapq.heapify(self._heap)

    def as_dict(self) -> dict[float, float]:
        """The live price -> qty dict (not a copy)."""
        return self.levels

    def best(self) -> tuple[float, float] | None:
        heap, levels, sign = self._heap, self.levels, self._sign
        while heap:
            price = heap[0] * sign
            qty = levels.get(price)
            if qty is not None:
                return price, qty
            heapq.heappop(heap)
        return None

    def top(self, n: int) -> np.ndarray:
        """The n best levels as an (k, 2) array [price, qty], best first.

        Pops the heap until n live prices are out (dropping stale entries and repeats of
        a price for good) and pushes the live ones back: O((n + stale) log H), against
        O(L log L) for sorting the side (measured: ~10x faster at 5k levels a side).
        """
        heap, levels, sign = self._heap, self.levels, self._sign
        pop, push = heapq.heappop, heapq.heappush
        keys: list[float] = []
        seen: set[float] = set()
        while heap and len(keys) < n:
            key = pop(heap)
            if key in seen or key * sign not in levels:
                continue
            seen.add(key)
            keys.append(key)
        for key in keys:
            push(heap, key)
        out = np.empty((len(keys), 2), dtype="float64")
        if keys:
            prices = [k * sign for k in keys]
            out[:, 0] = prices
            out[:, 1] = [levels[p] for p in prices]
        return out


class PyL2Book(SequencedBook):
    """The reference Binance-style L2 book: ``L2Book``'s API and sequencing (both are
    :class:`~perptrader.marketdata.orderbook.SequencedBook`: snapshot + U/u/pu-checked
    diffs, ``spot`` and ``max_buffer`` as there, or :meth:`replace` and
    :meth:`update_levels` without sequencing) over dict+heap sides.

    :attr:`bids` and :attr:`asks` are the sides' live dicts (unordered; use :meth:`top`
    for an ordered view). A bad level raises ValueError with the levels before it
    already set.
    """

    _asks: _Side
    _bids: _Side
    _side_type = _Side

    def _update_levels(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        self._bids.apply(bids)
        self._asks.apply(asks)

    def _set_levels(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        self._bids.clear()
        self._asks.clear()
        self._update_levels(bids, asks)


__all__ = ["PyL2Book"]
