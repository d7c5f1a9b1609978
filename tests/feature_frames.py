"""Small loader-shaped frames built in the test, so feature tests run without ../shared."""

from __future__ import annotations

import numpy as np
import pandas as pd


def synthetic_frame(n: int = 2000, *, seed: int = 7, timeframe: str = "1h",
                    start: str = "2024-01-01", extras: bool = True) -> pd.DataFrame:
    """A random-walk bar frame with the loader's columns (index ``ts`` = bar open, UTC).

    ``extras`` adds mark bars, funding (8h slots), open interest, long/short and taker
    ratios and liquidations, as ``marketdata.loader.load`` joins them.
    """
    rng = np.random.default_rng(seed)
    step = pd.Timedelta(timeframe)
    idx = pd.date_range(start, periods=n, freq=step, tz="UTC", name="ts").astype(
        "datetime64[us, UTC]")
    ret = rng.normal(0, 0.006, n) + 0.002 * np.sin(np.arange(n) / 50)
    close = 30_000 * np.exp(np.cumsum(ret))
    open_ = np.concatenate([[close[0] * (1 - ret[0])], close[:-1]])
    wick = np.abs(rng.normal(0, 0.004, (2, n))) * close
    high = np.maximum(open_, close) + wick[0]
    low = np.minimum(open_, close) - wick[1]
    volume = rng.lognormal(3, 0.6, n) * (1 + 20 * np.abs(ret))
    frame = pd.DataFrame({
        "open": open_, "high": high, "low": low, "close": close, "volume": volume,
        "quote_volume": volume * close, "trade_count": (volume * 40).astype("int64"),
        "taker_buy_base": volume * rng.uniform(0.3, 0.7, n),
    }, index=idx)
    frame["taker_buy_quote"] = frame["taker_buy_base"] * close
    if not extras:
        return frame
    mark = close * (1 + rng.normal(0, 2e-4, n))
    frame["mark_open"], frame["mark_high"] = open_, np.maximum(high, mark)
    frame["mark_low"], frame["mark_close"] = np.minimum(low, mark), mark
    closes = idx + step
    slot = closes.floor("8h")
    rates = pd.Series(rng.normal(1e-4, 1e-4, len(slot.unique())), index=slot.unique())
    frame["funding_rate"] = rates.reindex(slot).to_numpy()
    frame["funding_interval_hours"] = 8.0
    frame["funding_time"] = slot
    oi = 80_000 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    frame["oi_contracts"], frame["oi_value"] = oi, oi * close
    frame["ls_global_account_ratio"] = rng.uniform(0.6, 2.5, n)
    frame["ls_top_account_ratio"] = rng.uniform(0.6, 2.5, n)
    frame["ls_top_position_ratio"] = rng.uniform(0.6, 2.5, n)
    frame["taker_buy_volume"] = frame["taker_buy_base"]
    frame["taker_sell_volume"] = volume - frame["taker_buy_base"]
    frame["taker_buy_sell_ratio"] = frame["taker_buy_volume"] / frame["taker_sell_volume"]
    liq = rng.poisson(0.5, n)
    frame["liq_count"] = liq.astype("float64")
    frame["liq_buy_qty"] = liq * rng.uniform(0, 2, n)
    frame["liq_sell_qty"] = liq * rng.uniform(0, 2, n)
    frame["liq_buy_notional"] = frame["liq_buy_qty"] * close
    frame["liq_sell_notional"] = frame["liq_sell_qty"] * close
    return frame
