"""``perptrader trade live``: the paper engine's policy, risk and journal against a venue
account (Binance USD-M; the fake exchange with ``--exchange-url``).

It refuses to start without ``--confirm-live`` and without a passing reconciliation;
keys come from the environment or a keys file, never from the command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from perptrader.commands.common import console, err_console, print_json, settings, user_errors
from perptrader.commands.strategies import parse_params
from perptrader.core.errors import PerptraderError

CONFIRM_FLAG = "--confirm-live"


def live(
    strategy: str = typer.Option(..., "--strategy", help="A policy (`strategies list`)."),
    symbol: list[str] = typer.Option(..., "--symbol", help="e.g. BTCUSDT; repeat for more "
                                     "(each trades its share of the account's equity)."),
    exchange: str = typer.Option("binanceusdm", "--exchange", help="binanceusdm."),
    timeframe: str = typer.Option("1h", help="Bar timeframe."),
    exchange_url: str | None = typer.Option(
        None, "--exchange-url", help="Base URL of the venue, e.g. the fake exchange "
        "http://127.0.0.1:8765 (setting exchange.url)."),
    testnet: bool = typer.Option(False, "--testnet", help="Trade the venue's testnet."),
    confirm: bool = typer.Option(False, CONFIRM_FLAG, help="Required: this places real "
                                 "orders on the account the keys belong to."),
    keys_file: Path | None = typer.Option(
        None, "--keys-file", help="JSON {\"apiKey\": ..., \"secret\": ...} (default: "
        "PERPTRADER_<EXCHANGE>_API_KEY / _API_SECRET from the environment)."),
    param: list[str] = typer.Option([], "--param", help="Policy parameter key=value."),
    leverage: float = typer.Option(1.0, help="Exposure multiple of the policy's targets "
                                   "(also set as the venue's leverage)."),
    margin_mode: str = typer.Option("isolated", help="isolated or cross (set at the venue)."),
    risk: list[str] = typer.Option([], "--risk", help="Risk limit key=value (docs/trading.md)."),
    history_bars: int = typer.Option(500, min=1, help="Closed bars fetched as the policy's "
                                     "warm-up (at least its own warm-up)."),
    poll: float = typer.Option(1.0, min=0.01, help="Seconds between looks at the venue's "
                               "clock while waiting for a bar."),
    max_bars: int | None = typer.Option(None, min=1, help="Stop after this many bars "
                                        "(the run stays resumable)."),
    adopt_positions: bool = typer.Option(False, "--adopt-positions", help="Accept the "
                                         "venue's positions when they differ from the "
                                         "journal's (journaled); otherwise refuse."),
    user_stream: bool = typer.Option(True, help="Listen to the user data stream (fills "
                                     "arrive sooner; REST is asked every bar anyway)."),
    breaker_failures: int = typer.Option(5, min=1, help="Venue failures in a row that "
                                         "open the circuit breaker."),
    breaker_reset: float = typer.Option(30.0, min=0.01, help="Seconds the breaker stays "
                                        "open before one probe call."),
    retries: int = typer.Option(5, min=1, help="Attempts of a read before giving up."),
    backoff: float = typer.Option(0.5, min=0.0, help="First retry delay (doubles)."),
    timeout: float = typer.Option(10.0, min=0.1, help="Seconds before a call times out."),
    db: str | None = typer.Option(None, "--db", help="Trading DB (as `trade paper`)."),
    as_json: bool = typer.Option(False, "--json", help="Print the final status as JSON."),
) -> None:
    """Trade a policy live. The same command again resumes the run: the journal is
    reconciled with the venue first (docs/trading.md, "Live trading")."""
    from perptrader.commands.trade import status_table, trading_db
    from perptrader.strategies import get_strategy
    from perptrader.trading.breaker import VenueGuard
    from perptrader.trading.live import LiveEngine
    from perptrader.trading.livefeed import VenueBarFeed
    from perptrader.trading.reconcile import reconcile
    from perptrader.trading.risk import RiskLimits
    from perptrader.trading.spec import RunSpec
    from perptrader.trading.status import run_status
    from perptrader.trading.userstream import UserStream
    from perptrader.trading.venue import VenueTrader
    from perptrader.venues.calls import RetryPolicy
    from perptrader.venues.ccxt_client import check_venue, load_credentials
    from perptrader.venues.download_setup import exchange_url as pick_url

    cfg = settings()
    url = pick_url(exchange_url, cfg)
    with user_errors():
        check_venue(exchange)
        if exchange != "binanceusdm":
            raise PerptraderError(f"live trading supports binanceusdm for now, not {exchange}")
        if margin_mode not in ("isolated", "cross"):
            raise PerptraderError(f"--margin-mode must be isolated or cross, not {margin_mode}")
        if not confirm:
            where = url or ("the testnet" if testnet else "the REAL venue")
            raise PerptraderError(
                f"live trading places orders on {exchange} at {where}: pass {CONFIRM_FLAG} "
                f"to go on (try the fake exchange with --exchange-url, or --testnet, first)")
        credentials = load_credentials(exchange, path=keys_file)
        if credentials is None:
            env = f"PERPTRADER_{exchange.upper()}_API_KEY / _API_SECRET"
            raise PerptraderError(f"no API keys for {exchange}: set {env} or --keys-file")
        spec = RunSpec(mode="live", strategy=strategy, symbols=tuple(dict.fromkeys(symbol)),
                       timeframe=timeframe, params=parse_params(param), leverage=leverage,
                       margin_mode=margin_mode, risk=tuple(risk),
                       venue=exchange + ("-testnet" if testnet else ""))
        RiskLimits.from_pairs(spec.risk)
        try:
            policy = get_strategy(strategy, spec.params)
            warmup = int(policy.warmup_bars)
        except ValueError as exc:
            raise PerptraderError(str(exc)) from None
        trader = VenueTrader(exchange, url=url, credentials=credentials,
                             guard=VenueGuard(fail_max=breaker_failures,
                                              reset_timeout_s=breaker_reset),
                             retry=RetryPolicy(attempts=retries, base_s=backoff),
                             timeout_ms=int(timeout * 1000))
        if testnet and not url:
            trader.ex.set_sandbox_mode(True)
    stream: Any = None
    try:
        with user_errors():
            trader.load(spec.symbols)
            for s in spec.symbols:
                trader.configure(s, leverage=leverage, margin_mode=margin_mode)
        if user_stream:
            stream = UserStream(exchange, url=url, credentials=credentials).start()
        feed = VenueBarFeed(trader, spec.symbols, timeframe,
                            history_bars=max(history_bars, warmup + 1), poll_s=poll)
        with trading_db(db, create=True) as journal, user_errors():
            report: dict[str, Any] = {}

            def check(engine: LiveEngine) -> None:
                result = reconcile(engine, adopt_positions=adopt_positions)
                report["summary"] = result.summary()

            engine = LiveEngine.open_live(journal, spec, policy, feed, trader, stream=stream,
                                          reconcile=check)
            if not as_json:
                console.print(f"[bold]{engine.run_id}[/bold]: {report['summary']}")
            feed.idle = engine.poll
            feed.stop = engine.stop_requested
            engine.run(on_bar=None if as_json else _print_bar, max_bars=max_bars)
            status = run_status(journal, engine.run_id)
    finally:
        if stream is not None:
            stream.stop()
        trader.close()
    if as_json:
        print_json(status)
    else:
        console.print(status_table(status))
        for text in status.get("warnings", []) or []:
            err_console.print(f"[yellow]warning:[/yellow] {text}")


def _print_bar(summary: Any) -> None:
    targets = ", ".join(f"{s} {t:g}" for s, t in summary.targets.items())
    line = f"{summary.ts:%Y-%m-%d %H:%M} equity {summary.equity:,.2f}  targets {targets}"
    if summary.denied:
        line += "  [yellow]" + "; ".join(summary.denied) + "[/yellow]"
    console.print(line, highlight=False)


def drill(
    lifecycles: int = typer.Option(200, min=1, help="Orders the venue must have received "
                                   "before the drill stops killing."),
    data: Path | None = typer.Option(None, "--data", help="Recorded data for the fake "
                                     "exchange (default: a synthetic BTCUSDT market)."),
    seed: int = typer.Option(0, help="Seed of the kill plan."),
    workdir: Path | None = typer.Option(None, help="Folder for the drill's journal "
                                        "(default: a temporary one)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Crash drill: live-trade the fake exchange, `kill -9` the trader at the moments that
    lose or double orders, restart it each time, then compare journal and venue. Exit 1
    when anything was duplicated, lost or disagrees."""
    import tempfile

    from rich.progress import Progress

    from perptrader.trading.drill import run_drill

    market = None
    with user_errors():
        if workdir is not None:
            try:
                workdir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise PerptraderError(f"--workdir {workdir}: cannot create it "
                                      f"({exc.strerror or exc})") from None
        if data is not None:
            from perptrader.venues.fake.data import MarketData

            if not data.is_dir():
                raise PerptraderError(f"--data {data}: not a folder")
            market = MarketData(data)
    with tempfile.TemporaryDirectory(prefix="perptrader-drill-") as tmp, \
            Progress(console=err_console, transient=True, disable=as_json) as bar:
        task = bar.add_task("lifecycles", total=lifecycles)
        report = run_drill(lifecycles, data=market, workdir=workdir or Path(tmp), seed=seed,
                           progress=lambda done, total: bar.update(task, completed=done))
    if as_json:
        print_json(report.as_dict())
    else:
        for line in report.lines():
            console.print(line, highlight=False)
    if not report.ok:
        raise typer.Exit(1)
