"""Walk-forward training and out-of-sample evaluation of one model kind.

Each fold gets a FRESH model (``make_model``) fitted on the fold's purged training rows
with early stopping on its validation slice; the fold's test rows are predicted and
never passed to ``fit``. The three baselines (majority class, persistence, logistic
regression) are fitted on the same training rows and scored on the same test rows, so
"the model beats the baselines" is a like-for-like statement. Out-of-sample figures are
computed on all folds' test rows together (not averaged per fold: a fold with few rows
would otherwise weigh as much as a long one).

Optional temperature scaling (``calibrate=True``) is fitted on the validation slice
only: it changes log-loss and calibration, never the arg-max class.

``final_model``: the model a user registers and trades is refitted on the most recent
training window (its last ``spec.valid`` share for early stopping, purged), because the
fold models are each trained on older data.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from perptrader.ml.base import CLASSES, Classifier, MLFrame, Progress
from perptrader.ml.splits import Fold, WalkForwardSpec, walk_forward

#: (data, train rows, valid rows) -> per-frame-row sample weights of one fit
FoldWeights = Callable[[MLFrame, np.ndarray, np.ndarray], np.ndarray]


@dataclass
class WalkForwardResult:
    """What a walk-forward produced (see the module docstring)."""

    #: JSON-able: model, symbol, timeframe, feature_hash, folds, oos, baselines, warnings
    summary: dict[str, Any]
    #: index = test bar open times; columns SELL, HOLD, BUY, fold (labelled test rows only)
    oos_proba: pd.DataFrame
    #: "<kind> fold <i>" (and "<kind> final") -> per-iteration / per-epoch records
    histories: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: refitted on the most recent window; None when ``refit_final=False``
    final_model: Classifier | None = None
    folds: list[Fold] = field(default_factory=list)
    #: each fold model's probabilities on ITS validation rows (all of them, labelled or
    #: not; columns SELL, HOLD, BUY, fold): what a decision layer may be tuned on
    #: without seeing the test window (``ml.decision.fit_decision``)
    valid_proba: pd.DataFrame = field(default_factory=pd.DataFrame)


def history_records(history: Any) -> list[dict[str, Any]]:
    """A model's ``fit`` history as a list of records, whatever shape it came in.

    Models report either records ({"epochs": [{...}, ...]}) or columns
    ({"valid_logloss": [...], ...}); reports and manifests want records.
    """
    if history is None:
        return []
    if isinstance(history, list):
        return [dict(r) if isinstance(r, dict) else {"value": r} for r in history]
    if not isinstance(history, dict):
        return [{"value": history}]
    for value in history.values():  # records nested under one key
        if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
            return [dict(r) for r in value]
    columns = {k: v for k, v in history.items()
               if isinstance(v, list | tuple | np.ndarray) and len(v)}
    if columns:
        n = max(len(v) for v in columns.values())
        scalars = {k: v for k, v in history.items() if k not in columns
                   and isinstance(v, int | float | str | bool)}
        return [{"step": i + 1, **{k: _item(v[i]) for k, v in columns.items() if i < len(v)},
                 **(scalars if i == n - 1 else {})} for i in range(n)]
    return [dict(history)]


def _item(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _fold_progress(progress: Progress | None, fold: int, n_folds: int) -> Progress | None:
    """The model's progress callback, with the fold in the metrics."""
    if progress is None:
        return None

    def report(stage: str, done: int, total: int, metrics: dict[str, float]) -> None:
        progress(stage, done, total, {**metrics, "fold": fold, "n_folds": n_folds})

    return report


def _metrics_of(y: np.ndarray, proba: np.ndarray) -> dict[str, Any]:
    from perptrader.ml.evaluate import classification_metrics

    return classification_metrics(y, proba)


def final_window(data: MLFrame, spec: WalkForwardSpec) -> tuple[np.ndarray, np.ndarray]:
    """(train, valid) positions of the most recent window: the last ``spec.train`` of the
    labelled rows (all of them in expanding mode), its last ``spec.valid`` share for
    validation and the ``horizon`` rows before that purged from training."""
    labelled = data.labelled(np.arange(len(data), dtype=np.int64))
    if len(labelled) == 0:
        raise ValueError("no labelled rows to fit the final model on")
    if spec.mode == "expanding":
        window = labelled
    else:
        start = data.index[labelled[-1]] - spec.train_td
        window = labelled[data.index[labelled] > start]
    n_valid = round(spec.valid * len(window))
    if n_valid:
        valid = window[len(window) - n_valid:]
        train = window[window < valid[0] - data.horizon]
    else:
        valid, train = window[:0], window
    if len(train) == 0:
        raise ValueError(f"final window: no training rows left after purging "
                         f"(train={spec.train}, horizon={data.horizon})")
    return train, valid


