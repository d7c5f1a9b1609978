"""Pooled cross-symbol training: causal per-symbol normalisation, cross-asset features,
time-based folds over repeated times, models fitted on some symbols and scored on all."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from perptrader.ml.base import CLASSES, MLFrame
from perptrader.ml.pooled import (
    PooledFrame,
    cross_asset_features,
    model_view,
    normalise_per_symbol,
    per_symbol_metrics,
    pool,
    pooled_folds,
    pooled_walk_forward,
    position_horizon,
)
from perptrader.ml.splits import WalkForwardSpec

QUICK = {"params": {"n_estimators": 60, "early_stopping_rounds": 15, "num_threads": 1,
                    "min_child_samples": 20}}


def symbol_frame(n: int = 1500, seed: int = 0, *, price: float = 30_000.0,
                 horizon: int = 4, start: str = "2024-01-01", extra: str | None = None,
                 skip: slice | None = None) -> MLFrame:
    """One symbol's table: ``sig`` decides the label (same mechanics for every symbol),
    ``level`` is the price (a scale that differs by symbol), ``flag`` is 0/1, ``noise``
    carries nothing. ``skip`` drops bars (a data gap)."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range(start, periods=n, freq="h", tz="UTC")
    close = price * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    sig = rng.normal(size=n)
    label = np.where(sig > 0.45, 1.0, np.where(sig < -0.45, -1.0, 0.0))
    label[-horizon:] = np.nan
    frame = pd.DataFrame({"close": close, "level": close, "sig": sig,
                          "flag": (rng.random(n) < 0.2).astype(np.float64),
                          "noise": rng.normal(size=n), "label_adaptive": label}, index=idx)
    features = ["level", "sig", "flag", "noise"]
    if extra:
        frame[extra] = rng.normal(size=n)
        features.append(extra)
    if skip is not None:
        frame = frame.drop(frame.index[skip])
    return MLFrame(frame, features, horizon=horizon,
                   meta={"timeframe": "1h", "feature_set": "test"})


# -- cross-asset features ------------------------------------------------------------


def test_cross_asset_features_are_the_leaders_past_returns() -> None:
    leader = symbol_frame(300, seed=1).frame["close"]
    leader = leader.drop(leader.index[150])                 # the leader misses one bar
    index = pd.date_range("2024-01-01", periods=300, freq="h", tz="UTC")
    xa = cross_asset_features(index, leader)
    assert xa.columns.tolist() == ["xa_btc_ret_1", "xa_btc_ret_4", "xa_btc_ret_24",
                                   "xa_btc_vol_24"]
    log_close = np.log(leader)
    t = index[100]
    assert xa.loc[t, "xa_btc_ret_1"] == pytest.approx(log_close[t] - log_close[index[99]])
    assert xa.loc[t, "xa_btc_ret_24"] == pytest.approx(log_close[t] - log_close[index[76]])
    r1 = log_close.diff().loc[index[77]:t]
    assert xa.loc[t, "xa_btc_vol_24"] == pytest.approx(r1.std())
    assert xa.loc[index[150]].isna().all()                  # no leader bar: NaN
    assert np.isnan(xa.loc[index[151], "xa_btc_ret_1"])     # a return across the gap
    assert xa.iloc[:24]["xa_btc_ret_24"].isna().all()


def test_cross_asset_features_do_not_see_the_future() -> None:
    leader = symbol_frame(400, seed=2).frame["close"]
    index = leader.index
    before = cross_asset_features(index, leader)
    changed = leader.copy()
    changed.iloc[250:] *= np.exp(np.random.default_rng(0).normal(0, 0.05, 150))
    after = cross_asset_features(index, changed)
    pd.testing.assert_frame_equal(before.iloc[:250], after.iloc[:250])
    assert not np.allclose(before.iloc[250:]["xa_btc_ret_1"], after.iloc[250:]["xa_btc_ret_1"])


def test_cross_asset_features_refuse_another_timeframe() -> None:
    leader = symbol_frame(200).frame["close"]
    index = pd.date_range("2024-01-01", periods=50, freq="4h", tz="UTC")
    with pytest.raises(ValueError, match="resample the leader"):
        cross_asset_features(index, leader)


