"""``perptrader data ...``: import, list, check, replay order books."""

from __future__ import annotations

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
from perptrader.marketdata.importer import FileReport, expand_paths, import_file
from perptrader.marketdata.kinds import Kind
from perptrader.marketdata.sources.base import ImportHints
from perptrader.marketdata.sources.generic_csv import parse_mapping
from perptrader.marketdata.store import MarketStore, SeriesInfo

app = typer.Typer(help="Import, list and check market data.", no_args_is_help=True)


def run_import(store: MarketStore, paths: list[Path], hints: ImportHints,
               mapping: dict[str, str] | None, show_progress: bool) -> list[FileReport]:
    """Import with a Rich progress bar (on stderr, so --json output stays clean)."""
    files = expand_paths(paths)
    reports: list[FileReport] = []
    with Progress(TextColumn("[bold]importing"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("{task.description}"),
                  console=err_console, disable=not show_progress, transient=True) as bar:
        task = bar.add_task("", total=len(files))
        for path in files:
            bar.update(task, description=path.name)
            reports.append(import_file(path, store, hints, mapping))
            bar.advance(task)
    return reports


def import_table(reports: list[FileReport]) -> Table:
    table = Table(title="Import", show_lines=False)
    for col in ("file", "status", "format", "inserted", "updated", "reason / series"):
        table.add_column(col, overflow="fold")
    for r in reports:
        status = "[green]imported" if r.status == "imported" else "[red]refused"
        detail = ", ".join(r.series) if r.status == "imported" else r.reason.split(": ", 1)[-1]
        table.add_row(Path(r.path).name, status, r.format, f"{r.rows_inserted:,}",
                      f"{r.rows_updated:,}", detail)
    return table


def inventory_table(series: list[SeriesInfo]) -> Table:
    table = Table(title="Stored market data")
    for col in ("symbol", "kind", "timeframe", "first", "last", "rows", "gaps"):
        table.add_column(col, justify="right" if col in ("rows", "gaps") else "left")
    for s in series:
        js = s.as_json()
        table.add_row(str(js["symbol"]), str(js["kind"]), js["timeframe"] or "-",
                      str(js["first"]), str(js["last"]), f"{s.rows:,}",
                      "-" if s.gaps is None else str(s.gaps))
    return table


@app.command("import")
def import_(
    paths: list[Path] = typer.Argument(..., help="Files or folders (searched recursively)."),
    symbol: str | None = typer.Option(None, help="Override the symbol, e.g. BTCUSDT."),
    timeframe: str | None = typer.Option(None, help="Override the bar timeframe, e.g. 1h."),
    kind: Kind | None = typer.Option(None, help="Override the kind of data."),
    exchange: str | None = typer.Option(None, help="Override the exchange (default binance)."),
    market: str | None = typer.Option(None, help="perp or spot."),
    map_: str | None = typer.Option(None, "--map",
                                    help="CSV column mapping canonical=column,... (with --kind)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON report per file."),
) -> None:
    """Import market-data files; each file lands whole or is refused with its reason."""
    cfg = settings()
    try:
        mapping = parse_mapping(map_) if map_ else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--map") from None
    hints = ImportHints(symbol=symbol, timeframe=timeframe, kind=kind, exchange=exchange,
                        market=market)
    with store_session(cfg) as store:
        reports = run_import(store, paths, hints, mapping, show_progress=not as_json)
    if as_json:
        print_json([r.as_json() for r in reports])
    else:
        console.print(import_table(reports))
        ok = sum(r.status == "imported" for r in reports)
        console.print(f"{ok} imported, {len(reports) - ok} refused, "
                      f"{sum(r.rows_inserted for r in reports):,} rows inserted")
    if reports and all(r.status == "refused" for r in reports):
        raise typer.Exit(1)


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """What is stored: symbol, kind, timeframe, first, last, rows, gaps."""
    cfg = settings()
    with store_session(cfg) as store:
        series = store.inventory()
    if as_json:
        print_json([s.as_json() for s in series])
    elif not series:
        console.print("The store is empty. Import files with: perptrader data import PATH")
    else:
        console.print(inventory_table(series))


@app.command("check")
def check(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Quality checks over everything stored; exits 1 when an error-level issue exists."""
    from perptrader.marketdata.quality import check_store

    cfg = settings()
    with store_session(cfg) as store:
        report = check_store(store)
    if as_json:
        print_json(report.as_json())
    else:
        console.print(report.as_table())
    if report.has_errors:
        raise typer.Exit(1)


@app.command("book-check")
def book_check(
    paths: list[Path] = typer.Argument(..., help="Binance depth captures (snapshot + diffs + "
                                                  "bookTicker), e.g. hftbacktest .gz files."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Rebuild the L2 book from snapshot + diffs and compare it with bookTicker messages."""
    from perptrader.marketdata.bookcheck import check_book_against_ticker

    settings()
    with user_errors():
        reports = [check_book_against_ticker(p) for p in expand_paths(paths)]
    if as_json:
        print_json([r.as_dict() for r in reports])
        return
    table = Table(title="Rebuilt book vs bookTicker, compared at the same update id")
    for col in ("file", "tickers", "checks", "agree", "rate", "not comparable", "gaps",
                "resyncs"):
        table.add_column(col)
    for r in reports:
        rate = r.agreement_rate
        table.add_row(Path(r.path).name, str(r.tickers), str(r.checks), str(r.agreements),
                      f"{rate:.2%}" if rate is not None else "-", str(r.unmatched_total),
                      str(r.gaps), str(r.resyncs))
    console.print(table)
    for r in reports:
        for note in r.notes:
            console.print(f"[dim]{Path(r.path).name}: {note}[/dim]")
    if any(r.mismatches_total for r in reports):
        raise typer.Exit(1)
