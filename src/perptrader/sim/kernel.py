"""The accounting kernel: one bar of a USDⓈ-M futures account, in numba.

Everything that moves money is here and only here, so that the backtester (``run_bars``,
the array path) and the RL environment / paper broker (``Account``, one ``step_bar`` call
per bar) cannot disagree. State lives in flat float64 arrays (no Python objects), which is
what lets ``run_bars`` do 1M bars in well under a second.

Order of events inside one bar (all symbols of the account):

1. at the open: positions already held are checked for a gap through their liquidation
   price or a stop (the old position exists before any new order can act);
2. at the open: the order decided ``fill_delay`` bars earlier fills (signal fill);
3. inside the bar: stops / take-profit / trailing stop / liquidation along the
   conservative path open -> adverse extreme -> favourable extreme -> close;
4. at the close: funding of a settlement that fell in this bar, on the position still
   open;
5. at the close: mark-to-market on the mark close.

Layouts (column indices) are module constants so Python callers use names, not numbers.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# ---- per-bar input, X[S, NX] ------------------------------------------------------------
(X_O, X_H, X_L, X_C, X_MO, X_MH, X_ML, X_MC, X_FR, X_SLIP, X_ORDER,
 X_HL_ORDER) = range(12)
NX = 12
#: X_HL_ORDER: +1 the high came before the low (lower-timeframe detail), -1 the low
#: first, 0 unknown (the conservative adverse-first path is used)
# ---- run parameters, P[NP] --------------------------------------------------------------
(P_TAKER, P_MAKER, P_SLIP_BPS, P_BOOK, P_LIQ_FEE, P_CROSS, P_SIZING, P_NOTIONAL, P_RISK,
 P_SL, P_TP, P_TRAIL, P_SIGNAL_MAKER) = range(13)
NP = 13
# ---- per-symbol parameters, SP[S, NSP]; tiers TB[S, K, 4] --------------------------------
SP_LEV, SP_NCAP, SP_NB = range(3)
NSP = 3
TB_FLOOR, TB_CAP, TB_MMR, TB_CUM = range(4)
# ---- per-symbol state, ST[S, NS] ---------------------------------------------------------
(S_QTY, S_EP, S_MARGIN, S_PEAK, S_REAL, S_T_OPEN, S_T_BAR, S_T_SIDE, S_T_MAXQ, S_T_INQ,
 S_T_INN, S_T_OUTQ, S_T_OUTN, S_T_GROSS, S_T_FEES, S_T_FUND, S_T_MARGIN, S_BAR_FEES,
 S_BAR_FUND, S_BAR_LIQ) = range(20)
NS = 20
# ---- account state, W[NW] ----------------------------------------------------------------
(W_WALLET, W_FEES, W_FUND, W_INS, W_LIQS, W_CAPPED, W_BOOK_MISS, W_PARTIAL, W_UNFILLED,
 W_REAL) = range(10)
NW = 10
# ---- fills, F[maxF, NF] ------------------------------------------------------------------
(F_BAR, F_SYM, F_SIDE, F_QTY, F_PRICE, F_FEE, F_MAKER, F_REASON, F_PARTIAL,
 F_REQ) = range(10)
NF = 10
# ---- closed trades, T[maxT, NT] ----------------------------------------------------------
(T_SYM, T_ENTRY_BAR, T_EXIT_BAR, T_SIDE, T_QTY, T_EP, T_XP, T_GROSS, T_FEES, T_FUND,
 T_REASON, T_MARGIN) = range(12)
NT = 12
# ---- per-bar, per-symbol output, B[S, NB] ------------------------------------------------
B_QTY, B_NOTIONAL, B_UPNL, B_MARGIN, B_FEES, B_FUND, B_LIQ, B_REAL, B_EP = range(9)
NB = 9
# ---- per-bar account output, A[NA] -------------------------------------------------------
A_WALLET, A_EQUITY, A_UPNL = range(3)
NA = 3

REASON_SIGNAL, REASON_SL, REASON_TP, REASON_TRAIL, REASON_LIQ = 0, 1, 2, 3, 4
REASONS = ("signal", "stop_loss", "take_profit", "trailing_stop", "liquidation")
SIZING_EQUITY, SIZING_NOTIONAL, SIZING_RISK = 0, 1, 2
#: fills one symbol can produce in one bar: gap exit, signal fill, intrabar exit
FILLS_PER_BAR = 3
_EPS_QTY = 1e-12


@njit(cache=True, inline="always")
def _sign(x: float) -> float:
    return 1.0 if x > 0.0 else (-1.0 if x < 0.0 else 0.0)


@njit(cache=True, inline="always")
def bracket_index(tb: np.ndarray, nb: int, notional: float) -> int:
    """Bracket holding ``notional``: floor inclusive, the last one open-ended."""
    k = 0
    n = abs(notional)
    while k < nb - 1 and n >= tb[k, TB_CAP]:
        k += 1
    return k


@njit(cache=True, inline="always")
def maintenance_margin(tb: np.ndarray, nb: int, notional: float) -> float:
    k = bracket_index(tb, nb, notional)
    return abs(notional) * tb[k, TB_MMR] - tb[k, TB_CUM]


@njit(cache=True, inline="always")
def _liq_price(wb: float, qty: float, ep: float, tb: np.ndarray, nb: int,
               mark: float) -> float:
    """Binance one-way LP with the bracket of the position's notional at ``mark``."""
    k = bracket_index(tb, nb, qty * mark)
    side = _sign(qty)
    q = abs(qty)
    return (wb + tb[k, TB_CUM] - side * q * ep) / (q * tb[k, TB_MMR] - side * q)


