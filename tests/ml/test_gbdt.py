"""LightGBM / XGBoost / CatBoost models: learning, class weights, early stopping, saving."""

from __future__ import annotations

import numpy as np
import pytest

from ml_frames import planted_ml_frame
from perptrader.ml.base import MLFrame
from perptrader.ml.evaluate import classification_metrics
from perptrader.ml.gbdt import (
    CatBoostModel,
    LightGBMModel,
    XGBoostModel,
    balanced_weights,
    class_weight_table,
)

KINDS = {"lightgbm": LightGBMModel, "xgboost": XGBoostModel, "catboost": CatBoostModel}
#: tiny, single-threaded models (the test machine's 2 cores are shared)
FAST = {
    "lightgbm": {"n_estimators": 30, "early_stopping_rounds": 10, "num_threads": 1},
    "xgboost": {"n_estimators": 30, "early_stopping_rounds": 10, "nthread": 1,
                "max_depth": 4},
    "catboost": {"n_estimators": 30, "early_stopping_rounds": 10, "thread_count": 1,
                 "depth": 4},
}


def planted_frame(n: int = 2000, seed: int = 0, *, signal: float = 1.0,
                  rare_buy: bool = False) -> MLFrame:
    """Label = bucket of ``sig`` (plus noise ``1 - signal``); five noise columns, 10% NaN
    in ``sig`` and a few unknown labels."""
    return planted_ml_frame(n, seed, signal=signal, rare_buy=rare_buy)


