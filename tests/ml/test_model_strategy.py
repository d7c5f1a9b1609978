"""Probabilities to targets: thresholds, the model strategy, OOS trading evaluation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feature_frames import synthetic_frame
from perptrader.backtest.engine import run_on_frame
from perptrader.core.errors import PerptraderError
from perptrader.ml.base import CLASSES, MLFrame
from perptrader.ml.dataset import build_ml_frame
from perptrader.ml.gbdt import LightGBMModel
from perptrader.ml.registry import register
from perptrader.ml.splits import WalkForwardSpec
from perptrader.ml.strategy import ModelStrategy, parse_model_ref
from perptrader.ml.trading import PrecomputedTargets, oos_backtest, oos_targets, signals
from perptrader.strategies import BuyAndHold, get_strategy


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return synthetic_frame(2500, seed=7, extras=False)


@pytest.fixture(scope="module")
def data(bars: pd.DataFrame) -> MLFrame:
    return build_ml_frame(bars, symbol="BTCUSDT", timeframe="1h", feature_set="bars")


@pytest.fixture(scope="module")
def model(data: MLFrame) -> LightGBMModel:
    m = LightGBMModel({"n_estimators": 8, "num_leaves": 7, "num_threads": 2,
                       "early_stopping_rounds": 8, "learning_rate": 0.3})
    m.fit(data, np.arange(0, 1200), np.arange(1230, 1500))
    return m


def test_signals_thresholds() -> None:
    p = np.array([
        [0.10, 0.44, 0.46],   # BUY >= .45 and > SELL -> long even though HOLD is close
        [0.46, 0.44, 0.10],   # short
        [0.30, 0.30, 0.40],   # below threshold -> flat
        [0.47, 0.06, 0.47],   # tie between BUY and SELL -> flat
        [0.05, 0.90, 0.05],   # HOLD -> flat
        [0.20, 0.00, 0.80],
    ])
    assert signals(p).tolist() == [1, -1, 0, 0, 0, 1]
    assert signals(p, buy_threshold=0.5, sell_threshold=0.5).tolist() == [0, 0, 0, 0, 0, 1]
    assert signals(p, buy_threshold=0.3, sell_threshold=0.9).tolist() == [1, 0, 1, 0, 0, 1]
    assert signals(np.full((2, 3), np.nan)).tolist() == [0, 0]
    with pytest.raises(ValueError, match="buy_threshold"):
        signals(p, buy_threshold=1.5)
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        signals(p[:, :2])


def test_precomputed_targets_match_by_time_and_truncate(bars: pd.DataFrame) -> None:
    idx = bars.index[100:200]
    strat = PrecomputedTargets(pd.Series(np.where(np.arange(100) % 2, 1.0, -1.0), index=idx))
    full = strat.targets(bars)
    assert (full[:100] == 0).all() and (full[200:] == 0).all()
    assert full[100:200].tolist() == [(-1.0, 1.0)[i % 2] for i in range(100)]
    assert (strat.targets(bars.iloc[:150]) == full[:150]).all()


def test_oos_backtest_flat_outside_windows_and_benchmark(data: MLFrame,
                                                         bars: pd.DataFrame) -> None:
    rng = np.random.default_rng(3)
    idx = data.index[500:900]
    proba = pd.DataFrame(rng.dirichlet([1, 1, 1], len(idx)), index=idx, columns=list(CLASSES))
    proba["fold"] = 0
    out = oos_backtest(data, bars, proba)
    assert out["first_bar"] == idx[0].isoformat() and out["bars"] == len(idx)
    for key in ("sharpe", "max_drawdown", "win_rate", "total_return", "trades", "fees_paid",
                "funding_paid"):
        assert key in out["model"] and key in out["buy_and_hold"]
    assert out["model"]["trades"] > 0 and out["model"]["fees_paid"] > 0
    bench = run_on_frame(bars.loc[idx[0]:idx[-1]], BuyAndHold(), symbol="BTCUSDT",
                         timeframe="1h")
    assert out["buy_and_hold"]["total_return"] == pytest.approx(
        bench.metrics["total_return"])
    # an all-HOLD model never trades
    hold = proba.copy()
    hold[list(CLASSES)] = [0.1, 0.8, 0.1]
    flat = oos_backtest(data, bars, hold)
    assert flat["model"]["trades"] == 0 and flat["model"]["total_return"] == 0.0
    assert (oos_targets(hold) == 0).all()
    with pytest.raises(PerptraderError, match="not bars"):
        shifted = proba.set_axis(proba.index + pd.Timedelta("30min"))
        oos_backtest(data, bars, shifted)


def test_model_strategy_targets_and_get_strategy(data: MLFrame, bars: pd.DataFrame,
                                                 model: LightGBMModel) -> None:
    spec = WalkForwardSpec()
    register("syn", model, data=data, summary={}, spec=spec)
    register("syn", model, data=data, summary={}, spec=spec)
    strat = get_strategy("model:syn", {"buy_threshold": "0.4", "sell_threshold": "0.4"})
    assert isinstance(strat, ModelStrategy) and strat.name == "model:syn"
    assert strat.params == {"model": "syn", "version": 2, "decision": "threshold",
                            "buy_threshold": 0.4, "sell_threshold": 0.4}
    targets = strat.targets(bars)
    assert targets.shape == (len(bars),)
    warmup = len(bars) - len(data)
    assert warmup > 0 and (targets[:warmup] == 0).all()  # no features yet -> flat
    assert set(np.unique(targets)) <= {-1.0, 0.0, 1.0}
    proba = model.predict_proba(data, np.arange(len(data)))
    assert (targets[warmup:] == signals(proba, 0.4, 0.4)).all()
    assert len(np.unique(targets[warmup:])) > 1
    # no look-ahead: a truncated frame gives the same targets on its rows
    cut = warmup + 300
    assert (strat.targets(bars.iloc[:cut]) == targets[:cut]).all()
    v1 = get_strategy("model:syn@1")
    assert isinstance(v1, ModelStrategy) and v1.version == 1 and v1.buy_threshold == 0.45
    with pytest.raises(ValueError, match="no parameter"):
        get_strategy("model:syn", {"fast": "3"})
    with pytest.raises(ValueError, match="positive integer"):
        get_strategy("model:syn@x")
    assert parse_model_ref("model:a@3") == ("a", 3) and parse_model_ref("b") == ("b", None)
    # the non-model registry keeps working
    assert get_strategy("sma_cross", {"fast": "5"}).params["fast"] == 5


def test_model_strategy_refuses_other_features(data: MLFrame, bars: pd.DataFrame,
                                               model: LightGBMModel) -> None:
    other = MLFrame(data.frame, data.features[:-3], data.label, data.horizon,
                    {**data.meta, "feature_hash": "f" * 16})
    narrow = LightGBMModel({"n_estimators": 3, "num_threads": 2})
    narrow.fit(other, np.arange(0, 800), np.arange(830, 1000))
    register("narrow", narrow, data=other, summary={}, spec=WalkForwardSpec())
    with pytest.raises(PerptraderError, match="feature hash"):
        ModelStrategy("narrow").targets(bars)
    with pytest.raises(PerptraderError, match="no model named"):
        ModelStrategy("absent").targets(bars)