@njit(cache=True)
def _emit_fill(F, cnt, bar, s, side, qty, price, fee, maker, reason, partial, req):
    j = cnt[0]
    if j < F.shape[0]:
        F[j, F_BAR] = bar
        F[j, F_SYM] = s
        F[j, F_SIDE] = side
        F[j, F_QTY] = qty
        F[j, F_PRICE] = price
        F[j, F_FEE] = fee
        F[j, F_MAKER] = maker
        F[j, F_REASON] = reason
        F[j, F_PARTIAL] = partial
        F[j, F_REQ] = req
    cnt[0] = j + 1


@njit(cache=True)
def _close_trade(ST, s, T, cnt, bar, reason):
    j = cnt[1]
    if j < T.shape[0]:
        T[j, T_SYM] = s
        T[j, T_ENTRY_BAR] = ST[s, S_T_BAR]
        T[j, T_EXIT_BAR] = bar
        T[j, T_SIDE] = ST[s, S_T_SIDE]
        T[j, T_QTY] = ST[s, S_T_MAXQ]
        T[j, T_EP] = ST[s, S_T_INN] / ST[s, S_T_INQ] if ST[s, S_T_INQ] > 0 else np.nan
        T[j, T_XP] = ST[s, S_T_OUTN] / ST[s, S_T_OUTQ] if ST[s, S_T_OUTQ] > 0 else np.nan
        T[j, T_GROSS] = ST[s, S_T_GROSS]
        T[j, T_FEES] = ST[s, S_T_FEES]
        T[j, T_FUND] = ST[s, S_T_FUND]
        T[j, T_REASON] = reason
        T[j, T_MARGIN] = ST[s, S_T_MARGIN]
    cnt[1] = j + 1
    for f in range(S_T_OPEN, S_T_MARGIN + 1):
        ST[s, f] = 0.0


@njit(cache=True)
def _book(ST, W, s, fee):
    ST[s, S_BAR_FEES] += fee
    ST[s, S_T_FEES] += fee
    W[W_WALLET] -= fee
    W[W_FEES] += fee


