"""The step-by-step path: one bar at a time through the same kernel as ``simulate``.

The RL environment and the paper broker do not know the future bars, so they cannot hand
over a whole target series; ``Account.step`` takes the bar that just closed and the
decision taken at its close, and advances the very same ``kernel.step_bar``.

A trading engine needs the account AFTER the bar and BEFORE the decision (a policy may
read it), so ``step`` is ``advance(bar)`` then ``queue(target)``, and both can be called
apart. ``snapshot()`` / ``Account.restore`` save and reload the whole state exactly (the
paper engine checkpoints it with every bar, so a restarted run goes on where it was).
"""

from __future__ import annotations

import io
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
from perptrader.sim.tiers import MarginTiers, fallback_warning


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
        #: what a result on this account must say (the DEFAULT ladder stands in)
        self.warnings: list[str] = [fallback_warning(self.tiers)] if self.tiers.fallback else []
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
        #: the decision before the last queued one (what ``cancel_queued`` goes back to)
        self._prev_decision = math.nan
        self._ranges: deque[float] = deque(maxlen=config.costs.vol_window)
        self._bars = 0
        #: bar number -> open time, kept for the current bar and the open trade's entry
        self._bar_ts: dict[int, pd.Timestamp] = {}
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

    @property
    def bars_done(self) -> int:
        return self._bars

    @property
    def last_decision(self) -> float:
        """The last target queued (NaN before the first decision)."""
        return self._last_decision

    @property
    def position_margin(self) -> float:
        """The isolated margin held by the position (its margin balance before uPnL)."""
        return float(self._st[0, K.S_MARGIN])

    @property
    def mark_price(self) -> float:
        """The mark close of the last bar (the trade close where no mark was given)."""
        return float(self._x[0, K.X_MC])

    @property
    def close_price(self) -> float:
        return float(self._x[0, K.X_C])

    @property
    def unrealized_pnl(self) -> float:
        return float(self._a[K.A_UPNL])

    def maintenance_margin(self) -> float:
        """Maintenance margin of the position at the last mark (the tier's rate)."""
        qty = self.position
        if qty == 0.0:
            return 0.0
        return float(K.maintenance_margin(self._tb[0], int(self._sp[0, K.SP_NB]),
                                          qty * self.mark_price))

    def step(self, bar: BarInput, target: float = math.nan) -> StepReport:
        """Advance over ``bar`` (fill of an order due now, stops, funding, mark-to-market),
        then queue the decision ``target`` taken at its close."""
        report = self.advance(bar)
        self.queue(target)
        return report

    def advance(self, bar: BarInput) -> StepReport:
        """Advance over ``bar``: the order due at its open fills, stops, funding and
        liquidation run, and the account is marked at its close. A decision for this
        bar's close must follow with ``queue`` (NaN = none) before the next ``advance``."""
        if len(self._pending) != self.config.fill_delay:
            raise RuntimeError("advance() twice without queue(): every bar's close must "
                               "queue a decision (NaN for none)")
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
        self._bar_ts[bar_no] = ts
        K.step_bar(bar_no, self._x, self._params, self._sp, self._tb, self._st, self._w,
                   self._f, self._t, self._cnt, self._b, self._a, self._book_idx,
                   self._no_book, self._no_book)
        self._bars += 1
        fills = [self._fill_dict(j) for j in range(int(self._cnt[0]))]
        trades = [self._trade_dict(j) for j in range(int(self._cnt[1]))]
        self.fills.extend(fills)
        self.trades.extend(trades)
        keep = {bar_no}
        if self.position != 0.0:
            keep.add(int(self._st[0, K.S_T_BAR]))
        self._bar_ts = {k: v for k, v in self._bar_ts.items() if k in keep}
        b = self._b[0]
        return StepReport(
            ts=ts, equity=float(self._a[K.A_EQUITY]),
            wallet_balance=float(self._a[K.A_WALLET]),
            unrealized_pnl=float(self._a[K.A_UPNL]), position_qty=float(b[K.B_QTY]),
            position_notional=float(b[K.B_NOTIONAL]), fees=float(b[K.B_FEES]),
            funding=float(b[K.B_FUND]), liquidated=bool(b[K.B_LIQ] > 0), fills=fills,
            trades=trades)

    def queue(self, target: float = math.nan) -> float:
        """Queue the decision taken at the close of the bar just advanced; it fills
        ``fill_delay`` bars later. Returns the order queued: the target when it differs
        from the previous decision, else NaN (nothing to do), exactly as ``simulate``
        schedules a target series."""
        if len(self._pending) != self.config.fill_delay - 1:
            raise RuntimeError("queue() must follow advance(), once per bar")
        order = math.nan
        if not math.isnan(target):
            if math.isinf(target):
                raise ValueError("target must be finite or NaN")
            if math.isnan(self._last_decision) or target != self._last_decision:
                order = float(target)
                self._prev_decision = self._last_decision
            self._last_decision = float(target)
        self._pending.append(order)
        return order

    def cancel_queued(self) -> bool:
        """Cancel the order queued at the last close, before it fills (a kill switch);
        the account then remembers the decision before it. False when none is queued."""
        if not self._pending or math.isnan(self._pending[-1]):
            return False
        self._pending[-1] = math.nan
        self._last_decision = self._prev_decision
        return True

    # ---- checkpoint ----------------------------------------------------------------------
    def snapshot(self) -> bytes:
        """The complete account state as bytes (``Account.restore`` reloads it exactly:
        float arrays are written in binary, not as text)."""
        buf = io.BytesIO()
        ts_keys = np.array(sorted(self._bar_ts), dtype=np.int64)
        ts_vals = np.array([self._bar_ts[k].value for k in ts_keys], dtype=np.int64)
        np.savez(buf, st=self._st, w=self._w, a=self._a, b=self._b, x=self._x,
                 pending=np.array(self._pending, dtype=np.float64),
                 ranges=np.array(self._ranges, dtype=np.float64),
                 scalars=np.array([self._last_decision, self._bars,
                                   self.mark_substituted_bars, self._prev_decision],
                                  dtype=np.float64),
                 ts_keys=ts_keys, ts_vals=ts_vals)
        return buf.getvalue()

    @classmethod
    def restore(cls, blob: bytes, config: SimConfig, symbol: str,
                tiers: MarginTiers | None = None, *, timeframe: str = "1h") -> Account:
        """An account in the state ``snapshot`` saved (same config, symbol and tiers)."""
        acc = cls(config, symbol, tiers, timeframe=timeframe)
        data = np.load(io.BytesIO(blob))
        for name, arr in (("st", acc._st), ("w", acc._w), ("a", acc._a), ("b", acc._b),
                          ("x", acc._x)):
            saved = data[name]
            if saved.shape != arr.shape:
                raise ValueError(f"account snapshot: {name} has shape {saved.shape}, "
                                 f"expected {arr.shape} (another configuration?)")
            arr[...] = saved
        pending = data["pending"]
        if len(pending) != config.fill_delay:
            raise ValueError(f"account snapshot: {len(pending)} pending decisions for "
                             f"fill_delay {config.fill_delay}")
        acc._pending = deque(float(v) for v in pending)
        acc._ranges.extend(float(v) for v in data["ranges"])
        last, bars, substituted, prev = data["scalars"]
        acc._last_decision, acc._bars = float(last), int(bars)
        acc._prev_decision = float(prev)
        acc.mark_substituted_bars = int(substituted)
        acc._bar_ts = {int(k): pd.Timestamp(int(v), tz="UTC")
                       for k, v in zip(data["ts_keys"], data["ts_vals"], strict=True)}
        return acc

    def _fill_dict(self, j: int) -> dict[str, Any]:
        f = self._f[j]
        return {"ts": self._bar_ts[int(f[K.F_BAR])], "bar": int(f[K.F_BAR]),
                "symbol": self.symbol, "side": int(f[K.F_SIDE]), "qty": float(f[K.F_QTY]),
                "price": float(f[K.F_PRICE]), "notional": float(f[K.F_QTY] * f[K.F_PRICE]),
                "fee": float(f[K.F_FEE]),
                "liquidity": "maker" if f[K.F_MAKER] > 0 else "taker",
                "reason": K.REASONS[int(f[K.F_REASON])], "partial": bool(f[K.F_PARTIAL] > 0),
                "requested_qty": float(f[K.F_REQ])}

    def _trade_dict(self, j: int) -> dict[str, Any]:
        t = self._t[j]
        net = float(t[K.T_GROSS] - t[K.T_FEES] + t[K.T_FUND])
        return {"entry_ts": self._bar_ts[int(t[K.T_ENTRY_BAR])],
                "exit_ts": self._bar_ts[int(t[K.T_EXIT_BAR])], "symbol": self.symbol,
                "side": int(t[K.T_SIDE]), "qty": float(t[K.T_QTY]),
                "entry_price": float(t[K.T_EP]), "exit_price": float(t[K.T_XP]),
                "gross_pnl": float(t[K.T_GROSS]), "fees": float(t[K.T_FEES]),
                "funding": float(t[K.T_FUND]), "net_pnl": net,
                "bars_held": int(t[K.T_EXIT_BAR] - t[K.T_ENTRY_BAR]),
                "exit_reason": K.REASONS[int(t[K.T_REASON])]}
