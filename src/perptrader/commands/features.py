"""``perptrader features ...``: build feature sets, list them, prove no look-ahead."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
    writable_folder,
)
from perptrader.features.sets import FEATURE_SETS, get_set

app = typer.Typer(help="Build feature sets and labels; prove they do not look ahead.",
                  no_args_is_help=True)

SYMBOL = typer.Option("BTCUSDT", "--symbol", help="Instrument, e.g. BTCUSDT.")
TIMEFRAME = typer.Option("1h", "--timeframe", help="Bar timeframe, e.g. 1h.")
START = typer.Option(None, "--start", help="First bar (UTC, inclusive), e.g. 2024-01-01.")
END = typer.Option(None, "--end", help="End (UTC, exclusive).")
SET = typer.Option("default", "--set", help=f"Feature set: {', '.join(FEATURE_SETS)}.")
JSON = typer.Option(False, "--json", help="Print a JSON report instead of tables.")


@contextmanager
def progress_bar(label: str, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A Rich bar on stderr (so --json stays clean); yields callback(done, total)."""
    with Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console, disable=not enabled,
                  transient=True) as bar:
        task = bar.add_task("", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield advance


def _inputs(symbol: str, timeframe: str, feature_set: str, start: str | None,
            end: str | None):
    from perptrader.features.inputs import load_inputs

    cfg = settings()
    fs = _set(feature_set)
    with store_session(cfg) as store:
        frame, ctx = load_inputs(store, symbol, timeframe, fs, start, end)
    return fs, frame, ctx


def _set(name: str):
    try:
        return get_set(name)
    except KeyError as exc:
        err_console.print(f"[red]Error:[/red] {exc.args[0]}")
        raise typer.Exit(2) from None


@app.command("list")
def list_(
    feature_set: str | None = typer.Option(None, "--set", help="Only this set's families."),
    as_json: bool = JSON,
    markdown: bool = typer.Option(False, "--markdown",
                                  help="Print the catalogue as Markdown (docs/features.md)."),
) -> None:
    """Every feature family and feature: formula, inputs, warm-up."""
    from perptrader.features.catalogue import catalogue, catalogue_markdown

    with user_errors():
        entries = catalogue(_set(feature_set) if feature_set else None)
    if markdown:
        typer.echo(catalogue_markdown(), nl=False)
        return
    if as_json:
        print_json(entries)
        return
    table = Table(title="Feature families")
    for col in ("family", "features", "warm-up", "needs", "description"):
        table.add_column(col, overflow="fold")
    for fam in entries["families"]:
        table.add_row(fam["name"], str(len(fam["features"])), str(fam["warmup"]),
                      ", ".join(fam["requires"]) or "-", fam["description"])
    console.print(table)
    sets = Table(title="Feature sets")
    for col in ("set", "families", "higher timeframes", "description"):
        sets.add_column(col, overflow="fold")
    for s in entries["sets"]:
        sets.add_row(s["name"], ", ".join(s["families"]),
                     "; ".join(f"{tf}: {', '.join(f)}" for tf, f in s["higher"].items()) or "-",
                     s["description"])
    console.print(sets)
    console.print(f"{sum(len(f['features']) for f in entries['families'])} features in "
                  f"{len(entries['families'])} families (before higher-timeframe copies); "
                  "`--json` for formulas.")


@app.command("build")
def build_cmd(
    symbol: str = SYMBOL, timeframe: str = TIMEFRAME, start: str | None = START,
    end: str | None = END, feature_set: str = SET,
    out: Path = typer.Option(..., "--out", help="Parquet file to write."),
    labels: bool = typer.Option(True, "--labels/--no-labels", help="Add the label columns."),
    nan_policy: str = typer.Option("keep", "--nan-policy", help="keep | drop_rows."),
    as_json: bool = JSON,
) -> None:
    """Compute a feature set (and labels) and write Parquet with its metadata."""
    from perptrader.features.pipeline import build, write_parquet

    writable_folder(out.parent, "--out")
    fs, frame, ctx = _inputs(symbol, timeframe, feature_set, start, end)
    with user_errors():
        try:
            result = build(frame, fs, ctx, labels=labels, nan_policy=nan_policy)
        except ValueError as exc:
            err_console.print(f"[red]Error:[/red] {exc}")
            raise typer.Exit(1) from None
        write_parquet(result, out)
    summary = {**result.as_json(), "out": str(out)}
    if as_json:
        print_json(summary)
        return
    console.print(build_table(summary))
    if result.labels:
        console.print(balance_table(summary["label_balance"]))


def build_table(summary: dict[str, Any]) -> Table:
    table = Table(title=f"Features {summary['symbol']} {summary['timeframe']}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    for key in ("feature_set", "n_features", "rows", "start", "end", "feature_hash",
                "warmup_rows_dropped", "nan_policy"):
        table.add_row(key, f"{summary[key]:,}" if isinstance(summary[key], int) else
                      str(summary[key]))
    table.add_row("families", ", ".join(summary["families"]))
    absent = summary["absent_families"]
    table.add_row("absent", "; ".join(f"{k}: {v}" for k, v in absent.items()) or "-")
    if "out" in summary:
        table.add_row("written", summary["out"])
    return table


def balance_table(balance: dict[str, Any]) -> Table:
    table = Table(title="Label class balance")
    for col in ("label", "SELL", "HOLD", "BUY", "unknown (end)"):
        table.add_column(col, justify="right" if col != "label" else "left")
    for name, classes in balance.items():
        cells = []
        for cls in ("SELL", "HOLD", "BUY"):
            c = classes.get(cls, {})
            cells.append(f"{c.get('count', 0):,} ({c.get('share', 0):.1%})")
        unknown = classes.get("unknown", {}).get("count", 0)
        table.add_row(name, *cells, f"{unknown:,}")
    return table


@app.command("lookahead-check")
def lookahead_cmd(
    symbol: str = SYMBOL, timeframe: str = TIMEFRAME, start: str | None = START,
    end: str | None = END, feature_set: str = SET, as_json: bool = JSON,
) -> None:
    """Recompute every feature on truncated histories; exit 1 naming any that differ."""
    from perptrader.features.lookahead import lookahead_check
    from perptrader.features.pipeline import plan

    fs, frame, ctx = _inputs(symbol, timeframe, feature_set, start, end)
    the_plan = plan(frame, fs, ctx)
    with progress_bar("look-ahead check", not as_json) as advance:
        report = lookahead_check(frame, the_plan.families, ctx, progress=advance)
    data = {"symbol": symbol, "timeframe": timeframe, **report.as_json()}
    if as_json:
        print_json(data)
    else:
        console.print(lookahead_summary(data))
    if not report.ok:
        raise typer.Exit(1)


def lookahead_summary(data: dict[str, Any]) -> str:
    if data["ok"]:
        return (f"[green]No look-ahead[/green]: {data['n_features']} features recomputed on "
                f"{len(data['cuts'])} truncated histories of {data['rows']:,} bars "
                f"(cuts after {', '.join(c[:16] for c in data['cuts'])}) equal the full "
                "computation.")
    lines = [f"[red]Look-ahead found[/red] in {len(data['offending_features'])} features:"]
    for name, d in data["details"].items():
        lines.append(f"  {name}: differs from {d['first'][:19]} on {d['rows']} rows "
                     f"(max |diff| {d['max_abs_diff']}, NaN mismatches {d['nan_mismatches']})")
    return "\n".join(lines)


@app.command("incremental-check")
def incremental_cmd(
    symbol: str = SYMBOL, timeframe: str = TIMEFRAME, start: str | None = START,
    end: str | None = END, feature_set: str = SET,
    bars: int = typer.Option(200, "--bars", help="Feed this many last bars one by one."),
    as_json: bool = JSON,
) -> None:
    """Compare the live (one bar at a time) path with the batch path; exit 1 on a difference."""
    from perptrader.features.incremental import incremental_check
    from perptrader.features.pipeline import plan

    fs, frame, ctx = _inputs(symbol, timeframe, feature_set, start, end)
    the_plan = plan(frame, fs, ctx)
    with user_errors(), progress_bar("live path", not as_json) as advance:
        try:
            report = incremental_check(frame, the_plan.families, ctx, bars=bars,
                                       progress=advance)
        except ValueError as exc:
            err_console.print(f"[red]Error:[/red] {exc}")
            raise typer.Exit(1) from None
    data = {"symbol": symbol, "timeframe": timeframe, **report.as_json()}
    if as_json:
        print_json(data)
    elif report.ok:
        console.print(f"[green]Live path equals batch[/green]: {report.n_features} features on "
                      f"the last {report.bars} bars fed one at a time "
                      f"(buffer {report.buffer_rows} bars).")
    else:
        console.print(f"[red]Live path differs[/red] on {len(report.differences)} features: "
                      + ", ".join(d.column for d in report.differences[:20]))
    if not report.ok:
        raise typer.Exit(1)


@app.command("vsa-report")
def vsa_report_cmd(
    symbol: str = SYMBOL, timeframe: str = TIMEFRAME, start: str | None = START,
    end: str | None = END, as_json: bool = JSON,
) -> None:
    """How often each VSA bar class fires, and the mean forward returns after it."""
    from perptrader.features.vsa import vsa_frequency

    _, frame, _ = _inputs(symbol, timeframe, "bars", start, end)
    table = vsa_frequency(frame)
    if as_json:
        print_json(_records(table))
        return
    console.print(frame_table(table, f"VSA classes {symbol} {timeframe} ({len(frame):,} bars)"))


@app.command("labels")
def labels_cmd(
    symbol: str = SYMBOL, timeframe: str = TIMEFRAME, start: str | None = START,
    end: str | None = END,
    future_window: int | None = typer.Option(None, "--future-window", min=1,
                                             help="Bars ahead (at least 1)."),
    threshold_multiplier: float | None = typer.Option(
        None, "--threshold-multiplier", help="k in k × volatility over the horizon."),
    as_json: bool = JSON,
) -> None:
    """Class balance of the labels for the given settings (defaults: features.labels)."""
    from dataclasses import replace

    from perptrader.features.labels import LabelConfig
    from perptrader.features.pipeline import label_balance, label_frame

    _, frame, _ = _inputs(symbol, timeframe, "bars", start, end)
    cfg = LabelConfig()
    if future_window is not None:
        cfg = replace(cfg, future_window=future_window)
    if threshold_multiplier is not None:
        cfg = replace(cfg, threshold_multiplier=threshold_multiplier)
    balance = label_balance(label_frame(frame, cfg))
    if as_json:
        print_json({"symbol": symbol, "timeframe": timeframe, "config": cfg.__dict__,
                    "label_balance": balance})
        return
    console.print(f"Label settings: {cfg}")
    console.print(balance_table(balance))


def _records(table) -> list[dict[str, Any]]:
    import numpy as np

    out = []
    for name, row in table.iterrows():
        rec: dict[str, Any] = {"class": str(name)}
        for k, v in row.items():
            v = v.item() if isinstance(v, np.generic) else v
            rec[str(k)] = None if isinstance(v, float) and v != v else v
        out.append(rec)
    return out


def frame_table(table, title: str) -> Table:
    out = Table(title=title)
    out.add_column(table.index.name or "class")
    for col in table.columns:
        out.add_column(str(col), justify="right")
    for name, row in table.iterrows():
        cells = []
        for v in row:
            if isinstance(v, float):
                cells.append("-" if v != v else f"{v:.4g}")
            else:
                cells.append(f"{v:,}" if isinstance(v, int) else str(v))
        out.add_row(str(name), *cells)
    return out


def features_demo_stage(store, out_root: Path, symbols: tuple[str, ...] = ("BTCUSDT",
                                                                          "ETHUSDT"),
                        timeframe: str = "1h", live_bars: int = 48) -> None:
    """The demo's feature stage: build, prove no look-ahead, check the live path, show
    the label balance, for each demo symbol the store holds."""
    from perptrader.features.incremental import incremental_check
    from perptrader.features.inputs import load_inputs
    from perptrader.features.lookahead import lookahead_check
    from perptrader.features.pipeline import build, write_parquet

    stored = {(s.instrument.symbol, s.timeframe) for s in store.inventory()
              if s.kind == "ohlcv" and s.instrument.market == "perp"}
    fs = get_set("default")
    for symbol in symbols:
        if (symbol, timeframe) not in stored:
            console.print(f"[yellow]{symbol} {timeframe}: no bars stored, skipped[/yellow]")
            continue
        frame, ctx = load_inputs(store, symbol, timeframe, fs)
        try:
            result = build(frame, fs, ctx)
        except ValueError as exc:  # too few bars for the warm-up
            console.print(f"[yellow]{symbol} {timeframe}: skipped: {exc}[/yellow]")
            continue
        if len(frame) <= live_bars + result.plan.warmup:
            console.print(f"[yellow]{symbol} {timeframe}: only {len(frame)} bars, too few "
                          "for the checks; skipped[/yellow]")
            continue
        path = out_root / f"{symbol}-{timeframe}.parquet"
        write_parquet(result, path)
        summary = {**result.as_json(), "out": str(path)}
        console.print(build_table(summary))
        with progress_bar(f"{symbol} look-ahead check") as advance:
            report = lookahead_check(frame, result.plan.families, ctx, progress=advance)
        console.print(lookahead_summary({"symbol": symbol, **report.as_json()}))
        with progress_bar(f"{symbol} live path") as advance:
            live = incremental_check(frame, result.plan.families, ctx, bars=live_bars,
                                     progress=advance)
        console.print(f"[green]Live path equals batch[/green] on the last {live.bars} bars"
                      if live.ok else
                      f"[red]Live path differs[/red]: {[d.column for d in live.differences]}")
        console.print(balance_table(summary["label_balance"]))
        if not (report.ok and live.ok):
            raise typer.Exit(1)
