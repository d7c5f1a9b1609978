"""Turning Python-side settings into the kernel's flat arrays (shared by both paths).

``simulate`` and ``Account`` build their kernel parameters here, so the array path and
the step-by-step path cannot be configured differently by accident.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from perptrader.core.logging import get_logger
from perptrader.sim import kernel as K
from perptrader.sim.config import SimConfig
from perptrader.sim.tiers import MarginTiers, fallback_warning, resolve

_SIZING = {"equity_fraction": K.SIZING_EQUITY, "notional": K.SIZING_NOTIONAL,
           "risk": K.SIZING_RISK}


def run_params(config: SimConfig) -> np.ndarray:
    c = config.costs
    p = np.zeros(K.NP, dtype=np.float64)
    p[K.P_TAKER] = c.taker_fee
    p[K.P_MAKER] = c.maker_fee
    p[K.P_SLIP_BPS] = c.slippage_bps
    p[K.P_BOOK] = 1.0 if c.slippage_model == "book" else 0.0
    p[K.P_LIQ_FEE] = c.liquidation_fee
    p[K.P_CROSS] = 1.0 if config.margin_mode == "cross" else 0.0
    p[K.P_SIZING] = _SIZING[config.sizing]
    p[K.P_NOTIONAL] = config.notional_size
    p[K.P_RISK] = config.risk_fraction
    p[K.P_SL] = config.stop_loss or 0.0
    p[K.P_TP] = config.take_profit or 0.0
    p[K.P_TRAIL] = config.trailing_stop or 0.0
    p[K.P_SIGNAL_MAKER] = 1.0 if c.signal_liquidity == "maker" else 0.0
    return p


def resolve_tiers(config: SimConfig, symbol: str, tiers: MarginTiers | None = None
                  ) -> MarginTiers:
    """Explicit tiers, else the config's, else its brackets file (or the ambient
    ``tiers_scope``), else the published table, else the DEFAULT ladder (``fallback``;
    an error when ``config.strict_tiers`` or the scope is strict)."""
    if tiers is not None:
        return tiers
    if config.tiers is not None:
        return config.tiers
    found = resolve(symbol, table=config.tiers_table, strict=config.strict_tiers or None)
    if found.fallback:  # every path (backtest, Account, the RL batch) leaves a log line
        get_logger(__name__).warning("margin tiers fallback", symbol=found.symbol,
                                     detail=fallback_warning(found))
    return found


def symbol_params(config: SimConfig, tiers: Sequence[MarginTiers]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """SP (S, NSP) and TB (S, K, 4) padded to the longest ladder."""
    kmax = max(len(t.mmr) for t in tiers)
    sp = np.zeros((len(tiers), K.NSP), dtype=np.float64)
    tb = np.zeros((len(tiers), kmax, 4), dtype=np.float64)
    for s, t in enumerate(tiers):
        sp[s, K.SP_LEV] = config.leverage
        sp[s, K.SP_NCAP] = t.max_notional(config.leverage)
        sp[s, K.SP_NB] = len(t.mmr)
        tb[s, : len(t.mmr)] = t.as_array()
    return sp, tb


def initial_state(config: SimConfig, n_symbols: int) -> tuple[np.ndarray, np.ndarray]:
    st = np.zeros((n_symbols, K.NS), dtype=np.float64)
    w = np.zeros(K.NW, dtype=np.float64)
    w[K.W_WALLET] = config.initial_cash
    return st, w


def schedule_orders(targets: np.ndarray, fill_delay: int) -> tuple[np.ndarray, int]:
    """Order target per fill bar: a decision at bar t that differs from the previous
    decision fills at t + fill_delay. Returns (orders, decisions dropped past the end)."""
    t = np.asarray(targets, dtype=np.float64)
    if t.ndim != 1:
        raise ValueError("targets must be a 1-d array, one value per bar")
    if np.isinf(t).any():
        raise ValueError("targets must be finite or NaN (no decision)")
    n = len(t)
    decided = ~np.isnan(t)
    idx = np.where(decided, np.arange(n), -1)
    last = np.maximum.accumulate(idx)  # index of the latest decision at or before t
    prev_idx = np.concatenate([[-1], last[:-1]])
    prev = np.where(prev_idx >= 0, t[np.maximum(prev_idx, 0)], np.nan)
    send = decided & ((prev_idx < 0) | (t != prev))
    orders = np.full(n, np.nan)
    src = np.nonzero(send)[0]
    dst = src + fill_delay
    keep = dst < n
    orders[dst[keep]] = t[src[keep]]
    return orders, int((~keep).sum())
