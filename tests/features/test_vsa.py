"""VSA: the family contract, hand-computed anatomy, and a hand-built bar sequence for every
class (a background of ordinary bars, then the bar that must fire, and a near miss that
must not)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from feature_checks import assert_contract, assert_no_lookahead, assert_start_invariant
from feature_frames import synthetic_frame
from perptrader.features.base import FeatureContext
from perptrader.features.vsa import (
    FAMILIES,
    VSA_CLASSES,
    VsaParams,
    compute_vsa,
    vsa_columns,
    vsa_frequency,
)

FAMILY = FAMILIES[0]
P = VsaParams()
Bar = tuple[float, float, float, float, float]  # open, high, low, close, volume


# -- hand-built bars -----------------------------------------------------------------------

def background(n: int = 80, *, drift: float = 0.0, zig: float = 2.0, spread: float = 10.0,
               volume: float = 100.0, start: float = 1000.0) -> list[Bar]:
    """Ordinary bars: every spread and volume alike; a steady drift (trend) or, with
    drift 0, a zig-zag of +-zig (no trend, every close progresses |zig|)."""
    bars, close = [], start
    for i in range(n):
        step = drift if drift else (zig if i % 2 == 0 else -zig)
        open_, close = close, close + step
        wick = (spread - abs(step)) / 2
        bars.append((open_, max(open_, close) + wick, min(open_, close) - wick, close, volume))
    return bars


def frame_of(bars: list[Bar]) -> pd.DataFrame:
    idx = pd.date_range("2024-01-01", periods=len(bars), freq="1h", tz="UTC", name="ts")
    return pd.DataFrame(bars, columns=["open", "high", "low", "close", "volume"],
                        index=idx.astype("datetime64[us, UTC]"))


def last(bars: list[Bar], name: str) -> tuple[float, float]:
    """Flag and strength of class ``name`` on the last bar."""
    out = compute_vsa(frame_of(bars))
    return out[f"vsa_{name}"].iloc[-1], out[f"vsa_{name}_strength"].iloc[-1]


def fires(bars: list[Bar], name: str) -> bool:
    flag, strength = last(bars, name)
    assert flag in (0.0, 1.0), f"{name}: flag {flag} on a fully warmed-up bar"
    assert (strength >= 1.0) if flag == 1.0 else (strength == 0.0), (name, flag, strength)
    return flag == 1.0


def close_of(bars: list[Bar]) -> float:
    return bars[-1][3]


UP, DOWN, FLAT = background(drift=3.0), background(drift=-3.0), background()


# -- one test per class: fires, and a near miss does not ------------------------------------

def test_upthrust() -> None:
    c = close_of(UP)  # previous high c + 3.5 is the resistance
    assert fires([*UP, (c, c + 12, c - 4, c - 2, 200.0)], "upthrust")
    assert not fires([*UP, (c, c + 12, c - 4, c - 2, 140.0)], "upthrust")  # volume 1.4x
    assert not fires([*UP, (c, c + 12, c - 4, c + 3, 200.0)], "upthrust")  # closes mid-bar
    # closes low in its bar yet above the old high: a breakout holding, not an upthrust
    assert not fires([*UP, (c, c + 40, c - 1, c + 10, 200.0)], "upthrust")


def test_buying_climax() -> None:
    c = close_of(UP)
    assert fires([*UP, (c, c + 20, c - 1, c + 10, 300.0)], "buying_climax")
    assert not fires([*UP, (c, c + 20, c - 1, c + 18, 300.0)], "buying_climax")  # on high
    f = close_of(FLAT)  # same bar without a preceding up-move
    assert not fires([*FLAT, (f, f + 20, f - 1, f + 10, 300.0)], "buying_climax")


def test_selling_climax() -> None:
    c = close_of(DOWN)
    assert fires([*DOWN, (c, c + 1, c - 20, c - 10, 300.0)], "selling_climax")
    assert not fires([*DOWN, (c, c + 1, c - 20, c - 10, 200.0)], "selling_climax")  # 2x vol
    assert not fires([*DOWN, (c, c + 1, c - 20, c - 19, 300.0)], "selling_climax")  # on low


def test_stopping_volume() -> None:
    c = close_of(DOWN)
    assert fires([*DOWN, (c, c + 1, c - 6, c - 2, 200.0)], "stopping_volume")
    assert not fires([*DOWN, (c, c + 1, c - 6, c - 5.5, 200.0)], "stopping_volume")  # on low
    u = close_of(UP)  # the same bar in an up-move is not stopping a fall
    assert not fires([*UP, (u, u + 1, u - 6, u - 2, 200.0)], "stopping_volume")


def test_no_demand() -> None:
    c = close_of(UP)
    assert fires([*UP, (c, c + 2, c - 1, c + 1, 80.0)], "no_demand")
    # volume not below BOTH previous bars
    assert not fires([*UP, (c, c + 2, c - 1, c + 1, 100.0)], "no_demand")
    assert not fires([*UP, (c, c + 7, c - 1, c + 1, 80.0)], "no_demand")  # spread 0.8x
    d = close_of(DOWN)  # a quiet up bar low in a falling market: neither up-move nor top
    assert not fires([*DOWN, (d, d + 2, d - 1, d + 1, 80.0)], "no_demand")


def test_no_supply() -> None:
    c = close_of(DOWN)
    assert fires([*DOWN, (c, c + 1, c - 2, c - 1, 80.0)], "no_supply")
    assert not fires([*DOWN, (c, c + 1, c - 8, c - 1, 80.0)], "no_supply")  # spread 0.9x
    assert not fires([*DOWN, (c, c + 1, c - 2, c - 1, 100.0)], "no_supply")


def _supply_then(bars_after: int, supply_volume: float) -> list[Bar]:
    """Flat background, one down bar of ``supply_volume``, then ordinary bars."""
    bars = background(60)
    c = close_of(bars)
    bars.append((c, c + 2, c - 8, c - 6, supply_volume))
    tail = background(bars_after, start=c - 6)
    return bars + tail


def test_test_bar() -> None:
    bars = _supply_then(3, 200.0)
    c, low_prev = close_of(bars), bars[-1][2]
    probe = (c, c + 0.5, low_prev - 2, c - 0.5, 60.0)  # marks below, closes near the high
    assert fires([*bars, probe], "test")
    assert not fires([*_supply_then(3, 100.0), probe], "test")  # no supply before
    assert not fires([*bars, (c, c + 0.5, low_prev - 2, c - 0.5, 100.0)], "test")  # volume
    assert not fires([*bars, (c, c + 0.5, low_prev + 0.5, c - 0.3, 60.0)], "test")  # no probe
    # supply further back than test_supply_window bars no longer counts
    old = _supply_then(P.test_supply_window + 1, 200.0)
    oc, olow = close_of(old), old[-1][2]
    assert not fires([*old, (oc, oc + 0.5, olow - 2, oc - 0.5, 60.0)], "test")


def test_shakeout() -> None:
    c = close_of(FLAT)
    support = min(b[2] for b in FLAT[-P.range_window:])
    assert fires([*FLAT, (c, c + 2, support - 10, c + 1, 200.0)], "shakeout")
    # a deep drive that closes high in its bar but still below support: a break
    assert not fires([*FLAT, (c, c, support - 40, support - 0.5, 200.0)], "shakeout")
    assert not fires([*FLAT, (c, c + 2, support - 10, c + 1, 120.0)], "shakeout")


def test_ns_high_volume() -> None:
    c = close_of(FLAT)
    assert fires([*FLAT, (c, c + 3, c - 2, c + 1, 200.0)], "ns_high_volume")
    assert not fires([*FLAT, (c, c + 3, c - 2, c + 1, 140.0)], "ns_high_volume")
    assert not fires([*FLAT, (c, c + 6, c - 2, c + 1, 200.0)], "ns_high_volume")  # 0.8x


def test_wide_spread_up_and_down() -> None:
    c = close_of(FLAT)
    assert fires([*FLAT, (c, c + 16, c - 1, c + 15, 100.0)], "wide_spread_up")
    assert not fires([*FLAT, (c, c + 16, c - 1, c + 8, 100.0)], "wide_spread_up")  # mid
    assert not fires([*FLAT, (c, c + 13, c - 1, c + 12, 100.0)], "wide_spread_up")  # 1.4x
    assert fires([*FLAT, (c, c + 1, c - 16, c - 15, 100.0)], "wide_spread_down")
    assert not fires([*FLAT, (c, c + 1, c - 16, c - 8, 100.0)], "wide_spread_down")


def test_effort_to_rise_and_fall() -> None:
    c = close_of(FLAT)  # background closes move 2 per bar
    assert fires([*FLAT, (c, c + 6, c - 1, c + 5, 200.0)], "effort_to_rise")
    assert not fires([*FLAT, (c, c + 6, c - 1, c + 1, 200.0)], "effort_to_rise")  # no result
    assert not fires([*FLAT, (c, c + 6, c - 1, c + 5, 120.0)], "effort_to_rise")  # no effort
    # high volume, but less than the bar before: effort is not rising
    busy = [*FLAT[:-1], (*FLAT[-1][:4], 250.0)]
    assert fires([*busy, (c, c + 6, c - 1, c + 5, 260.0)], "effort_to_rise")
    assert not fires([*busy, (c, c + 6, c - 1, c + 5, 200.0)], "effort_to_rise")
    assert fires([*FLAT, (c, c + 1, c - 6, c - 5, 200.0)], "effort_to_fall")
    assert not fires([*FLAT, (c, c + 1, c - 6, c - 1, 200.0)], "effort_to_fall")


def test_absorption() -> None:
    c = close_of(FLAT)
    block = [(c, c + 4, c - 2, c + 2, 200.0), (c + 2, c + 4, c - 2, c, 200.0),
             (c, c + 3, c - 3, c + 0.5, 200.0)]
    assert fires(FLAT + block, "absorption")
    moved = [*block[:2], (c, c + 5, c - 1, c + 4, 200.0)]  # net 4 > 0.5 * 2 * sqrt(3)
    assert not fires(FLAT + moved, "absorption")
    light = [(o, h, lo, cl, 120.0) for o, h, lo, cl, _ in block]
    assert not fires(FLAT + light, "absorption")


def test_strength_grows_with_the_extreme() -> None:
    c = close_of(UP)
    s = [last([*UP, (c, c + 20, c - 1, c + 10, v)], "buying_climax")[1]
         for v in (300.0, 400.0, 600.0)]
    assert 1.0 < s[0] < s[1] < s[2]
    f = close_of(FLAT)
    s = [last([*FLAT, (f, f + 3, f - 2, f + 1, 200.0 + 50 * k)], "ns_high_volume")[1]
         for k in range(3)]
    assert s[0] < s[1] < s[2]


# -- anatomy, computed by hand ----------------------------------------------------------------

def test_anatomy_matches_hand_computation() -> None:
    frame = synthetic_frame(120, seed=3, extras=False)
    out = compute_vsa(frame)
    o, h, lo, c, v = (frame[k].to_numpy() for k in ("open", "high", "low", "close", "volume"))
    n, m, r = P.avg_window, P.trend_window, P.range_window
    for t in (45, 77, 119):
        sp = h - lo
        prev_sp, prev_v = sp[t - n:t], v[t - n:t]
        dc = np.abs(np.diff(c))  # dc[k] = |c[k+1] - c[k]|
        vr = v[t] / prev_v.mean()
        pr = abs(c[t] - c[t - 1]) / dc[t - n - 1:t - 1].mean()
        want = {
            "vsa_spread_rel": sp[t] / prev_sp.mean(),
            "vsa_spread_z": (sp[t] - prev_sp.mean()) / prev_sp.std(ddof=1),
            "vsa_close_loc": (c[t] - lo[t]) / sp[t],
            "vsa_body": (c[t] - o[t]) / sp[t],
            "vsa_volume_rel": vr,
            "vsa_volume_z": (v[t] - prev_v.mean()) / prev_v.std(ddof=1),
            "vsa_progress_rel": pr,
            "vsa_effort_result": (vr - pr) / (vr + pr),
            "vsa_trend": (c[t] - c[t - m]) / (sp[t - m + 1:t + 1].mean() * math.sqrt(m)),
            "vsa_range_pos": 2 * (c[t] - lo[t - r:t].min())
                             / (h[t - r:t].max() - lo[t - r:t].min()) - 1,
            "vsa_bar_dir": np.sign(c[t] - c[t - 1]),
        }
        for col, value in want.items():
            assert out[col].iloc[t] == pytest.approx(value, rel=1e-9), (col, t)


def test_flat_bar_and_missing_values_give_nan_not_inf_or_zero() -> None:
    bars = background(60)
    c = close_of(bars)
    bars.append((c, c, c, c, 100.0))  # high == low
    frame = frame_of([*bars, *background(30, start=c)])
    frame.iloc[70, frame.columns.get_loc("volume")] = np.nan
    out = compute_vsa(frame)
    assert not np.isinf(out.to_numpy()).any()
    assert np.isnan(out["vsa_close_loc"].iloc[60]) and np.isnan(out["vsa_body"].iloc[60])
    assert np.isnan(out["vsa_upthrust"].iloc[60])  # needs the close location
    # a missing volume leaves its own row and the rows whose window holds it undefined
    assert out["vsa_volume_rel"].iloc[70:71 + P.avg_window].isna().all()
    assert out["vsa_ns_high_volume"].iloc[70:71 + P.avg_window].isna().all()
    assert out["vsa_volume_rel"].iloc[71 + P.avg_window:].notna().all()


def test_missing_column_is_an_error() -> None:
    with pytest.raises(KeyError, match="volume"):
        compute_vsa(frame_of(background(30)).drop(columns="volume"))


def test_params_are_validated() -> None:
    with pytest.raises(ValueError, match="vol_high"):
        VsaParams(vol_high=3.0)  # above vol_ultra
    with pytest.raises(ValueError, match="avg_window"):
        VsaParams(avg_window=1)
    with pytest.raises(ValueError, match="close_low"):
        VsaParams(close_low=0.8)


def test_custom_params_change_the_rules() -> None:
    c = close_of(FLAT)
    bars = [*FLAT, (c, c + 3, c - 2, c + 1, 140.0)]
    assert compute_vsa(frame_of(bars))["vsa_ns_high_volume"].iloc[-1] == 0.0
    loose = compute_vsa(frame_of(bars), VsaParams(vol_high=1.3))
    assert loose["vsa_ns_high_volume"].iloc[-1] == 1.0


# -- the family contract ----------------------------------------------------------------------

def test_columns_and_names() -> None:
    assert len(VSA_CLASSES) == 14
    assert FAMILY.name == "vsa" and FAMILY.names == vsa_columns()
    for c in VSA_CLASSES:
        assert f"vsa_{c}" in FAMILY.names and f"vsa_{c}_strength" in FAMILY.names
    assert all(s.formula and s.inputs for s in FAMILY.specs)


def test_contract_on_synthetic_frame() -> None:
    frame = synthetic_frame(1500, seed=11)
    out = assert_contract(FAMILY, frame)
    assert_no_lookahead(FAMILY, frame)
    assert_start_invariant(FAMILY, frame)
    flags = out[[f"vsa_{c}" for c in VSA_CLASSES]].iloc[FAMILY.warmup:]
    assert set(np.unique(flags.to_numpy())) <= {0.0, 1.0}


def test_spec_warmups_are_exact() -> None:
    """Each column's first defined row is its declared warm-up (the pipeline relies on it)."""
    out = FAMILY.run(synthetic_frame(300, seed=5, extras=False), FeatureContext())
    for spec in FAMILY.specs:
        first = int(np.flatnonzero(out[spec.name].notna().to_numpy())[0])
        assert first == spec.warmup, spec.name
        assert out[spec.name].iloc[first:].notna().all(), spec.name


