"""``perptrader research lockbox``: the held-out months, evaluated once, on request.

The study never saw these bars: ``research.cells`` cut them off before features and
labels were built. A look takes the study's CHAMPION recipe as the run chose it (no
other recipe is evaluated, so the lockbox cannot become one more selection), refits it
once on the most recent research window (``ml.walkforward.final_window``: its last
share for early stopping and for tuning the decision layer, purged), and trades the
lockbox bars through the backtest engine beside buy-and-hold.

Every look is appended to ``lockbox/looks.jsonl`` in the run folder and its count is
shown in the study JSON and report. A second look needs ``again=True`` and is marked as
such: only the FIRST look is an honest out-of-sample figure; any change made after
seeing it turns the lockbox into one more validation set.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perptrader.core.errors import PerptraderError
from perptrader.core.jsonsafe import json_safe
from perptrader.marketdata.store.base import MarketStore
from perptrader.ml.base import CLASSES, MLFrame
from perptrader.ml.decision_oos import DecisionContext, fundings_per_bar
from perptrader.research.cells import relabel, resolve_feature_set
from perptrader.research.decisions import run_decision
from perptrader.research.study import Study, parse_study
from perptrader.research.trials import (
    model_kwargs,
    round_trip,
    signal_quality,
    trade,
)
from perptrader.research.verdict import as_float


def _recipe(study: Study, recipe: str):
    """(pooled, feature set, LabelSpec, ModelSpec, DecisionSpec) of a recipe string."""
    pooled = recipe.startswith("pooled:")
    parts = recipe.removeprefix("pooled:").split("/")
    if len(parts) != 4:
        raise PerptraderError(f"recipe {recipe!r} is not feature_set/label/model/decision")
    fs, lab, mod, dec = parts
    try:
        return (pooled, fs, next(x for x in study.labels if x.name == lab),
                next(x for x in study.models if x.name == mod),
                next(x for x in study.decisions if x.name == dec))
    except StopIteration:
        raise PerptraderError(f"recipe {recipe!r} names a label, model or decision the "
                              "study file does not hold") from None


def _load_full(store: MarketStore, study: Study, symbol: str, tf: str, fs: str,
               research_end: pd.Timestamp, last_bar: pd.Timestamp):
    """(bars up to the recorded last bar, research bars, features of all of them)."""
    from perptrader.features.inputs import load_inputs
    from perptrader.features.sets import get_set
    from perptrader.marketdata.loader import funding_events
    from perptrader.ml.dataset import build_ml_frame
    from perptrader.ml.selection import restrict

    base, columns, _ = resolve_feature_set(fs)
    frame, ctx = load_inputs(store, symbol, tf, get_set(base), study.start, None)
    frame = frame.loc[frame.index <= last_bar]
    if len(frame) == 0 or frame.index[-1] < last_bar:
        raise PerptraderError(f"{symbol} {tf}: the store no longer holds the lockbox bars "
                              f"up to {last_bar}")
    research = frame.loc[frame.index < research_end]
    data = build_ml_frame(frame, symbol=symbol, timeframe=tf, feature_set=base, ctx=ctx)
    if columns is not None:
        data = restrict(data, columns)
    return frame, research, data, funding_events(store, symbol, frame, tf)


def _fit_final(data: MLFrame, spec_text: str, model, seed: int, weights: bool):
    """The champion's model refitted on the most recent research window."""
    from perptrader.ml.models import make_model
    from perptrader.ml.splits import WalkForwardSpec
    from perptrader.ml.walkforward import final_window
    from perptrader.ml.weights import fold_sample_weight

    train, valid = final_window(data, WalkForwardSpec.parse(spec_text))
    fitted = make_model(model.kind, **model_kwargs(model, seed))
    fit_data = replace(data, sample_weight=fold_sample_weight(data, train, valid)) \
        if weights else data
    fitted.fit(fit_data, train, valid)
    return fitted, valid


def _proba_frame(model, data: MLFrame, rows: np.ndarray) -> pd.DataFrame:
    out = pd.DataFrame(np.asarray(model.predict_proba(data, rows), dtype=np.float64),
                       index=data.index[rows], columns=list(CLASSES))
    out["fold"] = 0
    return out