@njit(cache=True)
def _reduce(ST, W, s, cq, price, fee, cross, T, cnt, bar, reason):
    """Close ``cq`` (> 0) of the position at ``price``; isolated losses capped at margin."""
    qty = ST[s, S_QTY]
    side = _sign(qty)
    q = abs(qty)
    pnl = side * cq * (price - ST[s, S_EP])
    margin_part = ST[s, S_MARGIN] * cq / q
    if cross < 0.5 and pnl < -margin_part:
        W[W_INS] += -margin_part - pnl  # the insurance fund absorbs the rest
        pnl = -margin_part
    W[W_WALLET] += pnl
    W[W_REAL] += pnl
    ST[s, S_REAL] += pnl
    ST[s, S_T_GROSS] += pnl
    ST[s, S_T_OUTQ] += cq
    ST[s, S_T_OUTN] += cq * price
    ST[s, S_MARGIN] -= margin_part
    if reason == REASON_LIQ:
        # clearance fee: capped at what is left of the margin (isolated) / the wallet (cross)
        left = margin_part + pnl if cross < 0.5 else W[W_WALLET]
        fee = min(fee, max(left, 0.0))
    _book(ST, W, s, fee)
    if cross > 0.5 and W[W_WALLET] < 0.0 and reason == REASON_LIQ:
        W[W_INS] += -W[W_WALLET]
        W[W_REAL] += -W[W_WALLET]
        ST[s, S_REAL] += -W[W_WALLET]
        ST[s, S_T_GROSS] += -W[W_WALLET]
        W[W_WALLET] = 0.0
    rest = q - cq
    if rest <= _EPS_QTY * max(q, 1.0):
        ST[s, S_QTY] = 0.0
        ST[s, S_EP] = 0.0
        ST[s, S_MARGIN] = 0.0
        ST[s, S_PEAK] = 0.0
        _close_trade(ST, s, T, cnt, bar, reason)
    else:
        ST[s, S_QTY] = side * rest
    return fee


@njit(cache=True)
def _increase(ST, W, s, dq, price, fee, lev, bar):
    """Open or add ``dq`` (signed, same side as the position) at ``price``."""
    qty = ST[s, S_QTY]
    q = abs(qty)
    a = abs(dq)
    if ST[s, S_T_OPEN] < 0.5:
        ST[s, S_T_OPEN] = 1.0
        ST[s, S_T_BAR] = bar
        ST[s, S_T_SIDE] = _sign(dq)
        ST[s, S_PEAK] = price
    ST[s, S_EP] = (q * ST[s, S_EP] + a * price) / (q + a)
    ST[s, S_QTY] = qty + dq
    ST[s, S_MARGIN] += a * price / lev
    ST[s, S_T_INQ] += a
    ST[s, S_T_INN] += a * price
    ST[s, S_T_MAXQ] = max(ST[s, S_T_MAXQ], q + a)
    ST[s, S_T_MARGIN] = max(ST[s, S_T_MARGIN], ST[s, S_MARGIN])
    _book(ST, W, s, fee)


@njit(cache=True, inline="always")
def _equity_at(ST, W, X, col):
    eq = W[W_WALLET]
    for j in range(ST.shape[0]):
        if ST[j, S_QTY] != 0.0:
            eq += ST[j, S_QTY] * (X[j, col] - ST[j, S_EP])
    return eq


@njit(cache=True, inline="always")
def _wb(ST, W, X, SP, TB, s, cross):
    """Balance backing symbol ``s``: its margin (isolated) or the wallet less what the
    other positions need (cross: WB - sum(MM_other) + sum(uPnL_other), marks at the open)."""
    if cross < 0.5:
        return ST[s, S_MARGIN]
    wb = W[W_WALLET]
    for j in range(ST.shape[0]):
        if j != s and ST[j, S_QTY] != 0.0:
            nb = int(SP[j, SP_NB])
            wb -= maintenance_margin(TB[j], nb, ST[j, S_QTY] * X[j, X_MO])
            wb += ST[j, S_QTY] * (X[j, X_MO] - ST[j, S_EP])
    return wb


