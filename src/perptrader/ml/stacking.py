"""Stacked ensembles: a logistic-regression meta-learner over member probabilities.

Two stacks with different ways of getting honest member probabilities for the meta-
learner (probabilities a member produced on rows it was TRAINED on are overconfident
and would teach the meta-learner to trust the most overfit member):

* ``GBDTEnsemble`` (kind "gbdt"): LightGBM + XGBoost + CatBoost. The meta-learner is
  fit on purged k-fold OUT-OF-FOLD probabilities inside the training window (each
  member is refit k times, cheap for trees), then the members are refit on all the
  training rows. Every training row contributes one honest meta-example.
* ``Stack`` (kind "ensemble"): any ``Classifier`` members (GBDT ensemble, xLSTM
  experts). The meta-learner is fit on the members' probabilities on the VALIDATION
  rows. OOF would need k extra trainings of every slow neural expert per walk-forward
  fold; the validation slice is already out-of-sample for the weights (members only
  use it for early stopping / epoch selection, a mild optimism). The meta-learner has
  only 3 * (3 * members + 1) parameters, so a few thousand validation rows suffice.

The meta-learner sees log-probabilities (clipped at 1e-6): logistic regression is
linear in its inputs, and a weighted sum of log-probabilities is a geometric pooling of
the members, the natural way to combine probabilistic experts.

The meta-learner is stored as JSON (coefficients, intercepts, classes), never pickled;
members are stored with their own ``save`` in subfolders.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from perptrader.ml.base import CLASSES, N_CLASSES, Classifier, MLFrame, Progress
from perptrader.ml.gbdt import GBDT_CLASSES
from perptrader.ml.models import read_config, write_config

#: probability floor before the log (a member's 0 would give -inf)
EPS = 1e-6
META_FILE = "meta.json"


def log_features(probas: Sequence[np.ndarray]) -> np.ndarray:
    """(n, 3 * members) meta-learner inputs: the members' clipped log-probabilities."""
    return np.log(np.clip(np.hstack([np.asarray(p, dtype=np.float64) for p in probas]),
                          EPS, 1.0))


class MetaLearner:
    """Multinomial logistic regression over member log-probabilities (balanced classes).

    Outputs are always (n, 3) in ``CLASSES`` order: a class absent from the meta-
    learner's training rows gets probability 0 (it never saw one, it cannot predict one).
    """

    def __init__(self, C: float = 1.0) -> None:
        self.C = float(C)
        self.model: LogisticRegression | None = None

    def fit(self, features: np.ndarray, y: np.ndarray) -> MetaLearner:
        if len(np.unique(y)) < 2:
            raise ValueError("meta-learner: the rows hold fewer than 2 classes")
        self.model = LogisticRegression(C=self.C, class_weight="balanced", max_iter=2000)
        self.model.fit(features, y)
        return self

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("meta-learner is not fitted")
        out = np.zeros((len(features), N_CLASSES))
        out[:, self.model.classes_] = self.model.predict_proba(features)
        return out

    def to_dict(self) -> dict[str, Any]:
        if self.model is None:
            raise RuntimeError("meta-learner is not fitted")
        m = self.model
        return {"C": self.C, "classes": m.classes_.tolist(), "coef": m.coef_.tolist(),
                "intercept": m.intercept_.tolist(), "n_features": int(m.n_features_in_)}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> MetaLearner:
        """Rebuild the fitted estimator from its coefficients (exact: JSON floats
        round-trip), so ``predict_proba`` is sklearn's own code path."""
        meta = cls(C=state["C"])
        m = LogisticRegression(C=meta.C, class_weight="balanced")
        m.classes_ = np.asarray(state["classes"], dtype=np.int64)
        m.coef_ = np.asarray(state["coef"], dtype=np.float64)
        m.intercept_ = np.asarray(state["intercept"], dtype=np.float64)
        m.n_features_in_ = int(state["n_features"])
        meta.model = m
        return meta

    def log_loss(self, features: np.ndarray, y: np.ndarray) -> float:
        p = self.predict_proba(features)[np.arange(len(y)), y]
        return float(-np.mean(np.log(np.clip(p, EPS, 1.0))))


