"""``perptrader backtest ...``: run a strategy beside buy-and-hold, compare runs, list
strategies; and the backtest stage of ``perptrader demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from perptrader.commands.common import (
    console,
    err_console,
    has_perp_bars,
    log_warnings,
    print_json,
    settings,
    store_session,
    user_errors,
    writable_folder,
)
from perptrader.commands.strategies import parse_params
from perptrader.core.errors import PerptraderError
from perptrader.marketdata.store import MarketStore

app = typer.Typer(help="Backtest strategies on stored data (costs and funding always on).",
                  no_args_is_help=True)

#: columns of the run / compare tables: (result.json key, header, format)
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("total_return", "return", "pct"), ("annual_return", "CAGR", "pct"),
    ("sharpe", "Sharpe", "num"), ("sortino", "Sortino", "num"),
    ("max_drawdown", "max DD", "pct"), ("win_rate", "win rate", "pct"),
    ("trades", "trades", "int"), ("time_in_market", "in market", "pct"),
    ("fees_paid", "fees", "num"), ("funding_paid", "funding", "num"),
    ("liquidations", "liqs", "int"),
)


def _fmt(value: Any, kind: str) -> str:
    from perptrader.backtest.report import fmt

    return fmt(value, kind)


def results_table(rows: list[dict[str, Any]], title: str) -> Table:
    """One row per result.json-like dict (keys: label + COLUMNS keys + dsr)."""
    table = Table(title=title)
    table.add_column("run", overflow="fold")
    for _, header, _ in COLUMNS:
        table.add_column(header, justify="right")
    table.add_column("DSR", justify="right")
    for row in rows:
        dsr = (row.get("deflated_sharpe") or {}).get("dsr")
        style = "dim" if row.get("strategy") == "buy_and_hold" else None
        table.add_row(str(row["label"]), *(_fmt(row.get(k), f) for k, _, f in COLUMNS),
                      _fmt(dsr, "num") if dsr is not None else "–", style=style)
    return table


def _benchmark_row(result: dict[str, Any], label: str) -> dict[str, Any]:
    return {**result["benchmark"], "label": label, "strategy": "buy_and_hold"}


def _benchmark_key(result: dict[str, Any]) -> tuple:
    """Runs with the same data and costs share one buy-and-hold row."""
    data, cfg = result.get("data", {}), result.get("config", {})
    return (result.get("symbol"), result.get("timeframe"), data.get("first_bar"),
            data.get("last_bar"), tuple(sorted(cfg.items())))


def compare_rows(results: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per run, then one buy-and-hold row per distinct data/cost setup."""
    rows = [{**res, "label": label} for label, res in results]
    seen: dict[tuple, str] = {}
    for _, res in results:
        key = _benchmark_key(res)
        if key not in seen:
            seen[key] = f"buy_and_hold ({res.get('symbol')} {res.get('timeframe')})"
    if len(seen) == 1:
        seen = {k: "buy_and_hold" for k in seen}
    # a buy_and_hold run on the same data and costs already is the benchmark row
    done = {_benchmark_key(res) for _, res in results if res.get("strategy") == "buy_and_hold"}
    for _, res in results:
        key = _benchmark_key(res)
        if key not in done:
            done.add(key)
            rows.append(_benchmark_row(res, seen[key]))
    return rows


def _compare_json(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keep = ("label", "strategy", "symbol", "timeframe", "params")
    out = []
    for row in rows:
        item = {k: row.get(k) for k in keep if k in row}
        item.update({k: row.get(k) for k, _, _ in COLUMNS})
        item["annual_return"] = row.get("annual_return")
        item["dsr"] = (row.get("deflated_sharpe") or {}).get("dsr")
        out.append(item)
    return out


def _progress(enabled: bool) -> Progress:
    return Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"),
                    TimeElapsedColumn(), console=err_console, disable=not enabled,
                    transient=True)