@njit(cache=True, inline="always")
def _free_margin(ST, W, X, SP, cross):
    """Balance available to open more: wallet less margins (isolated) or equity less
    initial margins at the open marks (cross)."""
    free = W[W_WALLET]
    for j in range(ST.shape[0]):
        if ST[j, S_QTY] == 0.0:
            continue
        if cross < 0.5:
            free -= ST[j, S_MARGIN]
        else:
            free += ST[j, S_QTY] * (X[j, X_MO] - ST[j, S_EP])
            free -= abs(ST[j, S_QTY]) * X[j, X_MO] / SP[j, SP_LEV]
    return free


@njit(cache=True, inline="always")
def _hit(start, extreme, level, side):
    """Distance (0..1) along start -> extreme (adverse for ``side``) at which ``level`` is
    touched; 0 when already through at the start; 2 when not touched."""
    if side * (start - level) <= 0.0:
        return 0.0
    if side * (extreme - level) <= 0.0:
        move = start - extreme
        return (start - level) / move if move != 0.0 else 0.0
    return 2.0


@njit(cache=True)
def _exit_at(ST, W, X, P, SP, TB, s, bar, reason, price, F, T, cnt):
    q = abs(ST[s, S_QTY])
    side = _sign(ST[s, S_QTY])
    if reason == REASON_LIQ:
        fee = P[P_LIQ_FEE] * q * price
        W[W_LIQS] += 1.0
        ST[s, S_BAR_LIQ] = 1.0
    else:
        price = price * (1.0 - side * P[P_SLIP_BPS] * X[s, X_SLIP] * 1e-4)
        fee = P[P_TAKER] * q * price
    fee = _reduce(ST, W, s, q, price, fee, P[P_CROSS], T, cnt, bar, reason)
    _emit_fill(F, cnt, bar, s, -side, q, price, fee, 0.0, reason, 0.0, q)


@njit(cache=True, inline="always")
def _adverse_leg(ST, P, s, side, ep, start, extreme, mstart, mextreme, lp):
    """First of liquidation (mark path), stop-loss and trailing stop (trade path) touched
    while the price moves from ``start`` to the adverse ``extreme``: (distance, reason,
    fill price). Distance 0 = already through at the start (fills at the start);
    reason -1 = none. On a tie liquidation comes first."""
    best, reason, price = 2.0, -1, 0.0
    if lp > 0.0:
        d = _hit(mstart, mextreme, lp, side)
        if d <= 1.0:
            best, reason, price = d, REASON_LIQ, (mstart if d == 0.0 else lp)
    if P[P_SL] > 0.0:
        lvl = ep * (1.0 - side * P[P_SL])
        d = _hit(start, extreme, lvl, side)
        if d < best:
            best, reason, price = d, REASON_SL, (start if d == 0.0 else lvl)
    if P[P_TRAIL] > 0.0:
        lvl = ST[s, S_PEAK] * (1.0 - side * P[P_TRAIL])
        d = _hit(start, extreme, lvl, side)
        if d < best:
            best, reason, price = d, REASON_TRAIL, (start if d == 0.0 else lvl)
    return best, reason, price


