"""Derivatives families: contract checks, hand-computed values, absence, real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feature_checks import assert_contract, assert_no_lookahead, assert_start_invariant
from feature_frames import synthetic_frame
from perptrader.features.base import FeatureContext
from perptrader.features.derivatives import (
    BASIS,
    FAMILIES,
    FUNDING,
    LIQUIDATION,
    OI,
    PREMIUM,
    RATIO_FAMILIES,
    TAKER,
    TAKERRATIO,
)
from perptrader.features.derivatives_funding import settlements

CTX = FeatureContext(timeframe="1h")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    f = synthetic_frame(2000, seed=11)
    f["index_close"] = f["close"] * (1 + np.random.default_rng(3).normal(0, 3e-4, len(f)))
    return f


def _families() -> list:
    return list(FAMILIES)


@pytest.mark.parametrize("family", _families(), ids=lambda f: f.name)
def test_contract(family, frame):
    assert family.is_available(frame, CTX)
    out = assert_contract(family, frame, CTX)
    assert all(c.startswith(family.name + "_") for c in out.columns)
    assert all(out[c].dtype == np.float64 for c in out.columns)
    assert_no_lookahead(family, frame, CTX)
    assert_start_invariant(family, frame, CTX)


def test_family_names_unique_and_prefix_free():
    names = [f.name for f in FAMILIES]
    assert len(set(names)) == len(names)
    cols = [c for f in FAMILIES for c in f.names]
    assert len(set(cols)) == len(cols)


# ---------------------------------------------------------------- funding, by hand


def _funding_frame(n_hours: int, interval_h: int, rates: np.ndarray,
                   start: str = "2024-01-01") -> pd.DataFrame:
    """1h bars with funding joined as the loader does: the last slot <= bar close."""
    idx = pd.date_range(start, periods=n_hours, freq="1h", tz="UTC", name="ts").astype(
        "datetime64[us, UTC]")
    closes = idx + pd.Timedelta("1h")
    slot = closes.floor(f"{interval_h}h")
    k = ((slot - pd.Timestamp(start, tz="UTC")) // pd.Timedelta(hours=interval_h)).to_numpy()
    f = pd.DataFrame({"open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0},
                     index=idx)
    f["funding_rate"] = rates[k]
    f["funding_interval_hours"] = float(interval_h)
    f["funding_time"] = slot
    return f


@pytest.mark.parametrize("interval_h", [8, 4])
def test_funding_cumulative_and_clock_by_hand(interval_h):
    n_slots = 400 // interval_h + 2
    rates = (np.arange(n_slots) + 1.0) * 1e-5  # slot k (time k*interval) pays (k+1)e-5
    f = _funding_frame(400, interval_h, rates)
    out = FUNDING.run(f, CTX)
    # bar 2024-01-03 11:00 closes at 12:00; the 24h window (01-02 12:00, 01-03 12:00]
    row = out.loc[pd.Timestamp("2024-01-03 11:00", tz="UTC")]
    slots = pd.date_range("2024-01-01", "2024-01-03 12:00", freq=f"{interval_h}h", tz="UTC")
    slots = slots[slots > pd.Timestamp("2024-01-02 12:00", tz="UTC")]
    assert len(slots) == 24 // interval_h
    k = ((slots - pd.Timestamp("2024-01-01", tz="UTC")) // pd.Timedelta(hours=interval_h))
    assert row["funding_cum_24h_bps"] == pytest.approx(rates[k.to_numpy()].sum() * 1e4,
                                                       rel=1e-12)
    last = k.to_numpy()[-1]
    assert row["funding_rate_bps"] == pytest.approx(rates[last] * 1e4)
    assert row["funding_annualized"] == pytest.approx(rates[last] * 24 / interval_h * 365)
    assert row["funding_change_bps"] == pytest.approx((rates[last] - rates[last - 1]) * 1e4)
    # close 12:00, last slot 08:00 (8h: next 16:00) or 12:00 itself (4h: next 16:00)
    since = (pd.Timestamp("2024-01-03 12:00", tz="UTC") - slots[-1]) / pd.Timedelta("1h")
    assert since == (4 if interval_h == 8 else 0)
    assert row["funding_phase"] == pytest.approx(since / interval_h)
    assert row["funding_hours_to_next"] == pytest.approx(4.0)
    # one bar later: 1h further into the cycle
    nxt = out.loc[pd.Timestamp("2024-01-03 12:00", tz="UTC")]
    assert nxt["funding_hours_to_next"] == pytest.approx(3.0)
    assert nxt["funding_phase"] == pytest.approx((since + 1) / interval_h)
    # 7 days: all settlements of the trailing 168h
    row7 = out.loc[pd.Timestamp("2024-01-10 03:00", tz="UTC")]
    close = pd.Timestamp("2024-01-10 04:00", tz="UTC")
    all_slots = pd.date_range(pd.Timestamp("2024-01-01", tz="UTC"), close, freq=f"{interval_h}h")
    in7 = all_slots[all_slots > close - pd.Timedelta("168h")]
    k7 = ((in7 - pd.Timestamp("2024-01-01", tz="UTC")) // pd.Timedelta(hours=interval_h))
    assert len(in7) == 168 // interval_h
    assert row7["funding_cum_168h_bps"] == pytest.approx(rates[k7.to_numpy()].sum() * 1e4,
                                                         rel=1e-12)


def test_funding_settlements_taken_once_and_gaps_are_nan():
    rates = np.full(60, 1e-4)
    f = _funding_frame(200, 8, rates)
    ev = settlements(f)
    assert len(ev) == f["funding_time"].nunique()
    # hours 40..47 close in a cycle whose settlement was never published
    hole = (f.index >= pd.Timestamp("2024-01-02 15:00", tz="UTC")) & (
        f.index < pd.Timestamp("2024-01-02 23:00", tz="UTC"))
    f.loc[hole, ["funding_rate"]] = np.nan
    f.loc[hole, "funding_time"] = pd.NaT
    out = FUNDING.run(f, CTX)
    assert out.loc[hole].isna().all().all()
    # windows holding the missing slot are incomplete: NaN, never a partial sum
    after = out.loc[pd.Timestamp("2024-01-03 03:00", tz="UTC")]
    assert np.isnan(after["funding_cum_24h_bps"])
    assert np.isnan(after["funding_change_bps"])  # previous seen slot is 16h back
    later = out.loc[pd.Timestamp("2024-01-04 03:00", tz="UTC")]
    assert later["funding_cum_24h_bps"] == pytest.approx(3e-4 * 1e4)


def test_funding_overdue_slot_gives_nan_clock():
    f = _funding_frame(48, 8, np.full(10, 1e-4))
    # the loader can carry a slot up to 3 steps; a bar closing past slot + interval
    # means the next settlement is missing
    f.loc[f.index[20:24], "funding_time"] = pd.Timestamp("2024-01-01 08:00", tz="UTC")
    out = FUNDING.run(f, CTX)
    assert out["funding_hours_to_next"].iloc[20:24].isna().all()
    assert out["funding_phase"].iloc[20:24].isna().all()


def test_funding_zscore_matches_direct(frame):
    out = FUNDING.run(frame, CTX)
    ev = settlements(frame)
    k = len(ev) - 1
    t_k = ev["time_us"].iloc[k]
    win = ev[(ev["time_us"] > t_k - 720 * 3_600_000_000) & (ev["time_us"] <= t_k)]
    assert len(win) == 90  # 30 days of 8h settlements
    z = (ev["rate"].iloc[k] - win["rate"].mean()) / win["rate"].std(ddof=1)
    assert out["funding_z_30d"].iloc[-1] == pytest.approx(z, rel=1e-9)


# ---------------------------------------------------------------- other families, by hand


def test_basis_premium_by_hand():
    f = synthetic_frame(300, seed=2)
    f["index_close"] = f["close"] * 0.999
    b = BASIS.run(f, CTX)
    exp = (f["mark_close"] - f["close"]) / f["close"] * 1e4
    np.testing.assert_allclose(b["basis_mark_bps"], exp)
    np.testing.assert_allclose(b["basis_mark_mean_24"].iloc[-1], exp.iloc[-24:].mean())
    p = PREMIUM.run(f, CTX)
    np.testing.assert_allclose(p["premium_trade_bps"], 1e4 * (1 / 0.999 - 1), rtol=1e-12)


def test_oi_changes_and_quadrants_by_hand():
    f = synthetic_frame(60, seed=4)
    f["close"] = 100.0
    f.loc[f.index[40:], "close"] = [101, 102, 103, 104, 103, 102, 101, 100, 99, 98] * 2
    oi = np.full(60, 1000.0)
    oi[40:50] = 1000 + 10 * np.arange(1, 11)
    oi[50:] = oi[49] - 10 * np.arange(1, 11)
    f["oi_contracts"] = oi
    f["oi_value"] = oi * f["close"]
    out = OI.run(f, CTX)
    assert out["oi_chg_1"].iloc[41] == pytest.approx(1020 / 1010 - 1)
    assert out["oi_chg_4"].iloc[45] == pytest.approx(1060 / 1020 - 1)
    assert out["oi_vel_4"].iloc[45] == pytest.approx(np.log(1060 / 1020) / 4)
    # bar 43: OI up over 4 bars, price 100 -> 104: longs building
    assert out.loc[f.index[43], ["oi_div_long_build", "oi_div_short_build"]].tolist() == [1, 0]
    # bar 48: OI up, price 104 -> 99... over 4 bars (44: 103 .. 48: 99) down: short build
    assert out["oi_div_short_build"].iloc[48] == 1.0
    # bar 53: OI down, price 102 -> 104 ... 50: 101? check by formula
    d_oi = np.log(oi[53] / oi[49])
    d_px = np.log(f["close"].iloc[53] / f["close"].iloc[49])
    assert d_oi < 0
    expect = "short_cover" if d_px > 0 else "long_unwind"
    assert out[f"oi_div_{expect}"].iloc[53] == 1.0
    # flat price and flat OI: no class fires
    assert out.iloc[10][[c for c in out.columns if "_div_" in c]].sum() == 0
    vol_notional = (f["volume"] * f["close"]).iloc[-24:].mean()
    assert out["oi_to_volume_24"].iloc[-1] == pytest.approx(f["oi_value"].iloc[-1] / vol_notional)


def test_taker_and_ratio_by_hand():
    f = synthetic_frame(300, seed=5)
    t = TAKER.run(f, CTX)
    share = f["taker_buy_base"] / f["volume"]
    np.testing.assert_allclose(t["taker_buy_share"], share)
    np.testing.assert_allclose(t["taker_imbalance"], 2 * share - 1)
    w = f.iloc[-4:]
    assert t["taker_imb_vw_4"].iloc[-1] == pytest.approx(
        (2 * w["taker_buy_base"] - w["volume"]).sum() / w["volume"].sum())
    tr = TAKERRATIO.run(f, CTX)
    np.testing.assert_allclose(tr["takerratio_imbalance"], 2 * share - 1, atol=1e-12)
    g = RATIO_FAMILIES[0].run(f, CTX)
    r = f["ls_global_account_ratio"]
    np.testing.assert_allclose(g["ratio_global_long_share"], r / (1 + r))
    assert g["ratio_global_chg_24"].iloc[-1] == pytest.approx(np.log(r.iloc[-1] / r.iloc[-25]))


def test_liquidation_by_hand():
    f = synthetic_frame(400, seed=6)
    out = LIQUIDATION.run(f, CTX)
    buy, sell = f["liq_buy_notional"], f["liq_sell_notional"]
    tot = buy + sell
    i = int(np.flatnonzero(tot.to_numpy() > 0)[-1])
    assert out["liquidation_imbalance"].iloc[i] == pytest.approx(
        (buy.iloc[i] - sell.iloc[i]) / tot.iloc[i])
    assert out["liquidation_notional_rel_168"].iloc[-1] == pytest.approx(
        tot.iloc[-1] / tot.iloc[-168:].mean())
    w = slice(len(f) - 24, len(f))
    assert out["liquidation_to_volume_24"].iloc[-1] == pytest.approx(
        tot.iloc[w].sum() / (f["volume"] * f["close"]).iloc[w].sum())
    quiet = tot.to_numpy() == 0
    assert out["liquidation_imbalance"][quiet].isna().all()  # 0/0 is NaN, not 0


# ---------------------------------------------------------------- absence


def test_absent_inputs_make_families_unavailable():
    bare = synthetic_frame(500, extras=False)
    for fam in (FUNDING, BASIS, PREMIUM, OI, *RATIO_FAMILIES, TAKERRATIO, LIQUIDATION):
        assert not fam.is_available(bare, CTX), fam.name
    assert TAKER.is_available(bare, CTX)  # bars carry taker_buy_base
    all_nan = synthetic_frame(500)
    all_nan[["oi_contracts", "oi_value"]] = np.nan
    assert not OI.is_available(all_nan, CTX)
    with pytest.raises(KeyError, match="oi_contracts"):
        OI.run(bare, CTX)


def test_missing_rows_stay_nan_not_zero():
    f = synthetic_frame(500)
    f.loc[f.index[200:260], ["oi_contracts", "oi_value"]] = np.nan
    out = OI.run(f, CTX)
    assert out.iloc[200:260].isna().all().all()
    assert out["oi_chg_1"].iloc[199] == out["oi_chg_1"].iloc[199]  # defined before the hole


# ---------------------------------------------------------------- real data


@pytest.mark.integration
def test_funding_and_basis_on_real_btc(real_btc_1h):
    f = real_btc_1h
    assert FUNDING.is_available(f, CTX) and BASIS.is_available(f, CTX)
    assert not OI.is_available(f, CTX)
    fund = assert_contract(FUNDING, f, CTX)
    basis = assert_contract(BASIS, f, CTX)
    # direct check of the 24h carry on a sample of bars: sum of the distinct settlements
    closes = f.index + pd.Timedelta("1h")
    ev = f[["funding_time", "funding_rate"]].drop_duplicates("funding_time").set_index(
        "funding_time")["funding_rate"]
    for i in range(500, len(f), 2711):
        w = ev[(ev.index > closes[i] - pd.Timedelta("24h")) & (ev.index <= closes[i])]
        assert fund["funding_cum_24h_bps"].iloc[i] == pytest.approx(w.sum() * 1e4, abs=1e-9)
    to_next = fund["funding_hours_to_next"]
    assert to_next.dropna().between(0, 8).all()
    # the last bar closes at 2025-07-01 00:00, whose settlement is not in the data: overdue
    assert to_next.isna().sum() == 1 and np.isnan(to_next.iloc[-1])
    assert (fund["funding_annualized"].abs() < 5).all()
    z = fund["funding_z_30d"].dropna()
    assert len(z) > 15_000 and z.abs().max() < 20
    # mark bars exist from 2023-12-02: basis is NaN before, defined after
    first_mark = f["mark_close"].first_valid_index()
    assert basis.loc[:first_mark, "basis_mark_bps"].iloc[:-1].isna().all()
    b = basis.loc[first_mark:, "basis_mark_bps"]
    assert b.notna().mean() > 0.99 and b.abs().median() < 20


def _import_gravestone(store, symbol: str):
    from perptrader.marketdata.importer import import_paths
    from perptrader.marketdata.sources.base import ImportHints
    from shared_data import real_file

    paths = [real_file(f"gravestone/data/{kind}/{symbol}.csv")
             for kind in ("1h", "oi_4h", "funding")]
    reports = import_paths([Path(p) for p in paths], store, ImportHints())
    assert all(r.status == "imported" for r in reports), [r.reason for r in reports]


@pytest.mark.integration
def test_open_interest_on_real_gravestone(store):
    from perptrader.marketdata.loader import load

    _import_gravestone(store, "ADAUSDT")
    f = load("ADAUSDT", "1h", "2026-02-01", store=store)
    assert OI.is_available(f, CTX) and FUNDING.is_available(f, CTX)
    out = assert_contract(OI, f, CTX)
    assert_no_lookahead(OI, f, CTX)
    has_oi = f["oi_contracts"].notna()
    assert out.loc[~has_oi].isna().all().all()  # before 2026-02-20: absent, not zero
    chg = out["oi_chg_1"].dropna()
    # OI is published every 4h on 1h bars: about one bar in four changes
    moving = (chg != 0).mean()
    assert 0.15 < moving < 0.35
    assert chg.abs().max() < 0.5
    assert out["oi_price_corr_24"].dropna().between(-1, 1).all()
    ratio = out["oi_to_volume_24"].dropna()
    assert (ratio > 0).all() and ratio.median() > 1  # OI is many hours of volume
    fund = assert_contract(FUNDING, f, CTX)
    assert fund["funding_cum_24h_bps"].notna().mean() > 0.9