def split(n: int, horizon: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """train 60% / valid 15% / test 20%, each boundary purged by ``horizon``."""
    rows = np.arange(n, dtype=np.int64)
    a, b, c = int(0.6 * n), int(0.75 * n), int(0.8 * n)
    return rows[:a - horizon], rows[a:b - horizon], rows[c:]


@pytest.fixture(scope="module")
def planted() -> MLFrame:
    return planted_frame()


def test_class_weights_balance_classes() -> None:
    y = np.array([0, 1, 1, 1, 2, 2])
    table = class_weight_table(y)
    np.testing.assert_allclose(table, [2.0, 2 / 3, 1.0])
    w = balanced_weights(y)
    assert np.allclose(np.bincount(y, weights=w), 2.0)  # each class weighs n / 3
    np.testing.assert_allclose(class_weight_table(np.array([1, 1, 2])), [0.0, 0.75, 1.5])


@pytest.mark.parametrize("kind", list(KINDS))
def test_learns_planted_signal(kind: str, planted: MLFrame) -> None:
    train, valid, test = split(len(planted), planted.horizon)
    model = KINDS[kind](params=FAST[kind], seed=1)
    seen = []
    history = model.fit(planted, train, valid, progress=lambda *a: seen.append(a))
    test = planted.labelled(test)
    proba = model.predict_proba(planted, test)
    assert proba.shape == (len(test), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    known = ~np.isnan(planted.frame["sig"].to_numpy()[test])
    accuracy = (proba.argmax(axis=1) == planted.y[test])[known].mean()
    assert accuracy > 0.8, accuracy  # chance is ~0.34
    # history: curves, best iteration, only labelled rows used
    assert history["kind"] == kind
    assert 0 <= history["best_iteration"] < history["n_iterations"] <= 30
    assert len(history["curve"]) == history["n_iterations"]
    assert history["n_train"] == len(planted.labelled(train))
    assert history["curve"][-1]["train_loss"] < history["curve"][0]["train_loss"]
    assert seen and all(stage == "iteration" for stage, *_ in seen)
    # the planted feature dominates both importances
    assert model.importance().index[0] == "sig"
    shap = model.shap(planted, test[:200])
    assert shap.index[0] == "sig" and shap.iloc[0] > 3 * shap.iloc[1]


@pytest.mark.parametrize("kind", list(KINDS))
def test_balanced_weights_favour_the_rare_class(kind: str) -> None:
    data = planted_frame(seed=3, signal=0.5, rare_buy=True)
    train, valid, test = split(len(data), data.horizon)
    test = data.labelled(test)
    assert (data.y[train] == 2).mean() < 0.12
    shares = {}
    for mode in ("balanced", None):
        model = KINDS[kind](params={**FAST[kind], "class_weight": mode})
        history = model.fit(data, train, valid)
        proba = model.predict_proba(data, test)
        shares[mode] = (proba[:, 2].mean(), (proba.argmax(axis=1) == 2).mean())
    assert history["class_weights"] == {"SELL": 1.0, "HOLD": 1.0, "BUY": 1.0}
    assert shares["balanced"][0] > shares[None][0] + 0.1
    assert shares["balanced"][1] > shares[None][1]


@pytest.mark.parametrize("kind", list(KINDS))
def test_early_stopping_stops_on_noise(kind: str) -> None:
    data = planted_frame(seed=5)
    rng = np.random.default_rng(11)
    data.frame["label_adaptive"] = rng.integers(-1, 2, len(data)).astype(float)
    train, valid, _ = split(len(data), data.horizon)
    params = {**FAST[kind], "n_estimators": 300, "early_stopping_rounds": 10,
              "learning_rate": 0.2}
    history = KINDS[kind](params=params).fit(data, train, valid)
    assert history["n_iterations"] < 300
    assert history["best_iteration"] < 100
    assert history["n_iterations"] - history["best_iteration"] - 1 <= 10 + 1


@pytest.mark.parametrize("kind", list(KINDS))
def test_save_load_round_trip(kind: str, planted: MLFrame, tmp_path) -> None:
    train, valid, test = split(len(planted), planted.horizon)
    model = KINDS[kind](params=FAST[kind], columns=["sig", "noise0", "noise1"], seed=2)
    model.fit(planted, train, valid)
    model.save(tmp_path / kind)
    loaded = KINDS[kind].load(tmp_path / kind)
    assert loaded.columns == ["sig", "noise0", "noise1"]
    assert loaded.best_iteration == model.best_iteration
    np.testing.assert_array_equal(loaded.predict_proba(planted, test),
                                  model.predict_proba(planted, test))
    other = next(k for k in KINDS if k != kind)
    with pytest.raises(ValueError, match=f"holds a '{kind}' model, not a '{other}'"):
        KINDS[other].load(tmp_path / kind)


def test_fit_refuses_bad_rows(planted: MLFrame) -> None:
    train, valid, _ = split(len(planted), planted.horizon)
    model = LightGBMModel(params=FAST["lightgbm"])
    with pytest.raises(ValueError, match="valid rows"):
        model.fit(planted, train, np.array([len(planted) - 1]))  # its label is unknown
    with pytest.raises(ValueError, match="overlap"):
        model.fit(planted, train, train[-50:])
    with pytest.raises(KeyError, match="nope"):
        LightGBMModel(columns=["sig", "nope"]).fit(planted, train, valid)
    with pytest.raises(ValueError, match="class_weight"):
        LightGBMModel(params={"class_weight": "auto"}).fit(planted, train, valid)
    with pytest.raises(RuntimeError, match="not fitted"):
        model.predict_proba(planted, train)


@pytest.mark.integration
def test_lightgbm_on_real_btc(real_btc_1h_ml: MLFrame) -> None:
    """One walk-forward-like split of the real BTCUSDT 1h table: OOS macro-F1, top gains."""
    data = real_btc_1h_ml
    n, h = len(data), data.horizon
    rows = np.arange(n, dtype=np.int64)
    train = rows[:int(0.6 * n) - h]
    valid = rows[int(0.6 * n):int(0.7 * n) - h]
    test = data.labelled(rows[int(0.8 * n):])
    model = LightGBMModel(params={"n_estimators": 200, "early_stopping_rounds": 30})
    history = model.fit(data, train, valid)
    proba = model.predict_proba(data, test)
    assert proba.shape == (len(test), 3)
    assert np.isfinite(proba).all() and (proba >= 0).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    metrics = classification_metrics(data.y[test], proba)
    print(f"\nLightGBM real BTCUSDT 1h: best iteration {history['best_iteration']}, "
          f"OOS accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}, "
          f"predicted shares {metrics['prediction_distribution']}")
    print(model.importance().head(10).round(1).to_string())
    assert 0.0 <= metrics["macro_f1"] <= 1.0
