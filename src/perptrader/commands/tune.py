"""``perptrader tune``: hyper-parameter search on the walk-forward TRAINING windows.

The search itself lives in ``perptrader.ml.tuning``; this module parses options, loads
the research table from the store, shows a progress bar on stderr and prints the result.
Several processes given the same ``--storage postgresql://...`` and ``--study`` share one
study (each adds its trials).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from perptrader.commands.common import (
    console,
    err_console,
    print_json,
    settings,
    store_session,
    user_errors,
)
from perptrader.commands.ml import parse_params

DEFAULT_SPEC = "train=540d,test=30d"


@contextmanager
def trial_bar(label: str, enabled: bool) -> Iterator[Callable[..., None]]:
    """A Rich bar on stderr (stdout stays clean for --json): trials done, best so far."""
    with Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[best]}"), TimeElapsedColumn(),
                  console=err_console, disable=not enabled, transient=True) as bar:
        task = bar.add_task("", total=None, best="")

        def update(stage: str, done: int, total: int, metrics: dict[str, float]) -> None:
            best = metrics.get("best")
            bar.update(task, completed=done, total=total,
                       best="" if best is None else f"best macro-F1 {best:.4f}")

        yield update


def tune(
    symbol: str = typer.Option("BTCUSDT", "--symbol", help="Instrument, e.g. BTCUSDT."),
    timeframe: str = typer.Option("1h", "--timeframe", help="Bar timeframe, e.g. 1h."),
    model: str = typer.Option("lightgbm", "--model", help="lightgbm, xgboost, catboost, "
                              "xlstm-pattern, xlstm-indicator or lstm."),
    start: str | None = typer.Option(None, "--start", help="First bar (UTC), e.g. 2023-01-01."),
    end: str | None = typer.Option(None, "--end", help="End (UTC, exclusive)."),
    walk_forward: str = typer.Option(
        DEFAULT_SPEC, "--walk-forward",
        help="Walk-forward spec whose TRAINING windows are searched, e.g. "
             f"{DEFAULT_SPEC}[,valid=0.15][,mode=expanding][,embargo=24]."),
    folds: int = typer.Option(1, "--folds", min=1, help="Use the training windows of the "
                              "first N folds (folds before N-1 are then no longer clean)."),
    k: int = typer.Option(3, "--k", min=2, help="Purged k-fold blocks per training window."),
    trials: int = typer.Option(20, "--trials", min=1, help="Trials this process runs."),
    timeout: float | None = typer.Option(None, "--timeout", help="Stop after S seconds."),
    storage: str | None = typer.Option(
        None, "--storage", help="Optuna storage URL; default sqlite:///<data_dir>/optuna.db; "
        "postgresql://user@host:port/db lets several processes share a study."),
    study: str | None = typer.Option(None, "--study", help="Study name (default: derived "
                                     "from model, data and objective; resumes when it "
                                     "exists)."),
    backend: str = typer.Option("optuna", "--backend", help="optuna, or ray (needs "
                                "perptrader[distributed])."),
    param: list[str] = typer.Option([], "--param", help="Pin a parameter (not searched), "
                                    "e.g. --param n_estimators=300; repeatable."),
    feature_set: str = typer.Option("default", "--set", help="Feature set."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the TPE sampler."),
    as_json: bool = typer.Option(False, "--json", help="Print the full result as JSON."),
) -> None:
    """Search a model's hyper-parameters (Optuna TPE + median pruning) on purged k-folds
    of the walk-forward training windows; test windows are never used."""
    import optuna

    from perptrader.ml.dataset import load_ml_frame
    from perptrader.ml.splits import WalkForwardSpec
    from perptrader.ml.tuning import tune as run_tune

    fixed = parse_params(param)
    try:
        spec = WalkForwardSpec.parse(walk_forward)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--walk-forward") from None
    cfg = settings()
    with store_session(cfg) as store:
        data = load_ml_frame(store, symbol, timeframe, start, end, feature_set=feature_set)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the bar replaces per-trial logs
    with user_errors(), trial_bar(f"tune {model}", enabled=True) as progress:
        result = run_tune(data, model, spec, n_trials=trials, timeout=timeout,
                          storage=storage, study_name=study, backend=backend, folds=folds,
                          k=k, progress=progress, fixed=fixed, seed=seed)
    if as_json:
        print_json(result)
        return
    print_result(result)


def print_result(result: dict[str, Any]) -> None:
    table = Table(title=f"best of study {result['study']} (trial {result['best_trial']}, "
                        f"mean purged-k-fold macro-F1 {result['best_value']:.4f})")
    table.add_column("parameter")
    table.add_column("value", justify="right")
    for key, value in result["best_params"].items():
        table.add_row(key, f"{value:.6g}" if isinstance(value, float) else str(value))
    for key, value in result["fixed"].items():
        table.add_row(f"{key} (fixed)", str(value))
    console.print(table)
    console.print(f"this run: {result['n_trials']} trials ({result['n_complete']} complete, "
                  f"{result['n_pruned']} pruned, {result['n_failed']} failed); study: "
                  f"{result['n_study_trials']} trials in {result['storage']}")
    console.print(f"searched on the training windows of folds 0..{result['first_clean_fold']}; "
                  f"no walk-forward test window from fold {result['first_clean_fold']} "
                  f"({result['clean_from']}) on was used")
    console.print("parameters to train with (JSON):")
    console.print_json(json.dumps(result["train_params"]))
