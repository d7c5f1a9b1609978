"""Where closed bars come from: a replay of stored bars now, a live stream later.

The engine only sees ``BarFeed``: an iterator of ``ClosedBar`` batches (one per bar
open time, every symbol of the run), each carrying the bar as the accounting core takes
it (``sim.BarInput``) and the bars a policy may read (``history``: every bar so far, up
to and including this one). A live feed (the exchange-connectivity work) implements the
same protocol: it appends each closed bar to its frames and yields it, and the engine
does not change.

``ReplayFeed`` loads the window exactly as ``backtest run`` does (same loader, same
funding choice, same ``MarketData``), so a paper replay and a backtest of the same policy
see the same inputs bar for bar; by default it gives the policy no bars before the
window either, as the backtest does not.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import pandas as pd

from perptrader.core.errors import InputError, PerptraderError
from perptrader.core.timeframes import timeframe_delta, utc_time
from perptrader.marketdata.loader import funding_events, load
from perptrader.marketdata.store.base import MarketStore
from perptrader.sim.market import NO_FUNDING, BarInput, MarketData, choose_funding


@dataclass(frozen=True)
class ClosedBar:
    """One symbol's bar that has just closed."""

    symbol: str
    #: position of the bar in ``history`` (the policy's frame)
    position: int
    bar: BarInput
    history: pd.DataFrame

    @property
    def ts(self) -> pd.Timestamp:
        return pd.Timestamp(self.bar.ts)

    @property
    def bars(self) -> pd.DataFrame:
        """Every bar up to and including this one (what ``Policy.decide`` reads)."""
        return self.history.iloc[: self.position + 1]


class BarFeed(Protocol):
    """Closed bars, one batch per bar open time, in time order."""

    symbols: tuple[str, ...]
    timeframe: str

    def batches(self, after: pd.Timestamp | None = None) -> Iterator[list[ClosedBar]]:
        """Batches whose bar opened after ``after`` (None = from the start)."""
        ...

    def remaining(self, ts: pd.Timestamp) -> int:
        """Bars the feed still holds after ``ts`` (a replay knows its end; a live feed
        answers a very large number)."""
        ...

    @property
    def funding_source(self) -> dict[str, str]:
        ...


@dataclass
class ReplayFeed:
    """Stored bars of ``[start, end)`` replayed as if they closed one after another.

    ``speed``: None = as fast as possible; otherwise bars per second of wall time.
    ``history_bars``: bars before ``start`` handed to the policy (0 = none, like
    ``backtest run``; a live-like start gives the policy its warm-up).
    """

    store: MarketStore
    symbols: tuple[str, ...]
    timeframe: str
    start: pd.Timestamp
    end: pd.Timestamp
    speed: float | None = None
    history_bars: int = 0
    frames: dict[str, pd.DataFrame] = field(default_factory=dict, init=False)
    markets: dict[str, MarketData] = field(default_factory=dict, init=False)
    #: position of the first replayed bar in each frame
    first: dict[str, int] = field(default_factory=dict, init=False)
    warnings: list[str] = field(default_factory=list, init=False)
    _sources: dict[str, str] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if not self.symbols:
            raise PerptraderError("a replay needs at least one symbol")
        if self.end <= self.start:
            raise PerptraderError(f"replay end {self.end} is not after its start {self.start}")
        if self.speed is not None and not self.speed > 0:
            raise PerptraderError(f"replay speed must be > 0 bars/s, got {self.speed}")
        if self.history_bars < 0:
            raise PerptraderError(f"history bars must be >= 0, got {self.history_bars}")
        begin = self.start - self.history_bars * timeframe_delta(self.timeframe)
        for symbol in self.symbols:
            try:
                frame = load(symbol, self.timeframe, begin, self.end, store=self.store)
            except ValueError as exc:
                raise PerptraderError(str(exc)) from None
            if frame.empty or frame.index[-1] < self.start:
                raise PerptraderError(f"no {symbol} {self.timeframe} bars stored in "
                                      f"{self.start:%Y-%m-%d %H:%M}..{self.end:%Y-%m-%d %H:%M}")
            first = int(frame.index.searchsorted(self.start))
            if len(frame) - first < 2:
                raise PerptraderError(f"{symbol} {self.timeframe}: {len(frame) - first} bar(s) "
                                      f"in the replay window is too little to trade")
            events = funding_events(self.store, symbol, frame, self.timeframe)
            chosen, source = choose_funding(frame, self.timeframe, events, self.warnings)
            self.markets[symbol] = MarketData.from_frame(
                frame, symbol=symbol, timeframe=self.timeframe, funding=chosen,
                require_funding=source != NO_FUNDING)
            # the policy slices this frame every bar and pandas deep-copies ``attrs`` on
            # each slice: keep what features read (symbol, timeframe, instrument), not
            # the loader's provenance
            frame.attrs = {k: v for k, v in frame.attrs.items()
                           if k in ("symbol", "timeframe", "instrument")}
            self.frames[symbol] = frame
            self.first[symbol] = first
            self._sources[symbol] = source
        common = None
        for symbol in self.symbols:
            idx = self.frames[symbol].index[self.first[symbol]:]
            common = idx if common is None else common.intersection(idx)
        self.index = common if common is not None else pd.DatetimeIndex([])
        if len(self.index) < 2:
            raise PerptraderError(f"{', '.join(self.symbols)} share {len(self.index)} bars in "
                                  f"the replay window; nothing to trade together")

    @property
    def funding_source(self) -> dict[str, str]:
        return dict(self._sources)

    def batches(self, after: pd.Timestamp | None = None) -> Iterator[list[ClosedBar]]:
        start_at = 0 if after is None else int(self.index.searchsorted(after, side="right"))
        positions = {s: self.frames[s].index.get_indexer(self.index) for s in self.symbols}
        clock = time.monotonic()
        for k in range(start_at, len(self.index)):
            if self.speed is not None:
                due = clock + (k - start_at + 1) / self.speed
                time.sleep(max(0.0, due - time.monotonic()))
            batch = []
            for s in self.symbols:
                pos = int(positions[s][k])
                batch.append(ClosedBar(symbol=s, position=pos, bar=self.markets[s].bar(pos),
                                       history=self.frames[s]))
            yield batch

    def remaining(self, ts: pd.Timestamp) -> int:
        return len(self.index) - 1 - int(self.index.searchsorted(ts))

    def bars_in_window(self) -> int:
        return len(self.index)


def parse_window(text: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``"2025-01-01..2025-03-01"`` -> two UTC timestamps (end exclusive)."""
    start, sep, end = text.partition("..")
    if not sep or not start.strip() or not end.strip():
        raise PerptraderError(f"--replay {text!r}: expected START..END, e.g. "
                              f"2025-01-01..2025-03-01")
    try:
        a, b = utc_time(start.strip()), utc_time(end.strip())
    except InputError as exc:
        raise PerptraderError(f"--replay {text!r}: {exc}") from None
    if b <= a:
        raise PerptraderError(f"--replay {text!r}: the end is not after the start")
    return a, b


__all__ = ["BarFeed", "ClosedBar", "ReplayFeed", "parse_window"]
