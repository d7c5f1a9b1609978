"""``model:NAME`` as a policy: the per-bar ``decide`` (live features, one bar at a time)
gives exactly the batch ``targets``; frames with more inputs than the model's are used,
frames lacking one of its inputs are refused by name."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from feature_frames import synthetic_frame
from perptrader.core.errors import PerptraderError
from perptrader.ml.dataset import build_ml_frame
from perptrader.ml.gbdt import LightGBMModel
from perptrader.ml.registry import register
from perptrader.ml.splits import WalkForwardSpec
from perptrader.ml.strategy import ModelStrategy
from perptrader.strategies import get_strategy
from perptrader.strategies.base import AccountView

N_BARS = 2600
DECIDED = 150


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return synthetic_frame(N_BARS, seed=11, extras=False)


@pytest.fixture(scope="module")
def richer() -> pd.DataFrame:
    """The same bars plus marks, funding, open interest...: inputs the model never saw."""
    return synthetic_frame(N_BARS, seed=11, extras=True)


def _gbdt(bars: pd.DataFrame, feature_set: str) -> tuple[LightGBMModel, object]:
    data = build_ml_frame(bars, symbol="BTCUSDT", timeframe="1h", feature_set=feature_set)
    model = LightGBMModel({"n_estimators": 8, "num_leaves": 7, "num_threads": 1,
                           "early_stopping_rounds": 8, "learning_rate": 0.3})
    half = len(data) // 2
    model.fit(data, np.arange(0, half), np.arange(half + 30, len(data) - 30))
    return model, data


def _view(bars: pd.DataFrame) -> AccountView:
    return AccountView.flat(bars.index[-1], 10_000.0, float(bars["close"].iloc[-1]))


def _per_bar(policy: ModelStrategy, frame: pd.DataFrame, first: int) -> np.ndarray:
    return np.array([policy.decide(frame.iloc[: t + 1], _view(frame.iloc[: t + 1]))
                     for t in range(first, len(frame))])


@pytest.fixture(scope="module")
def gbdt_default(bars: pd.DataFrame) -> tuple[LightGBMModel, object]:
    return _gbdt(bars, "default")


def test_gbdt_decide_equals_targets_bar_by_bar(bars: pd.DataFrame, richer: pd.DataFrame,
                                               gbdt_default) -> None:
    model, data = gbdt_default
    register("gb", model, data=data, summary={}, spec=WalkForwardSpec())
    policy = get_strategy("model:gb", {"buy_threshold": "0.36", "sell_threshold": "0.36"})
    assert isinstance(policy, ModelStrategy)
    assert policy.warmup_bars == len(bars) - len(data)  # the build's warm-up cut
    targets = policy.targets(bars)
    tail = targets[-DECIDED:]
    assert len(np.unique(tail)) > 1, "thresholds too strict for a meaningful check"
    # the per-bar path: first call builds the live state, then one update per bar
    live = _per_bar(policy, bars, len(bars) - DECIDED)
    np.testing.assert_array_equal(live, tail)
    # a skipped bar makes the state stale: rebuilt from the bars, same numbers
    t = len(bars) - 10
    assert policy.decide(bars.iloc[: t + 1], _view(bars)) == targets[t]
    # more inputs than the model was trained with: the extra families are not built
    np.testing.assert_array_equal(policy.targets(richer), targets)
    fresh = ModelStrategy("gb", buy_threshold=0.36, sell_threshold=0.36)
    np.testing.assert_array_equal(_per_bar(fresh, richer, len(richer) - 20), targets[-20:])


def test_gbdt_decide_is_flat_inside_the_warmup(bars: pd.DataFrame, gbdt_default) -> None:
    model, data = gbdt_default
    register("gb", model, data=data, summary={}, spec=WalkForwardSpec())
    policy = ModelStrategy("gb", buy_threshold=0.36, sell_threshold=0.36)
    warmup = policy.warmup_bars
    first = bars.iloc[: warmup + 40]
    targets = policy.targets(first)
    assert (targets[:warmup] == 0).all()
    live = _per_bar(policy, first, warmup - 3)
    np.testing.assert_array_equal(live, targets[warmup - 3:])
    assert policy.decide(bars.iloc[:5], _view(bars)) == 0.0


def test_a_missing_input_is_refused_by_name(bars: pd.DataFrame, richer: pd.DataFrame
                                            ) -> None:
    model, data = _gbdt(richer, "default")
    assert any(f.startswith("funding_") for f in data.features)
    register("rich", model, data=data, summary={}, spec=WalkForwardSpec())
    policy = ModelStrategy("rich")
    with pytest.raises(PerptraderError, match=r"missing: \[.*funding_"):
        policy.targets(bars)
    with pytest.raises(PerptraderError, match=r"missing: \[.*funding_"):
        policy.decide(bars, _view(bars))


def test_sequence_expert_decide_equals_targets(bars: pd.DataFrame) -> None:
    torch = pytest.importorskip("torch")
    from perptrader.ml.experts import ExpertConfig, XLSTMExpert

    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        data = build_ml_frame(bars, symbol="BTCUSDT", timeframe="1h", feature_set="bars")
        expert = XLSTMExpert("pattern", ExpertConfig(
            seq_len=8, d_model=8, n_blocks=2, slstm_at=(1,), embedding_dim=4,
            batch_size=32, warmup_steps=2, cpu_threads=1, device="cpu", max_epochs=1,
            train_stride=8, seed=1))
        expert.fit(data, np.arange(0, 1000), np.arange(1020, 1200))
        register("seq", expert, data=data, summary={}, spec=WalkForwardSpec())
        policy = ModelStrategy("seq", buy_threshold=0.34, sell_threshold=0.34)
        assert policy.warmup_bars == len(bars) - len(data) + 8 - 1
        targets = policy.targets(bars)
        assert (targets[:policy.warmup_bars] == 0).all()
        live = _per_bar(policy, bars, len(bars) - 40)
        np.testing.assert_array_equal(live, targets[-40:])
        # right after the warm-up: the first window is built from the bars on a rebuild
        w = policy.warmup_bars
        assert policy.decide(bars.iloc[: w + 1], _view(bars)) == targets[w]
        assert policy.decide(bars.iloc[:w], _view(bars)) == 0.0
    finally:
        torch.use_deterministic_algorithms(False)


def test_view_is_not_read_by_model_policies(bars: pd.DataFrame, gbdt_default) -> None:
    model, data = gbdt_default
    register("gb", model, data=data, summary={}, spec=WalkForwardSpec())
    policy = ModelStrategy("gb")
    odd = AccountView.flat(bars.index[-1], math.nan)
    assert policy.decide(bars, odd) == policy.targets(bars)[-1]


def _cost_aware_summary(k: float = 0.5) -> dict:
    from perptrader.ml.decision import CostAwareRule, DecisionParams

    rule = CostAwareRule(DecisionParams(enter=3.0, exit=1.0, min_hold=3, vol_target=0.002),
                         k=k, horizon=24,
                         round_trip_cost=0.0012, vol_window=72, fundings_per_bar=1 / 8)
    return {"decision": {"use": "cost_aware", "cost_aware": rule.as_dict(),
                         "chosen_on": {"tuning_rows": 0}}}


def test_cost_aware_decide_equals_targets_bar_by_bar(bars: pd.DataFrame,
                                                     richer: pd.DataFrame,
                                                     gbdt_default) -> None:
    """The stored cost-aware layer is path-dependent: decide carries its state bar by
    bar, and a stale call (restart, skipped bar) rebuilds it from all the bars; both
    give the batch targets to the float, on a frame with funding (``richer``)."""
    model, data = gbdt_default
    register("ca", model, data=data, summary=_cost_aware_summary(), spec=WalkForwardSpec())
    policy = get_strategy("model:ca")
    assert isinstance(policy, ModelStrategy) and policy.params["decision"] == "cost_aware"
    targets = policy.targets(richer)
    tail = targets[-DECIDED:]
    # a held position spans bars and sizes vary with σ: a real path, not a sign
    assert (tail != 0).sum() > 10 and (tail == 0).sum() > 5
    assert len(np.unique(np.abs(tail[tail != 0]))) > 5
    live = _per_bar(policy, richer, len(richer) - DECIDED)
    np.testing.assert_array_equal(live, tail)
    restarted = ModelStrategy("ca")  # a new process: state rebuilt from the bars
    t = len(richer) - 37
    assert restarted.decide(richer.iloc[: t + 1], _view(richer)) == targets[t]
    np.testing.assert_array_equal(_per_bar(restarted, richer, t + 1), targets[t + 1:])
    # the plain thresholds on the same model, on request
    plain = ModelStrategy("ca", decision="threshold", buy_threshold=0.36, sell_threshold=0.36)
    assert set(np.unique(plain.targets(richer))) <= {-1.0, 0.0, 1.0}
    assert plain.params["decision"] == "threshold"


def test_cost_aware_without_a_stored_layer_is_refused(bars: pd.DataFrame,
                                                      gbdt_default) -> None:
    model, data = gbdt_default
    register("plain", model, data=data, summary={}, spec=WalkForwardSpec())
    assert ModelStrategy("plain").params["decision"] == "threshold"
    with pytest.raises(PerptraderError, match="no stored cost-aware decision layer"):
        ModelStrategy("plain", decision="cost_aware").targets(bars)
    with pytest.raises(ValueError, match="decision must be one of"):
        get_strategy("model:plain", {"decision": "sometimes"})


def test_a_layer_without_skill_never_trades(richer: pd.DataFrame, gbdt_default) -> None:
    model, data = gbdt_default
    register("flat", model, data=data, summary=_cost_aware_summary(k=0.0),
             spec=WalkForwardSpec())
    assert (ModelStrategy("flat").targets(richer) == 0.0).all()
