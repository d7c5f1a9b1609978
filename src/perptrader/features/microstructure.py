"""Liquidity and market-microstructure features.

Bar-based estimators (need only OHLCV, so they exist for every symbol and every year):

* ``liquidity``: Amihud illiquidity, Roll's implied spread, return autocorrelation and
  the Corwin-Schultz high-low spread estimator;
* ``kyle``: Kyle's lambda, the price impact of signed (aggressor) volume, which needs
  the bars' ``taker_buy_base`` and is therefore a family of its own (absent for years
  whose klines lack it instead of being zero-filled).

The order-book family ``book`` (top-N L2 snapshots from ``ctx.book``) lives in
``microstructure_book``; ``FAMILIES`` here holds all three.

Why these estimators on hourly bars: they are coarse (Roll and Corwin-Schultz were built
for daily stock bars), but they move with the cost of trading and with regime changes in
liquidity, which is what a model needs; their exact values are not spreads to trade on.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from perptrader.features.arrays import col, div, safe_log, shift
from perptrader.features.base import Family, FeatureContext, FeatureSpec
from perptrader.features.derivatives_common import (
    frame_of,
    rolling_corr,
    rolling_cov_var,
    rolling_mean,
    zscore,
)
from perptrader.features.microstructure_book import BOOK

AMIHUD_WINDOW = 24
AMIHUD_Z = 168
ROLL_WINDOW = 48
CS_WINDOW = 24
KYLE_WINDOWS = (24, 96)
_CS_K = 3.0 - 2.0 * np.sqrt(2.0)


def amihud(close: np.ndarray, volume: np.ndarray) -> np.ndarray:
    """Per-bar Amihud ratio |simple return| / traded notional, in bps per 1M of notional.

    Traded notional is volume * close (quote volume is not stored for every year).
    """
    ret = div(close, shift(close, 1)) - 1.0
    return div(np.abs(ret) * 1e4, volume * close / 1e6)


def roll_spread(close: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Roll (1984) implied spread in bps and the first-order return autocorrelation.

    spread = 2 * sqrt(-cov(r_t, r_(t-1))) on log returns over ``window`` pairs. Roll's
    model only has a solution for a NEGATIVE serial covariance (bid-ask bounce); where
    the window's covariance is >= 0 the spread is NaN (undefined), not 0.
    """
    r = np.diff(safe_log(close), prepend=np.nan)
    cov, _, _ = rolling_cov_var(r, shift(r, 1), window)
    spread = np.where(cov < 0, 2.0 * np.sqrt(np.abs(cov)) * 1e4, np.nan)
    return spread, rolling_corr(r, shift(r, 1), window)