def _log_loss(proba: np.ndarray, y: np.ndarray) -> float:
    p = np.asarray(proba)[np.arange(len(y)), y]
    return float(-np.mean(np.log(np.clip(p, EPS, 1.0))))


def _tagged(progress: Progress | None, tag: str) -> Progress | None:
    """Prefix a member's progress stages with its name ("lightgbm:iteration")."""
    if progress is None:
        return None

    def report(stage: str, done: int, total: int, metrics: dict[str, float]) -> None:
        progress(f"{tag}:{stage}", done, total, metrics)

    return report


def _member_records(histories: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-iteration/epoch records of all members, tagged by member (learning curves)."""
    records: list[dict[str, Any]] = []
    for name, hist in histories.items():
        rows = hist if isinstance(hist, list) else next(
            (v for v in (hist or {}).values()
             if isinstance(v, list) and v and all(isinstance(r, dict) for r in v)), [])
        records.extend({"member": name, **r} for r in rows)
    return records


class GBDTEnsemble:
    """LightGBM + XGBoost + CatBoost with an out-of-fold stacked meta-learner.

    ``params`` maps a member kind to its params; ``members`` picks which of the three
    (all by default). The OOF folds come from ``splits.purged_kfold`` with the label
    horizon purged on BOTH sides of each held-out block (``embargo=horizon``): a fit
    row just after the block has a label window overlapping the block's last labels
    and features that already contain part of their outcome.
    """

    kind = "gbdt"

    def __init__(self, params: dict[str, dict[str, Any]] | None = None,
                 columns: list[str] | None = None, seed: int = 0, k: int = 3,
                 members: Sequence[str] = ("lightgbm", "xgboost", "catboost"),
                 C: float = 1.0) -> None:
        unknown = [m for m in members if m not in GBDT_CLASSES]
        if unknown or not members:
            raise ValueError(f"GBDTEnsemble members must be among {list(GBDT_CLASSES)}, "
                             f"got {list(members)}")
        bad = set(params or {}) - set(members)
        if bad:
            raise ValueError(f"GBDTEnsemble: params for kinds that are not members: {bad}")
        if k < 2:
            raise ValueError("GBDTEnsemble needs k >= 2 folds")
        self.params = {m: dict((params or {}).get(m, {})) for m in members}
        self.columns = list(columns) if columns is not None else None
        self.seed = int(seed)
        self.k = int(k)
        self.member_kinds = list(members)
        self.meta = MetaLearner(C)
        self.models: dict[str, Any] = {}
        #: (fit_rows, held_out_rows) of each OOF fold, kept for inspection
        self.oof_folds: list[tuple[np.ndarray, np.ndarray]] = []
        self.history: dict[str, Any] = {}

    def _new(self, kind: str) -> Any:
        return GBDT_CLASSES[kind](params=self.params[kind], columns=self.columns,
                                  seed=self.seed)

    def fit(self, data: MLFrame, train_rows: np.ndarray, valid_rows: np.ndarray,
            progress: Progress | None = None) -> dict[str, Any]:
        """OOF member probabilities -> meta-learner -> members refit on all train rows.

        Every member fit early-stops on ``valid_rows`` (never on the held-out block,
        whose OOF probabilities must not have influenced any choice).
        """
        from perptrader.ml.splits import purged_kfold

        t0 = time.perf_counter()
        y = data.y
        train_rows = np.sort(np.asarray(train_rows, dtype=np.int64))
        folds = purged_kfold(train_rows, self.k, horizon=data.horizon, embargo=data.horizon)
        self.oof_folds = []
        oof_rows, oof_proba = [], {m: [] for m in self.member_kinds}
        fold_info = []
        n_steps = len(folds) * len(self.member_kinds)
        for i, (fit_rows, held) in enumerate(folds):
            held = data.labelled(held)
            if len(held) == 0:
                continue
            self.oof_folds.append((fit_rows, held))
            losses = {}
            for j, kind in enumerate(self.member_kinds):
                if progress is not None:
                    progress("oof", i * len(self.member_kinds) + j, n_steps,
                             {"fold": i, "member": j})
                model = self._new(kind)
                model.fit(data, fit_rows, valid_rows)
                proba = model.predict_proba(data, held)
                oof_proba[kind].append(proba)
                losses[kind] = _log_loss(proba, y[held])
            oof_rows.append(held)
            fold_info.append({"fold": i, "n_fit": len(fit_rows), "n_held": len(held),
                              "held": [int(held[0]), int(held[-1])],
                              "member_logloss": losses})
        if not oof_rows:
            raise ValueError("GBDTEnsemble: no labelled rows in any OOF block")
        rows = np.concatenate(oof_rows)
        member_oof = {m: np.vstack(oof_proba[m]) for m in self.member_kinds}
        features = log_features([member_oof[m] for m in self.member_kinds])
        self.meta.fit(features, y[rows])
        histories = {}
        for kind in self.member_kinds:
            model = self._new(kind)
            histories[kind] = model.fit(data, train_rows, valid_rows, _tagged(progress, kind))
            self.models[kind] = model
        self.columns = self.models[self.member_kinds[0]].columns
        self.history = {
            # first list of records = the learning curves (walkforward.history_records)
            "curve": _member_records(histories),
            "kind": self.kind, "k": self.k, "n_oof_rows": len(rows),
            "oof_member_logloss": {m: _log_loss(member_oof[m], y[rows])
                                   for m in self.member_kinds},
            "oof_meta_logloss_in_sample": self.meta.log_loss(features, y[rows]),
            "oof_folds": fold_info,
            "members": {m: {k: v for k, v in h.items() if k != "curve"}
                        for m, h in histories.items()},
            "seconds": round(time.perf_counter() - t0, 3),
        }
        return self.history

    def member_proba(self, data: MLFrame, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Each refit member's probabilities (kind -> (n, 3))."""
        if not self.models:
            raise RuntimeError("gbdt: model is not fitted")
        return {m: self.models[m].predict_proba(data, rows) for m in self.member_kinds}

    def predict_proba(self, data: MLFrame, rows: np.ndarray) -> np.ndarray:
        members = self.member_proba(data, rows)
        return self.meta.predict_proba(log_features([members[m] for m in self.member_kinds]))

    def importance(self) -> pd.Series:
        """Members' importances, each normalized to sum 1 (their scales differ), averaged."""
        if not self.models:
            raise RuntimeError("gbdt: model is not fitted")
        shares = []
        for model in self.models.values():
            imp = model.importance()
            total = imp.sum()
            shares.append(imp / total if total > 0 else imp)
        return (pd.concat(shares, axis=1).fillna(0.0).mean(axis=1)
                .sort_values(ascending=False).rename("gain_share"))

    def save(self, folder: Path) -> None:
        if not self.models:
            raise RuntimeError("gbdt: nothing to save, not fitted")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for kind, model in self.models.items():
            model.save(folder / kind)
        (folder / META_FILE).write_text(json.dumps(self.meta.to_dict()))
        write_config(folder, {
            "kind": self.kind, "members": self.member_kinds, "params": self.params,
            "columns": self.columns, "seed": self.seed, "k": self.k,
            "classes": list(CLASSES), "meta_file": META_FILE, "history": self.history,
        })

    @classmethod
    def load(cls, folder: Path) -> GBDTEnsemble:
        folder = Path(folder)
        config = read_config(folder, expect_kind=cls.kind)
        state = json.loads((folder / config["meta_file"]).read_text())
        model = cls(params=config["params"], columns=config["columns"], seed=config["seed"],
                    k=config["k"], members=config["members"], C=state["C"])
        model.meta = MetaLearner.from_dict(state)
        model.models = {m: GBDT_CLASSES[m].load(folder / m) for m in model.member_kinds}
        model.history = config.get("history", {})
        return model


class Stack:
    """Any Classifier members + a logistic meta-learner on their VALIDATION probabilities.

    See the module docstring for why validation rows and not OOF. Members that cannot
    predict every row (sequence experts need ``seq_len - 1`` bars of history, exposed as
    ``usable_rows``) restrict the meta-learner's rows to those all members can predict.
    """

    kind = "ensemble"

    def __init__(self, members: Sequence[Classifier], C: float = 1.0) -> None:
        if len(members) < 1:
            raise ValueError("Stack needs at least one member")
        self.members = list(members)
        self.meta = MetaLearner(C)
        self.history: dict[str, Any] = {}

    def names(self) -> list[str]:
        """Unique member names: the kind, suffixed -2, -3 ... on repeats (subfolders)."""
        seen: dict[str, int] = {}
        out = []
        for m in self.members:
            seen[m.kind] = seen.get(m.kind, 0) + 1
            out.append(m.kind if seen[m.kind] == 1 else f"{m.kind}-{seen[m.kind]}")
        return out

    def _common_rows(self, data: MLFrame, rows: np.ndarray) -> np.ndarray:
        for m in self.members:
            usable = getattr(m, "usable_rows", None)
            if usable is not None:
                rows = usable(data, rows)
        return rows

    def fit(self, data: MLFrame, train_rows: np.ndarray, valid_rows: np.ndarray,
            progress: Progress | None = None) -> dict[str, Any]:
        t0 = time.perf_counter()
        histories = {}
        for name, member in zip(self.names(), self.members, strict=True):
            histories[name] = member.fit(data, train_rows, valid_rows, _tagged(progress, name))
        valid = data.labelled(self._common_rows(data, np.asarray(valid_rows, dtype=np.int64)))
        if len(valid) == 0:
            raise ValueError("Stack: no labelled validation rows every member can predict")
        y = data.y[valid]
        probas = [np.asarray(m.predict_proba(data, valid)) for m in self.members]
        features = log_features(probas)
        self.meta.fit(features, y)
        self.history = {
            "curve": _member_records(histories),
            "kind": self.kind, "members": self.names(), "n_meta_rows": len(valid),
            "valid_member_logloss": {n: _log_loss(p, y)
                                     for n, p in zip(self.names(), probas, strict=True)},
            "valid_meta_logloss_in_sample": self.meta.log_loss(features, y),
            "member_histories": {n: h if isinstance(h, dict) else {"records": h}
                                 for n, h in histories.items()},
            "seconds": round(time.perf_counter() - t0, 3),
        }
        return self.history

    def predict_proba(self, data: MLFrame, rows: np.ndarray) -> np.ndarray:
        if self.meta.model is None:
            raise RuntimeError("ensemble: model is not fitted")
        return self.meta.predict_proba(log_features(
            [m.predict_proba(data, rows) for m in self.members]))

    def save(self, folder: Path) -> None:
        if self.meta.model is None:
            raise RuntimeError("ensemble: nothing to save, not fitted")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        names = self.names()
        for name, member in zip(names, self.members, strict=True):
            (folder / name).mkdir(parents=True, exist_ok=True)
            member.save(folder / name)
        (folder / META_FILE).write_text(json.dumps(self.meta.to_dict()))
        history = {k: v for k, v in self.history.items()
                   if k not in ("member_histories", "curve")}
        write_config(folder, {
            "kind": self.kind, "classes": list(CLASSES), "meta_file": META_FILE,
            "members": [{"kind": m.kind, "folder": n} for n, m in
                        zip(names, self.members, strict=True)],
            "history": history,
        })

    @classmethod
    def load(cls, folder: Path) -> Stack:
        from perptrader.ml.models import load_model

        folder = Path(folder)
        config = read_config(folder, expect_kind=cls.kind)
        members = []
        for entry in config["members"]:
            member = load_model(folder / entry["folder"])
            if member.kind != entry["kind"]:
                raise ValueError(f"{folder / entry['folder']}: holds {member.kind!r}, the "
                                 f"manifest says {entry['kind']!r}")
            members.append(member)
        state = json.loads((folder / config["meta_file"]).read_text())
        stack = cls(members, C=state["C"])
        stack.meta = MetaLearner.from_dict(state)
        stack.history = config.get("history", {})
        return stack
