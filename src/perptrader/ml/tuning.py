"""Hyper-parameter search (Optuna, optionally on Ray Tune) that never looks at test rows.

Why the objective looks the way it does: a walk-forward fold's test window is the only
honest estimate of out-of-sample skill, so choosing parameters on it would make that
estimate worthless. A trial is therefore scored ONLY inside the training windows
(``fold.train`` + ``fold.valid``) of the first ``folds`` walk-forward folds: each window
is cut by ``purged_kfold`` into k contiguous blocks; every block is scored once (macro-F1
of ``classification_metrics``) by a model fitted on the rest of the window. Early
stopping needs validation rows too; they are carved from the END of the fit rows (purged
by the label horizon), so the block that scores a trial never picks its number of trees
or epochs. The trial value is the mean over all (fold, block) steps; the running mean is
reported after every step so Optuna's ``MedianPruner`` (or Ray's ASHA scheduler)
can stop hopeless trials early.

With ``folds=1`` (default) every row used lies before the first fold's test window, so
no test window of any fold is touched. With ``folds=N`` the N-th window of a rolling
walk-forward contains the test windows of folds 0..N-2: the result says so
(``first_clean_fold``) and only folds from there on are untouched by the search.

Trials live in an Optuna RDB storage: by default ``sqlite:///<data_dir>/optuna.db``
(one process); a ``postgresql://`` URL lets several ``perptrader tune`` processes share
one study (``load_if_exists``). ``backend="ray"`` runs the same objective as Ray Tune
trials (``OptunaSearch`` over the same define-by-run space, writing into the same study).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
import optuna

from perptrader.core.errors import PerptraderError
from perptrader.core.jsonsafe import json_safe
from perptrader.ml.base import MLFrame, Progress

METRIC = "macro_f1"
#: model kinds with a search space; the neural ones are tuned through ``ExpertConfig``
GBDT_KINDS = ("lightgbm", "xgboost", "catboost")
EXPERT_KINDS = ("xlstm-pattern", "xlstm-indicator", "lstm")
TUNABLE_KINDS = GBDT_KINDS + EXPERT_KINDS
#: share of a k-fold's fit rows kept back (at their end) for early stopping
INNER_VALID_SHARE = 0.15
#: trials that finish before pruning starts (Optuna and Ray alike)
STARTUP_TRIALS = 5
#: window lengths searched for the sequence experts
SEQ_LENS = (32, 64, 128)


class TuningError(PerptraderError):
    """A search that cannot run as asked (no space for the kind, too few folds, ...)."""


class MissingExtraError(TuningError):
    """An optional dependency (an ``extra`` of the package) is not installed."""


# --------------------------------------------------------------------- search spaces


def _float(trial: optuna.Trial, fixed: dict[str, Any], name: str, low: float, high: float,
           *, log: bool = False) -> float:
    """``fixed[name]`` when pinned by the caller (then it is not searched), else a draw."""
    return fixed[name] if name in fixed else trial.suggest_float(name, low, high, log=log)


def _int(trial: optuna.Trial, fixed: dict[str, Any], name: str, low: int, high: int,
         *, log: bool = False) -> int:
    return fixed[name] if name in fixed else trial.suggest_int(name, low, high, log=log)


def _choice(trial: optuna.Trial, fixed: dict[str, Any], name: str, options: list[Any]) -> Any:
    return fixed[name] if name in fixed else trial.suggest_categorical(name, options)


def suggest_params(trial: optuna.Trial, kind: str, fixed: dict[str, Any] | None = None
                   ) -> dict[str, Any]:
    """Draw one point of ``kind``'s default search space (define-by-run).

    Returns ONLY the searched values; parameters named in ``fixed`` are pinned and not
    searched. Names are the libraries' own (lightgbm / xgboost / catboost params, the
    ``ExpertConfig`` fields for the neural kinds), so a result can be passed on as is.
    """
    f = dict(fixed or {})
    if kind == "lightgbm":
        out = {
            "learning_rate": _float(trial, f, "learning_rate", 0.01, 0.3, log=True),
            "num_leaves": _int(trial, f, "num_leaves", 8, 128, log=True),
            "max_depth": _int(trial, f, "max_depth", 3, 12),
            "min_child_samples": _int(trial, f, "min_child_samples", 10, 300, log=True),
            "feature_fraction": _float(trial, f, "feature_fraction", 0.3, 1.0),
            "lambda_l2": _float(trial, f, "lambda_l2", 1e-3, 30.0, log=True),
        }
    elif kind == "xgboost":
        out = {
            "learning_rate": _float(trial, f, "learning_rate", 0.01, 0.3, log=True),
            "max_depth": _int(trial, f, "max_depth", 3, 10),
            "min_child_weight": _float(trial, f, "min_child_weight", 0.5, 50.0, log=True),
            "colsample_bytree": _float(trial, f, "colsample_bytree", 0.3, 1.0),
            "reg_lambda": _float(trial, f, "reg_lambda", 1e-3, 30.0, log=True),
        }
    elif kind == "catboost":
        out = {
            "learning_rate": _float(trial, f, "learning_rate", 0.01, 0.3, log=True),
            "depth": _int(trial, f, "depth", 3, 10),
            # min_data_in_leaf only acts on Depthwise/Lossguide trees, not on the
            # symmetric trees used here; random_strength regularises the split choice
            "random_strength": _float(trial, f, "random_strength", 1e-2, 10.0, log=True),
            "rsm": _float(trial, f, "rsm", 0.3, 1.0),
            "l2_leaf_reg": _float(trial, f, "l2_leaf_reg", 0.1, 30.0, log=True),
        }
    elif kind in EXPERT_KINDS:
        out = {
            "d_model": _choice(trial, f, "d_model", [32, 64, 128]),
            "n_blocks": _int(trial, f, "n_blocks", 1, 4),
            "dropout": _float(trial, f, "dropout", 0.0, 0.4),
            "lr": _float(trial, f, "lr", 3e-4, 5e-3, log=True),
            "focal_gamma": _float(trial, f, "focal_gamma", 0.0, 3.0),
            "seq_len": _choice(trial, f, "seq_len", list(SEQ_LENS)),
        }
    else:
        raise TuningError(f"no search space for model kind {kind!r}; tunable kinds: "
                          f"{', '.join(TUNABLE_KINDS)}")
    return {k: v for k, v in out.items() if k not in f}


@dataclass(frozen=True)
class SearchSpace:
    """``suggest_params`` as a picklable define-by-run callable (Ray's OptunaSearch
    pickles its state, space included, at every checkpoint)."""

    kind: str
    fixed: dict[str, Any] = field(default_factory=dict)

    def __call__(self, trial: optuna.Trial) -> None:
        suggest_params(trial, self.kind, self.fixed)


def build_model(kind: str, params: dict[str, Any]):
    """The model of one trial: GBDT params via ``params=``, neural ones via ``config=``."""
    from perptrader.ml import models

    if kind in EXPERT_KINDS:
        from perptrader.ml.experts import ExpertConfig

        return models.make_model(kind, config=ExpertConfig(**_expert_config(params)))
    return models.make_model(kind, params=dict(params))


def _expert_config(params: dict[str, Any]) -> dict[str, Any]:
    """ExpertConfig fields of a trial. The default sLSTM position (1,) does not exist in a
    1-block stack; there the single block is an mLSTM block (``slstm_at=()``)."""
    out = dict(params)
    if "slstm_at" in out:
        out["slstm_at"] = tuple(out["slstm_at"])
    elif int(out.get("n_blocks", 2)) < 2:
        out["slstm_at"] = ()
    return out


#: each library's thread-count parameter (a Ray trial gets one CPU: see ``_ray_trainable``)
THREAD_PARAM = {"lightgbm": "num_threads", "xgboost": "nthread", "catboost": "thread_count"}
#: fixed parameters that do not change a trial's value (left out of the study identity)
NEUTRAL = frozenset({*THREAD_PARAM.values(), "progress_every", "device"})


# ------------------------------------------------------------------------ objective


@dataclass(frozen=True)
class Objective:
    """Where and how a trial is scored: the k-fold steps inside the training windows."""

    kind: str
    #: (fit_rows, early_stopping_rows, scored_rows) per step, in fold-then-block order
    steps: tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]
    fixed: dict[str, Any] = field(default_factory=dict)
    #: what defines the objective (stored on the study; resuming must match it)
    describe: dict[str, Any] = field(default_factory=dict)
    #: start of the first walk-forward test window no trial has seen (nor any row after)
    clean_from: str = ""

    @property
    def n_steps(self) -> int:
        return len(self.steps)

    def rows_used(self) -> np.ndarray:
        """Every row position any trial fits, early-stops or scores on."""
        return np.unique(np.concatenate([np.concatenate(s) for s in self.steps]))

    def evaluate(self, data: MLFrame, params: dict[str, Any],
                 report: Callable[[int, float], None] | None = None) -> float:
        """Mean macro-F1 over the steps; ``report(step, running_mean)`` after each one
        (it may raise to stop the trial, as Optuna's pruning does)."""
        from perptrader.ml.evaluate import classification_metrics

        merged = {**self.fixed, **params}
        y = data.y
        scores: list[float] = []
        for step, (fit_rows, stop_rows, held_rows) in enumerate(self.steps):
            model = build_model(self.kind, merged)
            model.fit(data, fit_rows, stop_rows)
            proba = model.predict_proba(data, held_rows)
            scores.append(float(classification_metrics(y[held_rows], proba)[METRIC]))
            if report is not None:
                report(step, float(np.mean(scores)))
        return float(np.mean(scores))


def inner_split(fit_rows: np.ndarray, horizon: int, share: float = INNER_VALID_SHARE
                ) -> tuple[np.ndarray, np.ndarray]:
    """Early-stopping rows from the end of ``fit_rows``; fit rows whose label window
    (t+1..t+horizon) reaches them are purged."""
    n_stop = max(1, round(share * len(fit_rows)))
    stop = fit_rows[-n_stop:]
    fit = fit_rows[fit_rows < stop[0] - horizon]
    return fit, stop


def make_objective(data: MLFrame, kind: str, spec: Any, *, folds: int = 1, k: int = 3,
                   fixed: dict[str, Any] | None = None) -> Objective:
    """Cut the first ``folds`` walk-forward training windows into purged k-fold steps."""
    from perptrader.ml.splits import purged_kfold, walk_forward

    if kind not in TUNABLE_KINDS:
        raise TuningError(f"no search space for model kind {kind!r}; tunable kinds: "
                          f"{', '.join(TUNABLE_KINDS)}")
    if folds < 1 or k < 2:
        raise TuningError(f"need folds >= 1 and k >= 2 (got folds={folds}, k={k})")
    all_folds = walk_forward(data.index, spec, horizon=data.horizon)
    if len(all_folds) < folds:
        raise TuningError(f"the walk-forward split gives {len(all_folds)} fold(s) over "
                          f"{data.index[0]}..{data.index[-1]}; --folds {folds} needs more "
                          "data or a shorter train/test window")
    embargo = int(getattr(spec, "embargo", 0) or 0)
    labelled = data.y >= 0
    # a sequence expert cannot score a row with fewer than seq_len - 1 rows before it;
    # every trial is scored on the same rows, so drop those of the LONGEST window searched
    if kind in EXPERT_KINDS:
        longest = int((fixed or {}).get("seq_len", max(SEQ_LENS)))
        labelled[: longest - 1] = False
    steps = []
    windows = []
    for fold in all_folds[:folds]:
        window = np.unique(np.concatenate([fold.train, fold.valid])).astype(np.int64)
        windows.append([str(data.index[window[0]]), str(data.index[window[-1]])])
        for fit_rows, held_rows in purged_kfold(window, k, horizon=data.horizon,
                                                embargo=embargo):
            fit, stop = inner_split(np.sort(fit_rows), data.horizon)
            held = np.sort(held_rows)
            held = held[labelled[held]]
            if len(fit) == 0 or len(held) == 0 or not labelled[stop].any():
                raise TuningError(f"fold {fold.index}: a k-fold step has no rows to fit, "
                                  "stop or score on; use fewer blocks (k) or a longer "
                                  "train window")
            steps.append((fit, stop, held))
    describe = {
        "metric": METRIC, "kind": kind, "symbol": data.meta.get("symbol"),
        "timeframe": data.meta.get("timeframe"), "feature_hash": data.meta.get("feature_hash"),
        "label": data.label, "horizon": data.horizon,
        "walk_forward": _spec_dict(spec), "folds": folds, "k": k, "windows": windows,
        # thread counts and logging cadence do not change the objective's values
        "fixed": json_safe({k: v for k, v in (fixed or {}).items() if k not in NEUTRAL}),
    }
    clean_from = str(data.index[all_folds[folds - 1].test[0]])
    return Objective(kind, tuple(steps), dict(fixed or {}), describe, clean_from)


def _spec_dict(spec: Any) -> dict[str, Any]:
    try:
        return json_safe(asdict(spec))
    except TypeError:
        return {"spec": str(spec)}


# -------------------------------------------------------------------------- storage


def resolve_storage(storage: str | None = None) -> str:
    """The SQLAlchemy URL of the Optuna storage.

    None -> ``sqlite:///<settings.data_dir>/optuna.db`` (embedded, one process at a
    time); ``postgresql://`` / ``postgres://`` -> ``postgresql+psycopg://`` (psycopg 3 is
    the driver installed; SQLAlchemy would otherwise look for psycopg2). The store's
    ``?schema=NAME`` becomes the connection's ``search_path``.
    """
    if storage is None:
        from perptrader.config import load_settings

        folder = Path(load_settings().data_dir).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{folder / 'optuna.db'}"
    parts = urlsplit(storage)
    if parts.scheme in ("postgresql", "postgres"):
        query = dict(parse_qsl(parts.query))
        schema = query.pop("schema", None)
        if schema:
            query["options"] = f"-csearch_path={schema}"
        return urlunsplit(("postgresql+psycopg", parts.netloc, parts.path, urlencode(query),
                           parts.fragment))
    return storage


def display_url(url: str) -> str:
    """The storage URL with any password masked (it goes into reports and logs)."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def default_study_name(objective: Objective) -> str:
    """Stable per objective, so re-running the same command resumes the same study."""
    d = objective.describe
    digest = hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]
    return f"{d['kind']}-{d.get('symbol') or 'data'}-{d.get('timeframe') or ''}-{digest}"


def open_study(url: str, study_name: str, objective: Objective, *, seed: int | None = None,
               pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    """Create or join the study; refuse one that was made for another objective (its
    values would not be comparable with this one's)."""
    study = optuna.create_study(
        storage=url, study_name=study_name, direction="maximize", load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=STARTUP_TRIALS,
                                                  n_warmup_steps=1),
    )
    stored = study.user_attrs.get("objective")
    if stored is None:
        study.set_user_attr("objective", objective.describe)
    elif stored != objective.describe:
        changed = sorted(k for k in set(stored) | set(objective.describe)
                         if stored.get(k) != objective.describe.get(k))
        raise TuningError(f"study {study_name!r} was created for another objective "
                          f"(differs in: {', '.join(changed)}); pick another --study name")
    return study


# --------------------------------------------------------------------------- search


def tune(data: MLFrame, kind: str, spec: Any, *, n_trials: int, timeout: float | None = None,
         storage: str | None = None, study_name: str | None = None,
         backend: str = "optuna", folds: int = 1, k: int = 3,
         progress: Progress | None = None, fixed: dict[str, Any] | None = None,
         seed: int | None = None) -> dict[str, Any]:
    """Search ``kind``'s parameters on the training windows of ``spec``'s first folds.

    ``fixed`` pins parameters (not searched, passed to every model, e.g. a small
    ``n_estimators`` or ``max_epochs``); ``seed`` seeds the TPE sampler. Returns the best
    params (searched ones, and ``train_params`` = fixed + best), the best value, this
    run's trial counts, the storage URL (password masked), the study name and a table of
    every trial of the study.
    """
    if backend not in ("optuna", "ray"):
        raise TuningError(f"unknown backend {backend!r}; use 'optuna' or 'ray'")
    if n_trials < 1:
        raise TuningError("n_trials must be >= 1")
    objective = make_objective(data, kind, spec, folds=folds, k=k, fixed=fixed)
    url = resolve_storage(storage)
    name = study_name or default_study_name(objective)
    run_id = uuid.uuid4().hex[:12]
    started = time.perf_counter()
    if backend == "optuna":
        study = _run_optuna(data, objective, url, name, run_id, n_trials=n_trials,
                            timeout=timeout, progress=progress, seed=seed)
    else:
        study = _run_ray(data, objective, url, name, run_id, n_trials=n_trials,
                         timeout=timeout, progress=progress, seed=seed)
    return summarize(study, objective, url, run_id, backend=backend,
                     seconds=time.perf_counter() - started)


def _run_optuna(data: MLFrame, objective: Objective, url: str, name: str, run_id: str, *,
                n_trials: int, timeout: float | None, progress: Progress | None,
                seed: int | None) -> optuna.Study:
    study = open_study(url, name, objective, seed=seed)

    def run_trial(trial: optuna.Trial) -> float:
        trial.set_user_attr("run", run_id)
        params = suggest_params(trial, objective.kind, objective.fixed)

        def report(step: int, value: float) -> None:
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"step {step}: running macro-F1 {value:.4f}")

        return objective.evaluate(data, params, report)

    done = 0

    def on_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress("trial", done, n_trials, _best_metrics(study))

    study.optimize(run_trial, n_trials=n_trials, timeout=timeout, callbacks=[on_trial])
    return study