@app.command("run")
def run(
    symbol: list[str] = typer.Option(..., "--symbol", help="e.g. BTCUSDT; repeat for a "
                                     "portfolio in one cross-margin account (equal weights)."),
    timeframe: str = typer.Option("1h", help="Bar timeframe, e.g. 1h."),
    strategy: str = typer.Option("sma_cross", help="A name from `backtest list-strategies`."),
    param: list[str] = typer.Option([], "--param", help="Strategy parameter key=value "
                                    "(repeatable), e.g. --param fast=10."),
    start: str | None = typer.Option(None, help="First bar open time (UTC), e.g. 2024-01-01."),
    end: str | None = typer.Option(None, help="End (exclusive, UTC)."),
    leverage: float = typer.Option(1.0, help="Exposure multiple of the unit targets."),
    fee_maker: float = typer.Option(0.0002, help="Maker fee (fraction of notional)."),
    fee_taker: float = typer.Option(0.0005, help="Taker fee (fraction of notional)."),
    slippage: float = typer.Option(1.0, help="Slippage in basis points."),
    initial_cash: float = typer.Option(10_000.0, help="Starting account balance."),
    trials: int = typer.Option(1, min=1, help="Variants tried before this one (for the "
                               "deflated Sharpe ratio)."),
    out: Path = typer.Option(..., "--out", help="Folder for result.json, trades.csv, "
                             "equity.parquet, report.html."),
    as_json: bool = typer.Option(False, "--json", help="Print result.json to stdout."),
    tiers: Path | None = typer.Option(None, "--tiers", help="Margin brackets JSON (this "
                                      "package's format, Binance's leverageBracket answer or "
                                      "ccxt's leverage tiers) used before the published ones."),
    strict_tiers: bool = typer.Option(False, "--strict-tiers", help="Refuse a symbol without "
                                      "published or --tiers brackets instead of using the "
                                      "conservative default ladder (with a warning)."),
) -> None:
    """Backtest a strategy beside buy-and-hold and write its result files and report."""
    from perptrader.backtest.artifacts import write_run
    from perptrader.backtest.engine import run_backtest, run_portfolio
    from perptrader.sim import CostModel
    from perptrader.sim.tiers import load_tiers_file, tiers_scope
    from perptrader.strategies import get_strategy

    cfg = settings()
    with user_errors():
        table = load_tiers_file(tiers) if tiers is not None else None
    writable_folder(out, "--out")
    params = parse_params(param)
    try:
        strat = get_strategy(strategy, params)
        costs = CostModel(maker_fee=fee_maker, taker_fee=fee_taker, slippage_bps=slippage)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--strategy/--param") from None
    symbols = list(dict.fromkeys(symbol))
    label = "+".join(symbols)
    with store_session(cfg, read_only=True) as store, _progress(not as_json) as bar, \
            tiers_scope(table, strict=strict_tiers):
        bar.add_task(f"{label} {timeframe} {strat.name}: loading and simulating")
        try:
            if len(symbols) == 1:
                res = run_backtest(symbols[0], timeframe, strat, start, end, costs, leverage,
                                   store=store, initial_cash=initial_cash, n_trials=trials)
            else:
                res = run_portfolio(symbols, timeframe, strat, start, end, costs, leverage,
                                    store=store, initial_cash=initial_cash, n_trials=trials)
        except ValueError as exc:  # a bad timeframe, date or setting
            raise PerptraderError(str(exc)) from None
        bar.add_task(f"{label}: writing {out}")
        write_run(res, out)
    js = res.as_json()
    log_warnings(res.warnings, command="backtest run", symbol=res.symbol,
                 strategy=res.strategy.name, out=str(out))
    if as_json:
        print_json(js)
        return
    params = ", ".join(f"{k}={v}" for k, v in js["params"].items())
    rows = [{**js, "label": f"{res.strategy.name} ({params})" if params else res.strategy.name},
            _benchmark_row(js, "buy_and_hold")]
    rng = js["data"]
    console.print(results_table(rows, f"{res.symbol} {timeframe} · {rng['first_bar']} → "
                                      f"{rng['end']} · {rng['bars']:,} bars"))
    for w in res.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")
    console.print(f"wrote {out}/ (result.json, trades.csv, equity.parquet, report.html)")


