"""``perptrader research init | run | lockbox | show``: tracked studies with a verdict.

``run`` walks forward every variant a study file names, counts and records each trial,
and writes one HTML report with the verdict; ``lockbox`` evaluates the chosen recipe on
the held-out months, once, and counts every look (docs/research.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from perptrader.commands.common import (
    console,
    err_console,
    print_json,
    settings,
    store_session,
    user_errors,
)
from perptrader.core.errors import PerptraderError

app = typer.Typer(help="Research studies: walk-forward every variant of a study file, "
                       "count the trials, report a verdict; the lockbox.",
                  no_args_is_help=True)


@app.command("init")
def init(path: Path = typer.Argument(Path("study.toml"), help="Where to write the file."),
         force: bool = typer.Option(False, "--force", help="Overwrite an existing file.")
         ) -> None:
    """Write the default study recipe (BTC, ETH, LTC and five more perps; 1h and 4h)."""
    from perptrader.research.study import DEFAULT_STUDY

    with user_errors():
        if path.exists() and not force:
            raise PerptraderError(f"{path} exists; pass --force to overwrite it")
        try:
            path.write_text(DEFAULT_STUDY, encoding="utf-8")
        except OSError as exc:
            raise PerptraderError(f"cannot write {path}: {exc.strerror}") from None
    console.print(f"wrote {path}: edit it, then [bold]perptrader research run {path}[/bold]")


def _progress_bar(quiet: bool):
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=err_console, disable=quiet,
                        transient=False)
    tasks: dict[str, int] = {}
    names = {"load": "features", "unit": "training units", "agent": "RL agents"}

    def report(stage: str, done: int, total: int, detail: str) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(names.get(stage, stage), total=total)
        progress.update(tasks[stage], completed=done, total=total,
                        description=f"{names.get(stage, stage)} {detail}".strip())

    return progress, report


@app.command("run")
def run(study_file: Path = typer.Argument(..., help="The study TOML (research init writes "
                                                    "the default one)."),
        backend: str = typer.Option("local", "--backend", help="local | ray"),
        jobs: int = typer.Option(1, "--jobs", min=1,
                                 help="Units run at once (processes or Ray CPUs)."),
        output: Path | None = typer.Option(None, "--output",
                                           help="Root folder of study runs "
                                                "(default <data_dir>/research)."),
        no_agents: bool = typer.Option(False, "--no-agents",
                                       help="Skip the study's RL agent trials."),
        mlflow_uri: str | None = typer.Option(None, "--mlflow",
                                              help="Also log the trials to MLflow (e.g. "
                                                   "sqlite:///mlflow.db; the tracking "
                                                   "extra)."),
        as_json: bool = typer.Option(False, "--json", help="Print the study JSON.")) -> None:
    """Run a study: every trial walk-forward, recorded; the report and the verdict."""
    from perptrader.research.runner import BACKENDS, run_study
    from perptrader.research.study import load_study

    cfg = settings()
    with user_errors():
        if backend not in BACKENDS:
            raise PerptraderError(f"--backend must be one of {', '.join(BACKENDS)}, "
                                  f"got {backend!r}")
        study = load_study(study_file)
        if mlflow_uri is not None:
            try:
                import mlflow  # noqa: F401  (checked before hours of work, not after)
            except ImportError:
                raise PerptraderError("--mlflow needs MLflow: pip install "
                                      "'perptrader[tracking]'") from None
    progress, report = _progress_bar(as_json)
    with store_session(cfg, read_only=True) as store, progress:
        result = run_study(store, study, backend=backend, jobs=jobs, root=output,
                           progress=report, agents=not no_agents)
    if mlflow_uri is not None:
        from perptrader.research.tracking import log_study

        with user_errors():
            result.summary["mlflow_run"] = log_study(mlflow_uri, result.folder,
                                                     result.summary, result.trials)
    if as_json:
        print_json({"folder": str(result.folder), **result.summary})
        return
    _print_summary(result.folder, result.summary)


def _print_summary(folder: Path, summary: dict) -> None:
    table = Table(title=f"study {summary.get('study')}: recipes by mean net Sharpe")
    for col in ("recipe", "cells", "net Sharpe", "B&H Sharpe", "net return", "turnover",
                "cost share"):
        table.add_column(col, justify="left" if col == "recipe" else "right")
    for r in summary.get("recipes", [])[:12]:
        table.add_row(str(r["recipe"]), str(r["cells"]), _f(r.get("sharpe")),
                      _f(r.get("bh_sharpe")), _pct(r.get("total_return")),
                      _f(r.get("turnover")), _pct(r.get("cost_share")))
    console.print(table)
    v = summary.get("verdict") or {}
    colour = "green" if v.get("edge") else "red"
    console.print(f"[{colour}]{v.get('line')}[/{colour}]")
    lock = summary.get("lockbox") or {}
    console.print(f"trials: {summary.get('n_trials')}; lockbox looks: {lock.get('looks', 0)}")
    console.print(f"report: {folder / 'report.html'}")


def _f(x: object) -> str:
    return f"{x:.2f}" if isinstance(x, int | float) else "–"


def _pct(x: object) -> str:
    return f"{100 * x:.1f}%" if isinstance(x, int | float) else "–"


def _run_folder(folder: Path) -> Path:
    if not (folder / "study.json").is_file():
        raise PerptraderError(f"{folder} is not a study run folder (no study.json); "
                              "research run prints the folder it writes")
    return folder


@app.command("lockbox")
def lockbox(folder: Path = typer.Argument(..., help="A study run folder."),
            again: bool = typer.Option(False, "--again",
                                       help="Look once more (counted and shown)."),
            as_json: bool = typer.Option(False, "--json", help="Print the study JSON.")
            ) -> None:
    """Evaluate the study's champion on the held-out months; every look is counted."""
    from perptrader.research.lockbox import look

    cfg = settings()
    with user_errors():
        _run_folder(folder)
    with store_session(cfg, read_only=True) as store:
        summary = look(store, folder, again=again)
    if as_json:
        print_json({"folder": str(folder), **summary})
        return
    latest = summary["lockbox"]["latest"]
    table = Table(title=f"lockbox look {latest['look']}: {latest['recipe']}")
    for col in ("cell", "from", "to", "net return", "B&H return", "net Sharpe", "B&H Sharpe",
                "DSR"):
        table.add_column(col, justify="left" if col == "cell" else "right")
    for c in latest["cells"]:
        table.add_row(f"{c['symbol']} {c['timeframe']}", c["first_bar"][:10],
                      c["last_bar"][:10], _pct(c["trading"].get("total_return")),
                      _pct(c["buy_and_hold"].get("total_return")),
                      _f(c["trading"].get("sharpe")), _f(c["buy_and_hold"].get("sharpe")),
                      _f((c.get("deflated_sharpe") or {}).get("dsr")))
    console.print(table)
    console.print(f"looks: {summary['lockbox']['looks']}; report: {folder / 'report.html'}")


