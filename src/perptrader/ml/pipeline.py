"""The ML training pipeline: data -> walk-forward -> baselines -> trading evaluation ->
report -> registry, as one function that the CLI (``perptrader train``), the demo and
the RL quick models call. It lives here, not in ``commands/``, so the CLI stays a thin
layer of options and tables over it.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import pandas as pd

from perptrader.core.errors import PerptraderError
from perptrader.core.jsonsafe import json_safe
from perptrader.marketdata.store.base import MarketStore
from perptrader.ml.base import MLFrame

KINDS_HELP = "gbdt|lightgbm|xgboost|catboost|xlstm-pattern|xlstm-indicator|lstm|ensemble"
#: what ``model:NAME`` trades with by default: the stored cost-aware layer or the thresholds
DECISION_USES = ("cost_aware", "threshold")
NEURAL = ("xlstm-pattern", "xlstm-indicator", "lstm")
BOOSTED = ("lightgbm", "xgboost", "catboost")
#: the default walk-forward of a full run and of a --quick run (when none is given)
DEFAULT_SPEC = "train=540d,test=30d"
QUICK_SPEC = "train=365d,test=60d,folds=2"

#: small settings for demos and tests: few trees, tiny nets, few epochs
QUICK_TREES = {"n_estimators": 30, "early_stopping_rounds": 8, "learning_rate": 0.15,
               "progress_every": 10}
QUICK_EXPERT = {"seq_len": 32, "d_model": 32, "n_blocks": 2, "embedding_dim": 16,
                "max_epochs": 2, "patience": 2, "batch_size": 128, "train_stride": 4,
                "warmup_steps": 10}


def model_kwargs_for(kind: str, *, quick: bool = False, epochs: int | None = None,
                     params: dict[str, Any] | None = None) -> dict[str, Any]:
    """``make_model`` kwargs of ``kind`` for a full or a ``--quick`` run; ``epochs`` caps
    the neural experts' epochs; ``params`` (``--param``, e.g. what ``perptrader tune``
    found) override: keys of ``ExpertConfig`` go to the neural experts, the rest to the
    gradient-boosting library. JSON-able (they go into the manifest)."""
    from dataclasses import fields

    from perptrader.ml.experts import ExpertConfig
    from perptrader.ml.models import KINDS

    if kind not in KINDS:
        raise ValueError(f"unknown model {kind!r}; one of {KINDS_HELP}")
    expert_keys = {f.name for f in fields(ExpertConfig)}
    expert: dict[str, Any] = dict(QUICK_EXPERT) if quick else {}
    trees = dict(QUICK_TREES) if quick else {}
    for key, value in (params or {}).items():
        (expert if key in expert_keys else trees)[key] = value
    if epochs is not None:
        expert["max_epochs"] = epochs
    if kind in BOOSTED:
        return {"params": trees} if trees else {}
    if kind == "gbdt":
        return {"params": {k: dict(trees) for k in BOOSTED}} if trees else {}
    if kind in NEURAL:
        return {"config": expert} if expert else {}
    # ensemble: the GBDT ensemble and both experts, each with the settings above
    out: dict[str, Any] = {}
    if trees:
        out["member_kwargs"] = {"gbdt": {"params": {k: dict(trees) for k in BOOSTED}}}
    if expert:
        out["config"] = expert
    return out


def load_training_data(store: MarketStore, symbol: str, timeframe: str, start: str | None,
                       end: str | None, feature_set: str
                       ) -> tuple[MLFrame, pd.DataFrame, pd.DataFrame]:
    """(MLFrame, loader bars, funding events) of one symbol/timeframe."""
    from perptrader.features.inputs import load_inputs
    from perptrader.features.sets import get_set
    from perptrader.marketdata.loader import funding_events
    from perptrader.ml.dataset import build_ml_frame

    try:
        fs = get_set(feature_set)
    except KeyError as exc:
        raise PerptraderError(str(exc.args[0])) from None
    bars, ctx = load_inputs(store, symbol, timeframe, fs, start, end)
    try:
        data = build_ml_frame(bars, symbol=symbol, timeframe=timeframe,
                              feature_set=feature_set, ctx=ctx)
    except ValueError as exc:
        raise PerptraderError(f"{symbol} {timeframe}: {exc}") from None
    return data, bars, funding_events(store, symbol, bars, timeframe)


def train_and_register(store: MarketStore, *, symbol: str, timeframe: str, kind: str, name: str,
                       spec_text: str, model_kwargs: dict[str, Any], start: str | None = None,
                       end: str | None = None, feature_set: str = "default",
                       calibrate: bool = False, decision: str = "cost_aware",
                       loaded: tuple | None = None,
                       progress: Callable[[str], AbstractContextManager[Any]] | None = None,
                       ) -> dict[str, Any]:
    """Walk-forward, trading evaluation, report, registration; returns the JSON payload
    of ``train --json`` (see ``train_payload``). ``loaded`` reuses ``load_training_data``'s
    output; ``progress(label)`` is a context manager yielding the walk-forward's progress
    callback (the CLI's Rich bars), or None for silence. ``decision``: the layer the
    registered model trades with by default (``model:NAME``); the cost-aware layer is
    fitted and stored either way (``decide_layers``)."""
    from perptrader.ml.registry import register
    from perptrader.ml.report import write_ml_report
    from perptrader.ml.splits import WalkForwardSpec
    from perptrader.ml.trading import oos_backtest_result, oos_trading
    from perptrader.ml.walkforward import run_walk_forward

    if decision not in DECISION_USES:
        raise PerptraderError(f"--decision must be one of {DECISION_USES}, got {decision!r}")
    try:
        spec = WalkForwardSpec.parse(spec_text)
    except ValueError as exc:
        raise PerptraderError(f"--walk-forward: {exc}") from None
    data, bars, events = loaded or load_training_data(store, symbol, timeframe, start, end,
                                                      feature_set)
    t0 = time.perf_counter()
    bars_cm = progress(f"{name} ({kind})") if progress is not None else nullcontext(None)
    with bars_cm as callback:
        try:
            wf = run_walk_forward(data, kind, spec, model_kwargs=model_kwargs,
                                  calibrate=calibrate, progress=callback,
                                  keep_valid=True)
        except ValueError as exc:  # too little data for the spec, no labelled rows ...
            raise PerptraderError(f"{name}: {exc}") from None
    seconds = time.perf_counter() - t0
    summary = wf.summary
    threshold = oos_backtest_result(data, bars, wf.oos_proba, funding=events)
    summary["trading"] = oos_trading(threshold)
    summary["decision"] = decide_layers(data, bars, wf, events, threshold, use=decision)
    summary["seconds"] = round(seconds, 1)
    with tempfile.TemporaryDirectory() as tmp:
        report = write_ml_report(Path(tmp) / "report.html", summary, wf.histories)
        folder = register(name, wf.final_model, data=data, summary=summary, spec=spec,
                          model_kwargs=model_kwargs, report_path=report)
    return train_payload(summary, name=name, folder=folder)


def decide_layers(data: MLFrame, bars: pd.DataFrame, wf: Any, events: pd.DataFrame,
                  threshold: Any, *, use: str = "cost_aware") -> dict[str, Any]:
    """The cost-aware decision layer of a walk-forward (``ml.decision_oos``): chosen fold
    by fold on each fold's tuning rows and traded out of sample beside the plain 0.45
    rule on the same probabilities (``comparison``), and the layer stored with the model
    (chosen on every out-of-sample row: ``cost_aware`` and ``chosen_on``). ``use``: what
    the registered model trades with by default; ``threshold``: the backtest of the 0.45
    rule on the same rows (``ml.trading.oos_backtest_result``)."""
    from perptrader.ml.decision import round_trip_cost
    from perptrader.ml.decision_oos import (
        DecisionContext,
        cost_aware_oos,
        fit_stored_rule,
        fundings_per_bar,
    )
    from perptrader.ml.trading import decision_comparison

    timeframe = str(data.meta.get("timeframe") or "1h")
    ctx = DecisionContext(data=data, bars=bars, oos=wf.oos_proba, valid=wf.valid_proba,
                          k=0.0, horizon=data.horizon, round_trip_cost=round_trip_cost(),
                          fundings_per_bar=fundings_per_bar(timeframe))
    targets, folds = cost_aware_oos(ctx)
    rule, chosen = fit_stored_rule(ctx)
    return json_safe({
        "use": use, "cost_aware": rule.as_dict(), "chosen_on": chosen, "folds": folds,
        "comparison": decision_comparison(data, bars, threshold, targets, funding=events)})


def _brief(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: metrics.get(k) for k in ("macro_f1", "accuracy", "prediction_distribution",
                                        "log_loss", "ece", "n")}


def train_payload(summary: dict[str, Any], *, name: str, folder: Path) -> dict[str, Any]:
    """The ``train --json`` object: OOS figures at the top level, per-fold figures, the
    same figures for each baseline, the trading row beside buy-and-hold, warnings."""

    folds = [{"index": f["index"], "train": f["train"], "test": f["test"],
              "n_train": f["n_train"], "n_test": f["n_test"], **_brief(f["metrics"]),
              "baselines": {b: _brief(m) for b, m in f["baselines"].items()}}
             for f in summary["folds"]]
    return json_safe({
        "model": summary["model"], "name": name, "version": int(folder.name),
        "symbol": summary["symbol"], "timeframe": summary["timeframe"],
        "feature_set": summary["feature_set"], "feature_hash": summary["feature_hash"],
        **_brief(summary["oos"]),
        "folds": folds,
        "baselines": {b: _brief(m) for b, m in summary["baselines"].items()},
        "trading": summary.get("trading"),
        "decision": summary.get("decision"),
        "warnings": summary.get("warnings", []),
        "seconds": summary.get("seconds"),
        "path": str(folder),
        "report": str(folder / "report.html"),
    })