def _best_metrics(study: optuna.Study) -> dict[str, float]:
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return {"best": max(t.value for t in complete)} if complete else {}


def summarize(study: optuna.Study, objective: Objective, url: str, run_id: str, *,
              backend: str, seconds: float) -> dict[str, Any]:
    """The result dict: best trial of the whole (possibly shared) study, this run's counts."""
    trials = study.get_trials(deepcopy=False)
    mine = [t for t in trials if t.user_attrs.get("run") == run_id]
    state = optuna.trial.TrialState
    complete = [t for t in trials if t.state == state.COMPLETE]
    if not complete:
        raise TuningError(f"study {study.study_name!r} has no completed trial yet "
                          "(all pruned, failed or timed out); run more trials")
    best = study.best_trial
    table = [{
        "number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
        "intermediate": [t.intermediate_values[s] for s in sorted(t.intermediate_values)],
        "seconds": (t.duration.total_seconds() if t.duration is not None else None),
        "this_run": t.user_attrs.get("run") == run_id,
    } for t in trials]
    folds = objective.describe["folds"]
    return {
        "study": study.study_name,
        "storage": display_url(url),
        "backend": backend,
        "kind": objective.kind,
        "metric": METRIC,
        "best_value": float(best.value),
        "best_params": dict(best.params),
        "best_trial": best.number,
        "fixed": json_safe(objective.fixed),
        "train_params": json_safe({**objective.fixed, **best.params}),
        "n_trials": len(mine),
        "n_complete": sum(t.state == state.COMPLETE for t in mine),
        "n_pruned": sum(t.state == state.PRUNED for t in mine),
        "n_failed": sum(t.state == state.FAIL for t in mine),
        "n_study_trials": len(trials),
        "objective": objective.describe,
        "steps_per_trial": objective.n_steps,
        "first_clean_fold": folds - 1,
        "clean_from": objective.clean_from,
        "seconds": round(seconds, 3),
        "trials": table,
    }


