"""``perptrader trade ...``: paper trading on the shared accounting core, its journal,
and the kill switch.

Everything a run does is in the trading database (SQLite under the data dir, or
PostgreSQL): ``trade status|orders|fills|positions`` read it, from any process, while the
run goes on; ``trade stop|resume`` write a command the running engine applies at its
next bar (and a restarted engine applies on start).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import typer
from rich.live import Live
from rich.table import Table

from perptrader.commands.audit import trading_db_url
from perptrader.commands.common import console, err_console, print_json, settings, user_errors
from perptrader.commands.strategies import parse_params
from perptrader.core.errors import PerptraderError
from perptrader.trading.control import resolve_run
from perptrader.trading.status import run_status

app = typer.Typer(help="Paper and live trading: run a policy on the shared accounting core "
                       "or a venue, inspect its journal, pull the kill switch.",
                  no_args_is_help=True)

DB_HELP = ("Trading DB: postgresql://..., sqlite:///path or a path (default: the "
           "trading.db_url setting, else <data_dir>/trading.sqlite).")


#: bars per transaction of an as-fast-as-possible replay (a paced run commits every bar)
REPLAY_COMMIT_BARS = 64


@contextmanager
def trading_db(option: str | None, *, create: bool, synchronous: str = "FULL"
               ) -> Iterator[Any]:
    from perptrader.persistence import open_trading_db

    url, data_dir = trading_db_url(option)
    with user_errors(), open_trading_db(url, data_dir, create=create,
                                        synchronous=synchronous) as db:
        yield db


@app.command("paper")
def paper(
    strategy: str = typer.Option(..., "--strategy", help="A policy (`strategies list`)."),
    symbol: list[str] = typer.Option(..., "--symbol", help="e.g. BTCUSDT; repeat for more "
                                     "(each trades its share of the cash)."),
    timeframe: str = typer.Option("1h", help="Bar timeframe."),
    replay: str | None = typer.Option(None, "--replay", help="START..END of stored bars to "
                                      "replay, e.g. 2025-01-01..2025-03-01 (end exclusive)."),
    speed: float | None = typer.Option(None, help="Replay speed in bars per second "
                                       "(default: as fast as possible)."),
    param: list[str] = typer.Option([], "--param", help="Policy parameter key=value."),
    leverage: float = typer.Option(1.0, help="Exposure multiple of the policy's targets."),
    initial_cash: float = typer.Option(10_000.0, help="Starting balance (split over symbols)."),
    fee_maker: float = typer.Option(0.0002, help="Maker fee (fraction of notional)."),
    fee_taker: float = typer.Option(0.0005, help="Taker fee (fraction of notional)."),
    slippage: float = typer.Option(1.0, help="Slippage in basis points."),
    risk: list[str] = typer.Option([], "--risk", help="Risk limit key=value, e.g. "
                                   "max_daily_loss=0.1 (see docs/trading.md)."),
    history_bars: int = typer.Option(0, min=0, help="Bars before the replay start handed to "
                                     "the policy (0 = none, as `backtest run`)."),
    close_at_end: bool = typer.Option(True, help="Close every position at the open of the "
                                      "replay's last bar, as a backtest does."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    tiers: str | None = typer.Option(None, "--tiers", help="Margin brackets JSON for symbols "
                                      "without published ones (docs/backtest-assumptions.md)."),
    as_json: bool = typer.Option(False, "--json", help="Print the final status as JSON."),
) -> None:
    """Paper-trade a policy. The same command again resumes the same run (after a crash
    or a kill -9) from its last committed bar."""
    from perptrader.commands.common import store_session
    from perptrader.strategies import get_strategy
    from perptrader.trading.engine import Engine
    from perptrader.trading.feeds import ReplayFeed, parse_window
    from perptrader.trading.risk import RiskLimits
    from perptrader.trading.spec import RunSpec

    cfg = settings()
    if replay is None:
        err_console.print("[red]Error:[/red] paper trading needs --replay START..END for now; "
                          "the live feed arrives with the exchange connectivity")
        raise typer.Exit(2)
    with user_errors():
        start, end = parse_window(replay)
        spec = RunSpec(mode="paper", strategy=strategy, symbols=tuple(dict.fromkeys(symbol)),
                       timeframe=timeframe, params=parse_params(param), leverage=leverage,
                       initial_cash=initial_cash, maker_fee=fee_maker, taker_fee=fee_taker,
                       slippage_bps=slippage, risk=tuple(risk),
                       replay=(start.isoformat(), end.isoformat()), history_bars=history_bars,
                       close_at_end=close_at_end, speed=speed,
                       tiers=str(Path(tiers).resolve()) if tiers else None)
        spec.sim_config()  # a bad --tiers file is refused before anything is written
        RiskLimits.from_pairs(spec.risk)  # refuse bad limits before anything is written
        try:
            policy = get_strategy(strategy, spec.params)
            # a registered model or agent is looked up now, before anything is written
            _ = policy.params, policy.warmup_bars
        except ValueError as exc:
            raise PerptraderError(str(exc)) from None
    with store_session(cfg) as store:
        feed = ReplayFeed(store, spec.symbols, timeframe, start, end, speed=speed,
                          history_bars=history_bars)
        # paper trading acts on nothing outside the journal: a commit lost to a power cut
        # is redone from the replay, so SQLite need not fsync every commit (live does)
        with trading_db(db, create=True, synchronous="NORMAL") as journal, user_errors():
            engine = Engine.open(journal, spec, policy, feed,
                                 commit_every=1 if speed else REPLAY_COMMIT_BARS)
            total = feed.bars_in_window()
            with _live_view(engine, total, enabled=not as_json) as on_bar:
                engine.run(on_bar=on_bar)
            status = run_status(journal, engine.run_id)
    if as_json:
        print_json(status)
    else:
        console.print(status_table(status))
        for line in feed.warnings:
            console.print(f"[yellow]warning:[/yellow] {line}")


@contextmanager
def _live_view(engine: Any, total: int, *, enabled: bool) -> Iterator[Any]:
    """A Rich view refreshed a few times a second (not on every bar of a fast replay)."""
    if not enabled:
        yield None
        return
    initial = engine.spec.initial_cash
    shown = {"t": 0.0, "bars": 0, "orders": 0, "fills": 0, "denied": 0}

    def table(summary: Any) -> Table:
        t = Table(title=f"{engine.run_id} · {engine.policy.name}", show_header=False)
        t.add_row("bar", f"{summary.ts:%Y-%m-%d %H:%M} ({shown['bars']:,}/{total:,})")
        t.add_row("equity", f"{summary.equity:,.2f} ({summary.equity / initial - 1:+.2%})")
        for s, q in summary.positions.items():
            t.add_row(s, f"position {q:+.6g} · target {summary.targets.get(s, math.nan):+g}")
        t.add_row("orders / fills / denied",
                  f"{shown['orders']} / {shown['fills']} / {shown['denied']}")
        t.add_row("risk", str(engine.risk.trading_state.value))
        return t

    with Live(console=err_console, refresh_per_second=4, transient=True) as live:
        def on_bar(summary: Any) -> None:
            shown["bars"] += 1
            shown["orders"] += len(summary.orders)
            shown["fills"] += summary.fills
            shown["denied"] += len(summary.denied)
            now = time.monotonic()
            if now - shown["t"] >= 0.25:
                shown["t"] = now
                live.update(table(summary))
        yield on_bar


def _iso(ms: Any) -> str | None:
    if ms is None:
        return None
    return pd.Timestamp(int(ms), unit="ms", tz="UTC").isoformat()


def status_table(status: dict[str, Any]) -> Table:
    t = Table(title=f"{status['run_id']} ({status['status']})", show_header=False)
    t.add_row("policy", f"{status['strategy']} {status['params'] or ''}")
    t.add_row("symbols", f"{', '.join(status['symbols'])} {status['timeframe']} "
                         f"x{status['leverage']}")
    t.add_row("bars", f"{status['bars']:,}: {status['first_bar']} → {status['last_bar']}")
    t.add_row("equity", f"{status['equity']:,.2f} ({status['total_return']:+.2%})")
    if status["final_equity"] is not None:
        t.add_row("final equity", f"{status['final_equity']:,.2f}")
    t.add_row("fees / funding", f"{status['fees_paid']:,.2f} / {status['funding_paid']:,.2f}")
    t.add_row("orders", ", ".join(f"{k} {v}" for k, v in sorted(status["orders"].items()))
              or "none")
    t.add_row("fills / liquidations", f"{status['fills']} / {status['liquidations']}")
    t.add_row("positions", ", ".join(f"{s} {q:+.6g}" for s, q in status["positions"].items())
              or "flat")
    t.add_row("risk", f"{status['risk']['trading_state']} {status['risk']['reason']}".strip())
    t.add_row("kill switch", "ON" if status["kill_switch"] else "off")
    return t


@app.command("status")
def status_cmd(run: str | None = typer.Option(None, "--run", help="Run id (default: the "
                                              "latest)."),
               db: str | None = typer.Option(None, "--db", help=DB_HELP),
               as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Equity, positions, orders and risk state of a run (default: the latest)."""
    with trading_db(db, create=False) as journal, user_errors():
        status = run_status(journal, resolve_run(journal, run))
    if as_json:
        print_json(status)
    else:
        console.print(status_table(status))


