"""Closed bars from the venue, for live runs: the ``BarFeed`` the engine already reads.

It starts with the last ``history_bars`` closed bars as the policy's warm-up (never
traded), then waits on the venue's clock (``/fapi/v1/time``: the venue decides when a bar
has closed, not this machine) and, once a bar closed, fetches it over REST and yields it.
Bars missed while the process was down are fetched and yielded in order, marked
``stale`` except the newest: the engine keeps its state going through them but trades
only on a bar that has just closed.

While it waits it calls ``idle`` (the engine applies user-stream events then) and stops
when ``stop`` is set (SIGINT/SIGTERM) between two looks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from perptrader.core.timeframes import timeframe_ms
from perptrader.sim.market import BarInput
from perptrader.trading.feeds import ClosedBar
from perptrader.trading.venue import VenueTrader

_COLUMNS = ("open", "high", "low", "close", "volume", "quote_volume", "trade_count",
            "taker_buy_base", "taker_buy_quote")
_PAGE = 1500
#: bars a live frame keeps (at least ``history_bars``): bounded memory and per-bar copies
MAX_BARS = 5000


@dataclass
class VenueBarFeed:
    trader: VenueTrader
    symbols: tuple[str, ...]
    timeframe: str
    history_bars: int = 500
    poll_s: float = 1.0
    idle: Callable[[], None] | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    frames: dict[str, pd.DataFrame] = field(default_factory=dict, init=False)

    @property
    def funding_source(self) -> dict[str, str]:
        return {s: "venue" for s in self.symbols}

    def remaining(self, ts: pd.Timestamp) -> int:
        return 1 << 30

    def _fetch(self, symbol: str, start_ms: int, end_ms: int) -> pd.DataFrame:
        """Closed bars opened in [start_ms, end_ms], paginated."""
        rows: list[list[object]] = []
        cursor = start_ms
        step = timeframe_ms(self.timeframe)
        while cursor <= end_ms:
            page = self.trader.raw_klines(symbol, self.timeframe, cursor, end_ms, _PAGE)
            if not page:
                break
            rows.extend(page)
            cursor = int(page[-1][0]) + step
            if len(page) < _PAGE:
                break
        if not rows:
            return pd.DataFrame(columns=list(_COLUMNS), index=pd.DatetimeIndex([], tz="UTC"))
        arr = np.array([[float(x or "nan") for x in r[1:6]] + [float(r[7] or "nan"),
                        float(r[8] or 0), float(r[9] or "nan"), float(r[10] or "nan")]
                        for r in rows])
        index = pd.DatetimeIndex(pd.to_datetime([int(r[0]) for r in rows], unit="ms",
                                                utc=True), name="ts")
        frame = pd.DataFrame(arr, index=index, columns=list(_COLUMNS))
        frame["trade_count"] = frame["trade_count"].astype("int64")
        return frame[~frame.index.duplicated(keep="last")]

    def _frame_attrs(self, symbol: str, frame: pd.DataFrame) -> pd.DataFrame:
        frame.attrs = {"symbol": symbol, "timeframe": self.timeframe,
                       "instrument": {"exchange": "binance", "market": "usdm",
                                      "symbol": symbol}}
        return frame

    def batches(self, after: pd.Timestamp | None = None) -> Iterator[list[ClosedBar]]:
        step = timeframe_ms(self.timeframe)
        now = self.trader.server_time()
        latest = now // step * step - step  # the last bar that has closed
        last = int(after.value // 1_000_000) if after is not None else latest
        for s in self.symbols:
            begin = last - (self.history_bars - 1) * step
            self.frames[s] = self._frame_attrs(s, self._fetch(s, begin, last))
        while not self.stop.is_set():
            now = self.trader.server_time()
            latest = now // step * step - step
            if latest <= last:
                if self.idle is not None:
                    self.idle()
                wait = min(self.poll_s, max(0.0, (latest + 2 * step - now) / 1000))
                self.stop.wait(max(wait, 0.01))
                continue
            new = {s: self._fetch(s, last + step, latest) for s in self.symbols}
            common = None
            for frame in new.values():
                common = frame.index if common is None else common.intersection(frame.index)
            if common is None or len(common) == 0:
                self.stop.wait(min(self.poll_s, 0.2))  # the venue has not published it yet
                continue
            keep = max(self.history_bars, MAX_BARS)
            for s in self.symbols:
                merged = pd.concat([self.frames[s], new[s].loc[common]])
                merged = merged[~merged.index.duplicated(keep="last")]
                # a run of months must not grow (and copy) its frames without bound
                self.frames[s] = self._frame_attrs(s, merged.iloc[-keep:])
            newest = common[-1]
            for ts in common:
                batch = []
                for s in self.symbols:
                    frame = self.frames[s]
                    pos = int(frame.index.get_loc(ts))
                    row = frame.iloc[pos]
                    bar = BarInput(ts=ts, open=float(row["open"]), high=float(row["high"]),
                                   low=float(row["low"]), close=float(row["close"]))
                    batch.append(LiveClosedBar(symbol=s, position=pos, bar=bar,
                                               history=frame, stale=bool(ts != newest)))
                yield batch
                last = int(ts.value // 1_000_000)
                if self.stop.is_set():
                    return


@dataclass(frozen=True)
class LiveClosedBar(ClosedBar):
    """A closed bar from the venue; ``stale`` when it closed while the process was down."""

    stale: bool = False
