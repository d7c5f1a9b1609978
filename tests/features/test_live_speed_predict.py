"""Small batches (the live path's one row) are predicted on one thread: the same
probabilities as the batch prediction, and the model's own thread setting is kept."""

from __future__ import annotations

import numpy as np
import pytest

from perptrader.ml.base import MLFrame
from perptrader.ml.gbdt import SMALL_BATCH, CatBoostModel, LightGBMModel, XGBoostModel

KINDS = {
    "lightgbm": (LightGBMModel, {"num_threads": 2}),
    "xgboost": (XGBoostModel, {"nthread": 2, "max_depth": 4}),
    "catboost": (CatBoostModel, {"thread_count": 2, "depth": 4}),
}


def _frame(n: int = 1200, seed: int = 3) -> MLFrame:
    import pandas as pd

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    x[rng.random(n) < 0.1, 0] = np.nan
    y = np.digitize(np.nan_to_num(x[:, 0]) + 0.5 * rng.normal(size=n), [-0.5, 0.5]) - 1
    index = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC", name="ts")
    table = pd.DataFrame(x, index=index, columns=[f"f{i}" for i in range(6)])
    table["label"] = y.astype(float)
    return MLFrame(table, [f"f{i}" for i in range(6)], label="label", horizon=1, meta={})


@pytest.mark.parametrize("kind", list(KINDS))
def test_one_row_predictions_equal_batch_predictions(kind: str) -> None:
    cls, threads = KINDS[kind]
    data = _frame()
    model = cls({"n_estimators": 25, "early_stopping_rounds": 10, **threads})
    model.fit(data, np.arange(800), np.arange(820, 1000))
    rows = np.arange(len(data.frame), dtype=np.int64)
    assert len(rows) >= SMALL_BATCH  # the batch call keeps the configured threads
    batch = model.predict_proba(data, rows)
    for r in (0, 5, 999, len(rows) - 1):
        np.testing.assert_array_equal(model.predict_proba(data, np.array([r])), batch[[r]])
    np.testing.assert_array_equal(model.predict_proba(data, rows[:200]), batch[:200])
    # and the batch path after a small one is unchanged (xgboost restores its setting)
    np.testing.assert_array_equal(model.predict_proba(data, rows), batch)
