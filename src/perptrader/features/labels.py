"""Training targets. Labels are the ONLY columns allowed to look ahead, and never features.

Every column here starts with ``label_`` or ``fwd_`` so the pipeline can keep them out
of the feature matrix. The decision time is the CLOSE of bar t (the row is known then);
a label describes what happens after it. Rows whose outcome lies beyond the end of the
data get a NaN label ("unknown"), never HOLD: a HOLD there would teach a model that
the most recent market always goes nowhere.

* ``adaptive_labels``: 3-class label from the forward return over a fixed horizon,
  with a threshold that scales with the volatility known at t, so that "a move" means
  the same thing in a quiet and a wild market.
* ``triple_barrier_labels`` (López de Prado, *Advances in Financial Machine Learning*,
  ch. 3): take-profit / stop-loss barriers sized by volatility and a time limit; the
  label is whichever is hit first, checked on bar highs/lows; optionally net of a
  round-trip trading cost (``LabelConfig.cost``), so +1 means profitable after costs.
* ``forward_returns``: log returns over fixed horizons, for regression.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numba import njit

from perptrader.features.arrays import div as safe_div
from perptrader.features.base import Family
from perptrader.features.candles import realised_vol

CLASS_NAMES = {-1: "SELL", 0: "HOLD", 1: "BUY"}
#: barrier codes of ``label_tb_barrier``
BARRIER_CODES = {-1: "sl", 0: "time", 1: "tp"}


@dataclass(frozen=True)
class LabelConfig:
    """Label settings; the defaults were chosen on real BTCUSDT perpetual 1h bars.

    Measured on 2023-01-01..2025-06-30 (21,888 bars of ``load('BTCUSDT', '1h')``; 96
    rows unknown: 72 of σ warm-up, 24 at the end) with ``vol_window = 72`` (three days:
    long enough for a stable σ, short enough to follow volatility regimes; 168 moved
    the shares at k = 0.5 by at most 1.3 points) and ``future_window = max_holding =
    24`` (one day; 12 bars gave shares within 3 points of these at the same k).

    Adaptive label, threshold = k × σ₇₂ × √24, shares SELL / HOLD / BUY:

    =====  =====================
    k      SELL / HOLD / BUY
    =====  =====================
    0.25   33.2% / 28.7% / 38.1%
    0.30   31.1% / 33.2% / 35.7%
    0.35   29.2% / 37.2% / 33.6%
    0.40   27.5% / 40.8% / 31.7%
    0.50   24.0% / 48.2% / 27.8%
    1.00   12.8% / 71.6% / 15.5%
    =====  =====================

    k = 0.4 puts both directional classes inside 25–35% with a margin on each side
    (per year the directional shares range 26.1–32.7%: 2023 26.1 / 30.3, 2024
    28.2 / 32.7, 2025 28.8 / 32.5), so neither a majority class nor a rare
    one dominates training; below 0.3 BUY passes 35% in this bull sample and the
    labels start calling noise a move, above 0.5 SELL falls under 25%.

    Triple barrier, symmetric barriers tp = sl = m (in σ₇₂ × √24 units), 24-bar limit,
    shares SL / time / TP:

    =====  =====================
    m      SL / time / TP
    =====  =====================
    0.75   35.4% / 27.5% / 37.1%
    0.90   30.7% / 37.2% / 32.1%
    1.00   27.6% / 43.5% / 28.9%
    1.10   24.8% / 49.3% / 25.9%
    =====  =====================

    m = 1.0: a one-sigma move over the holding period either way, 27.6% / 28.9% per
    side. Symmetric barriers keep the default target unbiased between long and short;
    an asymmetric pair is a strategy's choice, not the default label's.
    ``tests/features/test_labels.py::test_real_btc_class_balance`` prints the balance
    the defaults give and checks it stays in range.
    """

    #: bars between entry (close of t) and the adaptive label's exit (close of t+h)
    future_window: int = 24
    #: k: a move counts when |forward return| > k × σ × sqrt(future_window)
    threshold_multiplier: float = 0.4
    #: bars of 1-bar log returns in the volatility estimate σ (sample std, known at t)
    vol_window: int = 72
    #: take-profit distance in units of σ × sqrt(max_holding)
    tp_multiplier: float = 1.0
    #: stop-loss distance in units of σ × sqrt(max_holding)
    sl_multiplier: float = 1.0
    #: triple-barrier time limit in bars
    max_holding: int = 24
    #: round-trip trading cost as a fraction of the entry price (e.g. 0.0012 = 2 x (0.04%
    #: taker fee + 0.02% slippage)), charged by the triple-barrier label only: the
    #: take-profit barrier moves out by it and ``label_tb_ret`` is net of it. 0 keeps the
    #: gross label (the measured shares above are at 0).
    cost: float = 0.0

    def __post_init__(self) -> None:
        for name in ("future_window", "max_holding"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, not {getattr(self, name)}")
        if self.vol_window < 2:
            raise ValueError(f"vol_window must be >= 2, not {self.vol_window}")
        for name in ("threshold_multiplier", "tp_multiplier", "sl_multiplier"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, not {getattr(self, name)}")
        if not 0.0 <= self.cost < 1.0:  # also refuses NaN
            raise ValueError(f"cost must be in [0, 1), not {self.cost}")


def _close(frame: pd.DataFrame) -> np.ndarray:
    if "close" not in frame.columns:
        raise ValueError("labels need a 'close' column")
    return frame["close"].to_numpy(dtype="float64", na_value=np.nan)


def _future(x: np.ndarray, h: int) -> np.ndarray:
    """x[t + h] on row t; NaN for the last h rows."""
    out = np.full(x.shape, np.nan)
    if h < len(x):
        out[: len(x) - h] = x[h:]
    return out


def bar_volatility(close: np.ndarray, window: int) -> np.ndarray:
    """σ_t: sample std of the ``window`` 1-bar log returns ending at t (known at t)."""
    return realised_vol(close, window)


def adaptive_labels(frame: pd.DataFrame, cfg: LabelConfig | None = None) -> pd.DataFrame:
    """Volatility-scaled 3-class label on the forward return over ``future_window`` bars.

    Columns: ``label_adaptive`` (-1 SELL, 0 HOLD, +1 BUY; NaN when unknown),
    ``label_adaptive_ret`` (close[t+h]/close[t] - 1, acting at the close of t) and
    ``label_adaptive_threshold`` (k × σ_t × sqrt(h)). BUY when ret > threshold, SELL
    when ret < -threshold, else HOLD. NaN for the last h rows and during σ's warm-up.
    """
    cfg = cfg or LabelConfig()
    close = _close(frame)
    h = cfg.future_window
    ret = safe_div(_future(close, h), close) - 1.0
    thr = cfg.threshold_multiplier * bar_volatility(close, cfg.vol_window) * np.sqrt(h)
    label = np.where(ret > thr, 1.0, np.where(ret < -thr, -1.0, 0.0))
    label[np.isnan(ret) | np.isnan(thr)] = np.nan
    return pd.DataFrame({"label_adaptive": label, "label_adaptive_ret": ret,
                         "label_adaptive_threshold": thr}, index=frame.index)


@njit(cache=True)
def _triple_barrier(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
                    width: np.ndarray, tp: float, sl: float, horizon: int, cost: float
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n = close.shape[0]
    label = np.full(n, np.nan)
    barrier = np.full(n, np.nan)
    bars = np.full(n, np.nan)
    ret = np.full(n, np.nan)
    for t in range(n - horizon):
        c0 = close[t]
        w = width[t]
        if np.isnan(c0) or np.isnan(w) or c0 <= 0.0:
            continue
        # tp * w + 0.0 == tp * w exactly: cost 0 gives the gross barrier bit for bit
        up = c0 * (1.0 + (tp * w + cost))
        down = c0 * (1.0 - sl * w)
        code = 0
        j_end = t + horizon
        exit_px = np.nan
        broken = False
        for j in range(t + 1, t + horizon + 1):
            hi, lo = high[j], low[j]
            if np.isnan(hi) or np.isnan(lo):
                broken = True  # a missing bar: whether a barrier was touched is unknown
                break
            if lo <= down:  # checked first: both inside one bar counts as the stop
                code = -1
                j_end = j
                # a bar opening beyond the stop fills at its open, not at the stop
                exit_px = min(down, open_[j]) if not np.isnan(open_[j]) else down
                break
            if hi >= up:
                code = 1
                j_end = j
                exit_px = up
                break
        if broken:
            continue
        if code == 0:
            exit_px = close[t + horizon]
            if np.isnan(exit_px):
                continue
        label[t] = code
        barrier[t] = code
        bars[t] = j_end - t
        ret[t] = exit_px / c0 - 1.0 - cost
    return label, barrier, bars, ret


def triple_barrier_labels(frame: pd.DataFrame, cfg: LabelConfig | None = None) -> pd.DataFrame:
    """Triple-barrier outcome of a long entered at the close of each bar.

    σ_H = σ_t × sqrt(max_holding) (the volatility over the holding period, known at t);
    upper barrier close_t × (1 + tp × σ_H), lower close_t × (1 − sl × σ_H), time limit
    ``max_holding`` bars. Bars t+1 .. t+max_holding are scanned on their high and low;
    when one bar touches both barriers the order inside it is unknowable from bars, so
    it counts as the STOP (conservative: a label never claims a win the data cannot
    prove). Exit price: the barrier, except a stop gapped through at the bar open,
    which fills at that open; at the time limit, the close of t+max_holding.

    Costs (``cfg.cost`` = c, round trip, as a fraction of the entry price): the labels
    are about the trade, not the price, so

    * take-profit: upper barrier close_t × (1 + c + tp × σ_H): hitting it nets
      exactly +tp × σ_H after costs, so +1 always means "profitable after costs";
    * stop-loss: lower barrier unchanged at close_t × (1 − sl × σ_H): hitting it nets
      −sl × σ_H − c, a loss after costs by at least the stop distance. The stop is
      not moved towards the entry by c: with c ≥ sl × σ_H (a very quiet market) it
      would sit at or above the entry price and "stop out" on noise;
    * time-out: 0, whatever its sign; ``label_tb_ret`` tells its net result;
    * ``label_tb_ret`` = exit / entry − 1 − c (net).

    With c = 0 every output is the gross label, bit for bit.

    Columns: ``label_tb`` (+1 take-profit, -1 stop-loss, 0 time-out), ``label_tb_barrier``
    (categorical 'tp'/'sl'/'time'), ``label_tb_bars`` (bars from entry to exit),
    ``label_tb_ret`` (exit / entry − 1 − cost). All NaN for the last ``max_holding`` rows even
    when a barrier is touched early in them: labelling only those would keep just the
    fast hits at the end of the data, a biased sample. NaN also during σ's warm-up and
    when a bar of the path is missing.
    """
    cfg = cfg or LabelConfig()
    for col in ("open", "high", "low"):
        if col not in frame.columns:
            raise ValueError(f"triple-barrier labels need a {col!r} column")
    close = _close(frame)
    arrays = [frame[c].to_numpy(dtype="float64", na_value=np.nan) for c in ("open", "high",
                                                                           "low")]
    width = bar_volatility(close, cfg.vol_window) * np.sqrt(cfg.max_holding)
    label, code, bars, ret = _triple_barrier(*arrays, close, width, float(cfg.tp_multiplier),
                                             float(cfg.sl_multiplier), int(cfg.max_holding),
                                             float(cfg.cost))
    names = pd.Series(code).map(BARRIER_CODES)
    barrier = pd.Categorical(names, categories=["sl", "time", "tp"])
    return pd.DataFrame({"label_tb": label, "label_tb_barrier": barrier,
                         "label_tb_bars": bars, "label_tb_ret": ret}, index=frame.index)


def forward_returns(frame: pd.DataFrame, horizons: tuple[int, ...] = (1, 4, 24)) -> pd.DataFrame:
    """Regression targets ``fwd_ret_<h>`` = ln(close[t+h] / close[t]); NaN for the last h."""
    close = _close(frame)
    out = {}
    for h in horizons:
        if h < 1:
            raise ValueError(f"forward horizon must be >= 1, not {h}")
        ratio = safe_div(_future(close, h), close)
        value = np.full(ratio.shape, np.nan)
        np.log(ratio, out=value, where=ratio > 0)
        out[f"fwd_ret_{h}"] = value
    return pd.DataFrame(out, index=frame.index)


def class_balance(labels: pd.Series) -> pd.DataFrame:
    """Count and share of SELL / HOLD / BUY; NaN (unknown) rows counted apart.

    Rows ``SELL, HOLD, BUY`` have ``share`` = count / known rows; the last row
    ``unknown`` counts the NaN labels and has a NaN share (they are not a class).
    Raises ValueError on a value outside {-1, 0, 1}.
    """
    values = pd.to_numeric(labels, errors="raise").to_numpy(dtype="float64", na_value=np.nan)
    known = values[~np.isnan(values)]
    bad = np.setdiff1d(np.unique(known), [-1.0, 0.0, 1.0])
    if bad.size:
        raise ValueError(f"labels must be -1, 0 or 1; found {bad[:5].tolist()}")
    counts = [int((known == k).sum()) for k in (-1, 0, 1)]
    total = len(known)
    shares = [c / total if total else np.nan for c in counts]
    table = pd.DataFrame({"count": [*counts, int(np.isnan(values).sum())],
                          "share": [*shares, np.nan]},
                         index=pd.Index([*CLASS_NAMES.values(), "unknown"], name="class"))
    return table


#: labels look ahead by design, so they are never a feature family
FAMILIES: tuple[Family, ...] = ()