def corwin_schultz(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    """Corwin & Schultz (2012) two-bar high-low spread estimate per bar, as a fraction.

    beta = ln(H_(t-1)/L_(t-1))^2 + ln(H_t/L_t)^2, gamma = ln(max(H_(t-1), H_t) /
    min(L_(t-1), L_t))^2, alpha = (sqrt(2 beta) - sqrt(beta)) / (3 - 2 sqrt 2) -
    sqrt(gamma / (3 - 2 sqrt 2)), S = 2 (e^alpha - 1) / (1 + e^alpha); negative
    estimates are set to 0 as in the paper. Uses bars t-1 and t only (no look-ahead);
    no overnight adjustment, crypto trades around the clock.
    """
    hl = safe_log(div(high, low)) ** 2
    beta = hl + shift(hl, 1)
    hi2 = np.fmax(high, shift(high, 1))
    lo2 = np.fmin(low, shift(low, 1))
    bad = np.isnan(shift(high, 1)) | np.isnan(shift(low, 1))
    gamma = np.where(bad, np.nan, safe_log(div(hi2, lo2)) ** 2)
    alpha = (np.sqrt(2.0 * beta) - np.sqrt(beta)) / _CS_K - np.sqrt(gamma / _CS_K)
    ea = np.exp(alpha)
    s = 2.0 * (ea - 1.0) / (1.0 + ea)
    return np.where(np.isnan(s), np.nan, np.maximum(s, 0.0))


def compute_liquidity(frame: pd.DataFrame, ctx: FeatureContext) -> pd.DataFrame:
    close = col(frame, "close")
    ami = rolling_mean(amihud(close, col(frame, "volume")), AMIHUD_WINDOW)
    ami_log = safe_log(ami)
    spread, autocorr = roll_spread(close, ROLL_WINDOW)
    cs = rolling_mean(corwin_schultz(col(frame, "high"), col(frame, "low")), CS_WINDOW)
    return frame_of(frame, {
        f"liquidity_amihud_{AMIHUD_WINDOW}": ami,
        f"liquidity_amihud_log_{AMIHUD_WINDOW}": ami_log,
        f"liquidity_amihud_z_{AMIHUD_Z}": zscore(ami_log, AMIHUD_Z),
        f"liquidity_roll_bps_{ROLL_WINDOW}": spread,
        f"liquidity_ret_autocorr_{ROLL_WINDOW}": autocorr,
        f"liquidity_cs_bps_{CS_WINDOW}": cs * 1e4,
    })


_LQ = ("close", "volume")
LIQUIDITY = Family(
    name="liquidity",
    description="Bar-based liquidity: Amihud illiquidity, Roll implied spread, return "
                "autocorrelation, Corwin-Schultz high-low spread.",
    requires=("high", "low", "close", "volume"),
    specs=(
        FeatureSpec(f"liquidity_amihud_{AMIHUD_WINDOW}",
                    f"SMA(1e4 * |close/close[t-1] - 1| / (volume * close / 1e6), "
                    f"{AMIHUD_WINDOW}) (bps per 1M notional)", _LQ, AMIHUD_WINDOW),
        FeatureSpec(f"liquidity_amihud_log_{AMIHUD_WINDOW}",
                    f"ln liquidity_amihud_{AMIHUD_WINDOW}", _LQ, AMIHUD_WINDOW),
        FeatureSpec(f"liquidity_amihud_z_{AMIHUD_Z}",
                    f"z-score of liquidity_amihud_log_{AMIHUD_WINDOW} over {AMIHUD_Z} bars", _LQ,
                    AMIHUD_WINDOW + AMIHUD_Z - 1),
        FeatureSpec(f"liquidity_roll_bps_{ROLL_WINDOW}",
                    f"1e4 * 2 * sqrt(-cov(r_t, r_(t-1))) over {ROLL_WINDOW} bars, r = d ln "
                    "close; NaN when the covariance is >= 0 (Roll's model has no solution)",
                    ("close",), ROLL_WINDOW + 1),
        FeatureSpec(f"liquidity_ret_autocorr_{ROLL_WINDOW}",
                    f"corr(r_t, r_(t-1)) over {ROLL_WINDOW} bars, r = d ln close", ("close",),
                    ROLL_WINDOW + 1),
        FeatureSpec(f"liquidity_cs_bps_{CS_WINDOW}",
                    f"1e4 * SMA(max(S, 0), {CS_WINDOW}), S = Corwin-Schultz (2012) two-bar "
                    "estimate 2(e^a - 1)/(1 + e^a)", ("high", "low"), CS_WINDOW),
    ),
    compute=compute_liquidity,
    tags=("microstructure",),
)


def kyle_lambda(close: np.ndarray, volume: np.ndarray, taker_buy: np.ndarray,
                window: int) -> tuple[np.ndarray, np.ndarray]:
    """Rolling OLS slope (and R^2) of the bar's log return (bps) on its signed notional
    (2 * taker_buy_base - volume) * close in millions: bps of price impact per 1M of net
    aggressor buying. Slope = cov(r, s) / var(s); NaN where s is constant."""
    r = np.diff(safe_log(close), prepend=np.nan) * 1e4
    s = (2.0 * taker_buy - volume) * close / 1e6
    cov, vr, vs = rolling_cov_var(r, s, window)
    slope = div(cov, np.where(vs > 0, vs, np.nan))
    r2 = np.clip(div(cov * cov, np.where(vr > 0, vr, np.nan) * np.where(vs > 0, vs, np.nan)),
                 0.0, 1.0)
    return slope, r2


def compute_kyle(frame: pd.DataFrame, ctx: FeatureContext) -> pd.DataFrame:
    close, volume, buy = col(frame, "close"), col(frame, "volume"), col(frame, "taker_buy_base")
    out = {}
    for w in KYLE_WINDOWS:
        slope, r2 = kyle_lambda(close, volume, buy, w)
        out[f"kyle_lambda_{w}"] = slope
        out[f"kyle_r2_{w}"] = r2
    return frame_of(frame, out)


_KY = ("close", "volume", "taker_buy_base")
KYLE = Family(
    name="kyle",
    description="Kyle's lambda: rolling regression of bar returns on signed aggressor "
                "notional (price impact per 1M net buying) and its R^2.",
    requires=_KY,
    specs=tuple(spec for w in KYLE_WINDOWS for spec in (
        FeatureSpec(f"kyle_lambda_{w}",
                    f"cov(r, s) / var(s) over {w} bars; r = 1e4 d ln close, s = (2 * "
                    "taker_buy_base - volume) * close / 1e6", _KY, w),
        FeatureSpec(f"kyle_r2_{w}", f"corr(r, s)^2 over {w} bars", _KY, w),
    )),
    compute=compute_kyle,
    tags=("microstructure", "flow"),
)

FAMILIES: tuple[Family, ...] = (LIQUIDITY, KYLE, BOOK)

__all__ = ["BOOK", "FAMILIES", "KYLE", "LIQUIDITY", "amihud", "corwin_schultz", "kyle_lambda",
           "roll_spread"]