def _rows_command(kind: str, run: str | None, db: str | None, as_json: bool,
                  columns: tuple[str, ...], open_only: bool = False) -> None:
    with trading_db(db, create=False) as journal, user_errors():
        run_id = resolve_run(journal, run)
        if kind == "orders":
            rows = [dict(r) for r in journal.orders(run_id, open_only=open_only)]
        elif kind == "fills":
            rows = [dict(r) for r in journal.fills(run_id)]
        else:
            rows = [dict(r) for r in journal.positions(run_id)]
    for r in rows:
        for key in ("ts", "decided_ts", "updated_ts", "created_at", "updated_at"):
            if key in r and isinstance(r[key], int):
                r[key] = _iso(r[key])
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"{kind} · {run_id} ({len(rows)})")
    for c in columns:
        table.add_column(c, overflow="fold")
    for r in rows:
        table.adddict(*(_cell(r.get(c)) for c in columns))
    console.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


@app.command("orders")
def orders_cmd(run: str | None = typer.Option(None, "--run", help="Run id."),
               open_only: bool = typer.Option(False, "--open", help="Open orders only."),
               db: str | None = typer.Option(None, "--db", help=DB_HELP),
               as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The run's orders with their states."""
    _rows_command("orders", run, db, as_json, ("client_order_id", "decided_ts", "symbol",
                                               "side", "qty", "target_exposure", "status",
                                               "filled_qty", "avg_fill_price", "fees"),
                  open_only=open_only)


@app.command("fills")
def fills_cmd(run: str | None = typer.Option(None, "--run", help="Run id."),
              db: str | None = typer.Option(None, "--db", help=DB_HELP),
              as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The run's fills (signal orders, stops and liquidations)."""
    _rows_command("fills", run, db, as_json, ("ts", "symbol", "side", "qty", "price", "fee",
                                              "liquidity", "reason", "client_order_id"))


@app.command("positions")
def positions_cmd(run: str | None = typer.Option(None, "--run", help="Run id."),
                  db: str | None = typer.Option(None, "--db", help=DB_HELP),
                  as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The run's positions."""
    _rows_command("positions", run, db, as_json, ("symbol", "qty", "entry_price", "fees",
                                                  "funding", "updated_ts"))


def _control(command: str, run: str | None, db: str | None, **extra: Any) -> str:
    from perptrader.trading.control import send_control

    with trading_db(db, create=False) as journal, user_errors():
        run_id = resolve_run(journal, run)
        send_control(journal, run_id, command, **extra)
    return run_id


@app.command("stop")
def stop(run: str | None = typer.Option(None, "--run", help="Run id (default: the latest)."),
         flatten: bool = typer.Option(False, "--flatten", help="Also close every position."),
         reason: str = typer.Option("kill switch", help="Why (kept in the audit log)."),
         db: str | None = typer.Option(None, "--db", help=DB_HELP)) -> None:
    """The kill switch: cancel open orders, block new ones (and flatten with --flatten).
    It survives restarts until `trade resume`."""
    run_id = _control("stop", run, db, flatten=flatten, reason=reason)
    console.print(f"kill switch set for {run_id}"
                  + (" (flatten)" if flatten else "")
                  + ": the engine applies it at its next bar")


@app.command("resume")
def resume(run: str | None = typer.Option(None, "--run", help="Run id (default: the latest)."),
           db: str | None = typer.Option(None, "--db", help=DB_HELP)) -> None:
    """Lift the kill switch (and a latched drawdown stop)."""
    run_id = _control("resume", run, db)
    console.print(f"resume sent to {run_id}: the engine applies it at its next bar")


def paper_demo_stage(store: Any, out: Any, data_dir: Any) -> None:
    """A one-month paper replay of ``vsa`` (and of the demo's gbdt model when the ML stage
    registered it) on BTCUSDT 1h, each beside a backtest of the same policy over the same
    bars, with the parity line; the journal goes to ``<data_dir>/demo-paper.sqlite``."""
    from perptrader.commands.common import has_perp_bars
    from perptrader.core.timeframes import timeframe_delta
    from perptrader.persistence import open_trading_db
    from perptrader.strategies import get_strategy
    from perptrader.trading.engine import Engine
    from perptrader.trading.feeds import ReplayFeed
    from perptrader.trading.parity import backtest_of, compare
    from perptrader.trading.spec import RunSpec

    symbol, timeframe = "BTCUSDT", "1h"
    if not has_perp_bars(store, symbol, timeframe):
        out.print(f"[yellow]No {symbol} perpetual bars stored: paper trading skipped.[/yellow]")
        return
    last = max(s.last for s in store.inventory() if s.instrument.symbol == symbol
               and s.instrument.market == "perp" and s.kind == "ohlcv"
               and s.timeframe == timeframe)
    end = (pd.Timestamp(last).tz_convert("UTC") + timeframe_delta(timeframe)).normalize()
    end = end.replace(day=1)
    start = end - pd.DateOffset(months=1)
    policies: list[tuple[str, dict[str, str]]] = [("vsa", {})]
    from perptrader.ml.registry import versions

    if versions("demo-gbdt"):
        # the model through the decision layer `train` stored with it, and through the
        # plain 0.45 rule: the stored layer stays flat when no edge after costs was found
        policies += [("model:demo-gbdt", {}), ("model:demo-gbdt", {"decision": "threshold"})]
    path = Path(data_dir) / "demo-paper.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)  # the demo's own journal, fresh
    labels = [name + "".join(f" {k}={v}" for k, v in params.items())
              for name, params in policies]
    out.print(f"Paper trading {', '.join(labels)} on {symbol} {timeframe}, replay "
              f"{start:%Y-%m-%d}..{end:%Y-%m-%d}, journal {path}")
    with open_trading_db(str(path), data_dir, synchronous="NORMAL") as journal:
        for (name, params), label in zip(policies, labels, strict=True):
            policy = get_strategy(name, params)
            # the model needs its feature warm-up before the month: hand it that history
            spec = RunSpec(mode="paper", strategy=name, params=params, symbols=(symbol,),
                           timeframe=timeframe, replay=(start.isoformat(), end.isoformat()),
                           history_bars=policy.warmup_bars + 24)
            feed = ReplayFeed(store, spec.symbols, timeframe, start, end,
                              history_bars=spec.history_bars)
            t0 = time.perf_counter()
            engine = Engine.open(journal, spec, policy, feed, commit_every=REPLAY_COMMIT_BARS)
            engine.run()
            seconds = time.perf_counter() - t0
            status = run_status(journal, engine.run_id)
            out.print(f"  {label}: {status['bars']:,} bars in {seconds:.1f} s, "
                      f"{status['fills']} fills, final equity {status['final_equity']:,.2f} "
                      f"({status['total_return']:+.2%})")
            bt = backtest_of(store, spec, get_strategy(name, params), symbol)
            out.print("  " + compare(journal, engine.run_id, bt).line())
        report = journal.verify_audit()
        out.print(f"  {report.summary()}")


def _register_live() -> None:
    from perptrader.commands.trade_live import drill, live

    app.command("live")(live)
    app.command("drill")(drill)


_register_live()
