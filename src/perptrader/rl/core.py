"""Many futures accounts stepped together in numba: the engine under both environments.

Every account advances over the SAME ``sim.kernel.step_bar`` the backtester runs, so an
action sequence gives the same equity path here as its targets give in ``simulate``
(tests/rl/test_equivalence.py). One ``step_batch`` call moves N accounts one bar each,
computes their rewards and writes their observations; Python only handles resets.

Timing (no look-ahead): an environment sitting at bar ``t`` has seen bar ``t``'s close
(its observation row ``t``). The action is the decision at that close; it fills at the
open of ``t + 1``; the step returns the reward earned over bar ``t + 1`` and the
observation of its close.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from perptrader.rl import actions as ACT
from perptrader.rl import reward as R
from perptrader.rl.numba_cache import follow_sources
from perptrader.sim import kernel as K

# This module's cached machine code has the kernel (and the action/reward helpers and
# their constants) compiled into it: its cache must go stale when THEIR source changes,
# not only when this file does (numba alone would only notice the latter).
follow_sources(__file__, [K.__file__, ACT.__file__, R.__file__])

# ---- per-environment state, E[N, NE] ------------------------------------------------------
(E_T, E_END, E_TARGET, E_LAST, E_PEAK, E_PREV_EQ, E_ENTRY_BAR, E_TRADE_EQ, E_DSR_A, E_DSR_B,
 E_NTR, E_STEPS, E_INVALID, E_DD, E_TRADES, E_LIQS, E_FORCED_FLAT) = range(17)
NE = 17
#: E_FORCED_FLAT: the position was closed by the account (liquidation) or never opened
#: (no margin) while the decision still says "in": for ONE bar only hold is valid, so the
#: decision series returns to 0 before the next open. A backtest target series cannot
#: say "send the same target again", so re-opening at once would be a silent no-op there.

#: the account part of the observation (appended after the market state)
ACCOUNT_FEATURES = ("acc_side", "acc_exposure", "acc_leverage_used", "acc_entry_distance",
                    "acc_upnl", "acc_log_equity", "acc_margin_ratio", "acc_time_in_position",
                    "acc_drawdown")
N_ACCOUNT = len(ACCOUNT_FEATURES)
#: bars of "time in position" that read as 1.0 (a week of 1h bars)
TIME_SCALE = 168.0
#: every observation value is clipped to +-OBS_CLIP
OBS_CLIP = 10.0
#: equity at or below this share of the initial cash ends an episode whatever min_equity
WIPED_OUT = 1e-6

# ---- env parameters, EP[NEP] -------------------------------------------------------------
(EP_MAX_EXP, EP_INIT, EP_MIN_EQ, EP_SHARPE_N, EP_DSR_ETA) = range(5)
NEP = 5


@njit(cache=True)
def _account_obs(i, t, xs, TB, SP, ST, E, eq, out, off, init):
    qty = ST[i, 0, K.S_QTY]
    ep = ST[i, 0, K.S_EP]
    mc = xs[t, K.X_MC]
    c = xs[t, K.X_C]
    side = 1.0 if qty > 0.0 else (-1.0 if qty < 0.0 else 0.0)
    safe_eq = eq if eq > 1e-9 else 1e-9
    out[off + 0] = side
    out[off + 1] = abs(qty) * mc / safe_eq
    out[off + 2] = 0.0  # leverage used: set by _observe, which knows the cap
    out[off + 3] = side * (c - ep) / ep if qty != 0.0 and ep > 0.0 else 0.0
    out[off + 4] = qty * (mc - ep) / safe_eq if qty != 0.0 else 0.0
    out[off + 5] = math.log(safe_eq / init)
    if qty != 0.0:
        nb = int(SP[0, K.SP_NB])
        mm = K.maintenance_margin(TB[0], nb, qty * mc)
        balance = ST[i, 0, K.S_MARGIN] + qty * (mc - ep)
        out[off + 6] = mm / balance if balance > 0.0 else OBS_CLIP
    else:
        out[off + 6] = 0.0
    eb = E[i, E_ENTRY_BAR]
    out[off + 7] = min((t - eb) / TIME_SCALE, OBS_CLIP) if eb >= 0.0 and qty != 0.0 else 0.0
    out[off + 8] = 1.0 - eq / E[i, E_PEAK] if E[i, E_PEAK] > 0.0 else 0.0



@njit(cache=True, inline="always")
def _clip(v):
    if v > OBS_CLIP:
        return OBS_CLIP
    if v < -OBS_CLIP:
        return -OBS_CLIP
    return v


@njit(cache=True)
def _observe(i, t, xs, feats, TB, SP, ST, E, EP, eq, obs):
    d = feats.shape[1]
    row = obs[i]
    src = feats[t]
    for j in range(d):
        v = src[j]
        row[j] = 0.0 if np.isnan(v) else _clip(v)
    _account_obs(i, t, xs, TB, SP, ST, E, eq, row, d, EP[EP_INIT])
    row[d + 2] = abs(E[i, E_TARGET]) / EP[EP_MAX_EXP]
    for j in range(d, row.shape[0]):
        row[j] = _clip(row[j])


@njit(cache=True)
def reset_batch(idx, starts, ends, xs, feats, P, SP, TB, ST, W, A, E, EP, r2_mean, obs):
    """Reset environments ``idx`` to flat accounts sitting at bars ``starts`` (their first
    decision is taken at that close), episodes ending at bars ``ends``. The differential
    Sharpe's second moment starts at ``r2_mean[start]``, the mean squared bar return up
    to the start bar (causal)."""
    init = EP[EP_INIT]
    for k in range(idx.shape[0]):
        i = idx[k]
        for f in range(ST.shape[2]):
            ST[i, 0, f] = 0.0
        for f in range(W.shape[1]):
            W[i, f] = 0.0
        W[i, K.W_WALLET] = init
        A[i, K.A_WALLET] = init
        A[i, K.A_EQUITY] = init
        A[i, K.A_UPNL] = 0.0
        E[i, E_T] = starts[k]
        E[i, E_END] = ends[k]
        E[i, E_TARGET] = 0.0
        E[i, E_LAST] = np.nan
        E[i, E_PEAK] = init
        E[i, E_PREV_EQ] = init
        E[i, E_ENTRY_BAR] = -1.0
        E[i, E_TRADE_EQ] = init
        E[i, E_DSR_A] = 0.0
        E[i, E_DSR_B] = r2_mean[int(starts[k])]
        E[i, E_NTR] = 0.0
        E[i, E_STEPS] = 0.0
        E[i, E_INVALID] = 0.0
        E[i, E_DD] = 0.0
        E[i, E_TRADES] = 0.0
        E[i, E_LIQS] = 0.0
        E[i, E_FORCED_FLAT] = 0.0
        _observe(i, int(starts[k]), xs, feats, TB, SP, ST, E, EP, init, obs)


@njit(cache=True)
def _step_one(i, act, xs, feats, vsa_dir, agree, conflict, P, SP, TB, RW, ST, W, X, F, T,
              cnt, B, A, E, EP, TR, book_idx, no_book, obs, rewards, terms, terminated,
              truncated, orders):
    """One environment's step (see ``step_batch``); environments share nothing but the
    read-only market arrays, so they can run on several threads."""
    init = EP[EP_INIT]
    maxexp = EP[EP_MAX_EXP]
    ntr_cap = TR.shape[1]
    sharpe_n = int(EP[EP_SHARPE_N])
    eta = EP[EP_DSR_ETA]
    a = int(act[i])
    tgt = E[i, E_TARGET]
    forced = E[i, E_FORCED_FLAT] > 0.0
    if a < 0 or a >= ACT.N_ACTIONS or not ACT.action_valid(tgt, a, maxexp) or (
            forced and a != ACT.HOLD):
        E[i, E_INVALID] += 1.0
        a = ACT.HOLD
    E[i, E_FORCED_FLAT] = 0.0
    new = ACT.next_target(tgt, a)
    direction = ACT.trade_direction(tgt, a)
    last = E[i, E_LAST]
    order = new if (np.isnan(last) or new != last) else np.nan
    E[i, E_LAST] = new
    orders[i] = new
    t_dec = int(E[i, E_T])
    t = t_dec + 1
    if t_dec >= E[i, E_END] or t >= xs.shape[0]:
        raise IndexError("step past the end of an episode: reset the environment first")
    for c in range(K.NX):
        X[i, 0, c] = xs[t, c]
    X[i, 0, K.X_ORDER] = order
    cnt[i, 0] = 0
    cnt[i, 1] = 0
    prev_qty = ST[i, 0, K.S_QTY]
    prev_eq = E[i, E_PREV_EQ]
    K.step_bar(t, X[i], P, SP, TB, ST[i], W[i], F[i], T[i], cnt[i], B[i], A[i],
               book_idx, no_book, no_book)
    eq = A[i, K.A_EQUITY]
    qty = ST[i, 0, K.S_QTY]
    # a position closed by liquidation (or never opened: no margin) leaves the
    # account flat: the target follows, so masks and observations stay truthful
    if qty == 0.0 and new != 0.0:
        E[i, E_TARGET] = 0.0
        E[i, E_FORCED_FLAT] = 1.0
    else:
        E[i, E_TARGET] = new
    if B[i, 0, K.B_LIQ] > 0.0:
        E[i, E_LIQS] += 1.0
    if prev_qty == 0.0 and qty != 0.0:
        E[i, E_ENTRY_BAR] = t
        E[i, E_TRADE_EQ] = prev_eq
    # ---- reward terms
    for k in range(R.N_TERMS):
        terms[i, k] = 0.0
    r = eq / prev_eq - 1.0 if prev_eq > 0.0 else 0.0
    terms[i, R.R_PNL] = 100.0 * r
    floor = 1e-9 * init
    terms[i, R.R_LOG] = 100.0 * math.log(max(eq, floor) / max(prev_eq, floor))
    a_prev = E[i, E_DSR_A]
    b_prev = E[i, E_DSR_B]
    var = b_prev - a_prev * a_prev
    da = r - a_prev
    db = r * r - b_prev
    if RW[R.R_DSR] != 0.0 and var > 1e-12:
        dsr = (b_prev * da - 0.5 * a_prev * db) / (var * math.sqrt(var))
        terms[i, R.R_DSR] = min(max(dsr, -5.0), 5.0)
    E[i, E_DSR_A] = a_prev + eta * da
    E[i, E_DSR_B] = b_prev + eta * db
    terms[i, R.R_LEV] = -abs(qty) * xs[t, K.X_MC] / eq if eq > 0.0 else 0.0
    if cnt[i, 1] > 0 and qty == 0.0:
        te = E[i, E_TRADE_EQ]
        ret = eq / te - 1.0 if te > 0.0 else 0.0
        n_done = int(E[i, E_NTR])
        TR[i, n_done % ntr_cap] = ret
        n_done += 1
        E[i, E_NTR] = n_done
        E[i, E_TRADES] += 1.0
        E[i, E_ENTRY_BAR] = -1.0
        m = min(n_done, sharpe_n, ntr_cap)
        if m >= 2:
            s1 = 0.0
            s2 = 0.0
            for j in range(m):
                v = TR[i, (n_done - 1 - j) % ntr_cap]
                s1 += v
            s1 /= m
            for j in range(m):
                v = TR[i, (n_done - 1 - j) % ntr_cap] - s1
                s2 += v * v
            sd = math.sqrt(s2 / (m - 1))
            if sd > 1e-12:
                terms[i, R.R_TSHARPE] = min(max(s1 / sd, -3.0), 3.0)
    if eq > E[i, E_PEAK]:
        E[i, E_PEAK] = eq
    dd = 1.0 - eq / E[i, E_PEAK] if E[i, E_PEAK] > 0.0 else 0.0
    if dd > E[i, E_DD]:
        terms[i, R.R_DD] = -100.0 * (dd - E[i, E_DD])
    E[i, E_DD] = dd
    if direction != 0.0:
        if vsa_dir[t_dec] == direction:
            terms[i, R.R_VSA] = 1.0
        if agree[t_dec] == direction:
            terms[i, R.R_EXPERTS] = 1.0
        elif conflict[t_dec] > 0.0:
            terms[i, R.R_EXPERTS] = -1.0
    total = 0.0
    for k in range(R.N_TERMS):
        total += RW[k] * terms[i, k]
    rewards[i] = total
    E[i, E_PREV_EQ] = eq
    E[i, E_T] = t
    E[i, E_STEPS] += 1.0
    # a wiped-out account (a liquidation can leave float dust) ends the episode
    terminated[i] = eq <= max(EP[EP_MIN_EQ], WIPED_OUT) * init
    truncated[i] = (not terminated[i]) and t >= E[i, E_END]
    _observe(i, t, xs, feats, TB, SP, ST, E, EP, eq, obs)


@njit(cache=True)
def step_batch(act, xs, feats, vsa_dir, agree, conflict, P, SP, TB, RW, ST, W, X, F, T, cnt,
               B, A, E, EP, TR, book_idx, no_book, obs, rewards, terms, terminated,
               truncated, orders):
    """Advance every environment one bar with its action ``act[i]`` (see the module
    docstring). Writes ``obs``, ``rewards``, ``terms`` (N, N_TERMS, unweighted),
    ``terminated`` (wiped out, or equity below EP_MIN_EQ * initial), ``truncated``
    (episode end) and ``orders`` (the decision = target after the action, what a backtest
    would be given)."""
    for i in range(act.shape[0]):
        _step_one(i, act, xs, feats, vsa_dir, agree, conflict, P, SP, TB, RW, ST, W, X, F, T,
                  cnt, B, A, E, EP, TR, book_idx, no_book, obs, rewards, terms, terminated,
                  truncated, orders)


@njit(cache=True, parallel=True)
def step_batch_parallel(act, xs, feats, vsa_dir, agree, conflict, P, SP, TB, RW, ST, W, X, F,
                        T, cnt, B, A, E, EP, TR, book_idx, no_book, obs, rewards, terms,
                        terminated, truncated, orders):
    """``step_batch`` with the environments spread over numba's threads."""
    for i in prange(act.shape[0]):
        _step_one(i, act, xs, feats, vsa_dir, agree, conflict, P, SP, TB, RW, ST, W, X, F, T,
                  cnt, B, A, E, EP, TR, book_idx, no_book, obs, rewards, terms, terminated,
                  truncated, orders)


@njit(cache=True)
def masks_batch(E, maxexp, out):
    """Action masks (N, N_ACTIONS) of every environment's current target."""
    for i in range(E.shape[0]):
        ACT.fill_mask(E[i, E_TARGET], maxexp, out[i])
        if E[i, E_FORCED_FLAT] > 0.0:
            for a in range(1, ACT.N_ACTIONS):
                out[i, a] = False
