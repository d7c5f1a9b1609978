"""Gradient-boosted trees on the feature table: LightGBM, XGBoost, CatBoost.

All three share one contract (``_BoostedTrees``): multiclass over SELL/HOLD/BUY, NaN
handed to the library as missing (every one of them learns a default direction for
missing values, so no imputation bias), balanced class weights computed from the
TRAIN rows only (the label mix drifts between regimes; a model fit on a HOLD-heavy
window would otherwise learn "always HOLD"), and early stopping on the VALID rows only.

The libraries' native training APIs are used (``lgb.train``, ``xgb.train``,
``CatBoostClassifier`` with fixed ``class_names``) rather than the sklearn wrappers:
the wrappers infer the classes from the labels they are given, and a training window
without a single SELL row would silently yield a 2-column model. Here the model always
has 3 classes; a class absent from training simply gets a low probability.

The libraries see features named ``f0..fN``; our column list is kept beside the model,
which sidesteps each library's rules on allowed feature-name characters.

Saved folders hold the library's own file format (never a pickle of a booster) plus
``config.json`` (kind, params, columns, best iteration, class order).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from perptrader.ml.base import CLASSES, N_CLASSES, MLFrame, Progress
from perptrader.ml.models import read_config, write_config

#: our own keys in ``params`` (the rest goes to the library unchanged)
OWN_KEYS = ("n_estimators", "early_stopping_rounds", "progress_every", "class_weight")
#: batches smaller than this are predicted on one thread: for the live path's one row,
#: waking a thread pool costs ~200x the trees themselves (LightGBM: 7.7 ms -> 0.04 ms);
#: larger (batch) predictions keep the configured thread count
SMALL_BATCH = 256


def class_weight_table(y: np.ndarray, sample_weight: np.ndarray | None = None) -> np.ndarray:
    """(3,) per-class weights n / (n_classes_present * n_c): every present class weighs
    the same in the loss (sklearn's ``class_weight="balanced"``); an absent class gets 0
    because it has no rows to weigh.

    With per-row ``sample_weight`` n and n_c are sums of weights, so the classes still
    weigh the same once the row weights are applied: label-uniqueness weights are lower
    for time-outs (they span the whole holding period), and balancing on plain counts
    would quietly shift the mix away from them (on BTCUSDT 1h, HOLD 45% of rows but 34%
    of the weight)."""
    counts = np.bincount(y, weights=sample_weight, minlength=N_CLASSES).astype(np.float64)
    present = counts > 0
    out = np.zeros(N_CLASSES)
    total = len(y) if sample_weight is None else counts.sum()
    out[present] = total / (present.sum() * counts[present])
    return out


def balanced_weights(y: np.ndarray) -> np.ndarray:
    """Per-row weights of ``class_weight_table``."""
    return class_weight_table(y)[y]


class _BoostedTrees:
    """Shared fit/save/load logic; subclasses implement the library calls."""

    kind: ClassVar[str] = ""
    #: library defaults for ~10-20k rows x ~400 features (overridden by ``params``)
    DEFAULTS: ClassVar[dict[str, Any]] = {}
    #: file name of the library's model inside a saved folder
    MODEL_FILE: ClassVar[str] = ""

    def __init__(self, params: dict[str, Any] | None = None,
                 columns: list[str] | None = None, seed: int = 0) -> None:
        base = {"n_estimators": 500, "early_stopping_rounds": 50, "progress_every": 25,
                "class_weight": "balanced"}
        self.params: dict[str, Any] = {**base, **self.DEFAULTS, **(params or {})}
        self.columns: list[str] | None = list(columns) if columns is not None else None
        self.seed = int(seed)
        self.best_iteration: int | None = None
        self.history: dict[str, Any] = {}
        self._model: Any = None

    # -- library-specific ------------------------------------------------------------
    def _train(self, x_tr: np.ndarray, y_tr: np.ndarray, w_tr: np.ndarray,
               x_va: np.ndarray, y_va: np.ndarray, w_va: np.ndarray,
               progress: Progress | None) -> tuple[list[float], list[float]]:
        """Fit ``self._model``, set ``self.best_iteration`` (0-based); return the
        per-iteration (train, valid) multi-logloss curves."""
        raise NotImplementedError

    def _predict(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _gain(self) -> np.ndarray:
        """Per-column importance (gain-like), aligned with ``self.columns``."""
        raise NotImplementedError

    def _contributions(self, x: np.ndarray) -> np.ndarray:
        """(n, 3, n_features) SHAP contributions (bias column dropped)."""
        raise NotImplementedError

    def _save_model(self, path: Path) -> None:
        raise NotImplementedError

    def _load_model(self, path: Path) -> None:
        raise NotImplementedError

    def _library_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.params.items() if k not in OWN_KEYS}

    # -- Classifier protocol ---------------------------------------------------------
    def fit(self, data: MLFrame, train_rows: np.ndarray, valid_rows: np.ndarray,
            progress: Progress | None = None) -> dict[str, Any]:
        """Train on the labelled ``train_rows``, early-stop on the labelled ``valid_rows``.

        ``params["class_weight"]`` is "balanced" (default) or None (unweighted, kept
        for comparisons). Valid rows get the class weights of the TRAIN rows, so the
        early-stopping loss measures the same (balanced) objective the trees optimize.
        """
        columns = self.columns if self.columns is not None else list(data.features)
        missing = [c for c in columns if c not in data.frame.columns]
        if missing:
            raise KeyError(f"{self.kind}: columns missing from the frame: {missing[:10]}")
        self.columns = columns
        tr = data.labelled(np.asarray(train_rows, dtype=np.int64))
        va = data.labelled(np.asarray(valid_rows, dtype=np.int64))
        if len(tr) == 0:
            raise ValueError(f"{self.kind}: no labelled training rows")
        if len(va) == 0:
            raise ValueError(f"{self.kind}: early stopping needs labelled valid rows")
        if np.intersect1d(tr, va).size:
            raise ValueError(f"{self.kind}: train and valid rows overlap")
        y = data.y
        mode = self.params["class_weight"]
        if mode not in ("balanced", None):
            raise ValueError(f"{self.kind}: class_weight must be 'balanced' or None, "
                             f"got {mode!r}")
        # per-row ``data.sample_weight`` (e.g. label uniqueness) times the class weight,
        # the classes balanced on the weighted train rows
        row_tr, row_va = data.weights(tr), data.weights(va)
        weighted = row_tr if data.sample_weight is not None else None
        weights = (class_weight_table(y[tr], weighted) if mode == "balanced" else
                   np.ones(N_CLASSES))
        t0 = time.perf_counter()
        train_curve, valid_curve = self._train(
            data.x(tr, columns), y[tr], weights[y[tr]] * row_tr,
            data.x(va, columns), y[va], weights[y[va]] * row_va, progress)
        best = int(self.best_iteration if self.best_iteration is not None else
                   len(valid_curve) - 1)
        self.best_iteration = best
        self.history = {
            "kind": self.kind,
            "best_iteration": best,
            "n_iterations": len(valid_curve),
            "best_val_loss": float(valid_curve[best]) if valid_curve else float("nan"),
            "class_weights": dict(zip(CLASSES, map(float, weights), strict=True)),
            "sample_weight": data.sample_weight is not None,
            "n_train": len(tr), "n_valid": len(va),
            "seconds": round(time.perf_counter() - t0, 3),
            "curve": [{"iteration": i + 1, "train_loss": float(t), "val_loss": float(v)}
                      for i, (t, v) in enumerate(zip(train_curve, valid_curve, strict=True))],
        }
        return self.history

    def _require_fitted(self) -> None:
        if self._model is None or self.columns is None:
            raise RuntimeError(f"{self.kind}: model is not fitted")

    def predict_proba(self, data: MLFrame, rows: np.ndarray) -> np.ndarray:
        """(len(rows), 3) probabilities using the trees up to the best iteration."""
        self._require_fitted()
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:
            return np.zeros((0, N_CLASSES))
        proba = np.asarray(self._predict(data.x(rows, self.columns)), dtype=np.float64)
        proba = proba.reshape(len(rows), N_CLASSES)
        # XGBoost computes in float32: rows sum to 1 only within ~1e-7
        return proba / proba.sum(axis=1, keepdims=True)

    def importance(self) -> pd.Series:
        """Gain importance per column, largest first."""
        self._require_fitted()
        return pd.Series(self._gain(), index=self.columns, name="gain").sort_values(
            ascending=False)

    def shap(self, data: MLFrame, rows: np.ndarray) -> pd.Series:
        """Mean |SHAP| per column over ``rows``, summed over the 3 classes' margins."""
        self._require_fitted()
        contrib = self._contributions(data.x(np.asarray(rows, dtype=np.int64), self.columns))
        values = np.abs(contrib).mean(axis=0).sum(axis=0)
        return pd.Series(values, index=self.columns, name="mean_abs_shap").sort_values(
            ascending=False)

    def save(self, folder: Path) -> None:
        self._require_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._save_model(folder / self.MODEL_FILE)
        write_config(folder, {
            "kind": self.kind, "params": self.params, "columns": self.columns,
            "seed": self.seed, "best_iteration": self.best_iteration,
            "classes": list(CLASSES), "model_file": self.MODEL_FILE,
            "history": self.history,
        })

    @classmethod
    def load(cls, folder: Path) -> _BoostedTrees:
        config = read_config(Path(folder), expect_kind=cls.kind)
        model = cls(params=config["params"], columns=config["columns"], seed=config["seed"])
        model.best_iteration = int(config["best_iteration"])
        model.history = config.get("history", {})
        model._load_model(Path(folder) / config["model_file"])
        return model


def _names(n: int) -> list[str]:
    return [f"f{i}" for i in range(n)]


class LightGBMModel(_BoostedTrees):
    """LightGBM multiclass (``lgb.train`` with early-stopping + record-evaluation)."""

    kind: ClassVar[str] = "lightgbm"
    MODEL_FILE: ClassVar[str] = "model.txt"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "learning_rate": 0.05, "num_leaves": 31, "max_depth": -1,
        "min_child_samples": 50, "feature_fraction": 0.5, "bagging_fraction": 0.8,
        "bagging_freq": 1, "lambda_l2": 1.0, "max_bin": 255, "num_threads": 0,
    }

    def _train(self, x_tr, y_tr, w_tr, x_va, y_va, w_va, progress):
        import lightgbm as lgb

        params = {**self._library_params(), "objective": "multiclass",
                  "num_class": N_CLASSES, "metric": "multi_logloss", "seed": self.seed,
                  "deterministic": True, "force_col_wise": True, "verbosity": -1}
        names = _names(x_tr.shape[1])
        dtrain = lgb.Dataset(x_tr, y_tr, weight=w_tr, feature_name=names,
                             free_raw_data=True)
        dvalid = lgb.Dataset(x_va, y_va, weight=w_va, reference=dtrain, feature_name=names)
        evals: dict[str, Any] = {}
        total = int(self.params["n_estimators"])
        every = int(self.params["progress_every"])
        callbacks = [lgb.early_stopping(int(self.params["early_stopping_rounds"]),
                                        verbose=False),
                     lgb.record_evaluation(evals)]
        if progress is not None:
            def report(env: Any) -> None:
                done = env.iteration + 1
                if done % every == 0:
                    vals = {f"{name}_loss": float(v) for name, _, v, _ in
                            env.evaluation_result_list}
                    progress("iteration", done, total, vals)
            callbacks.append(report)
        self._model = lgb.train(params, dtrain, num_boost_round=total,
                                valid_sets=[dtrain, dvalid], valid_names=["train", "val"],
                                callbacks=callbacks)
        # best_iteration is 1-based here; 0 would mean "no early-stopping record"
        best = int(self._model.best_iteration) or self._model.current_iteration()
        self.best_iteration = best - 1
        return (list(evals["train"]["multi_logloss"]), list(evals["val"]["multi_logloss"]))

    def _predict(self, x):
        # a handful of rows (the live path): threads cost far more than the trees
        extra = {"num_threads": 1} if len(x) < SMALL_BATCH else {}
        return self._model.predict(x, num_iteration=self.best_iteration + 1, **extra)

    def _gain(self):
        return self._model.feature_importance("gain", iteration=self.best_iteration + 1)

    def _contributions(self, x):
        raw = self._model.predict(x, num_iteration=self.best_iteration + 1,
                                  pred_contrib=True)
        n_feat = len(self.columns)
        return np.asarray(raw).reshape(len(x), N_CLASSES, n_feat + 1)[:, :, :n_feat]

    def _save_model(self, path):
        self._model.save_model(str(path))

    def _load_model(self, path):
        import lightgbm as lgb

        self._model = lgb.Booster(model_file=str(path))