# -- causal normalisation ------------------------------------------------------------


def test_normalise_per_symbol_uses_only_past_rows() -> None:
    frame = symbol_frame(800, seed=3).frame
    cols = ["level", "noise"]
    z = normalise_per_symbol(frame, cols, window=100)
    perturbed = frame.copy()
    perturbed.iloc[500:, perturbed.columns.get_indexer(cols)] *= 7.0
    z2 = normalise_per_symbol(perturbed, cols, window=100)
    pd.testing.assert_frame_equal(z.iloc[:500], z2.iloc[:500])
    assert not np.allclose(z.iloc[500:].to_numpy(), z2.iloc[500:].to_numpy())
    window = frame["level"].iloc[301:401]                   # the 100 rows ending at 400
    expected = (frame["level"].iloc[400] - window.mean()) / window.std()
    assert z["level"].iloc[400] == pytest.approx(expected)
    assert z.iloc[:24].isna().all().all()                   # min_periods = window // 4
    assert z.iloc[25:].notna().all().all()
    with pytest.raises(ValueError, match="ONE symbol"):
        normalise_per_symbol(pd.concat([frame, frame]).sort_index(), cols)


def test_normalise_per_symbol_constant_window_is_zero_not_nan() -> None:
    frame = pd.DataFrame({"a": np.r_[np.full(60, 3.0), np.arange(40.0)]},
                         index=pd.date_range("2024-01-01", periods=100, freq="h", tz="UTC"))
    z = normalise_per_symbol(frame, ["a"], window=20)
    assert (z["a"].iloc[5:60] == 0.0).all()
    assert z["a"].iloc[70] == pytest.approx((frame["a"].iloc[70] - frame["a"].iloc[51:71].mean())
                                            / frame["a"].iloc[51:71].std())


# -- pooling -------------------------------------------------------------------------


def _three(n: int = 1500) -> dict[str, MLFrame]:
    return {"BTCUSDT": symbol_frame(n, 1), "ETHUSDT": symbol_frame(n, 2, price=2_000.0),
            "SOLUSDT": symbol_frame(n, 3, price=150.0, extra="only_sol",
                                    skip=slice(700, 710))}


def test_pool_stacks_sorted_rows_with_common_features() -> None:
    frames = _three()
    pooled = pool(frames, symbol_feature=True)
    data = pooled.data
    assert isinstance(pooled, PooledFrame)
    assert len(data) == sum(len(f) for f in frames.values())
    assert data.index.is_monotonic_increasing and data.index.has_duplicates
    codes = pd.Series(pooled.symbol).map({s: i for i, s in enumerate(pooled.symbols)})
    first_time = data.index == data.index[0]
    assert pooled.symbol[first_time].tolist() == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    key = data.index.asi8 * 10 + codes.to_numpy()
    assert (np.diff(key) > 0).all()                         # (time, symbol), no repeats
    assert "only_sol" not in data.features                  # one symbol's extra column
    assert data.features == ["level", "sig", "flag", "noise", "xa_btc_ret_1", "xa_btc_ret_4",
                             "xa_btc_ret_24", "xa_btc_vol_24", "sym_BTCUSDT", "sym_ETHUSDT",
                             "sym_SOLUSDT"]
    eth = pooled.rows_of("ETHUSDT")
    assert (data.frame["sym_ETHUSDT"].to_numpy()[eth] == 1.0).all()
    assert data.frame["sym_ETHUSDT"].sum() == len(eth)
    # the leader's context is the same number on every symbol's row of one time
    t = data.index[900 * 3]
    xa = data.frame.loc[t, "xa_btc_ret_4"]
    assert np.ptp(xa.to_numpy()) == 0.0 and np.isfinite(xa).all()
    # price levels: 30000 vs 150 before, comparable z-scores after; flags stay 0/1
    level = data.frame["level"].to_numpy()
    for s in pooled.symbols:
        z = level[pooled.rows_of(s)][200:]
        assert np.nanmax(np.abs(z)) < 10
    assert set(np.unique(data.frame["flag"])) == {0.0, 1.0}
    assert data.frame["close"].to_numpy()[eth].max() < 10_000   # raw OHLCV kept


