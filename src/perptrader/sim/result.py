"""What a simulation returns: pandas frames built once from the kernel's arrays."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from perptrader.sim import kernel as K
from perptrader.sim.config import SimConfig


@dataclass
class SimResult:
    """Outputs of one run.

    * ``bars``: per bar (index = the frame's bar OPEN times; values as of the bar CLOSE):
      equity, wallet_balance, unrealized_pnl, realized_pnl (cumulative), position_qty,
      position_notional (signed, at the mark close), exposure (notional / equity),
      margin_used, fees (this bar), funding (this bar, + = received), liquidated.
    * ``fills``: ts, bar, side (+1 buy / -1 sell), qty, price, notional, fee, liquidity,
      reason, partial, requested_qty (and symbol).
    * ``trades``: closed round trips (flat -> flat or a flip). ``return_pct`` is net PnL
      over the entry notional (qty * entry_price); ``return_on_margin`` is net PnL over
      the largest margin the trade used (entry notional / leverage, isolated).
    * ``funding_paid``: net funding PAID (+ = paid, - = received); ``fees_paid`` includes
      liquidation clearance fees; ``insurance_covered``: losses beyond the margin
      (isolated) or wallet (cross) that the exchange's insurance fund would absorb.
    """

    bars: pd.DataFrame
    fills: pd.DataFrame
    trades: pd.DataFrame
    liquidations: int
    fees_paid: float
    funding_paid: float
    insurance_covered: float
    config: SimConfig
    market_info: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    symbol_bars: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def final_equity(self) -> float:
        return float(self.bars["equity"].iloc[-1])


def bars_frame(index: pd.DatetimeIndex, B: np.ndarray, A: np.ndarray) -> pd.DataFrame:
    """Account-level bar frame from B (n, S, NB) and A (n, NA)."""
    equity = A[:, K.A_EQUITY]
    notional = B[:, :, K.B_NOTIONAL].sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        exposure = np.where(equity > 0, notional / equity, np.nan)
    data = {
        "equity": equity,
        "wallet_balance": A[:, K.A_WALLET],
        "unrealized_pnl": A[:, K.A_UPNL],
        "realized_pnl": B[:, :, K.B_REAL].sum(axis=1),
        "position_notional": notional,
        "exposure": exposure,
        "margin_used": B[:, :, K.B_MARGIN].sum(axis=1),
        "fees": B[:, :, K.B_FEES].sum(axis=1),
        "funding": B[:, :, K.B_FUND].sum(axis=1),
        "liquidated": B[:, :, K.B_LIQ].max(axis=1) > 0,
    }
    if B.shape[1] == 1:
        data = {**data, "position_qty": B[:, 0, K.B_QTY], "entry_price": B[:, 0, K.B_EP]}
        order = ["equity", "wallet_balance", "unrealized_pnl", "realized_pnl",
                 "position_qty", "position_notional", "exposure", "margin_used", "fees",
                 "funding", "liquidated", "entry_price"]
        data = {k: data[k] for k in order}
    return pd.DataFrame(data, index=index)


def symbol_frame(index: pd.DatetimeIndex, B: np.ndarray, s: int) -> pd.DataFrame:
    b = B[:, s]
    return pd.DataFrame({
        "position_qty": b[:, K.B_QTY], "position_notional": b[:, K.B_NOTIONAL],
        "unrealized_pnl": b[:, K.B_UPNL], "realized_pnl": b[:, K.B_REAL],
        "margin_used": b[:, K.B_MARGIN], "fees": b[:, K.B_FEES], "funding": b[:, K.B_FUND],
        "liquidated": b[:, K.B_LIQ] > 0, "entry_price": b[:, K.B_EP]}, index=index)


def fills_frame(index: pd.DatetimeIndex, F: np.ndarray, symbols: list[str]) -> pd.DataFrame:
    bar = F[:, K.F_BAR].astype(np.int64)
    qty = F[:, K.F_QTY]
    price = F[:, K.F_PRICE]
    return pd.DataFrame({
        "ts": index[bar] if len(bar) else pd.DatetimeIndex([], tz="UTC"),
        "bar": bar,
        "symbol": [symbols[int(s)] for s in F[:, K.F_SYM]],
        "side": F[:, K.F_SIDE].astype(np.int64),
        "qty": qty,
        "price": price,
        "notional": qty * price,
        "fee": F[:, K.F_FEE],
        "liquidity": np.where(F[:, K.F_MAKER] > 0, "maker", "taker"),
        "reason": [K.REASONS[int(r)] for r in F[:, K.F_REASON]],
        "partial": F[:, K.F_PARTIAL] > 0,
        "requested_qty": F[:, K.F_REQ],
    })


def trades_frame(index: pd.DatetimeIndex, T: np.ndarray, symbols: list[str]
                 ) -> pd.DataFrame:
    entry = T[:, K.T_ENTRY_BAR].astype(np.int64)
    exit_ = T[:, K.T_EXIT_BAR].astype(np.int64)
    net = T[:, K.T_GROSS] - T[:, K.T_FEES] + T[:, K.T_FUND]
    entry_notional = T[:, K.T_QTY] * T[:, K.T_EP]
    with np.errstate(divide="ignore", invalid="ignore"):
        ret = np.where(entry_notional > 0, net / entry_notional, np.nan)
        rom = np.where(T[:, K.T_MARGIN] > 0, net / T[:, K.T_MARGIN], np.nan)
    empty = pd.DatetimeIndex([], tz="UTC")
    return pd.DataFrame({
        "entry_ts": index[entry] if len(entry) else empty,
        "exit_ts": index[exit_] if len(exit_) else empty,
        "symbol": [symbols[int(s)] for s in T[:, K.T_SYM]],
        "side": T[:, K.T_SIDE].astype(np.int64),
        "qty": T[:, K.T_QTY],
        "entry_price": T[:, K.T_EP],
        "exit_price": T[:, K.T_XP],
        "gross_pnl": T[:, K.T_GROSS],
        "fees": T[:, K.T_FEES],
        "funding": T[:, K.T_FUND],
        "net_pnl": net,
        "return_pct": ret,
        "return_on_margin": rom,
        "bars_held": exit_ - entry,
        "exit_reason": [K.REASONS[int(r)] for r in T[:, K.T_REASON]],
    })


def account_warnings(W: np.ndarray, ST: np.ndarray, symbols: list[str]) -> list[str]:
    """What the kernel counted that a reader must know about."""
    out = []
    if W[K.W_CAPPED]:
        out.append(f"{int(W[K.W_CAPPED])} orders reduced to fit the available margin")
    if W[K.W_BOOK_MISS]:
        out.append(f"{int(W[K.W_BOOK_MISS])} signal fills had no L2 levels for their bar "
                   f"and used fixed-bps slippage instead")
    if W[K.W_PARTIAL]:
        out.append(f"{int(W[K.W_PARTIAL])} signal fills were partial (book too thin); "
                   f"unfilled notional {W[K.W_UNFILLED]:.2f} cancelled")
    if W[K.W_INS]:
        out.append(f"insurance fund covered {W[K.W_INS]:.2f} of losses beyond margin")
    for s, name in enumerate(symbols):
        if ST[s, K.S_QTY] != 0.0:
            out.append(f"{name}: position of {ST[s, K.S_QTY]:g} still open at the end "
                       f"(marked to market in equity, not in trades)")
    return out
