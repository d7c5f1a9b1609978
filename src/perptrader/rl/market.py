"""What the environments read: the kernel's bar inputs and the fused state, as arrays.

``EnvMarket`` is built once per window (pandas at the edge) and shared read-only by
every environment stepping over it; nothing in it is computed from bars after the row
it belongs to (the state columns come from causal features and models applied bar by
bar, see ``rl.state``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from perptrader.core.errors import PerptraderError
from perptrader.sim import CostModel, MarketData, SimConfig
from perptrader.sim.engine import kernel_inputs

#: the most exposure an agent can hold (long/short 2x); also the margin model's leverage
MAX_EXPOSURE = 2.0


def rl_sim_config(costs: CostModel | None = None, *, initial_cash: float = 10_000.0,
                  max_exposure: float = MAX_EXPOSURE) -> SimConfig:
    """The account every agent trades: isolated margin at ``max_exposure`` leverage,
    equity-fraction sizing, fills one bar after the decision. The backtest of an agent
    (``rl:NAME``) and its baselines run on this same config."""
    return SimConfig(initial_cash=initial_cash, leverage=max_exposure,
                     costs=costs or CostModel(), fill_delay=1)


@dataclass
class EnvMarket:
    """Arrays of one symbol over one window (row = bar, index = bar open time).

    ``state``: the market part of the observation (float32, NaN read as 0);
    ``vsa_dir``: +1/-1 when a VSA entry event fired at the bar's close, else 0;
    ``agree``: +1/-1 when both experts predict BUY/SELL, else 0; ``conflict``: 1 when one
    says BUY and the other SELL.
    """

    symbol: str
    timeframe: str
    index: pd.DatetimeIndex
    xs: np.ndarray
    state: np.ndarray
    state_columns: list[str]
    vsa_dir: np.ndarray
    agree: np.ndarray
    conflict: np.ndarray
    config: SimConfig
    market: MarketData
    info: dict[str, Any] = field(default_factory=dict)
    _r2_mean: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def r2_mean(self) -> np.ndarray:
        """Mean squared bar return of the price up to each bar (expanding, causal): the
        differential Sharpe's starting second moment for an episode starting there, so
        its first steps are not divided by ~0. Bar 0 gets 1e-4 (a 1% move)."""
        if self._r2_mean is None:
            c = self.xs[:, 3]
            r2 = np.concatenate([[1e-4], (np.diff(c) / c[:-1]) ** 2])
            self._r2_mean = np.cumsum(r2) / np.arange(1, len(r2) + 1)
        return self._r2_mean

    @classmethod
    def build(cls, frame: pd.DataFrame, state: pd.DataFrame, *, symbol: str, timeframe: str,
              config: SimConfig, funding: pd.DataFrame | None = None,
              vsa_dir: np.ndarray | None = None, agree: np.ndarray | None = None,
              conflict: np.ndarray | None = None) -> EnvMarket:
        """``frame``: loader bars (OHLC, marks, funding columns); ``state``: the market
        state on the same index. ``funding``: stored settlement events, as the
        backtester would pass them (``marketdata.loader.funding_events``)."""
        if config.fill_delay != 1:
            raise PerptraderError("the RL environment decides at a close and fills at the "
                                  "next open: fill_delay must be 1")
        if not state.index.equals(frame.index):
            raise PerptraderError("state and bars must share one index (bar open times)")
        if len(frame) < 3:
            raise PerptraderError(f"{symbol} {timeframe}: {len(frame)} bars is too few for "
                                  f"an episode")
        has_funding = (funding is not None and not funding.empty) or (
            "funding_rate" in frame.columns and frame["funding_rate"].notna().any())
        market = MarketData.from_frame(frame, symbol=symbol, timeframe=timeframe,
                                       funding=funding if funding is not None
                                       and not funding.empty else None,
                                       require_funding=bool(has_funding))
        n = len(frame)
        xs = kernel_inputs(market, np.full(n, np.nan), config)
        values = state.to_numpy(dtype=np.float32, na_value=np.nan)

        def vec(v: np.ndarray | None) -> np.ndarray:
            out = np.zeros(n, dtype=np.float64) if v is None else np.asarray(v, np.float64)
            if out.shape != (n,):
                raise PerptraderError(f"per-bar signal has shape {out.shape}, expected ({n},)")
            return np.nan_to_num(out)

        return cls(symbol=symbol, timeframe=timeframe, index=pd.DatetimeIndex(frame.index),
                   xs=np.ascontiguousarray(xs), state=np.ascontiguousarray(values),
                   state_columns=[str(c) for c in state.columns], vsa_dir=vec(vsa_dir),
                   agree=vec(agree), conflict=vec(conflict), config=config, market=market,
                   info=dict(market.info))
