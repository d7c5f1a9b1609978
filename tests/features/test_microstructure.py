"""Microstructure families: bar liquidity estimators, Kyle's lambda, order-book features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feature_checks import assert_contract, assert_no_lookahead, assert_start_invariant
from feature_frames import synthetic_frame
from perptrader.features.base import FeatureContext
from perptrader.features.microstructure import (
    BOOK,
    FAMILIES,
    KYLE,
    LIQUIDITY,
    amihud,
    corwin_schultz,
    kyle_lambda,
    roll_spread,
)
from perptrader.features.microstructure_book import (
    order_flow_imbalance,
    pivot_book,
    snapshot_features,
)

CTX = FeatureContext(timeframe="1h")


def synthetic_book(frame: pd.DataFrame, per_bar: int = 4, levels: int = 20,
                   seed: int = 1) -> pd.DataFrame:
    """Long-format top-N snapshots a few seconds apart inside each bar, around the close."""
    rng = np.random.default_rng(seed)
    n = len(frame)
    offs = 3000 + np.sort(rng.uniform(0, 20 * per_bar, (n, per_bar)), axis=1)
    opens = frame.index.tz_convert(None).to_numpy()
    ts = (opens[:, None] + (offs * 1e6).astype("timedelta64[us]")).ravel()
    mid = np.repeat(frame["close"].to_numpy(), per_bar)
    s, tick, lev = len(ts), 0.1, np.arange(levels)
    half = tick * rng.integers(1, 4, s)
    step = tick * rng.integers(1, 3, (s, 1))
    bid = (mid - half)[:, None] - step * lev
    ask = (mid + half)[:, None] + step * lev
    return pd.DataFrame({
        "ts": pd.DatetimeIndex(np.repeat(ts, levels), tz="UTC"),
        "level": np.tile(lev, s), "bid_price": bid.ravel(),
        "bid_qty": rng.lognormal(0, 1, (s, levels)).ravel(), "ask_price": ask.ravel(),
        "ask_qty": rng.lognormal(0, 1, (s, levels)).ravel(), "update_id": np.arange(s * levels)})


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthetic_frame(1500, seed=21)


@pytest.mark.parametrize("family", [LIQUIDITY, KYLE], ids=lambda f: f.name)
def test_bar_family_contract(family, frame):
    assert family.is_available(frame, CTX)
    out = assert_contract(family, frame, CTX)
    assert all(c.startswith(family.name + "_") for c in out.columns)
    assert_no_lookahead(family, frame, CTX)
    assert_start_invariant(family, frame, CTX)


def test_book_family_contract(frame):
    ctx = FeatureContext(timeframe="1h", book=synthetic_book(frame))
    assert BOOK.is_available(frame, ctx)
    out = assert_contract(BOOK, frame, ctx)
    assert all(c.startswith("book_") for c in out.columns)
    assert_no_lookahead(BOOK, frame, ctx)
    assert_start_invariant(BOOK, frame, ctx)
    assert (out["book_spread_bps_mean"] > 0).all()
    assert out.filter(like="_imb").abs().max().max() <= 1
    assert out["book_ofi_norm"].notna().mean() > 0.99


def test_families_exported():
    assert [f.name for f in FAMILIES] == ["liquidity", "kyle", "book"]


# ---------------------------------------------------------------- bar estimators by hand


def test_amihud_by_hand():
    close = np.array([100.0, 101.0, 99.99, 99.99])
    volume = np.array([10.0, 20.0, 0.0, 5.0])
    a = amihud(close, volume)
    assert np.isnan(a[0])
    assert a[1] == pytest.approx(0.01 * 1e4 / (20 * 101 / 1e6))
    assert np.isnan(a[2])  # zero volume: undefined, not infinite
    assert a[3] == 0.0
    f = synthetic_frame(100, seed=3)
    out = LIQUIDITY.run(f, CTX)
    per_bar = amihud(f["close"].to_numpy(), f["volume"].to_numpy())
    assert out["liquidity_amihud_24"].iloc[-1] == pytest.approx(per_bar[-24:].mean())
    assert out["liquidity_amihud_log_24"].iloc[-1] == pytest.approx(np.log(per_bar[-24:].mean()))


def test_roll_spread_by_hand():
    # a bid-ask bounce around 100: returns alternate, serial covariance negative
    close = np.array([100.0, 100.1, 100.0, 100.1, 100.0, 100.1, 100.05, 100.1])
    spread, autocorr = roll_spread(close, 4)
    r = np.diff(np.log(close))
    pairs_now, pairs_prev = r[-4:], r[-5:-1]
    cov = np.cov(pairs_now, pairs_prev, ddof=1)[0, 1]
    assert cov < 0
    assert spread[-1] == pytest.approx(2 * np.sqrt(-cov) * 1e4, rel=1e-9)
    assert autocorr[-1] == pytest.approx(np.corrcoef(pairs_now, pairs_prev)[0, 1], rel=1e-9)
    assert np.isnan(spread[:5]).all()  # 4 pairs need 6 prices
    # a trend with growing steps: positive serial covariance -> Roll undefined (NaN)
    trend = 100 * np.exp(np.cumsum([0, 0.001, 0.002, 0.003, 0.004, 0.005, 0.006]))
    s2, _ = roll_spread(trend, 4)
    assert np.isnan(s2).all()


def test_corwin_schultz_by_hand():
    high = np.array([101.0, 102.0, 102.0])
    low = np.array([99.0, 100.0, 101.9])
    s = corwin_schultz(high, low)
    assert np.isnan(s[0])
    beta = np.log(101 / 99) ** 2 + np.log(102 / 100) ** 2
    gamma = np.log(102 / 99) ** 2
    k = 3 - 2 * np.sqrt(2)
    alpha = (np.sqrt(2 * beta) - np.sqrt(beta)) / k - np.sqrt(gamma / k)
    expect = 2 * (np.exp(alpha) - 1) / (1 + np.exp(alpha))
    assert s[1] == pytest.approx(max(expect, 0.0))
    assert s[2] >= 0.0  # negative estimates are set to zero, as in the paper


def test_kyle_lambda_exact_linear():
    rng = np.random.default_rng(8)
    n, lam = 60, 2.5
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.003, n)))
    volume = rng.uniform(50, 150, n)
    r_bps = np.diff(np.log(close), prepend=np.nan) * 1e4
    signed_musd = r_bps / lam  # exactly r = lam * s
    taker_buy = (signed_musd * 1e6 / close + volume) / 2
    slope, r2 = kyle_lambda(close, volume, taker_buy, 24)
    assert np.isnan(slope[:24]).all()
    np.testing.assert_allclose(slope[24:], lam, rtol=1e-9)
    np.testing.assert_allclose(r2[24:], 1.0, rtol=1e-9)


def test_kyle_absent_without_taker_volume():
    f = synthetic_frame(300)
    f["taker_buy_base"] = np.nan
    assert not KYLE.is_available(f, CTX)
    assert LIQUIDITY.is_available(f, CTX)
    f2 = synthetic_frame(300)
    f2.loc[f2.index[:100], "taker_buy_base"] = np.nan
    out = KYLE.run(f2, CTX)
    assert out.iloc[:123].isna().all().all()  # NaN in, NaN out: no zero-filled flow
    assert out["kyle_lambda_24"].iloc[123:].notna().all()  # windows of 24 from row 100


# ---------------------------------------------------------------- order book by hand


def _snapshots(rows: list[tuple[str, list[tuple[float, float, float, float]]]]) -> pd.DataFrame:
    out = []
    for ts, levels in rows:
        for lvl, (bp, bq, ap, aq) in enumerate(levels):
            out.append({"ts": pd.Timestamp(ts, tz="UTC"), "level": lvl, "bid_price": bp,
                        "bid_qty": bq, "ask_price": ap, "ask_qty": aq, "update_id": 1})
    return pd.DataFrame(out)


def test_ofi_three_snapshots_by_hand():
    book = _snapshots([
        ("2024-01-01 00:00:01", [(100.0, 5.0, 101.0, 4.0)]),
        ("2024-01-01 00:00:02", [(100.0, 7.0, 101.0, 4.0)]),  # bid queue +2
        ("2024-01-01 00:00:03", [(100.5, 3.0, 100.8, 2.0)]),  # bid up (+3), ask down (-2)
    ])
    a = pivot_book(book)
    sane = np.ones(3, dtype=bool)
    e = order_flow_imbalance(a.ts_us, a.bid_px[:, 0], a.bid_qty[:, 0], a.ask_px[:, 0],
                             a.ask_qty[:, 0], sane)
    # e1 = (7 - 5) + (-4 + 4) = 2; e2 = 3 - 0 - 2 + 0 = 1
    np.testing.assert_array_equal(e, [np.nan, 2.0, 1.0])
    idx = pd.DatetimeIndex([pd.Timestamp("2024-01-01", tz="UTC")], name="ts")
    bars = pd.DataFrame({"open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0],
                         "volume": [1.0]}, index=idx)
    out = BOOK.run(bars, FeatureContext(timeframe="1m", book=book))
    depth = np.mean([(5 + 4) / 2, (7 + 4) / 2, (3 + 2) / 2])
    assert out["book_ofi_norm"].iloc[0] == pytest.approx(3.0 / depth)
    # a gap longer than a minute is a capture hole, not flow
    gap = book.copy()
    gap.loc[gap.index[-1], "ts"] = pd.Timestamp("2024-01-01 00:05:00", tz="UTC")
    g = pivot_book(gap)
    e2 = order_flow_imbalance(g.ts_us, g.bid_px[:, 0], g.bid_qty[:, 0], g.ask_px[:, 0],
                              g.ask_qty[:, 0], sane)
    assert np.isnan(e2[2])


def test_snapshot_measures_by_hand():
    levels = [(100.0 - i, 1.0 + i, 101.0 + i, 2.0) for i in range(5)]
    book = _snapshots([("2024-01-01 00:00:01", levels)])
    f = snapshot_features(pivot_book(book))
    mid = 100.5
    assert f["spread_bps"][0] == pytest.approx(1 / mid * 1e4)
    micro = (101.0 * 1.0 + 100.0 * 2.0) / 3.0
    assert f["micro_bps"][0] == pytest.approx((micro - mid) / mid * 1e4)
    bq, aq = sum(1.0 + i for i in range(5)), 10.0
    assert f["imb5"][0] == pytest.approx((bq - aq) / (bq + aq))
    assert f["imb_total"][0] == pytest.approx((bq - aq) / (bq + aq))
    assert np.isnan(f["imb10"][0])  # only 5 levels stored: no 10-level figure
    notional = sum((100.0 - i) * (1.0 + i) + (101.0 + i) * 2.0 for i in range(5))
    assert f["depth5_log10"][0] == pytest.approx(np.log10(notional))
    assert np.isnan(f["depth10_log10"][0])
    # the largest bid is level 4 (qty 5) at 96.0
    assert f["bid_wall_bps"][0] == pytest.approx((mid - 96.0) / mid * 1e4)
    assert f["bid_wall_share"][0] == pytest.approx(5.0 / bq)
    x = np.log((np.array([101.0 + i for i in range(5)]) - mid) / mid * 1e4)
    y = np.log(np.cumsum(np.full(5, 2.0)))
    assert f["slope_ask"][0] == pytest.approx(np.polyfit(x, y, 1)[0])


def test_book_aggregation_windows_and_absence():
    idx = pd.date_range("2024-01-01", periods=3, freq="1min", tz="UTC", name="ts").astype(
        "datetime64[us, UTC]")
    bars = pd.DataFrame({"open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0},
                        index=idx)
    lv = [(100.0, 1.0, 101.0, 1.0)]
    book = _snapshots([
        ("2024-01-01 00:00:10", [(100.0, 1.0, 100.2, 1.0)]),
        ("2024-01-01 00:00:50", [(100.0, 3.0, 101.0, 1.0)]),
        ("2024-01-01 00:01:00", lv),  # exactly the first bar's close: second bar
    ])
    ctx = FeatureContext(timeframe="1m", book=book)
    out = BOOK.run(bars, ctx)
    s1, s2 = 0.2 / 100.1 * 1e4, 1.0 / 100.5 * 1e4
    assert out["book_spread_bps_last"].iloc[0] == pytest.approx(s2)
    assert out["book_spread_bps_mean"].iloc[0] == pytest.approx((s1 + s2) / 2)
    assert out["book_imb_total_last"].iloc[0] == pytest.approx(0.5)
    assert out["book_spread_bps_last"].iloc[1] == pytest.approx(s2)
    assert out.iloc[2].isna().all()  # no snapshot in the third bar: NaN, not zero
    assert not BOOK.is_available(bars, FeatureContext(timeframe="1m"))
    assert not BOOK.is_available(bars, FeatureContext(timeframe="1m", book=book.iloc[:0]))
    late = book.assign(ts=book["ts"] + pd.Timedelta("1D"))
    assert not BOOK.is_available(bars, FeatureContext(timeframe="1m", book=late))
    crossed = _snapshots([("2024-01-01 00:00:10", [(101.0, 1.0, 100.0, 1.0)])])
    bad = BOOK.run(bars, FeatureContext(timeframe="1m", book=crossed))
    assert bad.isna().all().all()


# ---------------------------------------------------------------- real data


@pytest.mark.integration
def test_liquidity_and_kyle_on_real_btc(real_btc_1h):
    f = real_btc_1h
    liq = assert_contract(LIQUIDITY, f, CTX)
    cs = liq["liquidity_cs_bps_24"].dropna()
    assert cs.between(0, 500).all() and cs.median() > 0
    roll = liq["liquidity_roll_bps_48"]
    # Roll's spread exists only where returns are negatively autocorrelated
    neg = liq["liquidity_ret_autocorr_48"] < 0
    assert roll[neg].notna().all() and roll[~neg].isna().all()
    assert KYLE.is_available(f, CTX)  # taker volume from 2025
    ky = KYLE.run(f, CTX)
    has_flow = f["taker_buy_base"].notna()
    assert ky.loc[~has_flow].isna().all().all()
    lam = ky["kyle_lambda_96"].dropna()
    assert len(lam) > 3000
    assert lam.median() > 0  # buying pressure lifts the price: positive impact


@pytest.mark.integration
def test_book_on_real_btc_capture(store):
    from perptrader.core.instruments import Instrument
    from perptrader.marketdata.importer import import_paths
    from perptrader.marketdata.kinds import Kind
    from perptrader.marketdata.sources.base import ImportHints
    from shared_data import real_file

    path = real_file("orderbook/hftbacktest/usdm/btcusdt_20240718.gz")
    reports = import_paths([path], store, ImportHints())
    assert reports[0].status == "imported", reports[0].reason
    inst = Instrument.parse("BTCUSDT")
    book = store.read(Kind.BOOK, inst, None, None, None)
    trades = store.read(Kind.TRADES, inst, None, None, None)
    assert len(book) > 1000 and len(trades) > 500
    # 10-second bars built from the stored trades
    px = trades.set_index("ts")["price"].astype("float64")
    bars = px.resample("10s", label="left", closed="left").ohlc().dropna()
    bars["volume"] = trades.set_index("ts")["qty"].resample("10s").sum().reindex(bars.index)
    bars.index = bars.index.astype("datetime64[us, UTC]").rename("ts")
    ctx = FeatureContext(symbol="BTCUSDT", timeframe="10s", book=book, trades=trades)
    assert BOOK.is_available(bars, ctx)
    out = assert_contract(BOOK, bars, ctx)
    assert_no_lookahead(BOOK, bars, ctx)
    seen = out["book_spread_bps_last"].notna()
    assert seen.mean() > 0.8  # about one snapshot a second
    assert (out.loc[seen, "book_spread_bps_mean"] > 0).all()
    assert (out.loc[seen, "book_spread_bps_mean"] < 5).all()  # BTCUSDT: ~0.02 bps
    imb = out.filter(regex=r"_imb").stack()
    assert imb.between(-1, 1).all()
    assert (out.loc[seen, "book_depth20_log10_last"] > 3).all()  # > $1k in 20 levels
    mid_move = np.log(bars["close"]).diff()
    both = out["book_ofi_norm"].notna() & mid_move.notna()
    # order-flow imbalance and the price move of the same bar go together (CKS 2014)
    assert np.corrcoef(out["book_ofi_norm"][both], mid_move[both])[0, 1] > 0.2