def test_pool_without_normalising_or_leader() -> None:
    frames = _three(400)
    pooled = pool(frames, normalise=False, leader=None)
    assert pooled.data.features == ["level", "sig", "flag", "noise"]
    btc = pooled.rows_of("BTCUSDT")
    np.testing.assert_array_equal(pooled.data.frame["level"].to_numpy()[btc],
                                  frames["BTCUSDT"].frame["level"].to_numpy())
    with pytest.raises(ValueError, match="leader 'XRPUSDT'"):
        pool(frames, leader="XRPUSDT")
    outside = pool({"ETHUSDT": frames["ETHUSDT"]}, leader="BTCUSDT",
                   leader_close=frames["BTCUSDT"].frame["close"])
    assert "xa_btc_ret_1" in outside.data.features


def test_pooled_folds_split_on_time_and_purge() -> None:
    pooled = pool(_three())
    data, h = pooled.data, pooled.data.horizon
    spec = WalkForwardSpec(train="20d", test="5d", valid=0.2)
    folds = pooled_folds(pooled, spec)
    assert len(folds) >= 4
    step = pd.Timedelta("1h")
    for fold in folds:
        test_times = data.index[fold.test]
        first_test = test_times.min()
        # every symbol's row of a test time is a test row
        in_window = (data.index >= first_test) & (data.index <= test_times.max())
        np.testing.assert_array_equal(np.flatnonzero(in_window), fold.test)
        assert set(pooled.symbol[fold.test]) == set(pooled.symbols)
        train_times, valid_times = data.index[fold.train], data.index[fold.valid]
        assert not np.isin(train_times.asi8, test_times.asi8).any()
        # label windows [t, t + h] of training rows end before the test window
        assert train_times.max() + h * step < first_test
        assert valid_times.max() + h * step < first_test
        assert train_times.max() + h * step < valid_times.min()
        # a time is a training time for all symbols that have it, or for none
        assert len(fold.train) == int(np.isin(data.index.asi8, train_times.asi8).sum())


def test_position_horizon_covers_time() -> None:
    """The ``gbdt`` stack purges its inner folds by position: it gets a view whose
    horizon in rows spans ``horizon`` bars of time."""
    pooled = pool(_three(300))
    assert position_horizon(pooled) == pooled.data.horizon * 3
    assert model_view(pooled, "gbdt").horizon == pooled.data.horizon * 3
    assert model_view(pooled, "lightgbm") is pooled.data


def test_gbdt_model_is_blind_to_repeated_times() -> None:
    """A model fed the pooled table predicts exactly as on the same rows with unique
    (fake) times: the row-wise kinds never use the index."""
    from perptrader.ml.models import make_model

    pooled = pool(_three(600))
    data = pooled.data
    fake = data.frame.set_axis(pd.date_range("2020-01-01", periods=len(data), freq="h",
                                             tz="UTC"))
    unique = MLFrame(fake, data.features, horizon=data.horizon)
    rows = np.arange(len(data))
    train, valid, test = rows[:1000], rows[1100:1300], rows[1400:]
    outs = []
    for table in (data, unique):
        model = make_model("lightgbm", **QUICK)
        model.fit(table, train, valid)
        outs.append(model.predict_proba(table, test))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_unseen_symbol_gets_predictions_from_shared_mechanics() -> None:
    pooled = pool(_three(), symbol_feature=True)
    spec = WalkForwardSpec(train="25d", test="10d", valid=0.2, max_folds=2)
    oos = pooled_walk_forward(pooled, "lightgbm", spec, model_kwargs=QUICK,
                              train_symbols=["BTCUSDT", "ETHUSDT"])
    assert set(oos) == set(pooled.symbols)
    sol, btc = oos["SOLUSDT"], oos["BTCUSDT"]
    assert sol.columns.tolist() == [*CLASSES, "fold"]
    assert len(sol) > 300 and sol.index.is_unique
    np.testing.assert_allclose(sol[list(CLASSES)].sum(axis=1), 1.0)
    # the same test windows as the symbols it was trained on (SOL's gap excepted)
    assert set(sol.index) <= set(btc.index) and len(btc) - len(sol) <= 10
    assert sorted(sol["fold"].unique()) == sorted(btc["fold"].unique())
    scores = per_symbol_metrics(pooled, oos, ["BTCUSDT", "ETHUSDT"]).set_index("symbol")
    assert not scores.loc["SOLUSDT", "seen"] and scores.loc["BTCUSDT", "seen"]
    # ``sig`` drives every symbol's label the same way: the unseen symbol is predicted
    # far above chance (1/3)
    assert scores.loc["SOLUSDT", "macro_f1"] > 0.8


