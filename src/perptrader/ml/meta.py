"""Meta-labelling (López de Prado, *Advances in Financial Machine Learning*, ch. 3.6 and
ch. 10): a secondary model that learns which of a primary model's signals become
profitable trades after costs, and sizes or skips them.

The primary model picks the SIDE (long / short / flat). The question it answers badly
is "is this particular signal worth trading?": a 3-class model with 45% accuracy may
still be right far more often in some conditions (trend, volatility, its own
confidence) than in others. The meta model is a binary classifier on the features plus
the primary model's probabilities and side, trained on the meta-label "did the trade
this signal asks for earn more than its costs?". Its probability then skips weak
signals and sizes the rest; the side is never changed.

Timing, as everywhere in perptrader: the decision is made at the close of bar t, the
order fills at the open of bar t+1, and the trade is closed at the open of bar
t+1+horizon. The meta-label of row t therefore depends only on opens t+1 ..
t+1+horizon, and must be purged like any label whose window reaches past t.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy.special import ndtr

from perptrader.ml.gbdt import class_weight_table
from perptrader.ml.models import read_config, write_config

#: columns ``meta_inputs`` appends to the feature matrix, in order
META_EXTRA_COLUMNS = ("primary_p_sell", "primary_p_hold", "primary_p_buy", "primary_side")
SIZINGS = ("kelly", "afml", "step")


def _side(side: np.ndarray, n: int | None = None) -> np.ndarray:
    values = np.asarray(side, dtype=np.float64)
    if values.ndim != 1 or (n is not None and len(values) != n):
        raise ValueError(f"side must be 1-d{'' if n is None else f' of length {n}'}, "
                         f"got shape {values.shape}")
    if (np.abs(values[~np.isnan(values)]) > 1).any():
        raise ValueError("side must be in [-1, 1] (+1 long, -1 short, 0 flat; NaN unknown)")
    return values


def trade_net_returns(bars: pd.DataFrame, side: np.ndarray, horizon: int,
                      cost: float) -> np.ndarray:
    """Net return of the trade each row's ``side`` asks for.

    Decision at the close of bar t; entry at open[t+1]; exit at open[t+1+horizon];
    return = side × (exit / entry − 1) − |side| × cost, where ``cost`` is the round-trip
    cost as a fraction of the entry notional (fees + slippage; funding is not charged).
    A short's return is −(exit / entry − 1), a linear contract's P&L over its entry
    notional. ``side`` 0 (flat) earns exactly 0. NaN where the exit lies beyond the data,
    where a price is missing or not positive, or where ``side`` is NaN: an unknown
    outcome, not a zero one.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, not {horizon}")
    if not 0.0 <= cost < 1.0:
        raise ValueError(f"cost must be in [0, 1), not {cost}")
    if "open" not in bars.columns:
        raise ValueError("trade_net_returns needs an 'open' column")
    open_ = bars["open"].to_numpy(dtype=np.float64, na_value=np.nan)
    n = len(open_)
    side = _side(side, n)
    entry = np.full(n, np.nan)
    exit_ = np.full(n, np.nan)
    if n > 1:
        entry[: n - 1] = open_[1:]
    if n > 1 + horizon:
        exit_[: n - 1 - horizon] = open_[1 + horizon:]
    gross = np.full(n, np.nan)
    valid = (entry > 0) & (exit_ > 0)  # False on NaN as well
    gross[valid] = exit_[valid] / entry[valid] - 1.0
    return side * gross - np.abs(side) * cost


def meta_labels(side: np.ndarray, net_return: np.ndarray) -> np.ndarray:
    """The meta-label: 1.0 where the primary signal's trade earned > 0 after costs,
    0.0 where it did not, NaN where there was no signal (``side`` 0 or NaN) or the
    outcome is unknown (``net_return`` NaN).

    ``net_return`` is the return of the trade on ``side`` (``trade_net_returns``, or a
    triple-barrier ``label_tb_ret`` for long signals), not the price's return.
    """
    side = _side(side)
    ret = np.asarray(net_return, dtype=np.float64)
    if ret.shape != side.shape:
        raise ValueError(f"side and net_return differ in shape: {side.shape} vs {ret.shape}")
    out = np.full(len(side), np.nan)
    known = (side != 0) & ~np.isnan(side) & ~np.isnan(ret)
    out[known] = (ret[known] > 0).astype(np.float64)
    return out