@app.command("compare")
def compare(
    runs: list[Path] = typer.Argument(..., help="Folders written by `backtest run --out`."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON rows."),
) -> None:
    """One table of several runs plus their buy-and-hold benchmark."""
    from perptrader.backtest.artifacts import read_result

    settings()
    with user_errors():
        results = [(str(p), read_result(p)) for p in runs]
    rows = compare_rows(results)
    pbo = runs_pbo(runs, results)
    if as_json:
        print_json({"runs": _compare_json(rows), "pbo": pbo})
    else:
        console.print(results_table(rows, "Backtests"))
        console.print(pbo_line(pbo))


def runs_pbo(runs: list[Path], results: list[tuple[str, dict[str, Any]]]) -> dict | None:
    """PBO (CSCV) across runs on the same bars, from their equity.parquet files."""
    import pandas as pd

    from perptrader.backtest.artifacts import EQUITY_FILE
    from perptrader.backtest.overfitting import pbo_of_equity_curves

    if len({_benchmark_key(res)[:4] for _, res in results}) != 1:
        return None  # different symbols or spans: not variants of one selection
    paths = [Path(p) / EQUITY_FILE for p in runs]
    if not all(p.is_file() for p in paths):
        return None
    curves = [pd.read_parquet(p, columns=["equity"])["equity"].to_numpy() for p in paths]
    cash = [float(res.get("initial_cash", 10_000.0)) for _, res in results]
    return _pbo_json(pbo_of_equity_curves(curves, cash))


def _pbo_json(result) -> dict | None:
    if result is None:
        return None
    return {"pbo": result.pbo, "n_strategies": result.n_strategies,
            "n_blocks": result.n_blocks, "n_splits": result.n_splits}


def pbo_line(pbo: dict | None) -> str:
    if pbo is None:
        return ("PBO: not computed (needs two or more runs on the same bars with their "
                "equity files)")
    return (f"Probability of backtest overfitting (CSCV, {pbo['n_strategies']} runs, "
            f"{pbo['n_blocks']} blocks, {pbo['n_splits']:,} splits): {pbo['pbo']:.2f}: "
            "how often the in-sample best run is at or below the median out of sample.")


@app.command("list-strategies")
def list_strategies(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The strategies `backtest run --strategy` accepts (same as `strategies list`)."""
    from perptrader.commands.strategies import print_policies

    print_policies(as_json)


def backtest_demo_stage(store: MarketStore, console: Console, out_root: Path) -> None:
    """Run the four baselines on all stored BTCUSDT 1h bars, write each run under
    ``out_root/<strategy>/`` and print the comparison (for ``perptrader demo``).
    Says so and returns when no BTCUSDT 1h bars are stored."""
    from perptrader.backtest.artifacts import write_run
    from perptrader.backtest.engine import run_on_frame
    from perptrader.marketdata.loader import funding_events, load
    from perptrader.strategies import BASELINES, get_strategy

    symbol, timeframe = "BTCUSDT", "1h"
    if not has_perp_bars(store, symbol, timeframe):
        console.print(f"[yellow]No {symbol} perpetual bars stored: backtests skipped.[/yellow]")
        return
    frame = load(symbol, timeframe, store=store)
    events = funding_events(store, symbol, frame, timeframe)
    console.print(f"Backtesting {len(BASELINES)} baselines on {symbol} {timeframe}: "
                  f"{frame.index[0]} → {frame.index[-1]} ({len(frame):,} bars)")
    results, runs = [], []
    for name in BASELINES:
        res = run_on_frame(frame, get_strategy(name), symbol=symbol, timeframe=timeframe,
                           funding=events, n_trials=len(BASELINES))
        runs.append(res)
        folder = Path(out_root) / name
        write_run(res, folder)
        results.append((name, res.as_json()))
        console.print(f"  {name}: report {folder / 'report.html'}")
    console.print(results_table(compare_rows(results), f"Baselines · {symbol} {timeframe}"))
    from perptrader.backtest.overfitting import pbo_of_equity_curves

    console.print(pbo_line(_pbo_json(pbo_of_equity_curves(
        [r.sim.bars["equity"].to_numpy() for r in runs], [r.config.initial_cash for r in runs]))))


__all__ = ["app", "backtest_demo_stage", "compare_rows", "results_table"]
