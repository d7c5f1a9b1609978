"""Everything a feature build reads from the store: the loader frame and, when the set
uses order-book families, the book snapshots and trades of the same span."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from perptrader.core.instruments import Instrument
from perptrader.core.timeframes import timeframe_delta
from perptrader.features.base import FeatureContext
from perptrader.features.sets import FeatureSet
from perptrader.marketdata.kinds import Kind
from perptrader.marketdata.loader import load
from perptrader.marketdata.store.base import MarketStore


def load_inputs(store: MarketStore, symbol: str, timeframe: str, feature_set: FeatureSet,
                start: datetime | str | None = None, end: datetime | str | None = None,
                *, market: str = "perp", exchange: str = "binance"
                ) -> tuple[pd.DataFrame, FeatureContext]:
    frame = load(symbol, timeframe, start, end, store=store, market=market, exchange=exchange)
    book = trades = None
    if feature_set.book_families:
        inst = Instrument(**frame.attrs["instrument"])
        first = frame.index[0].to_pydatetime()
        last = (frame.index[-1] + timeframe_delta(timeframe)).to_pydatetime()
        book = _nonempty(store.read(Kind.BOOK, inst, None, first, last))
        trades = _nonempty(store.read(Kind.TRADES, inst, None, first, last))
    ctx = FeatureContext(symbol=symbol, timeframe=timeframe, book=book, trades=trades)
    return frame, ctx


def _nonempty(frame: pd.DataFrame) -> pd.DataFrame | None:
    return frame if len(frame) else None
