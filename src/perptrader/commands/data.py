"""``perptrader data ...``: import, download, list, check, replay order books."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path

import pandas as pd
import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
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
from perptrader.core.errors import DataFormatError
from perptrader.core.instruments import MARKETS, Instrument
from perptrader.core.timeframes import is_timeframe
from perptrader.marketdata.dataset import DEFAULT_PLAUSIBILITY, Plausibility
from perptrader.marketdata.download import SeriesRequest
from perptrader.marketdata.importer import FileReport, expand_paths, import_file
from perptrader.marketdata.kinds import Kind
from perptrader.marketdata.sources.base import ImportHints
from perptrader.marketdata.sources.files import check_archive
from perptrader.marketdata.sources.generic_csv import parse_mapping
from perptrader.marketdata.store import MarketStore, SeriesInfo, open_store

app = typer.Typer(help="Import, download, list and check market data.", no_args_is_help=True)


def run_import(store: MarketStore, paths: list[Path], hints: ImportHints,
               mapping: dict[str, str] | None, show_progress: bool, *,
               on_conflict: str = "keep",
               bounds: Plausibility = DEFAULT_PLAUSIBILITY) -> list[FileReport]:
    """Import with a Rich progress bar (on stderr, so --json output stays clean)."""
    files = expand_paths(paths)
    reports: list[FileReport] = []
    with Progress(TextColumn("[bold]importing"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("{task.description}"),
                  console=err_console, disable=not show_progress, transient=True) as bar:
        task = bar.add_task("", total=len(files))
        for path in files:
            bar.update(task, description=path.name)
            reports.append(import_file(path, store, hints, mapping, on_conflict=on_conflict,
                                       bounds=bounds))
            bar.advance(task)
    return reports


def import_table(reports: list[FileReport]) -> Table:
    table = Table(title="Import", show_lines=False)
    for col in ("file", "status", "format", "inserted", "updated", "reason / series"):
        table.add_column(col, overflow="fold")
    for r in reports:
        status = "[green]imported" if r.status == "imported" else "[red]refused"
        detail = ", ".join(r.series) if r.status == "imported" else r.reason.split(": ", 1)[-1]
        if r.status == "imported" and r.conflicts.rows:
            detail += f"\n[yellow]{r.conflicts.describe()}[/yellow]"
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


class OnConflict(StrEnum):
    """conflicts.POLICIES as a CLI choice."""

    keep = "keep"
    replace = "replace"
    fail = "fail"


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
    on_conflict: OnConflict = typer.Option(
        OnConflict.keep, "--on-conflict",
        help="Rows already stored with other values: keep the stored ones (reported), "
             "replace them (implausible replacements are still refused), or fail the file. "
             "A bar saved while forming always gives way to the final one."),
    earliest: str = typer.Option("2009-01-03", help="Refuse rows timed before this (UTC)."),
    min_price: float = typer.Option(DEFAULT_PLAUSIBILITY.min_price,
                                    help="Refuse prices below this."),
    max_price: float = typer.Option(DEFAULT_PLAUSIBILITY.max_price,
                                    help="Refuse prices above this."),
    max_jump: float = typer.Option(
        DEFAULT_PLAUSIBILITY.max_jump,
        help="A replacement bar price further than this factor from all of its other OHLC "
             "values, or from all prices of the neighbouring bars, is implausible and not "
             "applied."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON report per file."),
) -> None:
    """Import market-data files; each file lands whole or is refused with its reason.

    Exits 1 when any file is refused (the others are still imported)."""
    cfg = settings()
    try:
        mapping = parse_mapping(map_) if map_ else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--map") from None
    bounds = _bounds(earliest, min_price, max_price, max_jump)
    _check_hints(symbol, timeframe, exchange, market)
    hints = ImportHints(symbol=symbol, timeframe=timeframe, kind=kind, exchange=exchange,
                        market=market)
    with store_session(cfg) as store:
        reports = run_import(store, paths, hints, mapping, show_progress=not as_json,
                             on_conflict=on_conflict.value, bounds=bounds)
    if as_json:
        print_json([r.as_json() for r in reports])
    else:
        console.print(import_table(reports))
        ok = sum(r.status == "imported" for r in reports)
        conflicts = sum(r.conflicts.rows for r in reports)
        console.print(f"{ok} imported, {len(reports) - ok} refused, "
                      f"{sum(r.rows_inserted for r in reports):,} rows inserted"
                      + (f", {conflicts:,} conflicting rows (see above)" if conflicts else ""))
        for r in reports:
            for example in r.conflicts.examples:
                console.print(f"[yellow]{Path(r.path).name}: conflict {example}[/yellow]",
                              highlight=False)
    if any(r.status == "refused" for r in reports):
        raise typer.Exit(1)


def _bounds(earliest: str, min_price: float, max_price: float,
            max_jump: float) -> Plausibility:
    try:
        first = pd.Timestamp(earliest)
    except (ValueError, TypeError):
        raise typer.BadParameter(f"not a date: {earliest!r}", param_hint="--earliest") from None
    if pd.isna(first):
        raise typer.BadParameter(f"not a date: {earliest!r}", param_hint="--earliest")
    first = first.tz_localize("UTC") if first.tzinfo is None else first.tz_convert("UTC")
    if not 0 < min_price < max_price:
        raise typer.BadParameter("need 0 < --min-price < --max-price", param_hint="--min-price")
    if not max_jump > 1:
        raise typer.BadParameter("must be above 1", param_hint="--max-jump")
    return Plausibility(earliest=first, min_price=min_price, max_price=max_price,
                        max_jump=max_jump)


def _check_hints(symbol: str | None, timeframe: str | None, exchange: str | None,
                 market: str | None) -> None:
    """Options that override what files say must be valid before any file is read."""
    if market is not None and market not in MARKETS:
        raise typer.BadParameter(f"must be one of {', '.join(MARKETS)}, got {market!r}",
                                 param_hint="--market")
    if symbol is not None:
        try:
            Instrument.parse(symbol, market)
        except ValueError:
            raise typer.BadParameter(
                f"not a symbol: {symbol!r} (letters and digits, e.g. BTCUSDT or BTC/USDT)",
                param_hint="--symbol") from None
    if timeframe is not None and not is_timeframe(timeframe):
        raise typer.BadParameter(f"not a timeframe: {timeframe!r} (e.g. 1m, 1h, 4h, 1d)",
                                 param_hint="--timeframe")
    if exchange is not None and not exchange.replace("_", "").isalnum():
        raise typer.BadParameter(f"not an exchange id: {exchange!r}", param_hint="--exchange")


@app.command("delete")
def delete(
    symbol: str = typer.Option(..., help="Symbol, e.g. BTCUSDT (binance:BTCUSDT, "
                                         "kraken:XBTEUR)."),
    kind: Kind = typer.Option(..., help="Kind of data."),
    timeframe: str | None = typer.Option(None, help="Bar timeframe (bars only), e.g. 1h."),
    market: str = typer.Option("perp", help="perp or spot."),
    start: str | None = typer.Option(None, help="First time to delete (UTC, inclusive)."),
    end: str | None = typer.Option(None, help="End (UTC, exclusive)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    as_json: bool = typer.Option(False, "--json", help="Print {rows_deleted: N} as JSON."),
) -> None:
    """Delete stored rows of one series (all of it, or [start, end)): undoes a bad import."""
    from perptrader.marketdata.kinds import BAR_KINDS

    cfg = settings()
    if market not in MARKETS:
        raise typer.BadParameter(f"must be one of {', '.join(MARKETS)}, got {market!r}",
                                 param_hint="--market")
    try:
        instrument = Instrument.parse(symbol, market)
    except ValueError:
        raise typer.BadParameter(f"not a symbol: {symbol!r}", param_hint="--symbol") from None
    if kind in BAR_KINDS:
        if timeframe is None or not is_timeframe(timeframe):
            raise typer.BadParameter(f"{kind.value} bars need a timeframe such as 1h, got "
                                     f"{timeframe!r}", param_hint="--timeframe")
    elif timeframe is not None:
        raise typer.BadParameter(f"{kind.value} has no timeframe", param_hint="--timeframe")
    lo, hi = _time_option(start, "--start"), _time_option(end, "--end")
    if lo is not None and hi is not None and lo >= hi:
        raise typer.BadParameter("--start must be before --end", param_hint="--start")
    span = (f" from {lo}" if lo is not None else "") + (f" until {hi}" if hi is not None else "")
    what = (f"{instrument.display} {instrument.market} {kind.value}"
            + (f" {timeframe}" if timeframe else "") + (span or " (all of it)"))
    with store_session(cfg) as store:
        rows = store.delete(kind, instrument, timeframe, lo, hi, dry_run=True)
        if rows and not yes and not typer.confirm(f"Delete {rows:,} rows of {what}?", err=True):
            err_console.print("Nothing deleted.")
            raise typer.Exit(1)
        removed = store.delete(kind, instrument, timeframe, lo, hi) if rows else 0
    if as_json:
        print_json({"series": what, "rows_deleted": removed})
    else:
        console.print(f"{removed:,} rows deleted ({what})", highlight=False)


def _time_option(text: str | None, hint: str) -> pd.Timestamp | None:
    if text is None:
        return None
    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError):
        ts = pd.NaT
    if pd.isna(ts):
        raise typer.BadParameter(f"not a time: {text!r} (e.g. 2025-01-01 or "
                                 "2025-01-01T08:00)", param_hint=hint)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """What is stored: symbol, kind, timeframe, first, last, rows, gaps."""
    cfg = settings()
    with store_session(cfg, read_only=True) as store:
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
    with store_session(cfg, read_only=True) as store:
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
        files = expand_paths(paths)
        if not files:
            raise DataFormatError("no capture files found", path=", ".join(map(str, paths)))
        reports = [_book_check_one(check_book_against_ticker, p) for p in files]
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


def _book_check_one(check: Callable[[Path], object], path: Path):
    """One capture, or a one-line error naming it (missing, unreadable, corrupt)."""
    if not path.is_file():
        raise DataFormatError("no such file", path=path)
    check_archive(path)
    try:
        return check(path)
    except (OSError, EOFError, UnicodeDecodeError, ValueError, KeyError) as exc:
        raise DataFormatError(f"cannot read the capture ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})",
                              path=path) from None


@app.command("download")
def download(
    exchange: str = typer.Option("binanceusdm", help="Venue: binanceusdm or bybit."),
    symbol: list[str] = typer.Option(..., "--symbol", help="e.g. BTCUSDT (repeatable)."),
    timeframe: str = typer.Option("1h", help="Bar timeframe, e.g. 1h."),
    start: str = typer.Option(..., help="First time to fetch (UTC), e.g. 2024-01-01."),
    end: str | None = typer.Option(None, help="End (exclusive, UTC); default now."),
    kinds: str = typer.Option("ohlcv,mark,funding",
                              help="Comma list of ohlcv,mark,index,funding,oi,ls_ratio,"
                                   "taker_ratio."),
    period: str | None = typer.Option(None, help="Period of oi/ls_ratio/taker_ratio "
                                                 "(default: the timeframe)."),
    exchange_url: str | None = typer.Option(
        None, "--exchange-url", help="Base URL of the venue's REST API, e.g. the fake "
                                     "exchange http://127.0.0.1:8765 (setting exchange.url)."),
    retries: int = typer.Option(5, help="Attempts per call on time-outs and 5xx."),
    backoff: float = typer.Option(0.5, help="First retry delay in seconds (doubles)."),
    timeout: float = typer.Option(10.0, help="Seconds before a call times out."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON report per series."),
) -> None:
    """Backfill from an exchange's REST API: paginated, resumable, idempotent."""
    from perptrader.marketdata.download import download as run_download
    from perptrader.venues.download_setup import exchange_url as pick_url
    from perptrader.venues.download_setup import plan_download

    for name, value in (("--timeout", timeout), ("--backoff", backoff)):
        if not (math.isfinite(value) and value > 0):
            raise typer.BadParameter(f"must be a number of seconds > 0, got {value}",
                                     param_hint=name)
    if retries < 0:
        raise typer.BadParameter(f"must be >= 0, got {retries}", param_hint="--retries")
    cfg = settings()
    reports = []
    with user_errors():
        plan = plan_download(exchange=exchange, symbols=symbol, timeframe=timeframe,
                             kinds=kinds, start=start, end=end, period=period,
                             url=pick_url(exchange_url, cfg), retries=retries,
                             backoff_s=backoff, timeout_s=timeout)
        with open_store(cfg) as store, _download_progress(not as_json) as progress:
            reports = run_download(plan.source, store, plan.requests, plan.start, plan.end,
                                   on_progress=progress, on_series=reports.append)
    if as_json:
        print_json([r.as_json() for r in reports])
        return
    table = Table(title="Download")
    for col in ("series", "status", "pages", "inserted", "updated", "first", "last"):
        table.add_column(col)
    for r in reports:
        table.add_row(r.label, r.status, str(r.pages), f"{r.rows_inserted:,}",
                      f"{r.rows_updated:,}", r.first or "-", r.last or "-")
    console.print(table)


