"""Feature selection: clusters of correlated features, purged permutation importance
(MDA), and named feature sets that record the choice.

Why permutation importance and not gain: gain is measured on the rows the trees were
fitted on and rewards features the trees could split on, not features that help on
unseen rows. MDA (mean decrease in accuracy, López de Prado) fits on the fit part of a
PURGED k-fold and measures how much the held-out log-loss and macro-F1 worsen when a
feature's values are shuffled among the held-out rows.

Why clusters: with two near-copies of one signal (an EMA ratio at 20 and at 21 bars),
shuffling one leaves the other, so each looks worthless and both get dropped. Features
whose |Spearman| correlation is high are clustered and a cluster is shuffled JOINTLY
(the same row permutation for all its members), which measures what the cluster's
information is worth.

**Selection must be run on training rows only** (the training window of a fold or of
the final model): choosing features on rows that are later scored out of sample is a
look-ahead in the choice itself. Every function here takes ``rows`` for that reason.

Selected sets are stored as ``<data_dir>/feature_sets/<name>.json`` ({"name", "base",
"columns", "created", "source"}) and applied with ``restrict``; the declarative sets of
``features/sets.py`` (which FAMILIES a build computes) are a different layer and are
not changed: a selected set is a column subset of a build of its ``base`` set.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from perptrader.ml.base import MLFrame
from perptrader.ml.splits import purged_kfold

#: the share of each fit part kept at its end for early stopping (never the held-out)
INNER_VALID = 0.15
#: how a selected cluster is represented: its most central member, or every member
MEMBERS = ("representative", "all")
FEATURE_SETS_DIR = "feature_sets"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


# -- correlation clusters ------------------------------------------------------------


def spearman_abs(data: MLFrame, rows: np.ndarray,
                 columns: list[str] | None = None) -> pd.DataFrame:
    """|Spearman correlation| between ``columns`` (default: the features) over ``rows``.

    Ranks are taken per column over its known values; a NaN gets the column's mean rank
    (it then adds nothing to the covariance), which is one matrix product instead of
    pandas' pairwise-complete loop (minutes for 400 columns). A constant column has no
    correlation with anything (0 off the diagonal).
    """
    cols = list(data.features if columns is None else columns)
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) < 3:
        raise ValueError("spearman_abs needs at least 3 rows")
    ranks = pd.DataFrame(data.x(rows, cols), columns=cols).rank().to_numpy(np.float64)
    known = ~np.isnan(ranks)
    count = known.sum(axis=0)
    mean_rank = np.where(known, ranks, 0.0).sum(axis=0) / np.maximum(count, 1)
    ranks = np.where(known, ranks, mean_rank)  # an all-NaN column becomes constant
    centred = ranks - ranks.mean(axis=0)
    norm = np.sqrt((centred ** 2).sum(axis=0))
    safe = np.where(norm > 0, norm, 1.0)
    corr = (centred.T @ centred) / np.outer(safe, safe)
    corr[norm == 0, :] = 0.0
    corr[:, norm == 0] = 0.0
    np.fill_diagonal(corr, 1.0)
    return pd.DataFrame(np.clip(np.abs(corr), 0.0, 1.0), index=cols, columns=cols)


def _clusters_of(corr: pd.DataFrame, threshold: float) -> list[list[str]]:
    """Average-linkage clusters on 1 - |rho| cut at distance 1 - threshold."""
    cols = corr.columns.tolist()
    if len(cols) == 1:
        return [cols]
    dist = 1.0 - corr.to_numpy()
    np.fill_diagonal(dist, 0.0)
    dist = (dist + dist.T) / 2.0
    tree = linkage(squareform(dist, checks=False), method="average")
    labels = fcluster(tree, t=1.0 - threshold, criterion="distance")
    groups: dict[int, list[str]] = {}
    for name, label in zip(cols, labels, strict=True):
        groups.setdefault(int(label), []).append(name)
    return sorted(groups.values(), key=lambda g: cols.index(g[0]))


def feature_clusters(data: MLFrame, rows: np.ndarray, threshold: float = 0.7) -> list[list[str]]:
    """Groups of features whose average |Spearman| correlation over ``rows`` is at least
    ``threshold`` (hierarchical clustering, average linkage, on 1 - |rho|).

    Every feature is in exactly one group; groups and members keep the feature order.
    Use training rows only.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError("threshold must be in (0, 1]")
    return _clusters_of(spearman_abs(data, rows), threshold)


