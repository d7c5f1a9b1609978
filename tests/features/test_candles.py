"""Candle and range-volatility families: hand-computed values, contract, real data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from feature_checks import assert_contract, assert_no_lookahead, assert_start_invariant
from feature_frames import synthetic_frame
from perptrader.features.base import FeatureContext
from perptrader.features.candles import (
    CANDLE,
    FAMILIES,
    RANGEVOL,
    garman_klass,
    parkinson,
    realised_vol,
    rogers_satchell,
    rolling_moments,
    rolling_skew_kurt,
    signed_streak,
    yang_zhang,
    yang_zhang_k,
)

CTX = FeatureContext()

# five bars with gaps between close and next open, so Yang-Zhang's overnight term is live
OPEN = [100.0, 101.2, 100.3, 103.1, 103.8]
HIGH = [102.0, 103.0, 104.0, 105.0, 104.5]
LOW = [99.0, 100.0, 100.0, 102.0, 101.0]
CLOSE = [101.0, 100.5, 103.0, 104.0, 102.0]


def five_bars() -> pd.DataFrame:
    idx = pd.date_range("2024-01-01", periods=5, freq="1h", tz="UTC", name="ts")
    return pd.DataFrame({"open": OPEN, "high": HIGH, "low": LOW, "close": CLOSE, "volume": 1.0},
                        index=idx.astype("datetime64[us, UTC]"))


def _arrays():
    return (np.array(OPEN), np.array(HIGH), np.array(LOW), np.array(CLOSE))


def _var(xs: list[float]) -> float:
    m = sum(xs) / len(xs)
    return sum((x - m) ** 2 for x in xs) / (len(xs) - 1)


def test_families_exported() -> None:
    assert tuple(f.name for f in FAMILIES) == ("candle", "rangevol")
    for fam in FAMILIES:
        assert all(n.startswith(f"{fam.name}_") for n in fam.names)


def test_candle_values_by_hand() -> None:
    out = CANDLE.run(five_bars(), CTX)
    r = out.iloc
    assert np.isnan(r[0]["candle_ret_1"])
    assert r[1]["candle_ret_1"] == pytest.approx(100.5 / 101 - 1, rel=1e-12)
    assert r[2]["candle_ret_2"] == pytest.approx(103 / 101 - 1, rel=1e-12)
    assert r[4]["candle_ret_4"] == pytest.approx(102 / 101 - 1, rel=1e-12)
    assert r[4]["candle_logret_4"] == pytest.approx(math.log(102 / 101), rel=1e-12)
    assert out["candle_ret_8"].isna().all()
    assert r[0]["candle_range"] == pytest.approx(3 / 101)
    assert np.isnan(r[0]["candle_true_range"])
    # bar 2: high 104, low 100, previous close 100.5 -> TR = 4
    assert r[2]["candle_true_range"] == pytest.approx(4 / 103)
    # bar 3: previous close 103 lies inside 102..105 -> TR = high - low = 3
    assert r[3]["candle_true_range"] == pytest.approx(3 / 104)
    # bar 4: o 103.8 c 102 h 104.5 l 101 -> range 3.5
    assert r[4]["candle_upper_shadow"] == pytest.approx((104.5 - 103.8) / 3.5)
    assert r[4]["candle_lower_shadow"] == pytest.approx((102 - 101) / 3.5)
    assert r[4]["candle_body"] == pytest.approx((102 - 103.8) / 3.5)
    assert r[0]["candle_body"] == pytest.approx(1 / 3)
    assert r[1]["candle_gap_bps"] == pytest.approx((101.2 / 101 - 1) * 1e4)
    assert r[2]["candle_gap_bps"] == pytest.approx((100.3 / 100.5 - 1) * 1e4)
    # closes 101, 100.5, 103, 104, 102: down, up, up, down
    np.testing.assert_array_equal(out["candle_streak"].to_numpy()[1:], [-1, 1, 2, -1])


def test_true_range_uses_previous_close_gap() -> None:
    frame = five_bars()
    frame.loc[frame.index[2], ["open", "high", "low", "close"]] = [106.0, 108.0, 105.0, 107.0]
    out = CANDLE.run(frame, CTX)
    # the bar gapped up from a 100.5 close: TR spans 100.5 .. 108
    assert out["candle_true_range"].iloc[2] == pytest.approx(7.5 / 107)


def test_zero_range_bar_gives_nan_not_inf() -> None:
    frame = five_bars()
    frame.loc[frame.index[3], ["open", "high", "low", "close"]] = 104.0
    out = CANDLE.run(frame, CTX)
    row = out.iloc[3]
    assert np.isnan(row[["candle_upper_shadow", "candle_lower_shadow", "candle_body"]]).all()
    assert row["candle_range"] == 0.0
    assert not np.isinf(out.to_numpy()).any()


def test_streak_caps_and_resets() -> None:
    ret = np.array([np.nan] + [0.01] * 14 + [0.0, -0.01, -0.01, np.nan, 0.01])
    got = signed_streak(ret, 10)
    want = [np.nan, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 10, 10, 10, 0, -1, -2, np.nan, 1]
    np.testing.assert_array_equal(got, want)


def test_skew_kurt_match_scipy_unbiased() -> None:
    x = np.random.default_rng(3).standard_t(4, 200)
    skew, kurt = rolling_skew_kurt(x, 24)
    for i in (23, 80, 199):
        window = x[i - 23:i + 1]
        assert skew[i] == pytest.approx(stats.skew(window, bias=False), rel=1e-9)
        assert kurt[i] == pytest.approx(stats.kurtosis(window, bias=False), rel=1e-9)
    assert np.isnan(skew[:23]).all()
    flat_skew, _ = rolling_skew_kurt(np.full(30, 0.001), 24)
    assert np.isnan(flat_skew).all()  # no dispersion: undefined, not a rounding artefact


def test_rolling_moments_match_exact_windows_with_outlier_and_nan() -> None:
    rng = np.random.default_rng(9)
    x = rng.normal(0.0005, 0.004, 500)
    x[100] = 0.4  # a 100-sigma bar enters and leaves between two resyncs
    x[300] = np.nan
    w = 24
    mean, m2, m3, m4 = rolling_moments(x, w, 4)
    for i in range(w - 1, len(x)):
        win = x[i - w + 1:i + 1]
        if np.isnan(win).any():
            assert np.isnan(mean[i]) and np.isnan(m4[i])
            continue
        d = win - win.mean()
        assert mean[i] == pytest.approx(win.mean(), rel=1e-12, abs=1e-15)
        assert m2[i] == pytest.approx((d**2).mean(), rel=1e-10)
        assert m3[i] == pytest.approx((d**3).mean(), rel=1e-8, abs=1e-16)
        assert m4[i] == pytest.approx((d**4).mean(), rel=1e-8)
    # the same values from a later start (a different resync phase)
    late = rolling_moments(x[7:], w, 4)[1]
    np.testing.assert_allclose(late[w:], m2[7 + w:], rtol=1e-10)


def test_vol_estimators_by_hand() -> None:
    o, h, low, c = _arrays()
    n = 5
    park = math.sqrt(sum(math.log(HIGH[i] / LOW[i]) ** 2 for i in range(n)) / n / (4 * math.log(2)))
    gk = math.sqrt(sum(0.5 * math.log(HIGH[i] / LOW[i]) ** 2
                       - (2 * math.log(2) - 1) * math.log(CLOSE[i] / OPEN[i]) ** 2
                       for i in range(n)) / n)
    rs_terms = [math.log(HIGH[i] / CLOSE[i]) * math.log(HIGH[i] / OPEN[i])
                + math.log(LOW[i] / CLOSE[i]) * math.log(LOW[i] / OPEN[i]) for i in range(n)]
    rs = math.sqrt(sum(rs_terms) / n)
    got_park = parkinson(h, low, 5)
    assert np.isnan(got_park[:4]).all()
    assert got_park[4] == pytest.approx(park, rel=1e-12)
    assert garman_klass(o, h, low, c, 5)[4] == pytest.approx(gk, rel=1e-12)
    assert rogers_satchell(o, h, low, c, 5)[4] == pytest.approx(rs, rel=1e-12)

    # Yang-Zhang over 4 bars (the first bar has no previous close): bars 1..4
    w = 4
    k = 0.34 / (1.34 + (w + 1) / (w - 1))
    assert yang_zhang_k(w) == pytest.approx(k)
    overnight = [math.log(OPEN[i] / CLOSE[i - 1]) for i in range(1, 5)]
    open_close = [math.log(CLOSE[i] / OPEN[i]) for i in range(1, 5)]
    yz = math.sqrt(_var(overnight) + k * _var(open_close) + (1 - k) * sum(rs_terms[1:]) / w)
    got_yz = yang_zhang(o, h, low, c, w)
    assert np.isnan(got_yz[:4]).all()
    assert got_yz[4] == pytest.approx(yz, rel=1e-12)

    rets = [math.log(CLOSE[i] / CLOSE[i - 1]) for i in range(1, 5)]
    assert realised_vol(c, 4)[4] == pytest.approx(math.sqrt(_var(rets)), rel=1e-12)


def test_rangevol_family_matches_independent_pandas() -> None:
    frame = synthetic_frame(600, seed=11)
    out = RANGEVOL.run(frame, CTX)
    r = np.log(frame["close"]).diff()
    for w in (24, 72, 168):
        np.testing.assert_allclose(out[f"rangevol_rv_{w}"], r.rolling(w).std(), rtol=1e-9)
    hl2 = np.log(frame["high"] / frame["low"]) ** 2
    park = np.sqrt(hl2.rolling(24).mean() / (4 * np.log(2)))
    np.testing.assert_allclose(out["rangevol_parkinson_24"], park, rtol=1e-9)
    ratio = out["rangevol_rv_24"] / out["rangevol_rv_168"]
    np.testing.assert_allclose(out["rangevol_ratio_rv_24_168"], ratio, rtol=1e-12)
    rv24 = out["rangevol_rv_24"]
    vov = rv24.rolling(72).std() / rv24.rolling(72).mean()
    np.testing.assert_allclose(out["rangevol_vov_72"], vov, rtol=1e-8)
    assert out["rangevol_vov_72"].first_valid_index() == frame.index[24 + 72 - 1]


def test_nan_bar_poisons_only_its_windows() -> None:
    frame = synthetic_frame(400, seed=5)
    frame.iloc[200, frame.columns.get_loc("high")] = np.nan
    out = RANGEVOL.run(frame, CTX)
    park = out["rangevol_parkinson_24"]
    assert park.iloc[200:224].isna().all()
    assert park.iloc[[199, 224]].notna().all()


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_contract(family) -> None:
    frame = synthetic_frame(1500, seed=21)
    assert_contract(family, frame)
    assert_no_lookahead(family, frame)
    assert_start_invariant(family, frame)


@pytest.mark.integration
def test_real_btc_1h(real_btc_1h: pd.DataFrame) -> None:
    frame = real_btc_1h
    candle = assert_contract(CANDLE, frame)
    vol = assert_contract(RANGEVOL, frame)
    np.testing.assert_allclose(candle["candle_ret_1"], frame["close"].pct_change(), rtol=1e-9)
    after = vol.iloc[RANGEVOL.warmup:]
    assert after.notna().all().all()
    # hourly BTC volatility is a fraction of a percent to a few percent per bar
    med = after.median()
    for name in ("rangevol_rv_24", "rangevol_parkinson_24", "rangevol_gk_24",
                 "rangevol_rs_24", "rangevol_yz_24"):
        assert 0.001 < med[name] < 0.03, (name, med[name])
    # the range estimators agree with close-to-close volatility to within a factor 2
    ratio = after["rangevol_yz_72"] / after["rangevol_rv_72"]
    assert 0.5 < ratio.median() < 2.0
    assert (candle["candle_upper_shadow"].dropna().between(0, 1)).all()
    assert candle["candle_streak"].abs().max() == 10
