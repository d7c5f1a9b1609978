"""``perptrader train / predict / models ...``: walk-forward training into the model
registry, batch predictions, and the registry listing; plus the ML stage of
``perptrader demo``.

``train`` is one honest pipeline: walk-forward folds (a fresh model per fold, test rows
never seen in fit), the three baselines on the same test rows, the out-of-sample
probabilities traded through the backtest engine beside buy-and-hold, an HTML report,
and the final model (refitted on the most recent window) registered with its manifest.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from perptrader.commands.common import (
    console,
    err_console,
    has_perp_bars,
    print_json,
    settings,
    store_session,
    user_errors,
)
from perptrader.core.errors import PerptraderError
from perptrader.ml.pipeline import (
    DEFAULT_SPEC,
    KINDS_HELP,
    QUICK_SPEC,
    load_training_data,
    model_kwargs_for,
    train_and_register,
)

models_app = typer.Typer(help="The model registry: list and inspect registered models.",
                         no_args_is_help=True)


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """``key=value`` strings to a dict; values read as JSON when they parse (numbers,
    true/false, lists), else kept as text."""
    import json

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{item!r} is not key=value", param_hint="--param")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


class TrainProgress:
    """Rich bars on stderr: folds done, and the current model's iterations / epochs
    with their latest metrics (train/valid loss, valid macro-F1)."""

    def __init__(self, bar: Progress, label: str) -> None:
        self.bar = bar
        self.label = label
        self.folds = bar.add_task(f"{label}: folds", total=None)
        self.inner = bar.add_task("", total=None)

    def __call__(self, stage: str, done: int, total: int, metrics: dict[str, float]) -> None:
        if stage == "fold":
            self.bar.update(self.folds, completed=done, total=total,
                            description=f"{self.label}: fold {done + 1}/{total}")
            self.bar.update(self.inner, completed=0, total=None, description="")
        elif stage == "fold_done":
            self.bar.update(self.folds, completed=done, total=total,
                            description=f"{self.label}: fold {done}/{total} "
                                        f"macro-F1 {metrics.get('macro_f1', float('nan')):.3f}")
        elif stage == "final":
            self.bar.update(self.folds, description=f"{self.label}: final refit")
        else:
            shown = {k: v for k, v in metrics.items() if k not in ("fold", "n_folds")
                     and isinstance(v, int | float)}
            text = " ".join(f"{k} {v:.4g}" for k, v in shown.items())
            self.bar.update(self.inner, completed=done, total=total,
                            description=f"  {stage} {text}")


@contextmanager
def train_progress(label: str, enabled: bool) -> Iterator[TrainProgress | None]:
    if not enabled:
        yield None
        return
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console, transient=True) as bar:
        yield TrainProgress(bar, label)


def bars_on_stderr(label: str) -> AbstractContextManager[TrainProgress | None]:
    """The pipeline's ``progress`` hook: Rich bars on stderr."""
    return train_progress(label, True)


def _pct(v: Any) -> str:
    return "–" if v is None else f"{v:.1%}"


