"""``perptrader research run``: plan the units of a study, run them, record every trial.

Backends: ``local`` runs the units in this process, one after the other (or in a pool
of ``jobs`` processes); ``ray`` hands each unit to a Ray task (one CPU each). Units are
pure and single-threaded (``research.trials``), and results are gathered in plan order,
so both backends write the same trials. The data (features, labels) is built once in
the driver and shipped to the units.

A run folder ``<root>/<study>/<run id>/`` holds: ``study.toml`` (the file as given),
``trials.jsonl`` (one record per trial, written as units finish), ``returns.parquet``
(per-bar net returns of every trial and of buy-and-hold, long format), ``study.json``
(summary, verdict, trial count, lockbox looks) and ``report.html``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from perptrader.core.errors import PerptraderError
from perptrader.core.jsonsafe import json_safe
from perptrader.marketdata.store.base import MarketStore
from perptrader.research.cells import Cell, check_selection_before, first_test_bar, load_cell
from perptrader.research.study import POOLABLE_MODELS, Study
from perptrader.research.trials import Unit, run_unit

BACKENDS = ("local", "ray")
#: (stage, done, total, detail) — stages "load", "unit"
Progress = Callable[[str, int, int, str], None]


def research_root(root: Path | None = None) -> Path:
    """``root`` if given, else ``settings.data_dir / "research"``."""
    if root is not None:
        return Path(root)
    from perptrader.config import load_settings

    return Path(load_settings().data_dir) / "research"


def plan_units(study: Study, cells: dict[tuple[str, str, str], Cell]) -> list[Unit]:
    """Every unit of ``study`` in a fixed order (the order results are recorded in)."""
    units = []
    for fs in study.feature_sets:
        for (symbol, tf) in study.cells():
            for label in study.labels:
                for model in study.models:
                    units.append(Unit(
                        id=f"{symbol}/{tf}/{fs}/{label.name}/{model.name}", kind="symbol",
                        timeframe=tf, feature_set=fs, label=label, model=model,
                        decisions=study.decisions, walkforward=study.walkforward[tf],
                        costs=study.costs, seed=study.seed,
                        cells={symbol: cells[(symbol, tf, fs)]}))
        p = study.pooled
        if p.enabled:
            members = (*p.train_symbols, *p.unseen_symbols)
            for label in study.labels:
                for model in study.models:
                    if model.kind not in POOLABLE_MODELS:
                        continue
                    units.append(Unit(
                        id=f"pooled/{p.timeframe}/{fs}/{label.name}/{model.name}",
                        kind="pooled", timeframe=p.timeframe, feature_set=fs, label=label,
                        model=model, decisions=study.decisions,
                        walkforward=study.walkforward[p.timeframe], costs=study.costs,
                        seed=study.seed,
                        cells={s: cells[(s, p.timeframe, fs)] for s in members},
                        train_symbols=p.train_symbols, symbol_feature=p.symbol_feature,
                        leader=p.leader))
    return units


def needed_cells(study: Study) -> list[tuple[str, str, str]]:
    """(symbol, timeframe, feature set) of every cell the units need."""
    out: list[tuple[str, str, str]] = []
    for fs in study.feature_sets:
        keys = [(s, tf, fs) for s, tf in study.cells()]
        if study.pooled.enabled:
            keys += [(s, study.pooled.timeframe, fs)
                     for s in (*study.pooled.train_symbols, *study.pooled.unseen_symbols)]
        for key in keys:
            if key not in out:
                out.append(key)
    return out


def load_cells(store: MarketStore, study: Study,
               progress: Progress | None = None) -> dict[tuple[str, str, str], Cell]:
    keys = needed_cells(study)
    cells = {}
    for i, (symbol, tf, fs) in enumerate(keys):
        if progress:
            progress("load", i, len(keys), f"{symbol} {tf}")
        cells[(symbol, tf, fs)] = load_cell(store, symbol, tf, fs, start=study.start,
                                            end=study.end, lockbox=study.lockbox)
    if progress:
        progress("load", len(keys), len(keys), "")
    for (_, tf, fs), cell in cells.items():
        check_selection_before(fs, first_test_bar(cell, study.walkforward[tf]))
    return cells


def _run_local(units: list[Unit], jobs: int, progress: Progress | None) -> list[tuple]:
    if jobs <= 1:
        out = []
        for i, unit in enumerate(units):
            if progress:
                progress("unit", i, len(units), unit.id)
            out.append(run_unit(unit))
        return out
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    results: list[tuple | None] = [None] * len(units)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("forkserver")) as pool:
        futures = {pool.submit(run_unit, u): i for i, u in enumerate(units)}
        from concurrent.futures import as_completed

        for done, fut in enumerate(as_completed(futures)):
            results[futures[fut]] = fut.result()
            if progress:
                progress("unit", done + 1, len(units), units[futures[fut]].id)
    return results  # type: ignore[return-value]


def _run_ray(units: list[Unit], jobs: int, progress: Progress | None) -> list[tuple]:
    try:
        import ray
    except ImportError:
        raise PerptraderError("--backend ray needs Ray: pip install 'perptrader[distributed]'"
                              ) from None
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=jobs, include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1)(run_unit)
        pending = {task.remote(u): i for i, u in enumerate(units)}
        results: list[tuple | None] = [None] * len(units)
        done_count = 0
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                i = pending.pop(ref)
                results[i] = ray.get(ref)
                done_count += 1
                if progress:
                    progress("unit", done_count, len(units), units[i].id)
        return results  # type: ignore[return-value]
    finally:
        if started:
            ray.shutdown()


@dataclass
class RunResult:
    folder: Path
    summary: dict[str, Any]
    trials: list[dict[str, Any]]


def new_run_folder(root: Path, study: Study) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    folder = root / study.name / stamp
    n = 1
    while folder.exists():
        n += 1
        folder = root / study.name / f"{stamp}-{n}"
    folder.mkdir(parents=True)
    return folder


def write_returns(folder: Path, returns: dict[str, pd.Series]) -> Path:
    """Long-format per-bar returns (trial, time, ret) as Parquet."""
    parts = [pd.DataFrame({"trial": name, "time": r.index, "ret": r.to_numpy()})
             for name, r in returns.items()]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        {"trial": [], "time": [], "ret": []})
    path = folder / "returns.parquet"
    frame.to_parquet(path, index=False)
    return path


def read_returns(folder: Path) -> dict[str, pd.Series]:
    frame = pd.read_parquet(folder / "returns.parquet")
    return {str(name): pd.Series(part["ret"].to_numpy(), index=pd.DatetimeIndex(part["time"]))
            for name, part in frame.groupby("trial", sort=False)}


def read_trials(folder: Path) -> list[dict[str, Any]]:
    path = folder / "trials.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _decision_names(study: Study) -> tuple[str | None, str | None]:
    plain = next((d.name for d in study.decisions if d.kind == "threshold"), None)
    aware = next((d.name for d in study.decisions if d.kind == "cost_aware"), None)
    return plain, aware


def summarise_run(study: Study, trials: list[dict[str, Any]], returns: dict[str, pd.Series],
                  meta: dict[str, Any]) -> dict[str, Any]:
    from perptrader.research.verdict import summarise

    plain, aware = _decision_names(study)
    summary = summarise(trials, returns, plain, aware)
    return json_safe({"study": study.name, **meta, "planned_trials": study.planned_trials(),
                      **summary,
                      "decision_settings_searched": sum(
                          int(t.get("decision_settings_searched") or 0) for t in trials),
                      "lockbox": {"looks": 0, "held_out": study.lockbox}})


def run_study(store: MarketStore, study: Study, *, backend: str = "local", jobs: int = 1,
              root: Path | None = None, progress: Progress | None = None,
              agents: bool = True) -> RunResult:
    """Run every unit of ``study``; write the run folder; return its summary."""
    from perptrader.research.report import write_study_report

    if backend not in BACKENDS:
        raise PerptraderError(f"unknown backend {backend!r}; one of {', '.join(BACKENDS)}")
    if jobs < 1:
        raise PerptraderError(f"--jobs must be >= 1, got {jobs}")
    t0 = time.perf_counter()
    cells = load_cells(store, study, progress)
    units = plan_units(study, cells)
    folder = new_run_folder(research_root(root), study)
    (folder / "study.toml").write_text(study.source, encoding="utf-8")
    runner = _run_ray if backend == "ray" else _run_local
    results = runner(units, jobs, progress)
    trials: list[dict[str, Any]] = []
    returns: dict[str, pd.Series] = {}
    for unit_trials, unit_returns in results:
        trials += unit_trials
        returns.update(unit_returns)
    if agents and study.agents:
        from perptrader.research.agents import run_agents

        agent_trials, agent_returns = run_agents(study, cells, progress)
        trials += agent_trials
        returns.update(agent_returns)
    with open(folder / "trials.jsonl", "w", encoding="utf-8") as fh:
        for t in trials:
            fh.write(json.dumps(json_safe(t), sort_keys=True) + "\n")
    write_returns(folder, returns)
    meta = {"backend": backend, "jobs": jobs, "units": len(units),
            "seconds": round(time.perf_counter() - t0, 1),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "cells": [{"symbol": c.symbol, "timeframe": c.timeframe,
                       "first_bar": c.bars.index[0].isoformat(),
                       "research_end": c.lockbox_start.isoformat(),
                       "last_bar": c.last_bar.isoformat()} for c in cells.values()]}
    summary = summarise_run(study, trials, returns, meta)
    (folder / "study.json").write_text(json.dumps(summary, indent=2, sort_keys=True),
                                       encoding="utf-8")
    write_study_report(folder / "report.html", summary, trials, returns)
    return RunResult(folder, summary, trials)


__all__ = ["BACKENDS", "RunResult", "load_cells", "needed_cells", "plan_units",
           "read_returns", "read_trials", "research_root", "run_study", "summarise_run"]