def _evaluate(study: Study, dec, label, symbol: str, tf: str, bars: pd.DataFrame,
              funding: pd.DataFrame, data: MLFrame, scored: MLFrame, proba: pd.DataFrame,
              valid: pd.DataFrame, n_trials: int) -> dict[str, Any]:
    """Decide, trade and score the lockbox of one symbol."""
    from perptrader.backtest.overfitting import deflated_sharpe

    ctx = DecisionContext(data=data, bars=bars, oos=proba, valid=valid, k=label.k,
                          horizon=label.horizon, round_trip_cost=round_trip(study.costs),
                          fundings_per_bar=fundings_per_bar(tf), seed=study.seed)
    run = run_decision(ctx, dec)
    figures, bench, r, _ = trade(bars, funding, run.targets, symbol=symbol, timeframe=tf,
                                 costs=study.costs, label=dec.name)
    d = deflated_sharpe(r.to_numpy(), n_trials=n_trials)
    try:
        signal = signal_quality(proba, scored, bars, label.horizon)
    except ValueError as exc:  # no known label in a short lockbox
        signal = {"error": str(exc)}
    return {"symbol": symbol, "timeframe": tf, "first_bar": r.index[0].isoformat(),
            "last_bar": r.index[-1].isoformat(), "bars": len(r), "trading": figures,
            "buy_and_hold": bench, "signal": signal,
            "deflated_sharpe": {"dsr": d.dsr, "n_trials": n_trials, "sharpe_per_bar": d.sharpe},
            "decision": run.folds, "warnings": run.warnings}


def _symbol_look(store, study, summary, recipe_parts, cells) -> list[dict[str, Any]]:
    _, fs, label, model, dec = recipe_parts
    out = []
    for c in cells:
        symbol, tf = c["symbol"], c["timeframe"]
        bars, research, data, funding = _load_full(
            store, study, symbol, tf, fs, pd.Timestamp(c["research_end"]),
            pd.Timestamp(c["last_bar"]))
        rtc = round_trip(study.costs)
        train_data = relabel(data, research, label, rtc)   # lockbox labels unknown
        scored = relabel(data, bars, label, rtc)           # for the lockbox's scores only
        fitted, valid_rows = _fit_final(train_data, study.walkforward[tf], model,
                                        study.seed, label.uniqueness_weights)
        lock_rows = np.flatnonzero(data.index >= pd.Timestamp(c["research_end"]))
        out.append(_evaluate(study, dec, label, symbol, tf, bars, funding, train_data, scored,
                             _proba_frame(fitted, train_data, lock_rows),
                             _proba_frame(fitted, train_data, valid_rows),
                             summary["n_trials"]))
    return out


