"""Meta-labelling: labels, trade returns without look-ahead, the meta model, sizing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from perptrader.ml.meta import (
    META_EXTRA_COLUMNS,
    MetaModel,
    meta_inputs,
    meta_labels,
    meta_size,
    trade_net_returns,
)

FAST = {"n_estimators": 200, "early_stopping_rounds": 20, "num_threads": 1}


def _bars(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.concatenate(([100.0], close[:-1])) * (1 + rng.normal(0, 0.001, n))
    return pd.DataFrame({"open": open_, "high": np.maximum(open_, close) * 1.002,
                         "low": np.minimum(open_, close) * 0.998, "close": close},
                        index=pd.date_range("2024", periods=n, freq="h", tz="UTC"))


def test_meta_labels() -> None:
    side = np.array([1.0, -1.0, 0.0, 1.0, np.nan, -1.0, 1.0])
    ret = np.array([0.01, 0.02, 0.05, -0.001, 0.01, np.nan, 0.0])
    got = meta_labels(side, ret)
    np.testing.assert_array_equal(got, [1.0, 1.0, np.nan, 0.0, np.nan, np.nan, 0.0])
    with pytest.raises(ValueError):
        meta_labels(np.array([2.0]), np.array([0.1]))
    with pytest.raises(ValueError, match="shape"):
        meta_labels(np.array([1.0]), np.array([0.1, 0.2]))


def test_trade_net_returns_by_hand() -> None:
    bars = pd.DataFrame({"open": [100.0, 101.0, 102.0, 99.0, 98.0]})
    side = np.array([1.0, -1.0, 0.0, 1.0, 1.0])
    got = trade_net_returns(bars, side, horizon=2, cost=0.001)
    # row 0: in at open 1 (101), out at open 3 (99); row 1: short 102 -> 98
    want = [99 / 101 - 1 - 0.001, -(98 / 102 - 1) - 0.001, np.nan, np.nan, np.nan]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    flat = trade_net_returns(bars, np.zeros(5), horizon=1, cost=0.001)
    np.testing.assert_array_equal(flat, [0.0, 0.0, 0.0, np.nan, np.nan])  # flat earns 0
    assert np.isnan(trade_net_returns(bars, np.array([np.nan, 1, 1, 1, 1]), 1, 0.0)[0])
    with pytest.raises(ValueError):
        trade_net_returns(bars, side, horizon=0, cost=0.0)
    with pytest.raises(ValueError):
        trade_net_returns(bars, side[:3], horizon=1, cost=0.0)


def test_trade_returns_use_only_the_next_open_onward() -> None:
    bars = _bars()
    h, t = 5, 30
    side = np.where(np.arange(len(bars)) % 3 == 0, -1.0, 1.0)
    base = trade_net_returns(bars, side, h, 0.0012)
    past = bars.copy()
    past.iloc[: t + 1] *= 1.5  # every price of bars 0..t, the close of t included
    assert trade_net_returns(past, side, h, 0.0012)[t] == base[t]
    future = bars.copy()
    future.iloc[t + 2 + h:] *= 0.5  # after the exit
    assert trade_net_returns(future, side, h, 0.0012)[t] == base[t]
    inner = bars.copy()  # closes, highs and lows in between do not matter either
    inner.iloc[t + 1: t + 2 + h, inner.columns.get_indexer(["high", "low", "close"])] *= 1.1
    assert trade_net_returns(inner, side, h, 0.0012)[t] == base[t]
    entry = bars.copy()  # ...but its own entry price does
    entry.iloc[t + 1, entry.columns.get_loc("open")] *= 1.01
    assert trade_net_returns(entry, side, h, 0.0012)[t] != base[t]
    assert np.isnan(base[-h - 1:]).all() and not np.isnan(base[: -h - 1]).any()


def _planted(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Signals profitable iff feature 0 > 0 (10% of outcomes flipped)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    proba = rng.dirichlet(np.ones(3), n)
    side = np.where(proba[:, 2] > proba[:, 0], 1.0, -1.0)
    side[rng.random(n) < 0.2] = 0.0  # no signal: no meta-label
    win = (x[:, 0] > 0) ^ (rng.random(n) < 0.1)
    net = np.where(win, 1.0, -1.0) * rng.uniform(0.001, 0.02, n)
    return meta_inputs(x, proba, side), meta_labels(side, net)


def test_meta_model_learns_planted_rule(tmp_path: Path) -> None:
    x, y = _planted(4000, 0)
    tr, va, te = slice(0, 2400), slice(2400, 3000), slice(3000, None)
    model = MetaModel(params=FAST, seed=0)
    history = model.fit(x[tr], y[tr], None, x[va], y[va], np.ones(600))
    assert history["n_train"] == int((~np.isnan(y[tr])).sum())  # unknown rows dropped
    p = model.predict(x[te])
    known = ~np.isnan(y[te])
    auc = roc_auc_score(y[te][known], p[known])
    print(f"\nplanted meta rule: test AUC {auc:.3f}, best iteration {model.best_iteration}")
    assert auc > 0.8
    assert ((p >= 0) & (p <= 1)).all()
    model.save(tmp_path / "meta")
    np.testing.assert_array_equal(MetaModel.load(tmp_path / "meta").predict(x[te]), p)
    np.testing.assert_array_equal(MetaModel.from_dict(model.to_dict()).predict(x[te]), p)
    with pytest.raises(ValueError):
        model.predict(x[te][:, :3])


def test_meta_model_noise_is_not_learned() -> None:
    x, y = _planted(3000, 1)
    rng = np.random.default_rng(5)
    y = np.where(np.isnan(y), np.nan, rng.integers(0, 2, len(y)).astype(float))
    model = MetaModel(params=FAST, seed=0)
    model.fit(x[:1800], y[:1800], None, x[1800:2300], y[1800:2300], None)
    p = model.predict(x[2300:])
    known = ~np.isnan(y[2300:])
    assert abs(roc_auc_score(y[2300:][known], p[known]) - 0.5) < 0.1


def test_meta_inputs_and_unfitted() -> None:
    x = meta_inputs(np.zeros((4, 2)), np.full((4, 3), 1 / 3), np.array([1, -1, 0, 1]))
    assert x.shape == (4, 2 + len(META_EXTRA_COLUMNS)) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, -1], [1, -1, 0, 1])
    with pytest.raises(RuntimeError):
        MetaModel().predict(x)
    with pytest.raises(ValueError, match="0, 1 or NaN"):
        MetaModel(params=FAST).fit(x, np.array([0, 1, 2, 0.0]), None, x,
                                   np.array([0, 1, 0, 1.0]), None)


def test_meta_size() -> None:
    side = np.array([1.0, -1.0, 1.0, -1.0, 0.0, 1.0, np.nan])
    p = np.array([0.4, 0.7, 0.9, 0.55, 0.9, np.nan, 0.9])
    step = meta_size(side, p, threshold=0.5, sizing="step")
    np.testing.assert_array_equal(step, [0.0, -1.0, 1.0, -1.0, 0.0, 0.0, 0.0])
    kelly = meta_size(side, p, threshold=0.5, sizing="kelly")
    np.testing.assert_allclose(kelly, [0.0, -0.4, 0.8, -0.1, 0.0, 0.0, 0.0])
    afml = meta_size(side, p, threshold=0.5, sizing="afml")
    from scipy.stats import norm
    z = (0.7 - 0.5) / np.sqrt(0.7 * 0.3)
    assert afml[1] == pytest.approx(-(2 * norm.cdf(z) - 1))
    assert afml[0] == 0.0 and afml[4] == 0.0
    # a higher threshold skips more; a low one never turns a side around
    assert (meta_size(side, p, threshold=0.6, sizing="step") != 0).sum() == 2
    low = meta_size(side, p, threshold=0.3, sizing="kelly")
    assert low[0] == 0.0 and np.all(np.sign(low[low != 0]) == side[low != 0])
    for sizing in ("kelly", "afml"):
        grid = meta_size(np.ones(101), np.linspace(0, 1, 101), sizing=sizing)
        assert (np.diff(grid) >= 0).all() and grid.max() <= 1.0 and grid.min() >= 0.0
    with pytest.raises(ValueError, match="sizing"):
        meta_size(side, p, sizing="half")


@pytest.mark.integration
def test_real_btc_meta_labelling(real_btc_1h: pd.DataFrame) -> None:
    """Primary rule: the sign of the 24-bar return (momentum); the meta model sees a few
    volatility / momentum features. Prints the meta-label balance and out-of-sample AUC
    (no edge is asserted: whether one exists is the research question)."""
    bars = real_btc_1h
    close = bars["close"]
    logret = np.log(close).diff()
    feats = pd.DataFrame({f"mom{k}": np.log(close / close.shift(k)) for k in (6, 24, 72)})
    feats["vol24"] = logret.rolling(24).std()
    feats["vol_ratio"] = feats["vol24"] / logret.rolling(168).std()
    side = np.sign(feats["mom24"].fillna(0.0).to_numpy())
    h = 24
    net = trade_net_returns(bars, side, h, 0.0012)
    y = meta_labels(side, net)
    proba = np.full((len(bars), 3), 1 / 3)
    x = meta_inputs(feats.to_numpy(), proba, side)
    n = len(bars)
    a, b = int(0.6 * n), int(0.75 * n)
    model = MetaModel(params={"num_threads": 1}, seed=0)
    history = model.fit(x[: a - h], y[: a - h], None, x[a: b - h], y[a: b - h], None)
    p = model.predict(x[b:])
    known = ~np.isnan(y[b:])
    auc = roc_auc_score(y[b:][known], p[known])
    sized = meta_size(side[b:], p, threshold=0.5, sizing="kelly")
    print(f"\nBTCUSDT 1h momentum primary, h={h}, cost 0.12%: success share "
          f"{np.nanmean(y):.3f}, test AUC {auc:.3f}, best iteration "
          f"{history['best_iteration']}, trades kept {np.mean(sized != 0):.3f}")
    assert 0.3 < np.nanmean(y) < 0.7
    assert known.sum() > 4000 and history["n_train"] > 10000