# -- purged permutation importance (MDA) ---------------------------------------------


def time_purged_kfold(data: MLFrame, rows: np.ndarray, k: int,
                      embargo: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``purged_kfold`` on bar TIMES, mapped back to rows.

    On one symbol's table (unique times) this is ``purged_kfold(rows, ...)`` itself. On a
    pooled table (several rows per time) the blocks are cut on the rows' unique times, so
    one bar time is never split between a fit part and its held-out block, and the purge
    is ``horizon`` bars of time rather than ``horizon`` interleaved rows.
    """
    rows = np.sort(np.asarray(rows, dtype=np.int64))
    index = data.index
    if not index.has_duplicates:
        return purged_kfold(rows, k, data.horizon, embargo)
    unique = index.unique()
    at = unique.get_indexer(index[rows]).astype(np.int64)
    out = []
    for fit_t, held_t in purged_kfold(np.unique(at), k, data.horizon, embargo):
        out.append((rows[np.isin(at, fit_t)], rows[np.isin(at, held_t)]))
    return out


def _inner_split(data: MLFrame, fit_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(train, valid) of a fit part: its last ``INNER_VALID`` share (in time) validates
    early stopping, the ``horizon`` bars of time before it are purged from training."""
    times = data.index[fit_rows]
    unique = times.unique()
    n_valid = max(1, round(INNER_VALID * len(unique)))
    if len(unique) <= n_valid + data.horizon:
        raise ValueError("permutation importance: a fit part is too short for an inner "
                         f"validation slice and a {data.horizon}-bar purge; use fewer folds")
    valid_start = unique[len(unique) - n_valid]
    purge_start = unique[max(0, len(unique) - n_valid - data.horizon)]
    return fit_rows[times < purge_start], fit_rows[times >= valid_start]


def _scores(y: np.ndarray, proba: np.ndarray) -> tuple[float, float]:
    """(log-loss, macro-F1) of class indices ``y`` against probabilities."""
    from sklearn.metrics import f1_score, log_loss

    p = np.clip(proba, 1e-12, 1.0)
    p = p / p.sum(axis=1, keepdims=True)
    return (float(log_loss(y, p, labels=[0, 1, 2])),
            float(f1_score(y, p.argmax(axis=1), labels=[0, 1, 2], average="macro",
                           zero_division=0)))


def _held_frame(data: MLFrame, held: np.ndarray, columns: list[str]) -> MLFrame:
    """The held-out rows as their own small table (its columns are shuffled in place)."""
    table = data.frame.iloc[held][[*columns, data.label]].copy()
    return MLFrame(table, list(columns), label=data.label, horizon=data.horizon)


def _groups(columns: list[str], clusters: list[list[str]] | None) -> list[list[str]]:
    if clusters is None:
        return [[c] for c in columns]
    have = set(columns)
    groups = [[c for c in g if c in have] for g in clusters]
    groups = [g for g in groups if g]
    missing = have - {c for g in groups for c in g}
    if missing:
        raise ValueError(f"clusters leave out features the model uses: {sorted(missing)[:10]}")
    return groups


def _fold_drops(model: Any, held: MLFrame, y: np.ndarray, groups: list[list[str]],
                rng: np.random.Generator, n_repeats: int) -> np.ndarray:
    """(n_groups, 2) mean drop (log-loss up, macro-F1 down) when each group is shuffled."""
    all_rows = np.arange(len(held), dtype=np.int64)
    base_loss, base_f1 = _scores(y, model.predict_proba(held, all_rows))
    out = np.zeros((len(groups), 2))
    table = held.frame
    for g, members in enumerate(groups):
        original = table[members].to_numpy(copy=True)
        for _ in range(n_repeats):
            table[members] = original[rng.permutation(len(original))]
            loss, f1 = _scores(y, model.predict_proba(held, all_rows))
            out[g] += (loss - base_loss, base_f1 - f1)
        table[members] = original
    return out / n_repeats


def purged_permutation_importance(data: MLFrame, rows: np.ndarray, *, kind: str = "lightgbm",
                                  k: int = 4, model_kwargs: dict[str, Any] | None = None,
                                  clusters: list[list[str]] | None = None, seed: int = 0,
                                  n_repeats: int = 1, embargo: int | None = None
                                  ) -> pd.DataFrame:
    """MDA over a purged k-fold of ``rows`` (TRAINING rows only).

    For each of the ``k`` folds (``splits.purged_kfold`` on bar times; embargo defaults
    to the horizon, as in the ``gbdt`` stack): a fresh ``make_model(kind)`` is fitted on
    the fit part (early stopping on the last ``INNER_VALID`` of it, purged), then each
    feature, or each cluster jointly, is shuffled ``n_repeats`` times among the held-out
    rows and the rise in log-loss and fall in macro-F1 recorded.

    Returns one row per feature (column ``feature``) or per cluster (``cluster``: its
    number; ``members``; ``size``) with ``mean`` / ``std`` (over folds) of the log-loss
    drop, and ``f1_mean`` / ``f1_std``, sorted by ``mean`` (largest first). A drop <= 0
    means the model does no better with the feature than with noise in its place.
    """
    from perptrader.ml.models import make_model
    from perptrader.ml.pooled import POOLED_KINDS

    if kind not in POOLED_KINDS:
        raise ValueError(f"permutation importance needs a row-wise kind {POOLED_KINDS}, "
                         f"not {kind!r}: the held-out rows are scored as their own table")
    rows = data.labelled(np.sort(np.asarray(rows, dtype=np.int64)))
    if n_repeats < 1:
        raise ValueError("n_repeats must be >= 1")
    y_all = data.y
    rng = np.random.default_rng(seed)
    folds = time_purged_kfold(data, rows, k, data.horizon if embargo is None else embargo)
    groups: list[list[str]] | None = None
    per_fold = []
    for fit_rows, held in folds:
        train, valid = _inner_split(data, fit_rows)
        model = make_model(kind, **{"seed": seed, **dict(model_kwargs or {})})
        model.fit(data, train, valid)
        columns = list(getattr(model, "columns", None) or data.features)
        groups = _groups(columns, clusters) if groups is None else groups
        per_fold.append(_fold_drops(model, _held_frame(data, held, columns), y_all[held],
                                    groups, rng, n_repeats))
    drops = np.stack(per_fold)  # (k, n_groups, 2)
    assert groups is not None
    table = pd.DataFrame({
        "mean": drops[:, :, 0].mean(axis=0), "std": drops[:, :, 0].std(axis=0),
        "f1_mean": drops[:, :, 1].mean(axis=0), "f1_std": drops[:, :, 1].std(axis=0),
    })
    if clusters is None:
        table.insert(0, "feature", [g[0] for g in groups])
    else:
        table.insert(0, "cluster", np.arange(len(groups)))
        table.insert(1, "members", groups)
        table.insert(2, "size", [len(g) for g in groups])
    return table.sort_values("mean", ascending=False, kind="stable").reset_index(drop=True)


# -- selection -----------------------------------------------------------------------


def _representative(members: list[str], corr: pd.DataFrame) -> str:
    """The cluster's most central member: highest mean |rho| to the other members
    (ties: the first in feature order)."""
    if len(members) == 1:
        return members[0]
    sub = corr.loc[members, members].to_numpy()
    centrality = (sub.sum(axis=1) - 1.0) / (len(members) - 1)
    return members[int(np.argmax(centrality))]


def select_features(data: MLFrame, rows: np.ndarray, *, threshold: float = 0.7,
                    keep: int | None = None, members: str = "representative",
                    kind: str = "lightgbm", k: int = 4,
                    model_kwargs: dict[str, Any] | None = None, seed: int = 0,
                    n_repeats: int = 1, min_t: float = 0.0) -> list[str]:
    """Clusters -> clustered MDA -> the chosen clusters' features (TRAINING rows only).

    A cluster is chosen when its mean log-loss drop is positive (shuffling it hurts on
    held-out rows), or, with ``keep``, the ``keep`` clusters of largest drop whatever its
    sign (a fixed-size set for comparisons). A pure-noise cluster has a mean drop near 0
    of either sign, so "positive" admits about half of them; ``min_t`` > 0 asks instead
    for mean > min_t × std / sqrt(k) (a t-statistic over the folds; 2 is a strict bar).

    ``members="representative"`` (default) keeps ONE feature per chosen cluster: its most
    central member (highest mean |rho| to the others). Why: the members carry the same
    information (|rho| >= threshold), the importance was measured for the cluster as a
    whole, and keeping near-copies splits the trees' splits among them, which adds
    variance without adding information. ``members="all"`` keeps every member (when the
    small differences between them, e.g. two look-backs, are wanted).
    Returns the features in the table's feature order.
    """
    if members not in MEMBERS:
        raise ValueError(f"members must be one of {MEMBERS}, got {members!r}")
    if keep is not None and keep < 1:
        raise ValueError("keep must be >= 1")
    if not 0.0 < threshold <= 1.0:
        raise ValueError("threshold must be in (0, 1]")
    corr = spearman_abs(data, data.labelled(np.asarray(rows, dtype=np.int64)))
    clusters = _clusters_of(corr, threshold)
    imp = purged_permutation_importance(data, rows, kind=kind, k=k,
                                        model_kwargs=model_kwargs, clusters=clusters,
                                        seed=seed, n_repeats=n_repeats)
    if keep is not None:
        chosen = imp.head(keep)
    else:
        chosen = imp[imp["mean"] > max(0.0, min_t) * imp["std"] / np.sqrt(k)]
    picked: set[str] = set()
    for group in chosen["members"]:
        picked.update(group if members == "all" else [_representative(group, corr)])
    return [c for c in data.features if c in picked]


# -- named selected sets -------------------------------------------------------------


def feature_sets_root(root: Path | None = None) -> Path:
    """``root / "feature_sets"``; ``root`` defaults to ``settings.data_dir``."""
    if root is None:
        from perptrader.config import load_settings

        root = Path(load_settings().data_dir)
    return Path(root) / FEATURE_SETS_DIR


def check_set_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise ValueError(f"invalid feature-set name {name!r}: use letters, digits, '.', "
                         "'_', '-' (starting with a letter or digit)")
    return name


def save_selected_set(name: str, base_set: str, columns: list[str],
                      root: Path | None = None, *,
                      source: dict[str, Any] | None = None) -> Path:
    """Write ``<root>/feature_sets/<name>.json`` (root: the data dir) and return its path.

    ``base_set`` is the feature set whose build holds the columns; ``source`` records how
    they were chosen (symbol, rows span, threshold, kind ...). Written to a temporary
    file and renamed, so a crash leaves the previous version, never half a file.
    """
    check_set_name(name)
    cols = [str(c) for c in columns]
    if not cols:
        raise ValueError("a selected feature set needs at least one column")
    if len(set(cols)) != len(cols):
        raise ValueError("a selected feature set lists a column twice")
    folder = feature_sets_root(root)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    body = {"name": name, "base": base_set, "columns": cols,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "source": source or {}}
    tmp = path.with_suffix(f".json.tmp{os.getpid()}")
    tmp.write_text(json.dumps(body, indent=2, default=str))
    tmp.replace(path)
    return path


def load_selected_set(name: str, root: Path | None = None) -> dict[str, Any]:
    """The stored set ``name`` ({"name", "base", "columns", "created", "source"})."""
    path = feature_sets_root(root) / f"{check_set_name(name)}.json"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.json")) if path.parent.is_dir() \
            else []
        raise FileNotFoundError(f"no selected feature set {name!r} in {path.parent} "
                                f"(known: {', '.join(known) or 'none'})")
    body = json.loads(path.read_text())
    missing = [k for k in ("name", "base", "columns") if k not in body]
    if missing:
        raise ValueError(f"{path}: not a selected feature set (missing {missing})")
    return body


def restrict(data: MLFrame, columns: list[str]) -> MLFrame:
    """The same table with only ``columns`` as features (the frame is shared, not copied).

    Refuses a column the table's features lack (a set selected on another build). The
    base build's hash no longer describes the model's inputs, so ``feature_hash``
    becomes ``sel-<hash of (base hash, columns)>``: a model trained on the restricted
    table matches (in the registry) only a table of the same build and selection.
    """
    cols = list(columns)
    have = set(data.features)
    missing = [c for c in cols if c not in have]
    if missing:
        raise KeyError(f"restrict: {len(missing)} column(s) are not features of this "
                       f"table: {missing[:10]}")
    if not cols:
        raise ValueError("restrict needs at least one column")
    base_hash = data.meta.get("feature_hash")
    digest = hashlib.sha256(json.dumps([base_hash, cols]).encode()).hexdigest()[:16]
    meta = {**data.meta, "feature_hash": f"sel-{digest}", "base_feature_hash": base_hash,
            "n_features": len(cols)}
    return MLFrame(data.frame, cols, label=data.label, horizon=data.horizon, meta=meta)


__all__ = ["MEMBERS", "check_set_name", "feature_clusters", "feature_sets_root",
           "load_selected_set", "purged_permutation_importance", "restrict", "save_selected_set",
           "select_features", "spearman_abs", "time_purged_kfold"]
