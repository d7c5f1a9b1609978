"""``perptrader strategies ...``: the policies every command accepts, and a look-ahead
check for any of them (the shipped ones and those a user writes)."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from perptrader.commands.common import console, err_console, print_json, settings, store_session
from perptrader.core.errors import PerptraderError

app = typer.Typer(help="Policies: list them, check them for look-ahead.", no_args_is_help=True)


def policy_items() -> list[dict[str, Any]]:
    """Every name ``--strategy`` accepts: the registry's, then the prefixes."""
    from perptrader.strategies import REGISTRY, prefixes, strategy_params

    items = [{"name": name, "description": desc, "params": strategy_params(name)}
             for name, (_, desc) in REGISTRY.items()]
    items += [{"name": f"{prefix}NAME", "description": desc, "params": {}}
              for prefix, desc in prefixes().items()]
    return items


def print_policies(as_json: bool) -> None:
    items = policy_items()
    if as_json:
        print_json(items)
        return
    table = Table(title="Policies")
    for col in ("name", "description", "parameters (defaults)"):
        table.add_column(col, overflow="fold")
    for it in items:
        table.add_row(escape(it["name"]), escape(it["description"]),
                      ", ".join(f"{k}={v}" for k, v in it["params"].items()) or "-")
    console.print(table)


@app.command("list")
def list_policies(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The policies `--strategy` accepts, with their default parameters."""
    print_policies(as_json)


def parse_params(items: list[str]) -> dict[str, str]:
    """``["fast=10", "slow=30"]`` -> ``{"fast": "10", "slow": "30"}`` (strings: each policy
    coerces its own parameters)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected key=value, got {item!r}", param_hint="--param")
        out[key.strip()] = value.strip()
    return out


@app.command("lookahead-check")
def lookahead_check_cmd(
    name: str = typer.Argument(..., help="A policy name (`strategies list`)."),
    param: list[str] = typer.Option([], "--param", help="Policy parameter key=value."),
    symbol: str = typer.Option("BTCUSDT", help="Symbol whose stored bars are used."),
    timeframe: str = typer.Option("1h", help="Bar timeframe."),
    start: str | None = typer.Option(None, help="First bar (UTC)."),
    end: str | None = typer.Option(None, help="End (exclusive, UTC)."),
    cuts: int = typer.Option(500, min=1, help="Random cuts on frames longer than 600 bars "
                             "(shorter frames get every cut)."),
    seed: int = typer.Option(0, help="Seed of the cuts and the changed futures."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Change every bar after a cut and require the targets up to the cut to stay the
    same; exit 1 naming the first bar whose target moved."""
    from perptrader.marketdata.loader import load
    from perptrader.strategies import get_strategy
    from perptrader.strategies.lookahead import lookahead_check

    cfg = settings()
    try:
        policy = get_strategy(name, parse_params(param))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="NAME/--param") from None
    with store_session(cfg) as store:
        try:
            frame = load(symbol, timeframe, start, end, store=store)
        except ValueError as exc:
            raise PerptraderError(str(exc)) from None
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                      MofNCompleteColumn(), TimeElapsedColumn(), console=err_console,
                      transient=True, disable=as_json) as bar:
            task = bar.add_task(f"{policy.name}: cuts", total=None)
            try:
                report = lookahead_check(policy, frame, cuts=cuts, seed=seed, progress=lambda
                                         done, total: bar.update(task, completed=done,
                                                                 total=total))
            except ValueError as exc:
                raise PerptraderError(str(exc)) from None
    if as_json:
        print_json(report.as_json())
    elif report.ok:
        console.print(f"[green]no look-ahead[/green]: {policy.name} on {symbol} {timeframe}, "
                      f"{report.rows:,} bars, {report.cuts} cuts: every target before a "
                      f"cut stayed the same")
    else:
        console.print(f"[red]LOOK-AHEAD[/red]: {policy.name}: the target of bar "
                      f"{report.first_moved_bar} moved ({report.before} -> {report.after}) "
                      f"when only bars after {report.cut_at} changed; "
                      f"{report.failing_cuts} of {report.cuts} cuts failed")
    if not report.ok:
        raise typer.Exit(1)