@contextlib.contextmanager
def _download_progress(show: bool) -> Iterator[Callable[..., None]]:
    """A Rich progress bar per series (on stderr), advanced in time covered."""
    tasks: dict[str, TaskID] = {}
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                  TextColumn("{task.percentage:>5.1f}%"), TimeElapsedColumn(),
                  console=err_console, disable=not show) as bar:

        def update(req: SeriesRequest, start: pd.Timestamp, at: pd.Timestamp,
                   end: pd.Timestamp) -> None:
            if req.label not in tasks:
                tasks[req.label] = bar.add_task(req.label, total=(end - start).total_seconds())
            bar.update(tasks[req.label], completed=min(at, end).timestamp() - start.timestamp())

        yield update


@app.command("collect")
def collect(
    exchange: str = typer.Option("binanceusdm", help="Venue: binanceusdm or bybit."),
    symbol: list[str] = typer.Option(..., "--symbol", help="e.g. BTCUSDT (repeatable)."),
    streams: str = typer.Option(
        "klines,trades,book,mark,liquidations",
        help="Comma list of klines[:TF],trades,book,mark,liquidations,oi (mark: mark-price "
             "bars and funding settlements; oi: open interest polled over REST)."),
    timeframe: str | None = typer.Option(None, help="Bar timeframe of klines and mark bars "
                                                    "(default: klines:TF, else 1m)."),
    exchange_url: str | None = typer.Option(
        None, "--exchange-url", help="Base URL of the venue (setting exchange.url)."),
    duration: float | None = typer.Option(None, help="Seconds to run (default: until "
                                                     "Ctrl-C / SIGTERM)."),
    book_depth: int = typer.Option(20, help="Book levels per stored snapshot."),
    book_interval: float = typer.Option(1.0, help="Seconds (exchange time) between stored "
                                                  "book snapshots."),
    flush_interval: float = typer.Option(2.0, help="Seconds between batched writes."),
    oi_interval: float = typer.Option(60.0, help="Seconds between open-interest polls."),
    status_interval: float = typer.Option(10.0, help="Seconds between status lines."),
    as_json: bool = typer.Option(False, "--json", help="Status lines and the final report "
                                                       "as JSON (one object per line)."),
) -> None:
    """Collect live streams into the store; reconnects, and backfills what a dropped
    connection or a restart missed over REST. Status lines go to stderr (--json: stdout)."""
    import json

    from perptrader.venues.collector import (
        BatchStore,
        CollectorOptions,
        parse_streams,
        status_line,
    )
    from perptrader.venues.collector import collect as run_collect
    from perptrader.venues.download_setup import exchange_url as pick_url

    cfg = settings()

    def show(status: dict[str, object]) -> None:
        if as_json:
            print(json.dumps({"status": status}, default=str), flush=True)
        else:
            err_console.print(status_line(status), highlight=False)

    with user_errors():
        from perptrader.venues.ccxt_client import check_venue

        check_venue(exchange)
        chosen, tf = parse_streams(streams, timeframe)
        options = CollectorOptions(streams=chosen, timeframe=tf, book_depth=book_depth,
                                   book_interval_s=book_interval,
                                   flush_interval_s=flush_interval, oi_interval_s=oi_interval,
                                   status_interval_s=status_interval, on_status=show,
                                   url=pick_url(exchange_url, cfg))
        url = cfg.store.url
        if not url or url.startswith("duckdb"):
            # embedded store: opened for each batch only, so readers are not locked out
            open_store(cfg).close()  # migrations, once
            collector = run_collect(exchange, symbol,
                                    BatchStore(lambda: open_store(cfg, migrate=False)),
                                    options, duration)
        else:
            with open_store(cfg) as store:
                collector = run_collect(exchange, symbol, store, options, duration)
    final = collector.status()
    if as_json:
        print(json.dumps({"final": final}, default=str), flush=True)
        return
    table = Table(title="Collected")
    for col in ("stream", "messages", "rows written", "backfilled", "reconnects",
                "last error"):
        table.add_column(col)
    for name, st in final["streams"].items():
        table.add_row(name, f"{st['messages']:,}", f"{st['rows_written']:,}",
                      f"{st['backfilled_rows']:,}", str(st["reconnects"]),
                      st["last_error"] or "-")
    console.print(table)
    console.print(status_line(final), highlight=False)