def meta_inputs(x: np.ndarray, primary_proba: np.ndarray, side: np.ndarray) -> np.ndarray:
    """The meta model's input: features | primary P(SELL), P(HOLD), P(BUY) | side
    (float32; ``META_EXTRA_COLUMNS`` names the 4 appended columns)."""
    x = np.asarray(x, dtype=np.float32)
    proba = np.asarray(primary_proba, dtype=np.float32)
    side = _side(side, len(x)).astype(np.float32)
    if x.ndim != 2 or proba.shape != (len(x), 3):
        raise ValueError(f"need x (n, k) and primary_proba (n, 3); got {x.shape}, "
                         f"{proba.shape}")
    return np.hstack([x, proba, side[:, None]])


def meta_size(side: np.ndarray, p_success: np.ndarray, threshold: float = 0.5,
              sizing: str = "kelly") -> np.ndarray:
    """Target exposure in [-1, 1] from the primary side and the meta model's P(success).

    0 (skip) where ``p_success`` < ``threshold``, is NaN, or the side is 0 / NaN. Else
    side × size with

    * ``"kelly"``: size = 2p − 1, the Kelly fraction of an even-money bet (a win and a
      loss of the same size); 0 at p = 0.5, 1 at p = 1;
    * ``"afml"``: López de Prado's size = 2 Φ(z) − 1, z = (p − 0.5) / sqrt(p (1 − p))
      (ch. 10.3), a little smaller than 2p − 1 below p ≈ 0.7 and larger above;
    * ``"step"``: size = 1, the signal taken at full size.

    The sizes are floored at 0 so a threshold below 0.5 never turns the side around.
    """
    if sizing not in SIZINGS:
        raise ValueError(f"sizing must be one of {SIZINGS}, not {sizing!r}")
    side = _side(side)
    p = np.asarray(p_success, dtype=np.float64)
    if p.shape != side.shape:
        raise ValueError(f"side and p_success differ in shape: {side.shape} vs {p.shape}")
    if (p[~np.isnan(p)] < 0).any() or (p[~np.isnan(p)] > 1).any():
        raise ValueError("p_success must be a probability in [0, 1]")
    if sizing == "step":
        size = np.ones(len(p))
    elif sizing == "kelly":
        size = 2.0 * p - 1.0
    else:
        q = np.clip(p, 1e-12, 1.0 - 1e-12)  # z is infinite at 0 and 1
        size = 2.0 * ndtr((q - 0.5) / np.sqrt(q * (1.0 - q))) - 1.0
    take = (p >= threshold) & ~np.isnan(side)  # False where p is NaN
    out = np.zeros(len(p))
    out[take] = side[take] * np.maximum(size[take], 0.0)
    return np.clip(out, -1.0, 1.0)


