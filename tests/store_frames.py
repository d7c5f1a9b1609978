"""A test store with synthetic 1h bars and 8h funding (``fill_store``), shared by the
backtest, strategy and trading tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from perptrader.core.instruments import Instrument
from perptrader.marketdata.dataset import Dataset, validate
from perptrader.marketdata.kinds import Kind
from perptrader.marketdata.store.base import MarketStore

T0 = pd.Timestamp("2024-01-01", tz="UTC")


def synthetic_bars(n: int = 720, seed: int = 0, drift: float = 0.0) -> pd.DataFrame:
    """A 1h random walk with OHLC consistent bars (store layout: ``ts`` column)."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range(T0, periods=n, freq="1h").as_unit("us")
    close = 100 * np.exp(np.cumsum(rng.normal(drift, 0.01, n)))
    open_ = np.r_[100.0, close[:-1]]
    wick = np.abs(rng.normal(0, 0.004, n)) * close
    volume = rng.lognormal(7, 0.5, n)
    return pd.DataFrame({
        "ts": ts, "open": open_, "high": np.maximum(open_, close) + wick,
        "low": np.minimum(open_, close) - wick, "close": close, "volume": volume,
        "quote_volume": volume * close,
        "trade_count": pd.array(rng.integers(100, 200, n), dtype="Int64"),
        "taker_buy_base": volume / 2, "taker_buy_quote": volume * close / 2,
    })


def synthetic_funding(n_bars: int = 720, rate: float = 0.0001) -> pd.DataFrame:
    slots = pd.date_range(T0, periods=n_bars // 8 + 1, freq="8h").as_unit("us")
    return pd.DataFrame({"ts": slots, "rate": np.full(len(slots), rate),
                         "interval_hours": np.full(len(slots), 8.0)})


def fill_store(store: MarketStore, n: int = 720, seed: int = 0, funding: bool = True,
               drift: float = 0.0, symbol: str = "BTCUSDT") -> MarketStore:
    inst = Instrument.parse(symbol)
    datasets = [Dataset(Kind.OHLCV, inst, synthetic_bars(n, seed, drift), "1h", source="test")]
    if funding:
        datasets.append(Dataset(Kind.FUNDING, inst, synthetic_funding(n), source="test"))
    store.write([validate(ds) for ds in datasets])
    return store
