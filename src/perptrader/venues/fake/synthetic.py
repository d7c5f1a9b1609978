"""Synthetic market data for the fake exchange when no recording is at hand: a seeded
random walk of 1h trade and mark bars, 8h funding and 1h open interest for BTCUSDT.

Used by the tests (which must run without ../shared/data) and by ``trade drill`` when it
is given no data folder; every number is generated, and exchangeInfo says so through
``MarketData``'s synthetic symbols.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from perptrader.core.instruments import Instrument
from perptrader.marketdata.dataset import Dataset
from perptrader.marketdata.kinds import Kind
from perptrader.marketdata.sources.funding import funding_frame
from perptrader.venues.fake.data import MarketData

BTC = Instrument("binance", "perp", "BTCUSDT")
START = pd.Timestamp("2024-01-01", tz="UTC")
HOURS = 2500


def bars(n: int = HOURS, start: pd.Timestamp = START, seed: int = 1,
         extras: bool = True) -> pd.DataFrame:
    """``n`` hourly OHLCV bars from ``start``: a log-normal walk around 40,000."""
    rng = np.random.default_rng(seed)
    close = 40_000 * np.exp(np.cumsum(rng.normal(0, 0.004, n)))
    open_ = np.r_[40_000.0, close[:-1]]
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.003, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.003, n))
    volume = rng.uniform(100, 5000, n).round(3)
    frame = pd.DataFrame({"ts": pd.date_range(start, periods=n, freq="1h"), "open": open_,
                          "high": high, "low": low, "close": close, "volume": volume})
    if extras:
        frame["quote_volume"] = (volume * close).round(4)
        frame["trade_count"] = rng.integers(1000, 90_000, n)
        frame["taker_buy_base"] = (volume * rng.uniform(0.3, 0.7, n)).round(3)
        frame["taker_buy_quote"] = (frame["taker_buy_base"] * close).round(4)
    frame.index = frame.index + 1
    return frame


def funding(n: int = HOURS // 8, start: pd.Timestamp = START) -> pd.DataFrame:
    """8-hourly funding, settlements stamped a few ms late as Binance does."""
    raw = pd.Series(pd.date_range(start, periods=n, freq="8h") + pd.to_timedelta(
        np.arange(n) % 7, unit="ms"))
    rates = np.round(np.sin(np.arange(n) / 9) * 3e-4 + 1e-4, 8)
    return funding_frame(raw, rates, index=pd.RangeIndex(1, n + 1))


def synthetic_market(hours: int = HOURS, start: pd.Timestamp = START) -> MarketData:
    """BTCUSDT: 1h trade bars (with extras), 1h mark bars, 8h funding, 1h open interest."""
    data = MarketData(None)
    trade = bars(hours, start)
    # the mark follows the trade price within a few basis points, as a venue's does
    noise = 1 + np.random.default_rng(2).normal(0, 2e-4, (hours, 4))
    mark = trade[["ts", "open", "high", "low", "close"]].copy()
    mark[["open", "high", "low", "close"]] = trade[["open", "high", "low",
                                                    "close"]].to_numpy() * noise
    mark["high"] = mark[["open", "high", "low", "close"]].max(axis=1)
    mark["low"] = mark[["open", "high", "low", "close"]].min(axis=1)
    mark["volume"] = np.nan
    data.add([Dataset(Kind.OHLCV, BTC, trade, "1h", "synthetic"),
              Dataset(Kind.MARK, BTC, mark, "1h", "synthetic"),
              Dataset(Kind.FUNDING, BTC, funding(hours // 8, start), None, "synthetic")])
    oi = pd.DataFrame({"ts": pd.date_range(start, periods=hours, freq="1h"),
                       "oi_contracts": np.linspace(80_000, 90_000, hours).round(3),
                       "oi_value": np.linspace(3.2e9, 3.9e9, hours).round(2)})
    data.add_open_interest("BTCUSDT", "1h", oi)
    return data