# ------------------------------------------------------------------------------ ray


def _import_ray():
    try:
        import ray
        from ray import tune as ray_tune
        from ray.tune.search.optuna import OptunaSearch
    except ImportError as exc:
        raise MissingExtraError(
            "the Ray backend needs Ray Tune: pip install 'perptrader[distributed]' "
            f"({exc})") from None
    return ray, ray_tune, OptunaSearch


def _ray_trainable(config: dict[str, Any], data: MLFrame | None = None,
                   objective: Objective | None = None) -> None:
    """One Ray Tune trial: the same objective, reporting the running mean per step."""
    from ray import tune as ray_tune

    assert data is not None and objective is not None  # given by tune.with_parameters
    n = objective.n_steps
    # Ray gives each trial one CPU; a library using every core would oversubscribe them
    params = dict(config)
    key = THREAD_PARAM.get(objective.kind)
    if key is not None and key not in objective.fixed:
        params[key] = 1
    if objective.kind in EXPERT_KINDS:
        import torch

        torch.set_num_threads(1)

    def report(step: int, value: float) -> None:
        ray_tune.report({METRIC: value, "steps_done": step + 1, "complete": step + 1 == n})

    objective.evaluate(data, params, report)


def _run_ray(data: MLFrame, objective: Objective, url: str, name: str, run_id: str, *,
             n_trials: int, timeout: float | None, progress: Progress | None,
             seed: int | None) -> optuna.Study:
    """Ray Tune trials over the same define-by-run space, recorded in the same study.

    The table is put into Ray's object store once (``tune.with_parameters``). A trial
    stopped early by the scheduler is recorded as PRUNED (Ray's OptunaSearch would
    store its partial running mean as a COMPLETE value).
    """
    ray, ray_tune, OptunaSearch = _import_ray()
    from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

    open_study(url, name, objective, seed=seed)  # checks and records the objective first

    class _Search(OptunaSearch):
        """Marks this run's trials, records each step once (Ray may deliver the last
        result only to ``on_trial_complete``), and stores early-stopped trials as
        PRUNED."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._steps: dict[str, set[int]] = {}

        def on_trial_result(self, trial_id: str, result: dict) -> None:
            seen = self._steps.setdefault(trial_id, set())
            step = result.get("training_iteration")
            if step is None or step in seen or METRIC not in result:
                return
            seen.add(step)
            super().on_trial_result(trial_id, result)

        def suggest(self, trial_id: str):
            params = super().suggest(trial_id)
            if params is not None:
                self._ot_trials[trial_id].set_user_attr("run", run_id)
            return params

        def on_trial_complete(self, trial_id: str, result: dict | None = None,
                              error: bool = False) -> None:
            if result and not error and trial_id not in self._completed_trials:
                self.on_trial_result(trial_id, result)
            if (not error and result and not result.get("complete")
                    and trial_id not in self._completed_trials):
                self._ot_study.tell(self._ot_trials[trial_id],
                                    state=optuna.trial.TrialState.PRUNED)
                self._completed_trials.add(trial_id)
                return
            super().on_trial_complete(trial_id, result, error)

    class _ProgressCallback(ray_tune.Callback):
        """Trials done / best so far. Ray pickles its run config (callbacks included)
        into the experiment folder; the caller's callback (a Rich bar holds locks) is
        left out of that state, so it is an attribute, never a closure variable."""

        def __init__(self, report: Progress | None) -> None:
            self.report = report
            self.done = 0
            self.best: float | None = None

        def __getstate__(self) -> dict[str, Any]:
            return {**self.__dict__, "report": None}

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            self.done += 1
            result = trial.last_result or {}
            if result.get("complete"):
                value = float(result[METRIC])
                self.best = value if self.best is None else max(self.best, value)
            if self.report is not None:
                self.report("trial", self.done, n_trials,
                            {} if self.best is None else {"best": self.best})

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    results_dir = Path(tempfile.mkdtemp(prefix="perptrader-ray-"))
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(local_mode=False, num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        searcher = _Search(space=SearchSpace(objective.kind, objective.fixed), metric=METRIC,
                           mode="max", study_name=name,
                           storage=optuna.storages.RDBStorage(url), seed=seed)
        # ASHA with reduction factor 2 = "stop when below the median of the trials that
        # reached this step", from step 2 on (as MedianPruner with n_warmup_steps=1).
        # Not MedianStoppingRule: it PAUSEs trials while samples are few, and a paused
        # function trainable restarts from scratch.
        # Like MedianPruner(n_startup_trials=5): nothing is stopped before 5 trials have
        # finished (else the outcome would hang on which of 2 parallel trials is faster).
        class _Scheduler(AsyncHyperBandScheduler):
            def __init__(self, startup: int, **kwargs: Any) -> None:
                super().__init__(**kwargs)
                self.startup = startup
                self.finished = 0

            def on_trial_complete(self, tune_controller, trial, result) -> None:
                self.finished += 1
                super().on_trial_complete(tune_controller, trial, result)

            def on_trial_result(self, tune_controller, trial, result) -> str:
                action = super().on_trial_result(tune_controller, trial, result)
                return action if self.finished >= self.startup else TrialScheduler.CONTINUE

        scheduler = _Scheduler(STARTUP_TRIALS, time_attr="training_iteration", metric=METRIC,
                               mode="max", max_t=objective.n_steps,
                               grace_period=min(2, objective.n_steps), reduction_factor=2)
        trainable = ray_tune.with_resources(
            ray_tune.with_parameters(_ray_trainable, data=data, objective=objective),
            {"cpu": 1})
        tuner = ray_tune.Tuner(
            trainable,
            tune_config=ray_tune.TuneConfig(search_alg=searcher, scheduler=scheduler,
                                            num_samples=n_trials, time_budget_s=timeout),
            run_config=ray_tune.RunConfig(name=name, storage_path=str(results_dir),
                                          verbose=0, callbacks=[_ProgressCallback(progress)]),
        )
        with contextlib.redirect_stdout(sys.stderr):  # Ray's tables; stdout may be JSON
            grid = tuner.fit()
        errors = [r.error for r in grid if r.error is not None]
        if errors:
            raise TuningError(f"{len(errors)} Ray trial(s) failed; first error: {errors[0]}")
    finally:
        if started_here:
            ray.shutdown()
        shutil.rmtree(results_dir, ignore_errors=True)  # the study is the record
    return optuna.load_study(study_name=name, storage=url)