def test_strength_is_zero_exactly_when_the_flag_is() -> None:
    out = compute_vsa(synthetic_frame(3000, seed=2, extras=False))
    for c in VSA_CLASSES:
        flag, strength = out[f"vsa_{c}"], out[f"vsa_{c}_strength"]
        assert (flag.isna() == strength.isna()).all(), c
        assert (strength[flag == 1.0] >= 1.0).all() and (strength[flag == 0.0] == 0.0).all()


# -- the frequency report -----------------------------------------------------------------------

def test_frequency_counts_and_forward_returns() -> None:
    frame = synthetic_frame(3000, seed=4, extras=False)
    vsa = compute_vsa(frame)
    report = vsa_frequency(frame)
    assert list(report.index) == list(VSA_CLASSES)
    flag = vsa["vsa_wide_spread_up"]
    assert report.loc["wide_spread_up", "count"] == int((flag == 1).sum()) > 0
    assert report.loc["wide_spread_up", "share_pct"] == pytest.approx(
        100 * (flag == 1).sum() / flag.notna().sum())
    fwd4 = 100 * (frame["close"].shift(-4) / frame["close"] - 1)
    assert report.loc["wide_spread_up", "fwd_4_pct"] == pytest.approx(
        fwd4[(flag == 1) & fwd4.notna()].mean())
    assert report.attrs["baseline"]["fwd_4_pct"] == pytest.approx(fwd4.mean())
    # from the VSA block alone there is no close, so no forward returns (not zeros)
    alone = vsa_frequency(vsa)
    assert list(alone.columns) == ["count", "share_pct"]
    assert (alone["count"] == report["count"]).all()
    with pytest.raises(KeyError):
        vsa_frequency(frame[["close"]])


# -- real data --------------------------------------------------------------------------------

@pytest.mark.integration
def test_every_class_fires_on_real_btc_1h(real_btc_1h: pd.DataFrame) -> None:
    out = assert_contract(FAMILY, real_btc_1h)
    assert len(out) == len(real_btc_1h)
    # real volume spikes (40x the average) are where rolling sums lose precision first
    assert_start_invariant(FAMILY, real_btc_1h, offset=1001)
    report = vsa_frequency(real_btc_1h)
    never = report.index[report["count"] == 0].tolist()
    assert not never, f"classes that never fire on BTCUSDT 1h: {never}"
    common = report.index[report["share_pct"] > 25].tolist()
    assert not common, f"classes firing on more than 25% of bars: {common}"
    # anatomy on real bars stays in its documented ranges
    assert out["vsa_close_loc"].between(0, 1).all()
    assert out["vsa_effort_result"].dropna().between(-1, 1).all()
    assert out["vsa_volume_rel"].dropna().gt(0).all()
