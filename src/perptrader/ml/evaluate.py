"""Out-of-sample scores of 3-class probabilities, the baselines a model must beat, and
temperature scaling.

Why baselines: on labels with ~40% HOLD, a model that always says HOLD scores 40%
accuracy; a model is only interesting if it beats the majority class, yesterday's
direction (persistence) and a plain logistic regression on the same features, fitted on
the same training rows and scored on the same test rows.

Why ECE and the dominant-class warning: a collapsed model (one class > 70% of its
predictions) can look fine on accuracy; calibration matters because the strategy layer
thresholds these probabilities.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
)
from threadpoolctl import threadpool_limits

from perptrader.ml.base import CLASSES, N_CLASSES, MLFrame

_LABELS = list(range(N_CLASSES))
#: a class above this share of the predictions triggers ``dominant_class_warning``
DOMINANT_SHARE = 0.70
ECE_BINS = 10
#: probabilities of the one-hot baselines (smoothed so log-loss stays finite)
ONE_HOT_HIT, ONE_HOT_MISS = 0.98, 0.01
#: the threshold column of the adaptive label (k × σ_t × sqrt(h), known at t)
THRESHOLD_COLUMN = "label_adaptive_threshold"
BASELINES = ("majority", "persistence", "logistic")
_PROBA_CLIP = 1e-12


def _check_proba(proba: np.ndarray, n: int | None = None) -> np.ndarray:
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != N_CLASSES:
        raise ValueError(f"probabilities must have shape (n, {N_CLASSES}), got {p.shape}")
    if n is not None and len(p) != n:
        raise ValueError(f"{len(p)} probability rows for {n} labels")
    if not np.isfinite(p).all() or (p < 0).any() or (p.sum(axis=1) <= 0).any():
        raise ValueError("probabilities must be finite, >= 0, with a positive row sum")
    return p


def expected_calibration_error(y: np.ndarray, proba: np.ndarray,
                               bins: int = ECE_BINS) -> float:
    """ECE of the top-class confidence: Σ_b n_b/n × |accuracy_b − mean confidence_b| over
    ``bins`` equal-width bins (0, 0.1], (0.1, 0.2], … of the max probability."""
    conf = proba.max(axis=1)
    hit = (proba.argmax(axis=1) == y).astype(np.float64)
    b = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    acc_b = np.bincount(b, weights=hit, minlength=bins)
    conf_b = np.bincount(b, weights=conf, minlength=bins)
    return float(np.abs(acc_b - conf_b).sum() / len(y))


def dominant_class_warning(distribution: dict[str, float]) -> str | None:
    """A loud sentence when one class takes more than 70% of the predictions."""
    name, share = max(distribution.items(), key=lambda kv: kv[1])
    if share <= DOMINANT_SHARE:
        return None
    return (f"the model predicts {name} for {share:.1%} of the rows (> "
            f"{DOMINANT_SHARE:.0%}): it has collapsed onto one class, its accuracy mostly "
            f"reflects that class's base rate")


def classification_metrics(y_true: np.ndarray, proba: np.ndarray) -> dict:
    """Scores of ``proba`` (n, 3) against class indices ``y_true`` (rows with -1 skipped).

    Keys: n, accuracy, macro_f1, per_class {SELL: {precision, recall, f1, support}, …},
    confusion (3×3 list, rows = true class, columns = predicted), prediction_distribution
    {SELL: share, …}, log_loss, ece, dominant_class_warning (str or None).
    """
    y_all = np.asarray(y_true, dtype=np.int64)
    p_all = _check_proba(proba, len(y_all))
    known = y_all >= 0
    if not known.any():
        raise ValueError("classification_metrics: no row with a known label")
    y, p = y_all[known], p_all[known]
    p = p / p.sum(axis=1, keepdims=True)
    pred = p.argmax(axis=1)
    prec, rec, f1, support = precision_recall_fscore_support(
        y, pred, labels=_LABELS, zero_division=0)
    shares = np.bincount(pred, minlength=N_CLASSES) / len(pred)
    distribution = {c: float(s) for c, s in zip(CLASSES, shares, strict=True)}
    return {
        "n": len(y),
        "accuracy": float(accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, labels=_LABELS, average="macro",
                                   zero_division=0)),
        "per_class": {c: {"precision": float(prec[i]), "recall": float(rec[i]),
                          "f1": float(f1[i]), "support": int(support[i])}
                      for i, c in enumerate(CLASSES)},
        "confusion": confusion_matrix(y, pred, labels=_LABELS).tolist(),
        "prediction_distribution": distribution,
        "log_loss": float(log_loss(y, np.clip(p, _PROBA_CLIP, 1.0), labels=_LABELS)),
        "ece": expected_calibration_error(y, p),
        "dominant_class_warning": dominant_class_warning(distribution),
    }


def _one_hot(classes: np.ndarray) -> np.ndarray:
    out = np.full((len(classes), N_CLASSES), ONE_HOT_MISS)
    out[np.arange(len(classes)), classes] = ONE_HOT_HIT
    return out


def majority_baseline(data: MLFrame, train_rows: np.ndarray,
                      test_rows: np.ndarray) -> np.ndarray:
    """Always the most frequent class of the labelled training rows."""
    y = data.y[np.asarray(train_rows, dtype=np.int64)]
    y = y[y >= 0]
    if len(y) == 0:
        raise ValueError("majority baseline: no labelled training row")
    mode = int(np.bincount(y, minlength=N_CLASSES).argmax())
    return _one_hot(np.full(len(test_rows), mode, dtype=np.int64))


def persistence_baseline(data: MLFrame, test_rows: np.ndarray) -> np.ndarray:
    """The direction of the last ``horizon``-bar return, known at the close of t.

    ret = close[t] / close[t-h] - 1; BUY when ret > thr, SELL when ret < -thr, else HOLD,
    with thr = the adaptive label's threshold at t (k × σ_t × sqrt(h), from past closes
    only) when the frame has that column, else 0. Rows with no return yet (t < h) or no
    threshold yet (σ warm-up, NaN) are HOLD / use thr = 0 respectively; neither occurs on
    labelled rows of a default build, whose warm-up is already dropped.
    """
    rows = np.asarray(test_rows, dtype=np.int64)
    h = int(data.horizon)
    if h < 1:
        raise ValueError("persistence baseline needs horizon >= 1")
    close = data.frame["close"].to_numpy(np.float64)
    past = rows - h
    ret = np.full(len(rows), np.nan)
    ok = past >= 0
    ret[ok] = close[rows[ok]] / close[past[ok]] - 1.0
    if THRESHOLD_COLUMN in data.frame.columns:
        thr = np.nan_to_num(data.frame[THRESHOLD_COLUMN].to_numpy(np.float64)[rows], nan=0.0)
    else:
        thr = np.zeros(len(rows))
    cls = np.ones(len(rows), dtype=np.int64)                 # HOLD
    cls[ret > thr] = 2
    cls[ret < -thr] = 0
    return _one_hot(cls)


def _finite_features(data: MLFrame, rows: np.ndarray) -> np.ndarray:
    x = data.x(rows).astype(np.float64)
    x[~np.isfinite(x)] = np.nan
    return x


def logistic_baseline(data: MLFrame, train_rows: np.ndarray, test_rows: np.ndarray,
                      max_iter: int = 300) -> np.ndarray:
    """Multinomial logistic regression on standardized features (balanced class weights).

    NaN/inf are imputed with the train medians; columns with no finite train value are
    dropped. ``max_iter`` is a deliberate budget: lbfgs stopping there is not an error.
    """
    fit_rows = data.labelled(np.asarray(train_rows, dtype=np.int64))
    if len(fit_rows) == 0:
        raise ValueError("logistic baseline: no labelled training row")
    x_train = _finite_features(data, fit_rows)
    y = data.y[fit_rows]
    usable = ~np.isnan(x_train).all(axis=0)
    if not usable.any():
        raise ValueError("logistic baseline: every feature is NaN on the training rows")
    x_train = x_train[:, usable]
    median = np.nanmedian(x_train, axis=0)
    x_train = np.where(np.isnan(x_train), median, x_train)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std[std == 0] = 1.0
    x_test = _finite_features(data, np.asarray(test_rows, dtype=np.int64))[:, usable]
    x_test = np.where(np.isnan(x_test), median, x_test)
    model = LogisticRegression(class_weight="balanced", max_iter=max_iter)
    # one BLAS thread: the matrices are small, and multi-threaded OpenBLAS measured 10-40x
    # slower than one thread on a 2-core machine busy with other work (busy-waiting)
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit((x_train - mean) / std, y)
    out = np.zeros((len(x_test), N_CLASSES))
    if len(x_test):
        out[:, model.classes_] = model.predict_proba((x_test - mean) / std)
    return out


def baselines(data: MLFrame, train_rows: np.ndarray,
              test_rows: np.ndarray) -> dict[str, np.ndarray]:
    """name -> (len(test_rows), 3) probabilities of "majority", "persistence", "logistic".

    Only ``train_rows`` are used to fit; persistence fits nothing (past closes only).
    """
    return {
        "majority": majority_baseline(data, train_rows, test_rows),
        "persistence": persistence_baseline(data, test_rows),
        "logistic": logistic_baseline(data, train_rows, test_rows),
    }


def _temperature_nll(logp: np.ndarray, y: np.ndarray, t: float) -> float:
    return float(-log_softmax(logp / t, axis=1)[np.arange(len(y)), y].mean())


def fit_temperature(proba_valid: np.ndarray, y_valid: np.ndarray) -> float:
    """The T in [0.05, 20] minimising the NLL of softmax(log p / T) on the valid slice.

    T > 1 softens an over-confident model, T < 1 sharpens an under-confident one; the
    argmax (and so accuracy / F1) never changes.
    """
    y = np.asarray(y_valid, dtype=np.int64)
    p = _check_proba(proba_valid, len(y))
    known = y >= 0
    if not known.any():
        raise ValueError("fit_temperature: no row with a known label")
    logp = np.log(np.clip(p[known], _PROBA_CLIP, None))
    res = minimize_scalar(lambda t: _temperature_nll(logp, y[known], t),
                          bounds=(0.05, 20.0), method="bounded")
    return float(res.x)


def apply_temperature(proba: np.ndarray, T: float) -> np.ndarray:
    """softmax(log p / T): the rescaled probabilities (rows sum to 1)."""
    if not T > 0:
        raise ValueError("temperature must be > 0")
    p = _check_proba(proba)
    return softmax(np.log(np.clip(p, _PROBA_CLIP, None)) / T, axis=1)


__all__ = ["BASELINES", "DOMINANT_SHARE", "apply_temperature", "baselines",
           "classification_metrics", "dominant_class_warning", "expected_calibration_error",
           "fit_temperature", "logistic_baseline", "majority_baseline",
           "persistence_baseline"]
