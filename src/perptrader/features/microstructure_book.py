"""The ``book`` family: L2 order-book snapshot features aggregated onto bars.

Input: ``ctx.book``, top-N snapshots in the store's long format (``ts, level, bid_price,
bid_qty, ask_price, ask_qty``; level 0 = best). It is pivoted ONCE into
(snapshots x levels) arrays and every per-snapshot measure is a vectorised expression
over that array (no loop over snapshots):

* spread in bps of the mid, micro-price (size-weighted mid) offset from the mid in bps;
* depth within 5/10/20 levels (quote notional, log10) and the bid/ask quantity
  imbalance within 5/10/all stored levels;
* depth slope per side: OLS slope of ln(cumulative quantity) on ln(distance from the mid
  in bps) over the stored levels - an elasticity, so it compares across symbols;
* the largest resting quantity ("wall") per side within the stored levels: its distance
  from the mid (bps) and its share of the side's quantity;
* order-flow imbalance (Cont, Kukanov & Stoikov 2014) at the best level between
  consecutive snapshots.

A snapshot feeds the bar whose [open, close) holds its ts (known at that bar's close).
Per bar: the last value and the mean of each measure; OFI is summed over the bar and
divided by the bar's mean best-level depth (CKS's normalisation). Bars without a
snapshot stay NaN: absent, not zero-filled. A snapshot whose best bid >= best ask
(crossed or locked: a broken capture) gives NaN for all its measures; a depth or
imbalance over k levels is NaN when a side has fewer than k stored levels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from perptrader.features.arrays import div
from perptrader.features.base import Family, FeatureContext, FeatureSpec
from perptrader.features.derivatives_common import bar_closes, frame_of, index_us, times_us

#: levels used (deeper stored levels are ignored so that "total" means the same always)
MAX_LEVELS = 20
DEPTH_LEVELS = (5, 10, 20)
IMB_LEVELS = (5, 10)
#: OFI between two snapshots further apart than this is NaN (a capture gap, not flow)
OFI_MAX_GAP_US = 60_000_000
BOOK_COLUMNS = ("ts", "level", "bid_price", "bid_qty", "ask_price", "ask_qty")


@dataclass(frozen=True)
class BookArrays:
    """Snapshots pivoted to (S, L) arrays; a missing level is NaN."""

    ts_us: np.ndarray
    bid_px: np.ndarray
    bid_qty: np.ndarray
    ask_px: np.ndarray
    ask_qty: np.ndarray


def pivot_book(book: pd.DataFrame, max_levels: int = MAX_LEVELS) -> BookArrays:
    """Long snapshot rows -> (snapshots x levels) arrays, in time order."""
    missing = [c for c in BOOK_COLUMNS if c not in book.columns]
    if missing:
        raise ValueError(f"book snapshots lack columns {missing}")
    level = book["level"].to_numpy(dtype="int64", na_value=-1)
    keep = (level >= 0) & (level < max_levels)
    ts = times_us(book["ts"])[keep]
    level = level[keep]
    uniq, row = np.unique(ts, return_inverse=True)
    n_lev = int(level.max()) + 1 if len(level) else 0
    shape = (len(uniq), n_lev)
    arrays = []
    for name in ("bid_price", "bid_qty", "ask_price", "ask_qty"):
        a = np.full(shape, np.nan, order="F")  # column-major: level-wise ops are contiguous
        a[row, level] = book[name].to_numpy(dtype="float64", na_value=np.nan)[keep]
        arrays.append(a)
    return BookArrays(uniq, *arrays)


def _ols_slope(x: np.ndarray, y: np.ndarray, min_points: int = 3) -> np.ndarray:
    """Row-wise OLS slope of y on x over the finite pairs of each row (NaN marks a gap).

    Uses the sum form (n Sxy - Sx Sy) / (n Sxx - Sx^2): x and y are logs of O(1..1e3)
    numbers here, so the cancellation is harmless and it needs few temporaries.
    """
    m = np.isfinite(x) & np.isfinite(y)
    x0, y0 = np.where(m, x, 0.0), np.where(m, y, 0.0)
    n = m.sum(axis=1).astype("float64")
    sx, sy = x0.sum(axis=1), y0.sum(axis=1)
    sxy, sxx = np.einsum("ij,ij->i", x0, y0), np.einsum("ij,ij->i", x0, x0)
    slope = div(n * sxy - sx * sy, n * sxx - sx * sx)
    return np.where(n >= min_points, slope, np.nan)


def snapshot_features(b: BookArrays) -> dict[str, np.ndarray]:
    """Per-snapshot measures (each a length-S array); see the module docstring."""
    bp, bq, ap, aq = b.bid_px, b.bid_qty, b.ask_px, b.ask_qty
    s, n_lev = bp.shape
    if n_lev == 0:
        nan = np.full(s, np.nan)
        return {name: nan.copy() for name in _SNAPSHOT_NAMES} | {"ofi": nan.copy(),
                                                                 "best_depth": nan.copy()}
    b_ok = np.isfinite(bp) & (bq > 0)
    a_ok = np.isfinite(ap) & (aq > 0)
    b0, a0 = bp[:, 0], ap[:, 0]
    q_b0, q_a0 = bq[:, 0], aq[:, 0]
    sane = b_ok[:, 0] & a_ok[:, 0] & (a0 > b0)
    mid = np.where(sane, (a0 + b0) / 2.0, np.nan)
    out: dict[str, np.ndarray] = {"spread_bps": div(a0 - b0, mid) * 1e4}
    micro = div(a0 * q_b0 + b0 * q_a0, q_b0 + q_a0)
    out["micro_bps"] = div(micro - mid, mid) * 1e4

    bq0 = np.where(b_ok, bq, 0.0)
    aq0 = np.where(a_ok, aq, 0.0)
    b_cnt = np.cumsum(b_ok, axis=1)
    a_cnt = np.cumsum(a_ok, axis=1)
    b_not = np.cumsum(np.where(b_ok, bp * bq, 0.0), axis=1)
    a_not = np.cumsum(np.where(a_ok, ap * aq, 0.0), axis=1)
    b_cq = np.cumsum(bq0, axis=1)
    a_cq = np.cumsum(aq0, axis=1)

    def within(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        j = min(k, n_lev) - 1
        full = sane & (b_cnt[:, j] >= k) & (a_cnt[:, j] >= k)
        return full, b_not[:, j], a_not[:, j], b_cq[:, j], a_cq[:, j]

    for k in DEPTH_LEVELS:
        full, bn, an, _, _ = within(k)
        depth = np.where(full, bn + an, np.nan)
        out[f"depth{k}_log10"] = np.log10(np.where(depth > 0, depth, np.nan))
    for k in IMB_LEVELS:
        full, _, _, bqk, aqk = within(k)
        out[f"imb{k}"] = np.where(full, div(bqk - aqk, bqk + aqk), np.nan)
    tb, ta = b_cq[:, -1], a_cq[:, -1]
    out["imb_total"] = np.where(sane, div(tb - ta, tb + ta), np.nan)

    dist_b = div(mid[:, None] - bp, mid[:, None]) * 1e4
    dist_a = div(ap - mid[:, None], mid[:, None]) * 1e4
    ln_db = np.log(np.where(b_ok & (dist_b > 0), dist_b, np.nan))
    ln_da = np.log(np.where(a_ok & (dist_a > 0), dist_a, np.nan))
    out["slope_bid"] = _ols_slope(ln_db, np.log(np.where(b_ok, b_cq, np.nan)))
    out["slope_ask"] = _ols_slope(ln_da, np.log(np.where(a_ok, a_cq, np.nan)))

    rows = np.arange(s)
    for side, q, dist, tot in (("bid", bq0, dist_b, tb), ("ask", aq0, dist_a, ta)):
        j = np.argmax(q, axis=1)
        qmax = q[rows, j]
        has = sane & (qmax > 0)
        out[f"{side}_wall_bps"] = np.where(has, dist[rows, j], np.nan)
        out[f"{side}_wall_share"] = np.where(has, div(qmax, tot), np.nan)

    out["ofi"] = order_flow_imbalance(b.ts_us, b0, q_b0, a0, q_a0, sane)
    out["best_depth"] = np.where(sane, (q_b0 + q_a0) / 2.0, np.nan)
    return out


def order_flow_imbalance(ts_us: np.ndarray, pb: np.ndarray, qb: np.ndarray, pa: np.ndarray,
                         qa: np.ndarray, sane: np.ndarray) -> np.ndarray:
    """Cont-Kukanov-Stoikov OFI of snapshot n against n-1 at the best level:

    e_n = 1[Pb_n >= Pb_(n-1)] qb_n - 1[Pb_n <= Pb_(n-1)] qb_(n-1)
          - 1[Pa_n <= Pa_(n-1)] qa_n + 1[Pa_n >= Pa_(n-1)] qa_(n-1)

    (positive = buying pressure). NaN for the first snapshot, after a broken one, and
    across gaps longer than ``OFI_MAX_GAP_US``.
    """
    e = np.full(len(pb), np.nan)
    if len(pb) < 2:
        return e
    p_b, p_a, q_b, q_a = pb[:-1], pa[:-1], qb[:-1], qa[:-1]
    c_b, c_a, n_b, n_a = pb[1:], pa[1:], qb[1:], qa[1:]
    val = ((c_b >= p_b) * n_b - (c_b <= p_b) * q_b
           - (c_a <= p_a) * n_a + (c_a >= p_a) * q_a)
    ok = sane[1:] & sane[:-1] & (np.diff(ts_us) <= OFI_MAX_GAP_US)
    e[1:] = np.where(ok, val, np.nan)
    return e


_SNAPSHOT_NAMES = ("spread_bps", "micro_bps", *(f"depth{k}_log10" for k in DEPTH_LEVELS),
                   *(f"imb{k}" for k in IMB_LEVELS), "imb_total", "slope_bid", "slope_ask",
                   "bid_wall_bps", "ask_wall_bps", "bid_wall_share", "ask_wall_share")
_FORMULAS = {
    "spread_bps": "1e4 * (ask0 - bid0) / mid, mid = (ask0 + bid0) / 2",
    "micro_bps": "1e4 * (micro - mid) / mid, micro = (ask0 * bidq0 + bid0 * askq0) / "
                 "(bidq0 + askq0)",
    **{f"depth{k}_log10": f"log10 sum over levels < {k} of (bid * bidq + ask * askq)"
       for k in DEPTH_LEVELS},
    **{f"imb{k}": f"(sum bidq - sum askq) / (sum bidq + sum askq) over levels < {k}"
       for k in IMB_LEVELS},
    "imb_total": f"(sum bidq - sum askq) / (sum bidq + sum askq) over stored levels "
                 f"(<= {MAX_LEVELS})",
    "slope_bid": "OLS slope of ln(cumulative bid qty) on ln(bps distance of level from mid)",
    "slope_ask": "OLS slope of ln(cumulative ask qty) on ln(bps distance of level from mid)",
    "bid_wall_bps": "bps from mid of the bid level with the largest qty",
    "ask_wall_bps": "bps from mid of the ask level with the largest qty",
    "bid_wall_share": "largest bid level qty / total stored bid qty",
    "ask_wall_share": "largest ask level qty / total stored ask qty",
}


def _bar_of(ts_us: np.ndarray, opens: np.ndarray, closes: np.ndarray) -> np.ndarray:
    """Bar position holding each snapshot ([open, close)), -1 when none does."""
    i = np.searchsorted(opens, ts_us, side="right") - 1
    inside = (i >= 0) & (ts_us < closes[np.clip(i, 0, len(closes) - 1)])
    return np.where(inside, i, -1)


def _last_and_mean(values: np.ndarray, bar: np.ndarray, n: int) -> tuple[np.ndarray,
                                                                         np.ndarray]:
    """Per bar: the last finite value and the mean of the finite values (NaN if none).

    Snapshots are in time order, so the last one per bar is where the bar number changes.
    """
    m = np.isfinite(values) & (bar >= 0)
    b, v = bar[m], values[m]
    cnt = np.bincount(b, minlength=n)
    mean = div(np.bincount(b, weights=v, minlength=n), cnt)
    last = np.full(n, np.nan)
    if len(b):
        end = np.r_[b[1:] != b[:-1], True]
        last[b[end]] = v[end]
    return last, mean


def compute_book(frame: pd.DataFrame, ctx: FeatureContext) -> pd.DataFrame:
    if ctx.book is None:
        raise ValueError("the book family needs ctx.book (L2 snapshots)")
    n = len(frame)
    opens = index_us(frame.index)
    closes = bar_closes(frame, ctx)
    arrays = pivot_book(ctx.book)
    feats = snapshot_features(arrays)
    bar = _bar_of(arrays.ts_us, opens, closes)
    out: dict[str, np.ndarray] = {}
    for name in _SNAPSHOT_NAMES:
        last, mean = _last_and_mean(feats[name], bar, n)
        out[f"book_{name}_last"] = last
        out[f"book_{name}_mean"] = mean
    m = np.isfinite(feats["ofi"]) & (bar >= 0)
    ofi_cnt = np.bincount(bar[m], minlength=n)
    ofi_sum = np.where(ofi_cnt > 0, np.bincount(bar[m], weights=feats["ofi"][m], minlength=n),
                       np.nan)
    _, depth_mean = _last_and_mean(feats["best_depth"], bar, n)
    out["book_ofi_norm"] = div(ofi_sum, depth_mean)
    return frame_of(frame, out)


def book_available(frame: pd.DataFrame, ctx: FeatureContext) -> bool:
    """Available when ctx.book holds snapshots inside the frame's bars."""
    book = ctx.book
    if book is None or len(book) == 0 or len(frame) == 0:
        return False
    if any(c not in book.columns for c in BOOK_COLUMNS):
        return False
    ts = np.unique(times_us(book["ts"]))
    return bool((_bar_of(ts, index_us(frame.index), bar_closes(frame, ctx)) >= 0).any())


def _specs() -> tuple[FeatureSpec, ...]:
    inp = BOOK_COLUMNS[1:]
    specs = []
    for name in _SNAPSHOT_NAMES:
        specs.append(FeatureSpec(f"book_{name}_last",
                                 f"last snapshot in [open, close) of: {_FORMULAS[name]}", inp, 0))
        specs.append(FeatureSpec(f"book_{name}_mean",
                                 f"mean over snapshots in [open, close) of: {_FORMULAS[name]}",
                                 inp, 0))
    specs.append(FeatureSpec(
        "book_ofi_norm", "sum of CKS best-level OFI e_n over snapshots in [open, close) / mean "
        "((bidq0 + askq0) / 2) over them", inp, 0))
    return tuple(specs)


BOOK = Family(
    name="book",
    description="L2 order-book snapshots per bar: spread, micro-price, depth, imbalance, "
                "depth slope, largest walls, order-flow imbalance (needs ctx.book).",
    requires=(),
    specs=_specs(),
    compute=compute_book,
    available=book_available,
    tags=("microstructure", "orderbook"),
)