def _rows(x: np.ndarray, y: np.ndarray, w: np.ndarray | None, what: str
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows with a known meta-label (y 0/1), as float32 x, int y, float64 w."""
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"{what}: x must be (n, k) with n = len(y)")
    w = np.ones(len(y)) if w is None else np.asarray(w, dtype=np.float64)
    if w.shape != y.shape:
        raise ValueError(f"{what}: weights must have one value per row")
    w = np.where(np.isnan(w), 1.0, w)
    known = ~np.isnan(y)
    if not np.isin(y[known], (0.0, 1.0)).all():
        raise ValueError(f"{what}: meta-labels must be 0, 1 or NaN")
    return x[known], y[known].astype(np.int64), w[known]


class MetaModel:
    """LightGBM binary classifier of P(the primary signal's trade is profitable).

    Class-balanced like the primary GBDTs (weights from the TRAIN rows, applied to the
    valid rows too so early stopping measures the trained objective), times optional
    per-row weights (label uniqueness). Early stopping on the validation slice only.
    Saved as LightGBM's own text format plus ``config.json``; nothing pickled.
    """

    kind: ClassVar[str] = "meta-lightgbm"
    MODEL_FILE: ClassVar[str] = "model.txt"
    #: small trees: a meta model sees the signal rows only (a fraction of the table)
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "n_estimators": 400, "early_stopping_rounds": 40, "learning_rate": 0.05,
        "num_leaves": 15, "max_depth": -1, "min_child_samples": 40,
        "feature_fraction": 0.7, "bagging_fraction": 0.8, "bagging_freq": 1,
        "lambda_l2": 1.0, "num_threads": 0,
    }
    OWN_KEYS: ClassVar[tuple[str, ...]] = ("n_estimators", "early_stopping_rounds")

    def __init__(self, params: dict[str, Any] | None = None, seed: int = 0) -> None:
        self.params: dict[str, Any] = {**self.DEFAULTS, **(params or {})}
        self.seed = int(seed)
        self.best_iteration: int | None = None
        self.n_features: int | None = None
        self.history: dict[str, Any] = {}
        self._booster: Any = None

    def _library_params(self) -> dict[str, Any]:
        own = {k: v for k, v in self.params.items() if k not in self.OWN_KEYS}
        return {**own, "objective": "binary", "metric": ["binary_logloss", "auc"],
                "seed": self.seed, "deterministic": True, "force_col_wise": True,
                "verbosity": -1}

    def fit(self, x_train: np.ndarray, y_train: np.ndarray, w_train: np.ndarray | None,
            x_valid: np.ndarray, y_valid: np.ndarray, w_valid: np.ndarray | None
            ) -> dict[str, Any]:
        """Train on the rows with a known meta-label (NaN rows are dropped), early-stop
        on the valid rows' log-loss; return the history."""
        import lightgbm as lgb

        x_tr, y_tr, w_tr = _rows(x_train, y_train, w_train, "train")
        x_va, y_va, w_va = _rows(x_valid, y_valid, w_valid, "valid")
        if len(y_tr) == 0 or len(y_va) == 0:
            raise ValueError("MetaModel: needs labelled train and valid rows")
        if x_tr.shape[1] != x_va.shape[1]:
            raise ValueError("MetaModel: train and valid have different columns")
        # binary: n / (2 n_c) per present class, on the weighted rows
        table = class_weight_table(y_tr, w_tr)[:2]
        names = [f"f{i}" for i in range(x_tr.shape[1])]
        dtrain = lgb.Dataset(x_tr, y_tr, weight=table[y_tr] * w_tr, feature_name=names)
        dvalid = lgb.Dataset(x_va, y_va, weight=table[y_va] * w_va, reference=dtrain,
                             feature_name=names)
        evals: dict[str, Any] = {}
        t0 = time.perf_counter()
        self._booster = lgb.train(
            self._library_params(), dtrain, num_boost_round=int(self.params["n_estimators"]),
            valid_sets=[dtrain, dvalid], valid_names=["train", "val"],
            callbacks=[lgb.early_stopping(int(self.params["early_stopping_rounds"]),
                                          first_metric_only=True, verbose=False),
                       lgb.record_evaluation(evals)])
        best = int(self._booster.best_iteration) or self._booster.current_iteration()
        self.best_iteration = best - 1
        self.n_features = x_tr.shape[1]
        self.history = {
            "kind": self.kind, "best_iteration": self.best_iteration,
            "n_iterations": len(evals["val"]["binary_logloss"]),
            "best_val_loss": float(evals["val"]["binary_logloss"][self.best_iteration]),
            "best_val_auc": float(evals["val"]["auc"][self.best_iteration]),
            "class_weights": {"fail": float(table[0]), "success": float(table[1])},
            "n_train": len(y_tr), "n_valid": len(y_va),
            "train_success_share": float(y_tr.mean()),
            "valid_success_share": float(y_va.mean()),
            "seconds": round(time.perf_counter() - t0, 3),
        }
        return self.history

    def _require_fitted(self) -> None:
        if self._booster is None or self.best_iteration is None:
            raise RuntimeError("MetaModel: not fitted")

    def predict(self, x: np.ndarray) -> np.ndarray:
        """P(success) per row, with the trees up to the best iteration."""
        self._require_fitted()
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"MetaModel: expected (n, {self.n_features}) inputs, got "
                             f"{x.shape}")
        if len(x) == 0:
            return np.zeros(0)
        extra = {"num_threads": 1} if len(x) < 256 else {}  # one live row: no thread pool
        return np.asarray(self._booster.predict(x, num_iteration=self.best_iteration + 1,
                                                **extra), dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """Everything to rebuild the model (JSON-serialisable; the trees as LightGBM's
        text format)."""
        self._require_fitted()
        return {"kind": self.kind, "params": self.params, "seed": self.seed,
                "best_iteration": self.best_iteration, "n_features": self.n_features,
                "history": self.history,
                "model": self._booster.model_to_string(num_iteration=self.best_iteration + 1)}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> MetaModel:
        import lightgbm as lgb

        if state.get("kind") != cls.kind:
            raise ValueError(f"not a {cls.kind} state: kind {state.get('kind')!r}")
        model = cls(params=state["params"], seed=state["seed"])
        model.best_iteration = int(state["best_iteration"])
        model.n_features = int(state["n_features"])
        model.history = dict(state.get("history", {}))
        model._booster = lgb.Booster(model_str=state["model"])
        return model

    def save(self, folder: Path) -> None:
        """``model.txt`` (LightGBM) + ``config.json`` into ``folder``."""
        state = self.to_dict()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / self.MODEL_FILE).write_text(state.pop("model"))
        write_config(folder, {**state, "model_file": self.MODEL_FILE})

    @classmethod
    def load(cls, folder: Path) -> MetaModel:
        config = read_config(Path(folder), expect_kind=cls.kind)
        text = (Path(folder) / config["model_file"]).read_text()
        return cls.from_dict({**config, "model": text})