def _pooled_look(store, study, summary, recipe_parts, cells) -> list[dict[str, Any]]:
    from perptrader.core.timeframes import timeframe_delta
    from perptrader.ml.models import make_model
    from perptrader.ml.pooled import model_view, pool
    from perptrader.ml.splits import WalkForwardSpec

    _, fs, label, model, dec = recipe_parts
    p, rtc = study.pooled, round_trip(study.costs)
    loaded, frames, scored = {}, {}, {}
    for c in cells:
        symbol = c["symbol"]
        bars, research, data, funding = _load_full(
            store, study, symbol, p.timeframe, fs, pd.Timestamp(c["research_end"]),
            pd.Timestamp(c["last_bar"]))
        loaded[symbol] = (bars, funding, pd.Timestamp(c["research_end"]))
        frames[symbol] = relabel(data, research, label, rtc)
        scored[symbol] = relabel(data, bars, label, rtc)
    leader = loaded.get(p.leader)
    pooled = pool(frames, symbol_feature=p.symbol_feature,
                  leader=p.leader if leader else None,
                  leader_close=leader[0]["close"] if leader else None)
    spec = WalkForwardSpec.parse(study.walkforward[p.timeframe])
    cut = min(v[2] for v in loaded.values())
    times = pooled.data.index
    rows = np.flatnonzero((times < cut) & (times >= cut - spec.train_td)
                          & (pooled.data.y >= 0)
                          & np.isin(pooled.symbol, list(p.train_symbols)))
    if len(rows) == 0:
        raise PerptraderError("pooled lockbox: no labelled training rows before the lockbox")
    moments = times[rows].unique().sort_values()
    valid_from = moments[len(moments) - max(1, round(spec.valid * len(moments)))]
    purge_to = valid_from - label.horizon * timeframe_delta(p.timeframe)
    valid = rows[times[rows] >= valid_from]
    train = rows[times[rows] < purge_to]
    view = model_view(pooled, model.kind)  # the stack's inner purge in rows of all symbols
    fitted = make_model(model.kind, **model_kwargs(model, study.seed))
    fitted.fit(view, train, valid)
    out = []
    for symbol, (bars, funding, research_end) in loaded.items():
        own = pooled.rows_of(symbol)
        lock = own[times[own] >= research_end]
        own_valid = own[(times[own] >= valid_from) & (times[own] < research_end)]
        proba = _proba_frame(fitted, view, lock)
        vproba = _proba_frame(fitted, view, own_valid)
        res = _evaluate(study, dec, label, symbol, p.timeframe, bars, funding, frames[symbol],
                        scored[symbol], proba, vproba, summary["n_trials"])
        res["seen"] = symbol in p.train_symbols
        out.append(res)
    return out


def look(store: MarketStore, folder: Path, *, again: bool = False) -> dict[str, Any]:
    """Evaluate the champion on the lockbox once; record the look; return the summary."""
    from perptrader.research.report import write_study_report
    from perptrader.research.runner import read_returns, read_trials

    folder = Path(folder)
    if not (folder / "study.json").is_file():
        raise PerptraderError(f"{folder}: not a study run folder (no study.json)")
    summary = json.loads((folder / "study.json").read_text(encoding="utf-8"))
    study = parse_study((folder / "study.toml").read_text(encoding="utf-8"),
                        str(folder / "study.toml"))
    looks_path = folder / "lockbox" / "looks.jsonl"
    previous = [json.loads(x) for x in looks_path.read_text().splitlines() if x] \
        if looks_path.is_file() else []
    if previous and not again:
        raise PerptraderError(f"the lockbox of {folder.name} was looked at {len(previous)} "
                              "time(s) already; pass --again to look once more (the look "
                              "is counted and shown: only the first is an honest figure)")
    t0 = time.perf_counter()
    recipe = summary["champion"]["recipe"]
    parts = _recipe(study, recipe)
    trials = read_trials(folder)
    champion_cells = {(t["symbol"], t["timeframe"]) for t in trials if t["recipe"] == recipe}
    cells = [c for c in summary["cells"] if (c["symbol"], c["timeframe"]) in champion_cells]
    results = (_pooled_look if parts[0] else _symbol_look)(store, study, summary, parts, cells)
    record = json_safe({
        "look": len(previous) + 1, "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "recipe": recipe, "n_trials": summary["n_trials"], "cells": results,
        "mean_net_return": float(np.nanmean([as_float(r["trading"]["total_return"])
                                             for r in results])),
        "mean_bh_return": float(np.nanmean([as_float(r["buy_and_hold"]["total_return"])
                                            for r in results])),
        "mean_sharpe": float(np.nanmean([as_float(r["trading"]["sharpe"]) for r in results])),
        "mean_bh_sharpe": float(np.nanmean([as_float(r["buy_and_hold"]["sharpe"])
                                            for r in results])),
        "seconds": round(time.perf_counter() - t0, 1)})
    looks_path.parent.mkdir(exist_ok=True)
    with open(looks_path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, sort_keys=True) + "\n")
    summary["lockbox"] = {"looks": record["look"], "held_out": study.lockbox,
                          "first_look": previous[0] if previous else record,
                          "latest": record}
    (folder / "study.json").write_text(json.dumps(json_safe(summary), indent=2,
                                                  sort_keys=True), encoding="utf-8")
    write_study_report(folder / "report.html", summary, trials, read_returns(folder))
    return summary


__all__ = ["look"]
