"""The array path: whole target series in, ``SimResult`` out, one njit loop in between."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from perptrader.core.errors import PerptraderError
from perptrader.sim import kernel as K
from perptrader.sim.config import SimConfig
from perptrader.sim.market import MarketData, vol_slippage_scale
from perptrader.sim.result import (
    SimResult,
    account_warnings,
    bars_frame,
    fills_frame,
    symbol_frame,
    trades_frame,
)
from perptrader.sim.setup import (
    initial_state,
    resolve_tiers,
    run_params,
    schedule_orders,
    symbol_params,
)
from perptrader.sim.tiers import MarginTiers, fallback_warning


@dataclass(frozen=True)
class BookLevels:
    """L2 levels for the bars where a signal fill walks the book.

    ``ts``: the fill bars' OPEN times (B,); ``ask_px/ask_qty/bid_px/bid_qty``: (B, L),
    best level first, NaN or 0 quantity ends a side. A buy walks the asks, a sell the bids.
    """

    ts: pd.DatetimeIndex
    ask_px: np.ndarray
    ask_qty: np.ndarray
    bid_px: np.ndarray
    bid_qty: np.ndarray

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        px = np.stack([self.ask_px, self.bid_px], axis=1).astype(np.float64)
        qty = np.stack([self.ask_qty, self.bid_qty], axis=1).astype(np.float64)
        return px, qty


def kernel_inputs(m: MarketData, orders: np.ndarray, config: SimConfig) -> np.ndarray:
    """The kernel's per-bar input rows X (n, NX) of one symbol (shared with the RL core)."""
    x = np.empty((len(m), K.NX), dtype=np.float64)
    x[:, K.X_O], x[:, K.X_H], x[:, K.X_L], x[:, K.X_C] = m.open, m.high, m.low, m.close
    x[:, K.X_MO], x[:, K.X_MH] = m.mark_open, m.mark_high
    x[:, K.X_ML], x[:, K.X_MC] = m.mark_low, m.mark_close
    x[:, K.X_FR] = m.funding_due
    c = config.costs
    if c.slippage_model == "volatility":
        x[:, K.X_SLIP] = c.vol_slippage_mult * vol_slippage_scale(m.open, m.high, m.low,
                                                                  c.vol_window)
    else:
        x[:, K.X_SLIP] = 1.0
    x[:, K.X_ORDER] = orders
    x[:, K.X_HL_ORDER] = m.hl_order
    return x