def test_pooled_walk_forward_refuses_sequence_models_and_unknown_symbols() -> None:
    pooled = pool(_three(300))
    spec = WalkForwardSpec(train="5d", test="2d")
    with pytest.raises(ValueError, match="sequence models"):
        pooled_walk_forward(pooled, "xlstm-pattern", spec)
    with pytest.raises(KeyError, match="XRPUSDT"):
        pooled_walk_forward(pooled, "lightgbm", spec, train_symbols=["XRPUSDT"])


def test_fold_without_training_rows_is_skipped_for_every_symbol() -> None:
    frames = {"BTCUSDT": symbol_frame(900, 1),
              "LATE": symbol_frame(900, 5, price=5.0, skip=slice(0, 500))}
    pooled = pool(frames)
    spec = WalkForwardSpec(train="10d", test="5d", valid=0.2)
    with pytest.warns(UserWarning, match="skipped for every symbol"):
        oos = pooled_walk_forward(pooled, "lightgbm", spec, model_kwargs=QUICK,
                                  train_symbols=["LATE"])
    folds = {name: set(frame["fold"]) for name, frame in oos.items()}
    assert folds["BTCUSDT"] == folds["LATE"] and len(folds["LATE"]) >= 1
    assert 0 not in folds["BTCUSDT"]                        # LATE had no rows then
    everything = pooled_walk_forward(pooled, "lightgbm", spec, model_kwargs=QUICK)
    assert 0 in set(everything["BTCUSDT"]["fold"])


def _feather_bars(name: str, start: str, end: str) -> pd.DataFrame:
    from shared_data import read_futures_feather

    bars = read_futures_feather(name).rename(columns={"date": "ts"}).set_index("ts")
    return bars.loc[start:end]


def test_pooled_btc_eth_1h_real_data() -> None:
    """BTC + ETH 1h (Oct 2024 .. Mar 2025), bars features, LightGBM quick settings: ETH
    scored by a model trained on BTC alone (never seen) and by the pooled model."""
    from perptrader.ml.dataset import build_ml_frame

    frames = {}
    for symbol, file in (("BTCUSDT", "BTC_USDT_USDT-1h-futures.feather"),
                         ("ETHUSDT", "ETH_USDT_USDT-1h-futures.feather")):
        bars = _feather_bars(file, "2024-10-01", "2025-03-01")
        frames[symbol] = build_ml_frame(bars, symbol=symbol, timeframe="1h",
                                        feature_set="bars")
    pooled = pool(frames)
    assert pooled.data.index.has_duplicates
    spec = WalkForwardSpec(train="60d", test="21d", valid=0.15, max_folds=2)
    kwargs = {"params": {**QUICK["params"], "n_estimators": 80, "feature_fraction": 0.3}}
    lines = []
    for train in (["BTCUSDT"], None):
        oos = pooled_walk_forward(pooled, "lightgbm", spec, model_kwargs=kwargs,
                                  train_symbols=train)
        scores = per_symbol_metrics(pooled, oos, train)
        assert set(scores["symbol"]) == {"BTCUSDT", "ETHUSDT"}
        assert (scores["n"] > 500).all()
        assert np.isfinite(scores[["macro_f1", "log_loss"]].to_numpy()).all()
        assert oos["ETHUSDT"].index.is_unique
        assert oos["ETHUSDT"].index.equals(oos["BTCUSDT"].index)   # same test windows
        lines.append(f"trained on {train or 'both'}:\n{scores.round(3).to_string()}")
    print("\n" + "\n".join(lines))
