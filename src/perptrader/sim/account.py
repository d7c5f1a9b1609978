"""The step-by-step path: one bar at a time through the same kernel as ``simulate``.

The RL environment and the paper broker do not know the future bars, so they cannot hand
over a whole target series; ``Account.step`` takes the bar that just closed and the
decision taken at its close, and advances the very same ``kernel.step_bar``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from perptrader.core.timeframes import timeframe_ms
from perptrader.sim import kernel as K
from perptrader.sim.config import SimConfig
from perptrader.sim.market import BarInput
from perptrader.sim.setup import initial_state, resolve_tiers, run_params, symbol_params
from perptrader.sim.tiers import MarginTiers


@dataclass(frozen=True)
class StepReport:
    """What happened in one bar (values as of its close)."""

    ts: pd.Timestamp
    equity: float
    wallet_balance: float
    unrealized_pnl: float
    position_qty: float
    position_notional: float
    fees: float
    funding: float  # + = received
    liquidated: bool
    fills: list[dict[str, Any]] = field(default_factory=list)
    trades: list[dict[str, Any]] = field(default_factory=list)


class Account:
    """One symbol's futures account advanced bar by bar.

    ``step(bar, target)``: ``bar`` is the bar that has just CLOSED; ``target`` the exposure
    decided at that close (NaN = no decision). Like ``simulate``, a decision that differs
    from the previous one fills at the open of the bar ``fill_delay`` steps later.
    """

    def __init__(self, config: SimConfig, symbol: str, tiers: MarginTiers | None = None, *,
                 timeframe: str = "1h") -> None:
        self.config = config
        self.symbol = symbol
        self.tiers = resolve_tiers(config, symbol, tiers)
        self._step_ns = timeframe_ms(timeframe) * 1_000_000
        self._params = run_params(config)
        self._sp, self._tb = symbol_params(config, [self.tiers])
        self._st, self._w = initial_state(config, 1)
        self._x = np.zeros((1, K.NX))
        self._f = np.zeros((K.FILLS_PER_BAR, K.NF))
        self._t = np.zeros((K.FILLS_PER_BAR, K.NT))
        self._cnt = np.zeros(2, dtype=np.int64)
        self._b = np.zeros((1, K.NB))
        self._a = np.zeros(K.NA)
        self._book_idx = np.full(1, -1, dtype=np.int64)
        self._no_book = np.zeros((0, 2, 1))
        self._pending: deque[float] = deque([math.nan] * config.fill_delay)
        self._last_decision = math.nan
        self._ranges: deque[float] = deque(maxlen=config.costs.vol_window)
        self._bars = 0
        self._entry_ts: dict[int, pd.Timestamp] = {}
        self._index: list[pd.Timestamp] = []
        self.mark_substituted_bars = 0
        self.fills: list[dict[str, Any]] = []
        self.trades: list[dict[str, Any]] = []

    # ---- state -------------------------------------------------------------------------
    @property
    def equity(self) -> float:
        return float(self._a[K.A_EQUITY]) if self._bars else self.config.initial_cash

    @property
    def wallet_balance(self) -> float:
        return float(self._w[K.W_WALLET])

    @property
    def position(self) -> float:
        """Signed position quantity."""
        return float(self._st[0, K.S_QTY])

    @property
    def entry_price(self) -> float:
        return float(self._st[0, K.S_EP])

    @property
    def fees_paid(self) -> float:
        return float(self._w[K.W_FEES])

    @property
    def funding_paid(self) -> float:
        return float(-self._w[K.W_FUND])

    @property
    def liquidations(self) -> int:
        return int(self._w[K.W_LIQS])

    # ---- stepping ----------------------------------------------------------------------
    def _slip_scale(self, bar: BarInput) -> float:
        c = self.config.costs
        scale = 1.0
        if c.slippage_model == "volatility" and len(self._ranges) == c.vol_window:
            window = np.fromiter(self._ranges, dtype=np.float64, count=c.vol_window)
            mean = window.mean()
            if mean > 0:
                scale = window[-1] / mean
        self._ranges.append((bar.high - bar.low) / bar.open)
        return c.vol_slippage_mult * scale if c.slippage_model == "volatility" else 1.0

    def _funding_due(self, bar: BarInput, open_ns: int) -> float:
        if bar.funding_due is not None:
            return float(bar.funding_due)
        if bar.funding_time is None or bar.funding_time is pd.NaT:
            return 0.0
        rate = bar.funding_rate
        if rate is None or math.isnan(rate):
            return 0.0
        ft = pd.Timestamp(bar.funding_time).value  # ns since the epoch, whatever the unit
        return float(rate) if open_ns < ft <= open_ns + self._step_ns else 0.0

    def step(self, bar: BarInput, target: float = math.nan) -> StepReport:
        """Advance over ``bar`` (fill of an order due now, stops, funding, mark-to-market),
        then queue the decision ``target`` taken at its close."""
        ts = bar.ts if isinstance(bar.ts, pd.Timestamp) else pd.Timestamp(bar.ts)
        if ts.tzinfo is None:
            raise ValueError("BarInput.ts must be a tz-aware UTC bar open time")
        open_ns = ts.value  # ns since the epoch, whatever the unit
        x = self._x[0]
        x[K.X_O], x[K.X_H], x[K.X_L], x[K.X_C] = bar.open, bar.high, bar.low, bar.close
        marks = (bar.mark_open, bar.mark_high, bar.mark_low, bar.mark_close)
        prices = (bar.open, bar.high, bar.low, bar.close)
        substituted = False
        for col, mark, price in zip((K.X_MO, K.X_MH, K.X_ML, K.X_MC), marks, prices,
                                    strict=True):
            if mark is None or math.isnan(mark):
                x[col] = price
                substituted = True
            else:
                x[col] = mark
        self.mark_substituted_bars += substituted
        x[K.X_FR] = self._funding_due(bar, open_ns)
        x[K.X_SLIP] = self._slip_scale(bar)
        x[K.X_ORDER] = self._pending.popleft()
        x[K.X_HL_ORDER] = 0.0 if bar.high_first is None else (1.0 if bar.high_first else -1.0)
        self._cnt[:] = 0
        bar_no = self._bars
        self._index.append(ts)
        K.step_bar(bar_no, self._x, self._params, self._sp, self._tb, self._st, self._w,
                   self._f, self._t, self._cnt, self._b, self._a, self._book_idx,
                   self._no_book, self._no_book)
        self._bars += 1
        fills = [self._fill_dict(j) for j in range(int(self._cnt[0]))]
        trades = [self._trade_dict(j) for j in range(int(self._cnt[1]))]
        self.fills.extend(fills)
        self.trades.extend(trades)
        # queue the decision taken at this close
        order = math.nan
        if not math.isnan(target):
            if math.isinf(target):
                raise ValueError("target must be finite or NaN")
            if math.isnan(self._last_decision) or target != self._last_decision:
                order = float(target)
            self._last_decision = float(target)
        self._pending.append(order)
        b = self._b[0]
        return StepReport(
            ts=ts, equity=float(self._a[K.A_EQUITY]),
            wallet_balance=float(self._a[K.A_WALLET]),
            unrealized_pnl=float(self._a[K.A_UPNL]), position_qty=float(b[K.B_QTY]),
            position_notional=float(b[K.B_NOTIONAL]), fees=float(b[K.B_FEES]),
            funding=float(b[K.B_FUND]), liquidated=bool(b[K.B_LIQ] > 0), fills=fills,
            trades=trades)

    def _fill_dict(self, j: int) -> dict[str, Any]:
        f = self._f[j]
        return {"ts": self._index[int(f[K.F_BAR])], "bar": int(f[K.F_BAR]),
                "symbol": self.symbol, "side": int(f[K.F_SIDE]), "qty": float(f[K.F_QTY]),
                "price": float(f[K.F_PRICE]), "notional": float(f[K.F_QTY] * f[K.F_PRICE]),
                "fee": float(f[K.F_FEE]),
                "liquidity": "maker" if f[K.F_MAKER] > 0 else "taker",
                "reason": K.REASONS[int(f[K.F_REASON])], "partial": bool(f[K.F_PARTIAL] > 0),
                "requested_qty": float(f[K.F_REQ])}

    def _trade_dict(self, j: int) -> dict[str, Any]:
        t = self._t[j]
        net = float(t[K.T_GROSS] - t[K.T_FEES] + t[K.T_FUND])
        return {"entry_ts": self._index[int(t[K.T_ENTRY_BAR])],
                "exit_ts": self._index[int(t[K.T_EXIT_BAR])], "symbol": self.symbol,
                "side": int(t[K.T_SIDE]), "qty": float(t[K.T_QTY]),
                "entry_price": float(t[K.T_EP]), "exit_price": float(t[K.T_XP]),
                "gross_pnl": float(t[K.T_GROSS]), "fees": float(t[K.T_FEES]),
                "funding": float(t[K.T_FUND]), "net_pnl": net,
                "bars_held": int(t[K.T_EXIT_BAR] - t[K.T_ENTRY_BAR]),
                "exit_reason": K.REASONS[int(t[K.T_REASON])]}