def _num(v: Any, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def oos_table(rows: list[tuple[str, dict[str, Any]]], title: str) -> Table:
    """Models and baselines side by side: macro-F1, accuracy, log-loss, ECE, predicted
    class shares."""
    table = Table(title=title)
    for col in ("model", "macro-F1", "accuracy", "log-loss", "ECE", "pred SELL", "pred HOLD",
                "pred BUY", "rows"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for label, m in rows:
        dist = m.get("prediction_distribution") or {}
        style = "dim" if label.startswith("baseline") else None
        table.add_row(label, _num(m.get("macro_f1")), _pct(m.get("accuracy")),
                      _num(m.get("log_loss")), _num(m.get("ece")), _pct(dist.get("SELL")),
                      _pct(dist.get("HOLD")), _pct(dist.get("BUY")),
                      f"{m['n']:,}" if m.get("n") is not None else "–", style=style)
    return table


def folds_table(payload: dict[str, Any]) -> Table:
    table = Table(title="Per fold (out of sample)")
    for col in ("fold", "train", "test", "test rows", "macro-F1", "accuracy", "logistic F1",
                "persistence F1", "majority F1"):
        table.add_column(col, justify="right")
    for f in payload["folds"]:
        b = f["baselines"]
        table.add_row(str(f["index"]), f"{f['train'][0][:10]} → {f['train'][1][:10]}",
                      f"{f['test'][0][:10]} → {f['test'][1][:10]}", f"{f['n_test']:,}",
                      _num(f["macro_f1"]), _pct(f["accuracy"]),
                      *(_num(b.get(n, {}).get("macro_f1"))
                        for n in ("logistic", "persistence", "majority")))
    return table


TRADING_COLUMNS = (("total_return", "return", _pct), ("sharpe", "Sharpe", _num),
                   ("max_drawdown", "max DD", _pct), ("win_rate", "win rate", _pct),
                   ("trades", "trades", lambda v: "–" if v is None else f"{v:,}"),
                   ("time_in_market", "in market", _pct),
                   ("turnover", "turnover", lambda v: _num(v, 1)),
                   ("fees_paid", "fees", lambda v: _num(v, 2)),
                   ("funding_paid", "funding", lambda v: _num(v, 2)),
                   ("liquidations", "liqs", lambda v: "–" if v is None else f"{v:,}"))


def trading_table(rows: list[tuple[str, dict[str, Any]]], title: str) -> Table:
    table = Table(title=title)
    table.add_column("strategy")
    for _, header, _ in TRADING_COLUMNS:
        table.add_column(header, justify="right")
    for label, m in rows:
        table.add_row(label, *(f(m.get(k)) for k, _, f in TRADING_COLUMNS),
                      style="dim" if label == "buy_and_hold" else None)
    return table


def trading_title(trading: dict[str, Any]) -> str:
    return (f"Out-of-sample trading · {trading['first_bar'][:16]} → {trading['last_bar'][:16]}"
            f" · {trading['bars']:,} bars · long P(BUY) ≥ {trading['buy_threshold']}, short "
            f"P(SELL) ≥ {trading['sell_threshold']} · costs and funding on")


def decision_table(payload: dict[str, Any]) -> Table:
    """The plain 0.45 rule and the cost-aware layer on the same OOS probabilities."""
    dec = payload["decision"]
    cmp_ = dec["comparison"]
    table = Table(title=f"Decision layers on the same out-of-sample probabilities · "
                        f"{cmp_['first_bar'][:16]} → {cmp_['last_bar'][:16]} · cost-aware "
                        f"chosen fold by fold on earlier rows only")
    table.add_column("decision")
    for col in ("return", "Sharpe", "max DD", "trades", "turnover", "fees", "funding",
                "cost share"):
        table.add_column(col, justify="right")
    for label, key in (("threshold 0.45", "threshold"), ("cost-aware", "cost_aware"),
                       ("buy_and_hold", "buy_and_hold")):
        m = cmp_[key]
        table.add_row(label, _pct(m.get("total_return")), _num(m.get("sharpe")),
                      _pct(m.get("max_drawdown")),
                      "–" if m.get("trades") is None else f"{m['trades']:,}",
                      _num(m.get("turnover"), 1), _num(m.get("fees_paid"), 2),
                      _num(m.get("funding_paid"), 2), _pct(m.get("cost_share")),
                      style="dim" if key == "buy_and_hold" else None)
    return table


def stored_decision_line(payload: dict[str, Any]) -> str:
    """What ``model:NAME`` trades with, in one line."""
    dec = payload["decision"]
    rule, chosen = dec["cost_aware"], dec["chosen_on"]
    if chosen.get("params") is None:
        why = ("no skill measured (edge scale k = 0)" if not chosen.get("edge_k")
               else "no setting beat staying flat")
        layer = f"cost-aware layer never trades: {why} on {chosen['tuning_rows']:,} OOS rows"
    else:
        p = rule["params"]
        layer = (f"cost-aware layer k = {rule['k']:.3f} (t = {chosen['edge_t']:.2f}), enter "
                 f"{p['enter']}x / exit {p['exit']}x round trip, hold >= {p['min_hold']} "
                 f"bars, chosen on {chosen['tuning_rows']:,} OOS rows")
    return (f"model:{payload['name']} trades with: [bold]{dec['use']}[/bold] "
            f"(--param decision=threshold|cost_aware overrides) · {layer}")


def print_train(payload: dict[str, Any], out: Console) -> None:
    rows = [(f"{payload['name']} ({payload['model']})", payload)]
    rows += [(f"baseline: {b}", m) for b, m in payload["baselines"].items()]
    out.print(oos_table(rows, f"{payload['symbol']} {payload['timeframe']} · out of sample "
                              f"over {len(payload['folds'])} folds"))
    out.print(folds_table(payload))
    tr = payload["trading"]
    out.print(trading_table([(f"{payload['name']} OOS", tr["model"]),
                             ("buy_and_hold", tr["buy_and_hold"])], trading_title(tr)))
    for w in tr.get("warnings", []):
        out.print(f"[yellow]warning:[/yellow] {w}")
    if payload.get("decision"):
        out.print(decision_table(payload))
        out.print(stored_decision_line(payload))
    for w in payload["warnings"]:
        out.print(f"[bold red]WARNING: {w}[/bold red]")
    out.print(f"registered [bold]{payload['name']}[/bold] v{payload['version']} → "
              f"{payload['path']} (report: {payload['report']})")


def train(
    symbol: str = typer.Option("BTCUSDT", "--symbol", help="Instrument, e.g. BTCUSDT."),
    timeframe: str = typer.Option("1h", "--timeframe", help="Bar timeframe, e.g. 1h."),
    model: str = typer.Option(..., "--model", help=KINDS_HELP),
    name: str = typer.Option(..., "--name", help="Registry name; each run adds a version."),
    start: str | None = typer.Option(None, "--start", help="First bar (UTC), e.g. 2023-01-01."),
    end: str | None = typer.Option(None, "--end", help="End (UTC, exclusive)."),
    walk_forward: str | None = typer.Option(
        None, "--walk-forward", help=f"e.g. {DEFAULT_SPEC}[,valid=0.15][,mode=expanding]"
        f"[,embargo=24][,folds=3]; default {DEFAULT_SPEC} ({QUICK_SPEC} with --quick)."),
    feature_set: str = typer.Option("default", "--set", help="Feature set."),
    epochs: int | None = typer.Option(None, "--epochs", min=1,
                                      help="Max epochs of the neural experts."),
    quick: bool = typer.Option(False, "--quick", help="Small settings for demos and tests: "
                               "few folds, small nets, few epochs, few trees."),
    calibrate: bool = typer.Option(False, "--calibrate", help="Temperature scaling fitted "
                                   "on each fold's validation slice."),
    param: list[str] | None = typer.Option(
        None, "--param", help="Model setting key=value (repeatable), e.g. --param "
        "learning_rate=0.03 or --param d_model=48; what `perptrader tune` printed."),
    decision: str = typer.Option(
        "cost_aware", "--decision", help="What `model:NAME` trades with by default: "
        "cost_aware (the layer chosen on the out-of-sample rows, stored with the model; "
        "flat when no edge after costs was measured) or threshold (P >= 0.45). Both are "
        "reported."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Walk-forward train a model, compare it with the baselines, trade its out-of-sample
    predictions beside buy-and-hold (plain 0.45 rule and the cost-aware layer), and
    register the final model with its decision layer."""
    from perptrader.ml.registry import check_name

    cfg = settings()
    try:
        kwargs = model_kwargs_for(model, quick=quick, epochs=epochs,
                                  params=parse_params(param))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--model") from None
    spec_text = walk_forward or (QUICK_SPEC if quick else DEFAULT_SPEC)
    with store_session(cfg) as store:
        check_name(name)
        payload = train_and_register(store, symbol=symbol, timeframe=timeframe, kind=model,
                                     name=name, spec_text=spec_text, model_kwargs=kwargs,
                                     start=start, end=end, feature_set=feature_set,
                                     calibrate=calibrate, decision=decision,
                                     progress=None if as_json else bars_on_stderr)
    if as_json:
        print_json(payload)
        for w in payload["warnings"]:
            err_console.print(f"[bold red]WARNING: {w}[/bold red]")
        return
    print_train(payload, console)


def predict(
    model: str = typer.Option(..., "--model", help="Registered model name."),
    version: int | None = typer.Option(None, "--version", help="Default: the latest."),
    symbol: str = typer.Option("BTCUSDT", "--symbol", help="Instrument, e.g. BTCUSDT."),
    timeframe: str = typer.Option("1h", "--timeframe", help="Bar timeframe, e.g. 1h."),
    start: str | None = typer.Option(None, "--start", help="First bar (UTC)."),
    end: str | None = typer.Option(None, "--end", help="End (UTC, exclusive)."),
    out: Path = typer.Option(..., "--out", help="Parquet file to write."),
    embeddings: bool = typer.Option(False, "--embeddings", help="Add the expert's embedding "
                                    "columns (xLSTM/LSTM experts only)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Probabilities (SELL/HOLD/BUY) and the predicted class of every bar after the
    feature warm-up (sequence models: after their first window). Refuses data whose
    features differ from the model's."""
    import numpy as np
    import pandas as pd

    from perptrader.ml.base import CLASSES
    from perptrader.ml.registry import (
        load_registered,
        predict_registered,
        predictable_rows,
        show,
    )

    cfg = settings()
    with store_session(cfg, read_only=True) as store:
        manifest = show(model, version)
        data, _, _ = load_training_data(store, symbol, timeframe, start, end,
                                        manifest["feature_set"])
        clf, manifest = load_registered(model, manifest["version"], data=data)
        # sequence experts need seq_len - 1 bars of features first: those rows are left out
        rows = predictable_rows(clf, data, np.arange(len(data), dtype=np.int64))
        if len(rows) == 0:
            raise PerptraderError(f"model {model!r}: no bar in this range has enough "
                                  "history to predict")
        proba = predict_registered(clf, manifest, data, rows)
        frame = pd.DataFrame(proba, index=data.index[rows], columns=list(CLASSES))
        frame["predicted"] = pd.Categorical.from_codes(proba.argmax(axis=1),
                                                       categories=list(CLASSES))
        if embeddings:
            if not hasattr(clf, "embed"):
                raise PerptraderError(f"model {model!r} ({manifest['kind']}) has no "
                                      "embeddings (only the sequence experts do)")
            emb = np.asarray(clf.embed(data, rows))
            for j in range(emb.shape[1]):
                frame[f"emb_{j}"] = emb[:, j]
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(out)
    shares = frame["predicted"].value_counts(normalize=True)
    payload = {"model": model, "version": manifest["version"], "kind": manifest["kind"],
               "symbol": symbol, "timeframe": timeframe, "rows": len(frame),
               "skipped_rows": len(data) - len(frame),
               "first_bar": frame.index[0].isoformat(), "last_bar": frame.index[-1].isoformat(),
               "prediction_distribution": {c: float(shares.get(c, 0.0)) for c in CLASSES},
               "columns": list(frame.columns), "out": str(out)}
    if as_json:
        print_json(payload)
        return
    dist = ", ".join(f"{c} {v:.1%}" for c, v in payload["prediction_distribution"].items())
    console.print(f"{model} v{payload['version']} ({payload['kind']}): {len(frame):,} bars "
                  f"{payload['first_bar'][:16]} → {payload['last_bar'][:16]}; predicted "
                  f"{dist}; wrote {out}")


@models_app.command("list")
def models_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Registered models (latest version of each) with their out-of-sample figures."""
    from perptrader.ml.registry import list_models

    settings()
    with user_errors():
        rows = list_models()
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("No models registered yet (perptrader train ... --name NAME).")
        return
    table = Table(title="Registered models")
    for col in ("name", "version", "kind", "symbol", "timeframe", "features", "OOS macro-F1",
                "accuracy", "created"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], f"{r['version']} (of {len(r['versions'])})", r["kind"],
                      str(r["symbol"]), str(r["timeframe"]),
                      f"{r['feature_set']} ({r['n_features']})", _num(r["macro_f1"]),
                      _pct(r["accuracy"]), r["created"])
    console.print(table)


@models_app.command("show")
def models_show(
    name: str = typer.Argument(..., help="Registered model name."),
    version: int | None = typer.Option(None, "--version", help="Default: the latest."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
) -> None:
    """One version's manifest: data, features, walk-forward, settings, OOS metrics."""
    from perptrader.ml.registry import show

    settings()
    with user_errors():
        m = show(name, version)
    if as_json:
        print_json(m)
        return
    table = Table(title=f"{m['name']} v{m['version']}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", overflow="fold")
    wf = m.get("walk_forward") or {}
    for key, value in (
        ("kind", m["kind"]), ("created", m["created"]),
        ("code", f"perptrader {m['perptrader_version']} @ {m.get('git_commit') or 'no git'}"),
        ("data", f"{m['symbol']} {m['timeframe']} {m['data']['first_bar']} → "
                 f"{m['data']['last_bar']} ({m['data']['rows']:,} rows)"),
        ("features", f"{m['feature_set']}: {m['n_features']} (hash {m['feature_hash']})"),
        ("label", f"{m['label']} (horizon {m['horizon']} bars)"),
        ("walk-forward", ", ".join(f"{k}={v}" for k, v in wf.items())),
        ("settings", str(m.get("model_kwargs") or "defaults")),
        ("folder", m["path"]),
    ):
        table.add_row(key, str(value))
    console.print(table)
    metrics = m.get("metrics") or {}
    if metrics.get("oos"):
        rows = [(m["name"], metrics["oos"])]
        rows += [(f"baseline: {b}", v) for b, v in (metrics.get("baselines") or {}).items()]
        console.print(oos_table(rows, "Out of sample"))
    for w in m.get("warnings") or []:
        console.print(f"[bold red]WARNING: {w}[/bold red]")


# ------------------------------------------------------------------ demo stage

#: the demo runs the --quick settings (tiny, for 2 CPU cores)
DEMO_SPEC = QUICK_SPEC


def demo_models() -> list[tuple[str, str, dict[str, Any]]]:
    """(registry name, kind, model kwargs) of the demo's models: the --quick settings,
    and k=2 for the GBDT ensemble's out-of-fold stacking (two blocks, demo-sized)."""
    gbdt = {**model_kwargs_for("gbdt", quick=True), "k": 2}
    experts = model_kwargs_for("xlstm-pattern", quick=True)
    return [
        ("demo-gbdt", "gbdt", gbdt),
        ("demo-xlstm-pattern", "xlstm-pattern", experts),
        ("demo-xlstm-indicator", "xlstm-indicator", model_kwargs_for("xlstm-indicator",
                                                                      quick=True)),
        ("demo-ensemble", "ensemble", {"member_kwargs": {"gbdt": gbdt},
                                       "config": experts["config"]}),
    ]


def ml_demo_stage(store, console: Console, out_root: Path) -> None:
    """``perptrader demo``'s ML stage on BTCUSDT 1h: walk-forward (last 2 folds of
    train=365d,test=60d) of the GBDT ensemble, both xLSTM experts and their stack, with
    tiny settings; the OOS table beside the baselines, each model's OOS trades beside
    buy-and-hold; models registered as ``demo-*``, reports copied to ``out_root``."""
    import shutil

    symbol, timeframe = "BTCUSDT", "1h"
    if not has_perp_bars(store, symbol, timeframe):
        console.print(f"[yellow]No {symbol} {timeframe} perpetual bars stored: ML stage "
                      "skipped.[/yellow]")
        return
    t0 = time.perf_counter()
    loaded = load_training_data(store, symbol, timeframe, None, None, "default")
    data = loaded[0]
    console.print(f"ML research table {symbol} {timeframe}: {len(data):,} rows × "
                  f"{len(data.features)} features (hash {data.meta.get('feature_hash')}); "
                  f"walk-forward {DEMO_SPEC}")
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    payloads = []
    for name, kind, kwargs in demo_models():
        t1 = time.perf_counter()
        payload = train_and_register(store, symbol=symbol, timeframe=timeframe, kind=kind,
                                     name=name, spec_text=DEMO_SPEC, model_kwargs=kwargs,
                                     loaded=loaded, progress=bars_on_stderr)
        report = out_root / f"{name}.html"
        shutil.copyfile(payload["report"], report)
        payloads.append(payload)
        console.print(f"  {name} ({kind}): OOS macro-F1 {payload['macro_f1']:.3f} in "
                      f"{time.perf_counter() - t1:.0f} s; registered v{payload['version']}, "
                      f"report {report}")
    first = payloads[0]
    rows = [(f"{p['name']} ({p['model']})", p) for p in payloads]
    rows += [(f"baseline: {b}", m) for b, m in first["baselines"].items()]
    console.print(oos_table(rows, f"{symbol} {timeframe} · out of sample, "
                                  f"{len(first['folds'])} folds · {first['n']:,} test rows"))
    trades = [(f"{p['name']} OOS", p["trading"]["model"]) for p in payloads]
    trades.append(("buy_and_hold", first["trading"]["buy_and_hold"]))
    console.print(trading_table(trades, trading_title(first["trading"])))
    for p in payloads:
        console.print(f"{p['name']}: {stored_decision_line(p)}")
    for p in payloads:
        for w in p["warnings"]:
            console.print(f"[bold red]WARNING {p['name']}: {w}[/bold red]")
    console.print(f"ML stage done in {time.perf_counter() - t0:.0f} s "
                  f"(`perptrader models list`; backtest a model with "
                  f"`perptrader backtest run --strategy model:demo-gbdt ...`)")


__all__ = ["ml_demo_stage", "models_app", "predict", "train"]