def run_walk_forward(data: MLFrame, kind: str, spec: WalkForwardSpec, *,
                     model_kwargs: dict[str, Any] | None = None, calibrate: bool = False,
                     progress: Progress | None = None,
                     refit_final: bool = True, keep_valid: bool = False,
                     fold_weights: FoldWeights | None = None) -> WalkForwardResult:
    """Fit, predict and score ``kind`` fold by fold; see the module docstring.

    ``fold_weights``: per-fold training weights (e.g. ``ml.weights.fold_sample_weight``,
    label uniqueness among the fold's own training rows), set as the frame's
    ``sample_weight`` for that fold's fit only.

    ``keep_valid``: also predict each fold's validation rows (``valid_proba``).

    ``progress`` gets ("fold", i, n_folds, {...}) before each fold, the model's own
    calls (with "fold" added to their metrics) during it, ("fold_done", i + 1, n_folds,
    {"macro_f1": ...}) after it and ("final", 0, 1, {}) before the final refit.
    """
    from perptrader.ml.evaluate import apply_temperature, baselines, fit_temperature
    from perptrader.ml.models import make_model

    model_kwargs = dict(model_kwargs or {})
    folds = walk_forward(data.index, spec, data.horizon)
    y = data.y
    fold_rows: list[dict[str, Any]] = []
    histories: dict[str, list[dict[str, Any]]] = {}
    all_rows, all_proba, all_fold = [], [], []
    valid_parts: list[pd.DataFrame] = []
    base_proba: dict[str, list[np.ndarray]] = {}
    warnings: list[str] = []
    for i, fold in enumerate(folds):
        test = data.labelled(fold.test)
        if progress is not None:
            progress("fold", i, len(folds), {"fold": i, "n_folds": len(folds)})
        if len(test) == 0:
            warnings.append(f"fold {fold.index}: no labelled test rows, skipped")
            continue
        t0 = time.perf_counter()
        model = make_model(kind, **model_kwargs)
        fit_data = data if fold_weights is None else dataclasses.replace(
            data, sample_weight=fold_weights(data, fold.train, fold.valid))
        history = model.fit(fit_data, fold.train, fold.valid, _fold_progress(progress, i,
                                                                             len(folds)))
        histories[f"{kind} fold {fold.index}"] = history_records(history)
        temperature = None
        if calibrate:
            valid = data.labelled(fold.valid)
            if len(valid) == 0:
                raise ValueError(f"fold {fold.index}: calibrate=True needs labelled "
                                 "validation rows")
            temperature = float(fit_temperature(model.predict_proba(data, valid), y[valid]))
        proba = np.asarray(model.predict_proba(data, test), dtype=np.float64)
        if proba.shape != (len(test), len(CLASSES)):
            raise ValueError(f"{kind}.predict_proba returned {proba.shape} for "
                             f"{len(test)} rows")
        if temperature is not None:
            proba = apply_temperature(proba, temperature)
        if keep_valid and len(fold.valid):
            valid_parts.append(_valid_frame(data, model, fold, temperature))
        metrics = _metrics_of(y[test], proba)
        fold_base = baselines(data, fold.train, test)
        base_metrics = {}
        for name, p in fold_base.items():
            base_proba.setdefault(name, []).append(np.asarray(p, dtype=np.float64))
            base_metrics[name] = _metrics_of(y[test], p)
        if metrics.get("dominant_class_warning"):
            warnings.append(f"fold {fold.index}: {metrics['dominant_class_warning']}")
        fold_rows.append({
            "index": fold.index,
            "train": list(fold.train_span),
            "test": list(fold.test_span),
            "n_train": len(fold.train), "n_valid": len(fold.valid), "n_test": len(test),
            "temperature": temperature,
            "seconds": round(time.perf_counter() - t0, 3),
            "metrics": metrics,
            "baselines": base_metrics,
        })
        all_rows.append(test)
        all_proba.append(proba)
        all_fold.append(np.full(len(test), fold.index, dtype=np.int64))
        if progress is not None:
            progress("fold_done", i + 1, len(folds),
                     {"fold": i, "n_folds": len(folds),
                      "macro_f1": float(metrics["macro_f1"])})
    if not all_rows:
        raise ValueError("walk-forward: no fold has labelled test rows")
    rows = np.concatenate(all_rows)
    proba = np.concatenate(all_proba)
    oos = _metrics_of(y[rows], proba)
    if oos.get("dominant_class_warning"):
        warnings.insert(0, f"out-of-sample: {oos['dominant_class_warning']}")
    oos_base = {name: _metrics_of(y[rows], np.concatenate(parts))
                for name, parts in base_proba.items()}
    oos_proba = pd.DataFrame(proba, index=data.index[rows], columns=list(CLASSES))
    oos_proba["fold"] = np.concatenate(all_fold)

    final, final_temperature = None, None
    if refit_final:
        if progress is not None:
            progress("final", 0, 1, {})
        train, valid = final_window(data, spec)
        final = make_model(kind, **model_kwargs)
        fit_data = data if fold_weights is None else dataclasses.replace(
            data, sample_weight=fold_weights(data, train, valid))
        histories[f"{kind} final"] = history_records(
            final.fit(fit_data, train, valid, _fold_progress(progress, len(folds), len(folds))))
        if calibrate:
            lab = data.labelled(valid)
            if len(lab) == 0:
                raise ValueError("final model: calibrate=True needs labelled validation rows")
            final_temperature = float(fit_temperature(final.predict_proba(data, lab), y[lab]))
        note = _prior_like_warning(final, data, valid, proba, final_temperature)
        if note:
            warnings.append(note)
    meta = data.meta
    summary = {
        "model": kind,
        "symbol": meta.get("symbol"),
        "timeframe": meta.get("timeframe"),
        "feature_set": meta.get("feature_set"),
        "feature_hash": meta.get("feature_hash"),
        "n_features": len(data.features),
        "label": data.label,
        "horizon": data.horizon,
        "spec": dataclasses.asdict(spec),
        "calibrated": calibrate,
        #: temperature of the final model (fitted on its validation slice); the registry
        #: stores it and ``registry.predict_registered`` applies it
        "final_temperature": final_temperature,
        "n_oos": len(rows),
        "folds": fold_rows,
        "oos": oos,
        "baselines": oos_base,
        "warnings": warnings,
    }
    valid_proba = pd.concat(valid_parts) if valid_parts else pd.DataFrame()
    return WalkForwardResult(summary=summary, oos_proba=oos_proba, histories=histories,
                             final_model=final, folds=folds, valid_proba=valid_proba)