@app.command("show")
def show(folder: Path = typer.Argument(..., help="A study run folder."),
         as_json: bool = typer.Option(False, "--json", help="Print the study JSON.")) -> None:
    """The summary of a study run (verdict, recipes, trial count, lockbox looks)."""
    with user_errors():
        _run_folder(folder)
        summary = json.loads((folder / "study.json").read_text(encoding="utf-8"))
    if as_json:
        print_json(summary)
        return
    _print_summary(folder, summary)


@app.command("select")
def select(symbol: str = typer.Option(..., "--symbol", help="The symbol to select on."),
           timeframe: str = typer.Option("1h", "--timeframe"),
           name: str = typer.Option(..., "--name",
                                    help="The new set's name (study: feature_sets = "
                                         "[\"selected:NAME\"])."),
           base: str = typer.Option("default", "--set", help="The feature set to select from."),
           start: str | None = typer.Option(None, "--start", help="First bar (UTC)."),
           end: str = typer.Option(..., "--end",
                                   help="Exclusive end of the rows selection may see: on or "
                                        "before the study's first test bar."),
           threshold: float = typer.Option(0.7, "--threshold", min=0.0, max=1.0,
                                           help="|Spearman| that joins features into one "
                                                "cluster."),
           min_t: float = typer.Option(1.0, "--min-t", min=0.0,
                                       help="Keep a cluster whose mean importance exceeds "
                                            "this many standard errors."),
           quick: bool = typer.Option(False, "--quick",
                                      help="Few trees per importance fit (a first look)."),
           as_json: bool = typer.Option(False, "--json", help="Print the selection JSON.")
           ) -> None:
    """Select features by purged, clustered permutation importance (MDA) on the rows
    before --end; save them as a named feature set."""
    import numpy as np

    from perptrader.ml.dataset import load_ml_frame
    from perptrader.ml.pipeline import model_kwargs_for
    from perptrader.ml.selection import (
        check_set_name,
        feature_clusters,
        save_selected_set,
        select_features,
    )

    cfg = settings()
    with user_errors():
        try:
            check_set_name(name)
        except ValueError as exc:
            raise PerptraderError(str(exc)) from None
    with store_session(cfg, read_only=True) as store:
        try:
            data = load_ml_frame(store, symbol, timeframe, start, end, feature_set=base)
        except (KeyError, ValueError) as exc:
            raise PerptraderError(f"{symbol} {timeframe}: {exc}") from None
    with user_errors():
        rows = data.labelled(np.arange(len(data), dtype=np.int64))
        if len(rows) < 500:
            raise PerptraderError(f"{symbol} {timeframe}: {len(rows)} labelled rows before "
                                  f"{end}: too few to select features on")
        with console.status(f"clustering {len(data.features)} features, then permutation "
                            "importance per cluster (purged folds)"):
            clusters = feature_clusters(data, rows, threshold)
            columns = select_features(data, rows, threshold=threshold, min_t=min_t,
                                      model_kwargs=model_kwargs_for("lightgbm", quick=quick))
        path = save_selected_set(name, base, columns, source={
            "symbol": symbol, "timeframe": timeframe, "start": start, "end": end,
            "threshold": threshold, "min_t": min_t, "quick": quick, "rows": len(rows),
            "features_in": len(data.features), "clusters": len(clusters)})
    out = {"name": name, "path": str(path), "base": base, "columns": columns,
           "features_in": len(data.features), "clusters": len(clusters)}
    if as_json:
        print_json(out)
        return
    console.print(f"{len(data.features)} features, {len(clusters)} clusters -> kept "
                  f"{len(columns)}: {', '.join(columns[:12])}{' ...' if len(columns) > 12 else ''}")
    console.print(f"saved {path}; use feature_sets = [\"selected:{name}\"] in a study")
