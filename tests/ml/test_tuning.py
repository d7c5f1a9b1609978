"""Hyper-parameter search: trials recorded, resumable, shared through PostgreSQL, run on
Ray, and -- the point of it all -- never fitted or scored on a walk-forward test row."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from typer.testing import CliRunner

from ml_frames import synthetic_ml_frame
from perptrader.cli import app
from perptrader.ml import gbdt, tuning
from perptrader.ml.base import MLFrame
from perptrader.ml.splits import WalkForwardSpec, walk_forward
from perptrader.ml.tuning import (
    TuningError,
    make_objective,
    resolve_storage,
    suggest_params,
    tune,
)

SPEC = WalkForwardSpec.parse("train=30d,test=7d")
#: few, single-threaded trees: a trial is 3 fits of ~0.1 s
TINY = {"n_estimators": 12, "early_stopping_rounds": 4, "num_threads": 1}
LGB_SPACE = {"learning_rate", "num_leaves", "max_depth", "min_child_samples",
             "feature_fraction", "lambda_l2"}
SERVER = os.environ.get("PERPTRADER_TEST_POSTGRES_URL",
                        "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="module")
def data() -> MLFrame:
    return synthetic_ml_frame()


@pytest.fixture(autouse=True)
def _quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'optuna.db'}"


class OracleModel:
    """Stand-in Classifier (pruning / bookkeeping tests, no training cost): right on
    every row when ``learning_rate > 0.05``, else always HOLD."""

    kind = "lightgbm"

    def __init__(self, params: dict[str, Any]) -> None:
        self.good = params["learning_rate"] > 0.05

    def fit(self, data, train_rows, valid_rows, progress=None) -> dict:
        return {}

    def predict_proba(self, data: MLFrame, rows: np.ndarray) -> np.ndarray:
        y = data.y[rows] if self.good else np.ones(len(rows), dtype=np.int64)
        return np.eye(3)[np.clip(y, 0, 2)]


@pytest.fixture
def oracle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tuning, "build_model", lambda kind, params: OracleModel(params))


# ------------------------------------------------------------------ the real objective


def test_study_records_trials_best_in_space_and_resumes(data: MLFrame,
                                                        tmp_path: Path) -> None:
    url = _sqlite(tmp_path)
    seen: list[tuple[int, int, float]] = []
    first = tune(data, "lightgbm", SPEC, n_trials=3, storage=url, fixed=TINY, seed=1,
                 progress=lambda stage, done, total, m: seen.append((done, total, m["best"])))
    assert first["n_trials"] == 3 and first["n_study_trials"] == 3
    assert first["n_complete"] + first["n_pruned"] == 3 and first["n_failed"] == 0
    assert [s[:2] for s in seen] == [(1, 3), (2, 3), (3, 3)]
    assert seen[-1][2] == pytest.approx(first["best_value"])
    assert 0.0 < first["best_value"] <= 1.0
    assert first["storage"] == url and first["first_clean_fold"] == 0
    # best params: exactly the lightgbm space, each inside its distribution
    best = optuna.load_study(study_name=first["study"], storage=url).best_trial
    assert set(first["best_params"]) == LGB_SPACE
    for name, value in first["best_params"].items():
        dist = best.distributions[name]
        assert dist.low <= value <= dist.high, name
    assert first["train_params"] == {**TINY, **first["best_params"]}
    # every complete trial reported one intermediate value per k-fold step
    complete = [t for t in first["trials"] if t["state"] == "COMPLETE"]
    assert complete and all(len(t["intermediate"]) == 3 for t in complete)
    assert all(t["intermediate"][-1] == pytest.approx(t["value"]) for t in complete)

    again = tune(data, "lightgbm", SPEC, n_trials=2, storage=url, fixed=TINY, seed=2)
    assert again["study"] == first["study"]          # same objective -> same study
    assert again["n_trials"] == 2 and again["n_study_trials"] == 5
    assert again["best_value"] >= first["best_value"]
    assert sum(t["this_run"] for t in again["trials"]) == 2


def test_objective_never_fits_or_scores_a_test_row(data: MLFrame, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, np.ndarray, np.ndarray | None]] = []
    real_fit, real_predict = gbdt.LightGBMModel.fit, gbdt.LightGBMModel.predict_proba

    def spy_fit(self, d, train_rows, valid_rows, progress=None):
        calls.append(("fit", np.asarray(train_rows), np.asarray(valid_rows)))
        return real_fit(self, d, train_rows, valid_rows, progress)

    def spy_predict(self, d, rows):
        calls.append(("predict", np.asarray(rows), None))
        return real_predict(self, d, rows)

    monkeypatch.setattr(gbdt.LightGBMModel, "fit", spy_fit)
    monkeypatch.setattr(gbdt.LightGBMModel, "predict_proba", spy_predict)
    tune(data, "lightgbm", SPEC, n_trials=2, storage=_sqlite(tmp_path), fixed=TINY, seed=3)

    folds = walk_forward(data.index, SPEC, horizon=data.horizon)
    test_rows = np.concatenate([f.test for f in folds])
    window = np.concatenate([folds[0].train, folds[0].valid])
    fits = [c for c in calls if c[0] == "fit"]
    predicts = [c for c in calls if c[0] == "predict"]
    assert len(fits) == len(predicts) >= 3
    for (_, fit_rows, stop_rows), (_, scored, _) in zip(fits, predicts, strict=True):
        for rows in (fit_rows, stop_rows, scored):
            assert not np.isin(rows, test_rows).any()     # no test row of ANY fold
            assert np.isin(rows, window).all()            # only the first training window
        # the scored block neither trains nor early-stops the model, and the labels of
        # the rows it trains on end before the scored block / the early-stopping rows
        assert not np.isin(scored, fit_rows).any() and not np.isin(scored, stop_rows).any()
        before = fit_rows[fit_rows < scored[0]]
        assert before.size == 0 or before.max() + data.horizon < scored[0]
        assert fit_rows[fit_rows < stop_rows[0]].max() + data.horizon < stop_rows[0]


def test_objective_steps_cover_the_chosen_training_windows(data: MLFrame) -> None:
    folds = walk_forward(data.index, SPEC, horizon=data.horizon)
    obj = make_objective(data, "lightgbm", SPEC, folds=2, k=3)
    assert obj.n_steps == 6 and len(obj.describe["windows"]) == 2
    scored = np.concatenate([held for _, _, held in obj.steps])
    window = np.concatenate([folds[0].train, folds[0].valid, folds[1].train, folds[1].valid])
    assert np.isin(scored, window).all()
    assert not np.isin(obj.rows_used(), np.concatenate([f.test for f in folds[1:]])).any()
    assert (data.y[scored] >= 0).all()
    assert obj.clean_from == str(data.index[folds[1].test[0]])
    assert obj.rows_used().max() < folds[1].test[0]
    # thread counts do not change the objective (several workers may differ in them)
    threads = make_objective(data, "lightgbm", SPEC, folds=2, k=3, fixed={"num_threads": 4})
    assert threads.describe == obj.describe
    assert make_objective(data, "lightgbm", SPEC, folds=2, k=3,
                          fixed={"n_estimators": 5}).describe != obj.describe
    with pytest.raises(TuningError, match="needs more data"):
        make_objective(data, "lightgbm", SPEC, folds=len(folds) + 1)
    with pytest.raises(TuningError, match="no search space"):
        make_objective(data, "gbdt", SPEC)


# -------------------------------------------------------- pruning and bookkeeping


@pytest.mark.usefixtures("oracle")
def test_median_pruner_stops_bad_trials_after_the_warmup_steps(data: MLFrame,
                                                                tmp_path: Path) -> None:
    res = tune(data, "lightgbm", SPEC, n_trials=10, storage=_sqlite(tmp_path), seed=0)
    assert res["best_value"] == pytest.approx(1.0)
    pruned = [t for t in res["trials"] if t["state"] == "PRUNED"]
    assert res["n_pruned"] == len(pruned) >= 1
    for t in pruned:      # stopped after step 1 (n_warmup_steps=1), always a bad one
        assert len(t["intermediate"]) == 2 and t["params"]["learning_rate"] <= 0.05
    assert res["n_complete"] + res["n_pruned"] == 10


@pytest.mark.usefixtures("oracle")
def test_a_study_of_another_objective_is_refused(data: MLFrame, tmp_path: Path) -> None:
    url = _sqlite(tmp_path)
    tune(data, "lightgbm", SPEC, n_trials=1, storage=url, study_name="s", k=3)
    with pytest.raises(TuningError, match="differs in: k"):
        tune(data, "lightgbm", SPEC, n_trials=1, storage=url, study_name="s", k=4)


def test_search_spaces_and_storage_urls(tmp_path: Path) -> None:
    study = optuna.create_study()
    for kind in tuning.TUNABLE_KINDS:
        params = suggest_params(study.ask(), kind)
        assert params, kind
    pinned = suggest_params(study.ask(), "lightgbm", {"num_leaves": 7})
    assert "num_leaves" not in pinned and set(pinned) == LGB_SPACE - {"num_leaves"}
    assert tuning._expert_config({"n_blocks": 1})["slstm_at"] == ()
    with pytest.raises(TuningError):
        suggest_params(study.ask(), "ensemble")

    assert resolve_storage("postgresql://postgres@127.0.0.1:5432/test") == \
        "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    assert resolve_storage("postgres://u:pw@h/db?schema=research") == \
        "postgresql+psycopg://u:pw@h/db?options=-csearch_path%3Dresearch"
    assert tuning.display_url("postgresql+psycopg://u:pw@h/db") == \
        "postgresql+psycopg://u:***@h/db"
    default = resolve_storage(None)   # conftest points data_dir at tmp_path/user_data
    assert default == f"sqlite:///{(tmp_path / 'user_data' / 'optuna.db').resolve()}"


def test_ray_backend_names_the_extra_when_ray_is_missing(
        data: MLFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "ray", None)
    with pytest.raises(tuning.MissingExtraError, match=r"perptrader\[distributed\]"):
        tune(data, "lightgbm", SPEC, n_trials=1, storage=_sqlite(tmp_path), backend="ray")


# ------------------------------------------------------------------ shared storage


def _server_reachable() -> str | None:
    import asyncpg

    async def ping() -> None:
        con = await asyncpg.connect(SERVER, timeout=5)
        await con.close()

    try:
        asyncio.run(ping())
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        return f"PostgreSQL not reachable at {SERVER} ({exc}); start it or set " \
               "PERPTRADER_TEST_POSTGRES_URL"
    return None


@pytest.mark.postgres
def test_postgres_storage_is_shared_by_two_runs(data: MLFrame) -> None:
    reason = _server_reachable()
    if reason:
        pytest.skip(reason)
    name = f"perptrader-test-{uuid.uuid4().hex[:10]}"
    url = resolve_storage(SERVER)
    try:
        a = tune(data, "lightgbm", SPEC, n_trials=2, storage=SERVER, study_name=name,
                 fixed=TINY, seed=1)
        b = tune(data, "lightgbm", SPEC, n_trials=2, storage=SERVER, study_name=name,
                 fixed=TINY, seed=2)
        assert a["storage"] == b["storage"] == url
        assert b["n_study_trials"] == 4 and b["n_trials"] == 2
        assert {t["number"] for t in b["trials"] if not t["this_run"]} == \
            {t["number"] for t in a["trials"]}
    finally:
        if name in optuna.get_all_study_names(storage=url):
            optuna.delete_study(study_name=name, storage=url)
    assert name not in optuna.get_all_study_names(storage=url)


# ----------------------------------------------------------------------------- ray


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                    reason="ray is not installed (pip install 'perptrader[distributed]')")
def test_ray_backend_runs_trials_into_the_same_study(data: MLFrame, tmp_path: Path) -> None:
    url = _sqlite(tmp_path)
    lock = threading.RLock()    # like a Rich bar: the callback must not be pickled
    seen: list[int] = []

    def progress(stage: str, done: int, total: int, metrics: dict) -> None:
        with lock:
            seen.append(done)

    res = tune(data, "lightgbm", SPEC, n_trials=2, storage=url, backend="ray", fixed=TINY,
               seed=4, progress=progress)
    assert seen == [1, 2]
    assert res["backend"] == "ray" and res["n_trials"] == 2 and res["n_complete"] == 2
    assert set(res["best_params"]) == LGB_SPACE
    study = optuna.load_study(study_name=res["study"], storage=url)
    assert len(study.trials) == 2
    assert [len(t.intermediate_values) for t in study.trials] == [3, 3]
    assert study.best_value == pytest.approx(res["best_value"])


# ----------------------------------------------------------------------------- CLI


def test_cli_tune_json_on_a_tmp_store(tmp_path: Path) -> None:
    from feature_frames import synthetic_frame
    from perptrader.core.instruments import Instrument
    from perptrader.marketdata.dataset import Dataset, validate
    from perptrader.marketdata.kinds import Kind
    from perptrader.marketdata.store.duckdb_store import DuckDBStore

    frame = synthetic_frame(2500, extras=False).reset_index()
    ds = Dataset(Kind.OHLCV, Instrument.parse("BTCUSDT"), frame, "1h", source="synthetic")
    data_dir = Path(os.environ["PERPTRADER__DATA_DIR"])
    with DuckDBStore(data_dir / "market.duckdb") as store:
        store.migrate()
        store.write([validate(ds)])
    args = ["tune", "--symbol", "BTCUSDT", "--timeframe", "1h", "--model", "lightgbm",
            "--set", "bars", "--walk-forward", "train=30d,test=7d", "--trials", "2",
            "--param", "n_estimators=10", "--param", "num_threads=1", "--seed", "5", "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["n_trials"] == 2 and out["train_params"]["n_estimators"] == 10
    assert out["storage"] == f"sqlite:///{(data_dir / 'optuna.db').resolve()}"
    assert (data_dir / "optuna.db").is_file()
    res = CliRunner().invoke(app, [*args[:-1]])    # table output, resumes the study
    assert res.exit_code == 0, res.output
    assert "4 trials in" in res.stdout and "n_estimators" in res.stdout
    res = CliRunner().invoke(app, ["tune", "--model", "gbdt", "--set", "bars",
                                   "--walk-forward", "train=30d,test=7d"])
    assert res.exit_code == 1 and "no search space" in res.output