@njit(cache=True)
def _check_exits(ST, W, X, P, SP, TB, s, bar, F, T, cnt, open_only):
    """Stops, take-profit, trailing stop and liquidation of symbol ``s``.

    Path inside the bar: open -> adverse extreme -> favourable extreme -> close (the
    conservative default), or open -> favourable -> adverse -> close when lower-timeframe
    detail says the favourable extreme came first (``X_HL_ORDER``). Levels already
    crossed at the open fill at the open (gap). With ``open_only`` only such gaps are
    checked (before the signal fill).
    """
    qty = ST[s, S_QTY]
    if qty == 0.0:
        return
    side = _sign(qty)
    ep = ST[s, S_EP]
    o, c = X[s, X_O], X[s, X_C]
    adv = X[s, X_L] if side > 0 else X[s, X_H]
    fav = X[s, X_H] if side > 0 else X[s, X_L]
    mo = X[s, X_MO]
    madv = X[s, X_ML] if side > 0 else X[s, X_MH]
    mfav = X[s, X_MH] if side > 0 else X[s, X_ML]
    nb = int(SP[s, SP_NB])
    lp = _liq_price(_wb(ST, W, X, SP, TB, s, P[P_CROSS]), qty, ep, TB[s], nb, mo)
    tp = ep * (1.0 + side * P[P_TP]) if P[P_TP] > 0.0 else np.nan
    # --- the open: gaps through a level fill at the open
    best, reason, price = _adverse_leg(ST, P, s, side, ep, o, adv, mo, madv, lp)
    if best > 0.0 and P[P_TP] > 0.0 and side * (o - tp) >= 0.0:
        best, reason, price = 0.0, REASON_TP, o
    if best == 0.0:
        _exit_at(ST, W, X, P, SP, TB, s, bar, reason, price, F, T, cnt)
        return
    if open_only:
        return
    if X[s, X_HL_ORDER] * side > 0.0:
        # --- detail says: open -> favourable extreme (take-profit; the peak moves)
        if P[P_TP] > 0.0 and side * (fav - tp) >= 0.0:
            _exit_at(ST, W, X, P, SP, TB, s, bar, REASON_TP, tp, F, T, cnt)
            return
        if side * (fav - ST[s, S_PEAK]) > 0.0:
            ST[s, S_PEAK] = fav
        # --- favourable -> adverse extreme (liquidation, stop-loss, trailing from the
        # new peak); adverse -> close moves favourably and touches nothing new
        best, reason, price = _adverse_leg(ST, P, s, side, ep, fav, adv, mfav, madv, lp)
        if reason >= 0:
            _exit_at(ST, W, X, P, SP, TB, s, bar, reason, price, F, T, cnt)
        return
    # --- open -> adverse extreme (liquidation, stop-loss, trailing)
    if reason >= 0:
        _exit_at(ST, W, X, P, SP, TB, s, bar, reason, price, F, T, cnt)
        return
    # --- adverse -> favourable extreme (take-profit; the peak moves)
    if P[P_TP] > 0.0 and side * (fav - tp) >= 0.0:
        _exit_at(ST, W, X, P, SP, TB, s, bar, REASON_TP, tp, F, T, cnt)
        return
    if side * (fav - ST[s, S_PEAK]) > 0.0:
        ST[s, S_PEAK] = fav
    # --- favourable extreme -> close (trailing stop from the new peak)
    if P[P_TRAIL] > 0.0:
        lvl = ST[s, S_PEAK] * (1.0 - side * P[P_TRAIL])
        if side * (c - lvl) <= 0.0:
            _exit_at(ST, W, X, P, SP, TB, s, bar, REASON_TRAIL, lvl, F, T, cnt)


@njit(cache=True)
def _walk_book(levels_px, levels_qty, want):
    """VWAP of taking ``want`` from the levels (best first); returns (filled, vwap)."""
    filled = 0.0
    cost = 0.0
    for k in range(levels_px.shape[0]):
        px = levels_px[k]
        avail = levels_qty[k]
        if not (avail > 0.0) or not (px > 0.0):
            break
        take = min(avail, want - filled)
        filled += take
        cost += take * px
        if filled >= want:
            break
    if filled <= 0.0:
        return 0.0, np.nan
    return filled, cost / filled


