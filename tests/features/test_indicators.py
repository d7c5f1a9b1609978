"""Indicator families (perptrader.features.indicators*): contract, hand-checked values,
NaN handling and the real BTC 1h frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib

from feature_checks import (
    assert_contract,
    assert_frames_close,
    assert_no_lookahead,
    assert_start_invariant,
)
from feature_frames import synthetic_frame
from perptrader.features.arrays import div
from perptrader.features.base import Family, FeatureContext
from perptrader.features.indicators import FAMILIES
from perptrader.features.indicators_common import window_level_zscore
from perptrader.features.indicators_pattern import FUNCTIONS

CTX = FeatureContext()
BY_NAME = {f.name: f for f in FAMILIES}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthetic_frame(3000)


def run(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    return BY_NAME[name].run(frame, CTX)


def hlcv(frame: pd.DataFrame) -> tuple[np.ndarray, ...]:
    return tuple(frame[k].to_numpy(float) for k in ("open", "high", "low", "close", "volume"))


def wilder_atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, p: int) -> np.ndarray:
    """ATR as Wilder defines it, seeded with the mean of the first p true ranges."""
    prev = np.concatenate(([np.nan], close[:-1]))
    tr = np.fmax(high - low, np.fmax(np.abs(high - prev), np.abs(low - prev)))
    atr = np.full(len(close), np.nan)
    atr[p] = tr[1:p + 1].mean()
    for i in range(p + 1, len(close)):
        atr[i] = (atr[i - 1] * (p - 1) + tr[i]) / p
    return atr


# --- contract -------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_contract(family: Family, frame: pd.DataFrame) -> None:
    out = assert_contract(family, frame)
    assert (out.dtypes == "float64").all()
    assert all(c.startswith(f"{family.name}_") for c in out.columns)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_no_lookahead(family: Family, frame: pd.DataFrame) -> None:
    assert_no_lookahead(family, frame)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_start_invariant(family: Family, frame: pd.DataFrame) -> None:
    assert_start_invariant(family, frame)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_declared_warmup_is_exact(family: Family, frame: pd.DataFrame) -> None:
    """Each column is NaN for exactly its declared warm-up, then defined (the frame starts
    at 00:00 UTC, so the day VWAP's partial-day rule does not add rows)."""
    out = family.run(frame, CTX)
    for spec in family.specs:
        values = out[spec.name].to_numpy()
        assert np.isnan(values[: spec.warmup]).all(), spec.name
        assert not np.isnan(values[spec.warmup]), spec.name
        assert spec.history >= spec.warmup and spec.formula and spec.inputs


def test_family_set_and_names() -> None:
    assert [f.name for f in FAMILIES] == ["trend", "momentum", "volatility", "volume", "pattern"]
    names = [n for f in FAMILIES for n in f.names]
    assert len(names) == len(set(names))
    assert len(FUNCTIONS) == 61 and len(BY_NAME["pattern"].specs) == 61
    assert {"pattern_doji", "pattern_engulfing", "pattern_3blackcrows"} <= set(names)


# --- hand-checked values --------------------------------------------------------------


def test_supertrend_matches_the_textbook_recursion() -> None:
    f = synthetic_frame(400, seed=3)
    _, h, lo, c, _ = hlcv(f)
    atr10, atr14 = wilder_atr(h, lo, c, 10), wilder_atr(h, lo, c, 14)
    hl2 = (h + lo) / 2
    up_basic, lo_basic = hl2 + 3 * atr10, hl2 - 3 * atr10
    up, dn, direction = up_basic.copy(), lo_basic.copy(), np.full(len(c), np.nan)
    line = np.full(len(c), np.nan)
    direction[10], line[10] = 1.0, dn[10]
    for i in range(11, len(c)):
        up[i] = up_basic[i] if up_basic[i] < up[i - 1] or c[i - 1] > up[i - 1] else up[i - 1]
        dn[i] = lo_basic[i] if lo_basic[i] > dn[i - 1] or c[i - 1] < dn[i - 1] else dn[i - 1]
        if direction[i - 1] > 0:
            direction[i] = -1.0 if c[i] < dn[i] else 1.0
        else:
            direction[i] = 1.0 if c[i] > up[i] else -1.0
        line[i] = dn[i] if direction[i] > 0 else up[i]
    out = run("trend", f)
    assert set(np.unique(direction[10:])) == {-1.0, 1.0}
    np.testing.assert_array_equal(out["trend_supertrend_dir"].to_numpy()[10:], direction[10:])
    np.testing.assert_allclose(out["trend_supertrend_dist_atr"].to_numpy()[14:],
                               ((c - line) / atr14)[14:], rtol=1e-9)


def test_ichimoku_uses_spans_computed_26_bars_earlier() -> None:
    f = synthetic_frame(300, seed=5)
    _, h, lo, c, _ = hlcv(f)
    hs, ls = pd.Series(h), pd.Series(lo)

    def mid(n: int) -> pd.Series:
        return (hs.rolling(n).max() + ls.rolling(n).min()) / 2

    tenkan, kijun = mid(9), mid(26)
    span_a = ((tenkan + kijun) / 2).shift(26).to_numpy()
    span_b = mid(52).shift(26).to_numpy()
    atr = wilder_atr(h, lo, c, 14)
    top, bottom = np.maximum(span_a, span_b), np.minimum(span_a, span_b)
    pos = np.where(c > top, c - top, np.where(c < bottom, c - bottom, 0.0)) / atr
    out = run("trend", f)
    t = np.arange(77, 300)
    np.testing.assert_allclose(out["trend_ichi_cloud_thickness_atr"].to_numpy()[t],
                               ((span_a - span_b) / atr)[t], rtol=1e-9)
    np.testing.assert_allclose(out["trend_ichi_cloud_pos_atr"].to_numpy()[t], pos[t], rtol=1e-9,
                               atol=1e-12)
    np.testing.assert_allclose(out["trend_ichi_tenkan_kijun_atr"].to_numpy()[t],
                               ((tenkan - kijun).to_numpy() / atr)[t], rtol=1e-9)
    assert (pos[t] == 0).any() and (pos[t] > 0).any() and (pos[t] < 0).any()


def test_donchian_position_and_width() -> None:
    f = synthetic_frame(200, seed=11)
    _, h, lo, c, _ = hlcv(f)
    out = run("volatility", f)
    for n in (20, 55):
        hh = np.array([h[t - n + 1:t + 1].max() for t in range(n - 1, 200)])
        ll = np.array([lo[t - n + 1:t + 1].min() for t in range(n - 1, 200)])
        np.testing.assert_allclose(out[f"volatility_dc{n}_pos"].to_numpy()[n - 1:],
                                   (c[n - 1:] - ll) / (hh - ll), rtol=1e-12)
        np.testing.assert_allclose(out[f"volatility_dc{n}_width"].to_numpy()[n - 1:],
                                   (hh - ll) / ((hh + ll) / 2), rtol=1e-12)


def test_keltner_is_ema_of_typical_price_plus_minus_two_wilder_atr10() -> None:
    f = synthetic_frame(600, seed=2)
    _, h, lo, c, _ = hlcv(f)
    tp = (h + lo + c) / 3
    ema = np.full(600, np.nan)
    ema[19] = tp[:20].mean()
    for i in range(20, 600):
        ema[i] = ema[i - 1] + 2 / 21 * (tp[i] - ema[i - 1])
    atr = wilder_atr(h, lo, c, 10)
    upper, lower = ema + 2 * atr, ema - 2 * atr
    out = run("volatility", f)
    t = slice(400, None)  # TA-Lib seeds KC's ATR differently; compare once both forgot it
    np.testing.assert_allclose(out["volatility_kc_pos"].to_numpy()[t],
                               ((c - lower) / (upper - lower))[t], rtol=1e-8)
    np.testing.assert_allclose(out["volatility_kc_width"].to_numpy()[t],
                               ((upper - lower) / ema)[t], rtol=1e-8)


def test_cmf_against_a_direct_sum() -> None:
    f = synthetic_frame(120, seed=4)
    _, h, lo, c, v = hlcv(f)
    mfv = v * ((c - lo) - (h - c)) / (h - lo)
    expected = [mfv[t - 19:t + 1].sum() / v[t - 19:t + 1].sum() for t in range(19, 120)]
    np.testing.assert_allclose(run("volume", f)["volume_cmf20"].to_numpy()[19:], expected,
                               rtol=1e-10)


def test_rolling_vwap_distance() -> None:
    f = synthetic_frame(120, seed=8)
    _, h, lo, c, v = hlcv(f)
    tp = (h + lo + c) / 3
    vwap = np.array([np.dot(tp[t - 19:t + 1], v[t - 19:t + 1]) / v[t - 19:t + 1].sum()
                     for t in range(19, 120)])
    atr = wilder_atr(h, lo, c, 14)[19:]
    np.testing.assert_allclose(run("volume", f)["volume_vwap20_dist_atr"].to_numpy()[19:],
                               (c[19:] - vwap) / atr, rtol=1e-9)


def test_day_vwap_resets_at_utc_midnight_and_skips_the_partial_first_day() -> None:
    # 30-minute bars from 07:00: the partial first day (34 rows) outlasts the 1h warm-up
    f = synthetic_frame(200, seed=9, timeframe="30min", start="2024-03-05 07:00")
    _, h, lo, c, v = hlcv(f)
    tp = (h + lo + c) / 3
    day = f.index.floor("D")
    g = pd.DataFrame({"pv": tp * v, "v": v}, index=f.index).groupby(day).cumsum()
    vwap = (g["pv"] / g["v"]).to_numpy()
    expected = (c - vwap) / wilder_atr(h, lo, c, 14)
    expected[day == day[0]] = np.nan  # 07:00..23:00 of the first day: VWAP unknown
    got = run("volume", f)["volume_vwap_day_dist_atr"].to_numpy()
    assert np.isnan(got[:34]).all() and not np.isnan(got[34:]).any()  # defined from 00:00
    np.testing.assert_allclose(got[34:], expected[34:], rtol=1e-9)


def test_obv_zscore_and_slope_against_the_cumulative_definition() -> None:
    f = synthetic_frame(300, seed=6)
    _, _, _, c, v = hlcv(f)
    obv = pd.Series(np.concatenate(([0.0], np.cumsum(np.sign(np.diff(c)) * v[1:]))))
    z = (obv - obv.rolling(50).mean()) / obv.rolling(50).std(ddof=0)
    slope = (obv - obv.shift(20)) / pd.Series(v).rolling(20).sum()
    out = run("volume", f)
    np.testing.assert_allclose(out["volume_obv_z50"].to_numpy()[49:], z.to_numpy()[49:],
                               rtol=1e-9)
    np.testing.assert_allclose(out["volume_obv_slope20"].to_numpy()[20:],
                               slope.to_numpy()[20:], rtol=1e-9)


def test_nvi_and_vpt_against_their_definitions() -> None:
    f = synthetic_frame(200, seed=12)
    _, _, _, c, v = hlcv(f)
    nvi = [0.0]
    for t in range(1, 200):
        nvi.append(nvi[-1] + (np.log(c[t] / c[t - 1]) if v[t] < v[t - 1] else 0.0))
    lnvi = pd.Series(nvi)
    vpt = pd.Series(np.concatenate(([0.0], np.cumsum(v[1:] * (c[1:] / c[:-1] - 1)))))
    out = run("volume", f)
    z = (lnvi - lnvi.rolling(50).mean()) / lnvi.rolling(50).std(ddof=0)
    np.testing.assert_allclose(out["volume_nvi_z50"].to_numpy()[49:], z.to_numpy()[49:],
                               rtol=1e-9)
    np.testing.assert_allclose(out["volume_nvi_roc20"].to_numpy()[20:],
                               (lnvi - lnvi.shift(20)).to_numpy()[20:], rtol=1e-9, atol=1e-15)
    zv = (vpt - vpt.rolling(50).mean()) / vpt.rolling(50).std(ddof=0)
    np.testing.assert_allclose(out["volume_vpt_z50"].to_numpy()[49:], zv.to_numpy()[49:],
                               rtol=1e-9)


def test_window_level_zscore_nan_stays_inside_its_windows() -> None:
    inc = np.arange(1.0, 31.0) ** 1.5
    inc[10] = np.nan
    z = window_level_zscore(inc, 5)
    assert np.isnan(z[:4]).all()
    assert not np.isnan(z[4:10]).any()
    assert np.isnan(z[10:14]).all()  # windows that read increment 10 (rows 10..13)
    assert not np.isnan(z[14:]).any()
    assert np.isnan(window_level_zscore(np.zeros(8), 4)[3:]).all()  # zero spread -> NaN


def test_momentum_and_pattern_are_talib_outputs() -> None:
    f = synthetic_frame(300, seed=1)
    o, h, lo, c, v = hlcv(f)
    mom, pat = run("momentum", f), run("pattern", f)
    np.testing.assert_array_equal(mom["momentum_rsi14"].to_numpy(), talib.RSI(c, 14))
    np.testing.assert_array_equal(mom["momentum_mfi14"].to_numpy(), talib.MFI(h, lo, c, v, 14))
    engulf = talib.CDLENGULFING(o, h, lo, c) / 100.0
    got = pat["pattern_engulfing"].to_numpy()
    assert np.isnan(got[:2]).all()
    np.testing.assert_array_equal(got[2:], engulf[2:])
    assert set(np.unique(got[2:])) <= {-1.0, -0.8, 0.0, 0.8, 1.0}


def test_div_guards_zero_and_nan_denominators() -> None:
    out = div(np.array([1.0, 1.0, -1.0, 0.0]), np.array([0.0, np.nan, 2.0, 0.0]))
    np.testing.assert_array_equal(out, [np.nan, np.nan, -0.5, np.nan])


# --- NaN and degenerate inputs --------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_nan_bar_restarts_the_indicators_after_it(family: Family, frame: pd.DataFrame) -> None:
    """A NaN in an input is a break: that row is NaN, rows before are untouched and rows
    after equal a fresh computation starting right after the break (TA-Lib alone would
    return NaN for ever after it, or silently wrong values)."""
    k = 1200
    broken = frame.copy()
    broken.iloc[k, broken.columns.get_loc(family.requires[-1])] = np.nan
    full, got = family.run(frame, CTX), family.run(broken, CTX)
    assert_frames_close(got.iloc[:k], full.iloc[:k], what="before the break")
    assert got.iloc[k].isna().all()
    fresh = family.run(frame.iloc[k + 1:], CTX)
    assert_frames_close(got.iloc[k + 1:], fresh, what="after the break")
    assert got.iloc[-1].notna().all()


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_flat_market_gives_no_infinities(family: Family) -> None:
    f = synthetic_frame(400, seed=13)
    for name in ("open", "high", "low", "close"):
        f.iloc[150:260, f.columns.get_loc(name)] = 30_000.0
    f.iloc[150:260, f.columns.get_loc("volume")] = 0.0
    out = family.run(f, CTX).to_numpy()
    assert not np.isinf(out).any()
    assert not np.isnan(out[380]).any()  # recovers once the windows leave the flat stretch


def test_missing_input_is_unavailable_and_compute_refuses() -> None:
    f = synthetic_frame(100).drop(columns=["volume"])
    assert not BY_NAME["volume"].is_available(f, CTX)
    assert BY_NAME["trend"].is_available(f, CTX)
    with pytest.raises(KeyError, match="volume"):
        BY_NAME["volume"].run(f, CTX)


# --- real data ------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_real_btc_1h(family: Family, real_btc_1h: pd.DataFrame) -> None:
    out = family.run(real_btc_1h, CTX)
    values = out.to_numpy()
    assert not np.isinf(values).any()
    after = out.iloc[family.warmup:]
    undefined = after.columns[after.isna().any()].tolist()
    assert not undefined, f"NaN after warm-up in {undefined}"
    assert_start_invariant(family, real_btc_1h, offset=1000)