class XGBoostModel(_BoostedTrees):
    """XGBoost multiclass (``xgb.train`` with ``early_stopping_rounds``, hist trees)."""

    kind: ClassVar[str] = "xgboost"
    MODEL_FILE: ClassVar[str] = "model.json"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "learning_rate": 0.05, "max_depth": 6, "min_child_weight": 5.0,
        "subsample": 0.8, "colsample_bytree": 0.5, "reg_lambda": 1.0,
        "tree_method": "hist", "max_bin": 256, "nthread": -1,
    }

    def _train(self, x_tr, y_tr, w_tr, x_va, y_va, w_va, progress):
        import xgboost as xgb

        params = {**self._library_params(), "objective": "multi:softprob",
                  "num_class": N_CLASSES, "eval_metric": "mlogloss", "seed": self.seed,
                  "verbosity": 0}
        names = _names(x_tr.shape[1])
        dtrain = xgb.DMatrix(x_tr, y_tr, weight=w_tr, feature_names=names,
                             missing=np.nan)
        dvalid = xgb.DMatrix(x_va, y_va, weight=w_va, feature_names=names, missing=np.nan)
        evals: dict[str, Any] = {}
        total = int(self.params["n_estimators"])
        callbacks = []
        if progress is not None:
            every = int(self.params["progress_every"])

            class _Report(xgb.callback.TrainingCallback):
                def after_iteration(self, model, epoch, evals_log):
                    if (epoch + 1) % every == 0:
                        progress("iteration", epoch + 1, total,
                                 {f"{k}_loss": float(v["mlogloss"][-1])
                                  for k, v in evals_log.items()})
                    return False

            callbacks.append(_Report())
        self._model = xgb.train(params, dtrain, num_boost_round=total,
                                evals=[(dtrain, "train"), (dvalid, "val")],
                                early_stopping_rounds=int(self.params["early_stopping_rounds"]),
                                evals_result=evals, verbose_eval=False, callbacks=callbacks)
        self.best_iteration = int(self._model.best_iteration)
        return list(evals["train"]["mlogloss"]), list(evals["val"]["mlogloss"])

    def _dmatrix(self, x, nthread: int | None = None):
        import xgboost as xgb

        return xgb.DMatrix(x, feature_names=_names(x.shape[1]), missing=np.nan,
                           nthread=nthread)

    def _predict(self, x):
        if len(x) >= SMALL_BATCH:
            return self._model.predict(self._dmatrix(x),
                                       iteration_range=(0, self.best_iteration + 1))
        # a handful of rows (the live path): one thread, then the configured count back
        self._model.set_param({"nthread": 1})
        try:
            return self._model.predict(self._dmatrix(x, nthread=1),
                                       iteration_range=(0, self.best_iteration + 1))
        finally:
            self._model.set_param({"nthread": int(self.params.get("nthread", -1))})

    def _gain(self):
        score = self._model.get_score(importance_type="total_gain")
        return np.array([score.get(f"f{i}", 0.0) for i in range(len(self.columns))])

    def _contributions(self, x):
        raw = self._model.predict(self._dmatrix(x), pred_contribs=True,
                                  iteration_range=(0, self.best_iteration + 1))
        return np.asarray(raw)[:, :, :-1]

    def _save_model(self, path):
        self._model.save_model(str(path))

    def _load_model(self, path):
        import xgboost as xgb

        self._model = xgb.Booster()
        self._model.load_model(str(path))