@njit(cache=True)
def _signal_fill(ST, W, X, P, SP, TB, s, bar, F, T, cnt, book_px, book_qty, equity):
    """Fill the order scheduled for this bar's open (target exposure in X[s, X_ORDER]),
    sized on ``equity``: the account equity at the open marks before any of this bar's
    signal fills, so the symbols of a portfolio are sized on the same basis."""
    tgt = X[s, X_ORDER]
    if np.isnan(tgt):
        return
    lev = SP[s, SP_LEV]
    o = X[s, X_O]
    tgt = min(max(tgt, -lev), lev)
    sizing = int(P[P_SIZING])
    if equity <= 0.0:
        want_notional = 0.0
    elif sizing == SIZING_EQUITY:
        want_notional = tgt * equity
    elif sizing == SIZING_NOTIONAL:
        want_notional = tgt * P[P_NOTIONAL]
    else:
        want_notional = _sign(tgt) * abs(tgt) * P[P_RISK] * equity / P[P_SL]
    cap = min(lev * max(equity, 0.0), SP[s, SP_NCAP])
    if abs(want_notional) > cap:
        want_notional = _sign(want_notional) * cap
    qty = ST[s, S_QTY]
    side = _sign(want_notional / o - qty)
    if side == 0.0 or abs(want_notional / o - qty) * o < 1e-9 * max(abs(want_notional), 1.0):
        return
    # the quantity is sized on the expected FILL price, so that |qty| * fill price stays
    # within the cap (slippage included)
    maker = P[P_SIGNAL_MAKER] > 0.5
    partial = 0.0
    use_book = P[P_BOOK] > 0.5 and book_px.shape[0] > 0 and not maker
    side_idx = 0 if side > 0 else 1
    if maker:
        price, fee_rate = o, P[P_MAKER]
    elif use_book:
        fee_rate = P[P_TAKER]
        got, vwap = _walk_book(book_px[side_idx], book_qty[side_idx],
                               abs(want_notional / o - qty))
        price = vwap if got > 0.0 else o
    else:
        if P[P_BOOK] > 0.5:
            W[W_BOOK_MISS] += 1.0
        price = o * (1.0 + side * P[P_SLIP_BPS] * X[s, X_SLIP] * 1e-4)
        fee_rate = P[P_TAKER]
    delta = want_notional / price - qty
    if _sign(delta) != side:
        return
    req = abs(delta)
    total = req
    if use_book:
        total, price = _walk_book(book_px[side_idx], book_qty[side_idx], req)
        if total < req * (1.0 - 1e-12):
            partial = 1.0
            W[W_PARTIAL] += 1.0
            W[W_UNFILLED] += (req - total) * o
        if total <= 0.0:
            return
    filled = 0.0
    fees = 0.0
    # closing part first (releases margin), then the opening part, capped by free margin
    if qty != 0.0 and _sign(qty) != side:
        cq = min(total, abs(qty))
        fees += _reduce(ST, W, s, cq, price, cq * price * fee_rate, P[P_CROSS], T, cnt,
                        bar, REASON_SIGNAL)
        filled += cq
    oq = total - filled
    if oq > 0.0:
        free = _free_margin(ST, W, X, SP, P[P_CROSS])
        afford = max(free, 0.0) / (price * (1.0 / lev + fee_rate))
        if oq > afford:
            if oq - afford > 1e-9 * oq:
                W[W_CAPPED] += 1.0
            oq = afford
        if oq > 0.0:
            fee = oq * price * fee_rate
            _increase(ST, W, s, side * oq, price, fee, lev, bar)
            fees += fee
            filled += oq
    if filled > 0.0:
        _emit_fill(F, cnt, bar, s, side, filled, price, fees, 1.0 if maker else 0.0,
                   REASON_SIGNAL, partial, req)