#: the final model's lean spread below this share of the walk-forward's: "near the prior"
PRIOR_LIKE_SHARE = 0.25


def lean_spread(proba: np.ndarray) -> float:
    """Standard deviation of P(BUY) − P(SELL): how far a model's probabilities move
    from row to row (0 for a model that predicts its class prior everywhere)."""
    p = np.asarray(proba, dtype=np.float64)
    return float(np.std(p[:, 2] - p[:, 0])) if len(p) > 1 else float("nan")


def _prior_like_warning(final: Classifier, data: MLFrame, valid: np.ndarray,
                        oos_proba: np.ndarray, temperature: float | None) -> str | None:
    """A warning when the final refit barely moves from the class prior while the fold
    models did not (e.g. gradient boosting that early-stopped after one round on the
    final validation slice): the registered model then trades far less than the
    walk-forward's figures, which come from the fold models, suggest."""
    lab = data.labelled(valid)
    if len(lab) < 10:
        return None
    from perptrader.ml.evaluate import apply_temperature

    p = np.asarray(final.predict_proba(data, lab), dtype=np.float64)
    final_spread = lean_spread(p if temperature is None else apply_temperature(p, temperature))
    oos_spread = lean_spread(oos_proba)
    if not final_spread < PRIOR_LIKE_SHARE * oos_spread:
        return None
    return (f"final model: its probabilities barely move from the class prior (spread of "
            f"P(BUY) - P(SELL) {final_spread:.3f} on its validation slice vs "
            f"{oos_spread:.3f} out of sample in the walk-forward): the registered model "
            f"will trade far less than the walk-forward's trading figures, which come "
            f"from the fold models")


def _valid_frame(data: MLFrame, model: Classifier, fold: Fold,
                 temperature: float | None) -> pd.DataFrame:
    """The fold model's probabilities on its validation rows (see ``valid_proba``)."""
    from perptrader.ml.evaluate import apply_temperature

    proba = np.asarray(model.predict_proba(data, fold.valid), dtype=np.float64)
    if temperature is not None:
        proba = apply_temperature(proba, temperature)
    out = pd.DataFrame(proba, index=data.index[fold.valid], columns=list(CLASSES))
    out["fold"] = fold.index
    return out


__all__ = ["FoldWeights", "WalkForwardResult", "final_window", "history_records",
           "run_walk_forward"]