class CatBoostModel(_BoostedTrees):
    """CatBoost multiclass (symmetric trees; ``eval_set`` + ``early_stopping_rounds``,
    the model is shrunk to its best iteration)."""

    kind: ClassVar[str] = "catboost"
    MODEL_FILE: ClassVar[str] = "model.cbm"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "learning_rate": 0.05, "depth": 6, "rsm": 0.5, "l2_leaf_reg": 3.0,
        "border_count": 128, "thread_count": -1,
    }

    def _train(self, x_tr, y_tr, w_tr, x_va, y_va, w_va, progress):
        from catboost import CatBoostClassifier, Pool

        total = int(self.params["n_estimators"])
        self._model = CatBoostClassifier(
            **self._library_params(), iterations=total, loss_function="MultiClass",
            class_names=list(range(N_CLASSES)), random_seed=self.seed,
            early_stopping_rounds=int(self.params["early_stopping_rounds"]),
            use_best_model=True, verbose=False, allow_writing_files=False)
        callbacks = None
        if progress is not None:
            every = int(self.params["progress_every"])

            class _Report:
                def after_iteration(self, info: Any) -> bool:
                    done = info.iteration
                    if done % every == 0:
                        vals = {("val_loss" if k == "validation" else "train_loss"):
                                float(v["MultiClass"][-1]) for k, v in info.metrics.items()}
                        progress("iteration", done, total, vals)
                    return True

            callbacks = [_Report()]
        self._model.fit(Pool(x_tr, y_tr, weight=w_tr), eval_set=Pool(x_va, y_va, weight=w_va),
                        callbacks=callbacks)
        evals = self._model.get_evals_result()
        self.best_iteration = int(self._model.get_best_iteration())
        return list(evals["learn"]["MultiClass"]), list(evals["validation"]["MultiClass"])

    def _predict(self, x):
        # use_best_model=True already cut the model to best_iteration + 1 trees; a
        # handful of rows (the live path) on one thread
        if len(x) < SMALL_BATCH:
            return self._model.predict_proba(x, thread_count=1)
        return self._model.predict_proba(x)

    def _gain(self):
        # CatBoost has no split-gain importance; PredictionValuesChange (how much the
        # prediction moves when the feature's value changes) is its default analogue
        return np.asarray(self._model.get_feature_importance(type="PredictionValuesChange"))

    def _contributions(self, x):
        from catboost import Pool

        raw = self._model.get_feature_importance(data=Pool(x), type="ShapValues")
        return np.asarray(raw)[:, :, :-1]

    def _save_model(self, path):
        self._model.save_model(str(path), format="cbm")

    def _load_model(self, path):
        from catboost import CatBoostClassifier

        self._model = CatBoostClassifier()
        self._model.load_model(str(path), format="cbm")


#: the three member classes by kind (GBDTEnsemble builds its members from this)
GBDT_CLASSES: dict[str, type[_BoostedTrees]] = {
    LightGBMModel.kind: LightGBMModel, XGBoostModel.kind: XGBoostModel,
    CatBoostModel.kind: CatBoostModel,
}