@njit(cache=True, inline="always")
def step_bar(bar, X, P, SP, TB, ST, W, F, T, cnt, B, A, book_idx, book_px, book_qty):
    """Advance the account over one bar for every symbol (see the module docstring).

    ``X`` (S, NX) holds the bar's prices, funding rate due, slippage scale and the order
    target scheduled for this open (NaN = none). Fills and closed trades are appended to
    ``F`` / ``T`` at ``cnt[0]`` / ``cnt[1]``; ``B`` (S, NB) and ``A`` (NA) receive the bar's
    outputs. ``book_idx[s]`` >= 0 selects L2 levels ``book_px/qty[idx, side, level]``.
    """
    S = X.shape[0]
    for s in range(S):
        ST[s, S_BAR_FEES] = 0.0
        ST[s, S_BAR_FUND] = 0.0
        ST[s, S_BAR_LIQ] = 0.0
    # 1. gaps at the open hit positions held from before
    for s in range(S):
        if ST[s, S_QTY] != 0.0:
            _check_exits(ST, W, X, P, SP, TB, s, bar, F, T, cnt, True)
    # 2. signal fills at the open, all sized on the equity before any of them
    equity_open = _equity_at(ST, W, X, X_MO)
    for s in range(S):
        if np.isnan(X[s, X_ORDER]):
            continue
        k = book_idx[s]
        if k >= 0:
            _signal_fill(ST, W, X, P, SP, TB, s, bar, F, T, cnt, book_px[k], book_qty[k],
                         equity_open)
        else:
            _signal_fill(ST, W, X, P, SP, TB, s, bar, F, T, cnt, book_px[:0, 0],
                         book_qty[:0, 0], equity_open)
    # 3. inside the bar
    for s in range(S):
        if ST[s, S_QTY] != 0.0:
            _check_exits(ST, W, X, P, SP, TB, s, bar, F, T, cnt, False)
    # 4. funding at a settlement inside (open, close], on the position still open
    for s in range(S):
        rate = X[s, X_FR]
        qty = ST[s, S_QTY]
        if qty != 0.0 and rate != 0.0 and not np.isnan(rate):
            pay = qty * X[s, X_MC] * rate  # > 0: paid (a long pays a positive rate)
            W[W_WALLET] -= pay
            W[W_FUND] -= pay
            ST[s, S_BAR_FUND] -= pay
            ST[s, S_T_FUND] -= pay
            if P[P_CROSS] < 0.5:
                ST[s, S_MARGIN] -= pay  # isolated: funding moves the position's margin
    # 5. mark to market at the mark close
    upnl_total = 0.0
    for s in range(S):
        qty = ST[s, S_QTY]
        mc = X[s, X_MC]
        upnl = qty * (mc - ST[s, S_EP]) if qty != 0.0 else 0.0
        upnl_total += upnl
        B[s, B_QTY] = qty
        B[s, B_NOTIONAL] = qty * mc
        B[s, B_UPNL] = upnl
        if P[P_CROSS] < 0.5:
            B[s, B_MARGIN] = ST[s, S_MARGIN]
        else:
            B[s, B_MARGIN] = abs(qty) * mc / SP[s, SP_LEV]
        B[s, B_FEES] = ST[s, S_BAR_FEES]
        B[s, B_FUND] = ST[s, S_BAR_FUND]
        B[s, B_LIQ] = ST[s, S_BAR_LIQ]
        B[s, B_REAL] = ST[s, S_REAL]
        B[s, B_EP] = ST[s, S_EP]
    A[A_WALLET] = W[W_WALLET]
    A[A_UPNL] = upnl_total
    A[A_EQUITY] = W[W_WALLET] + upnl_total


@njit(cache=True)
def run_bars(XS, P, SP, TB, ST, W, F, T, cnt, BS, AS, BOOK_IDX, book_px, book_qty):
    """The array path: ``step_bar`` over every bar of ``XS`` (n, S, NX)."""
    for i in range(XS.shape[0]):
        step_bar(i, XS[i], P, SP, TB, ST, W, F, T, cnt, BS[i], AS[i], BOOK_IDX[i], book_px,
                 book_qty)