def _run(markets: list[MarketData], targets: list[np.ndarray], config: SimConfig,
         tiers: list[MarginTiers], books: list[BookLevels | None]) -> SimResult:
    n = len(markets[0])
    S = len(markets)
    xs = np.empty((n, S, K.NX), dtype=np.float64)
    warnings: list[str] = []
    n_orders = 0
    for s, (m, t) in enumerate(zip(markets, targets, strict=True)):
        t = np.asarray(t, dtype=np.float64)
        if len(t) != n:
            raise PerptraderError(f"targets of {m.symbol}: {len(t)} values for {n} bars")
        orders, dropped = schedule_orders(t, config.fill_delay)
        n_orders += int(np.count_nonzero(~np.isnan(orders)))
        if dropped:
            warnings.append(f"{m.symbol}: {dropped} decisions too close to the end to fill")
        xs[:, s] = kernel_inputs(m, orders, config)
        warnings.extend(m.warnings)
    params = run_params(config)
    sp, tb = symbol_params(config, tiers)
    st, w = initial_state(config, S)
    book_idx = np.full((n, S), -1, dtype=np.int64)
    px_parts, qty_parts = [], []
    offset = 0
    for s, book in enumerate(books):
        if book is None:
            continue
        px, qty = book.arrays()
        pos = markets[s].index.get_indexer(pd.DatetimeIndex(book.ts))
        if (pos < 0).any():
            raise PerptraderError(f"{markets[s].symbol}: {int((pos < 0).sum())} book "
                                  f"snapshots are not at a bar open time of the frame")
        book_idx[pos, s] = offset + np.arange(len(pos))
        px_parts.append(px)
        qty_parts.append(qty)
        offset += len(pos)
    if px_parts:
        width = max(p.shape[2] for p in px_parts)
        px_parts = [np.pad(p, ((0, 0), (0, 0), (0, width - p.shape[2])),
                           constant_values=np.nan) for p in px_parts]
        qty_parts = [np.pad(q, ((0, 0), (0, 0), (0, width - q.shape[2])),
                            constant_values=0.0) for q in qty_parts]
        book_px, book_qty = np.concatenate(px_parts), np.concatenate(qty_parts)
    else:
        book_px = np.zeros((0, 2, 1))
        book_qty = np.zeros((0, 2, 1))
    # every exit closes a position some signal fill opened, so fills <= 2 * orders (plus
    # slack); the kernel counts past the end anyway and that is checked below
    max_fills = 2 * n_orders + 8
    F = np.zeros((max_fills, K.NF))
    T = np.zeros((max_fills, K.NT))
    cnt = np.zeros(2, dtype=np.int64)
    B = np.zeros((n, S, K.NB))
    A = np.zeros((n, K.NA))
    K.run_bars(xs, params, sp, tb, st, w, F, T, cnt, B, A, book_idx, book_px, book_qty)
    if cnt[0] > max_fills or cnt[1] > max_fills:
        raise RuntimeError(f"kernel produced {cnt[0]} fills / {cnt[1]} trades for "
                           f"{n_orders} orders (bound {max_fills}): accounting bug")
    symbols = [m.symbol for m in markets]
    index = markets[0].index
    warnings.extend(fallback_warning(t) for t in tiers if t.fallback)
    warnings.extend(account_warnings(w, st, symbols))
    info = {m.symbol: m.info for m in markets} if S > 1 else dict(markets[0].info)
    tiers_info = {t.symbol: t.source for t in tiers}
    info = {**info, "tiers": tiers_info, "orders_capped": int(w[K.W_CAPPED]),
            "book_missing_fills": int(w[K.W_BOOK_MISS]),
            "partial_fills": int(w[K.W_PARTIAL])}
    return SimResult(
        bars=bars_frame(index, B, A),
        fills=fills_frame(index, F[: cnt[0]], symbols),
        trades=trades_frame(index, T[: cnt[1]], symbols),
        liquidations=int(w[K.W_LIQS]),
        fees_paid=float(w[K.W_FEES]),
        funding_paid=float(-w[K.W_FUND]),
        insurance_covered=float(w[K.W_INS]),
        config=config,
        market_info=info,
        warnings=warnings,
        symbol_bars={m.symbol: symbol_frame(index, B, s) for s, m in enumerate(markets)}
        if S > 1 else {},
    )


def simulate(market: MarketData, targets: np.ndarray, config: SimConfig, *,
             book: BookLevels | None = None) -> SimResult:
    """Run ``targets`` (signed exposure decided at each bar CLOSE; NaN = no decision)
    through the futures account described by ``config``."""
    tiers = resolve_tiers(config, market.symbol)
    if book is not None and config.costs.slippage_model != "book":
        raise PerptraderError("book= given but CostModel.slippage_model is not 'book'")
    return _run([market], [np.asarray(targets, dtype=np.float64)], config, [tiers], [book])


def simulate_portfolio(markets: Mapping[str, MarketData], targets: Mapping[str, np.ndarray],
                       config: SimConfig, *,
                       tiers: Mapping[str, MarginTiers] | None = None,
                       books: Mapping[str, BookLevels] | None = None) -> SimResult:
    """Several symbols sharing one wallet (cross: one margin pool; isolated: one wallet,
    a margin per position). All markets must share the same bar index."""
    if not markets:
        raise PerptraderError("simulate_portfolio needs at least one market")
    names = list(markets)
    if set(names) != set(targets):
        raise PerptraderError(f"targets keys {sorted(targets)} != markets keys {sorted(names)}")
    first = markets[names[0]].index
    for name in names[1:]:
        if not markets[name].index.equals(first):
            raise PerptraderError(f"{name}: bar index differs from {names[0]}'s; align the "
                                  f"frames on a common index first")
    tiers = tiers or {}
    books = books or {}
    ms = [markets[k] for k in names]
    tl = [resolve_tiers(config, markets[k].symbol, tiers.get(k)) for k in names]
    return _run(ms, [np.asarray(targets[k], dtype=np.float64) for k in names], config, tl,
                [books.get(k) for k in names])
