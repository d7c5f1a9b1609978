"""``perptrader fake-exchange``: the local fake Binance USD-M venue in the foreground."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from perptrader.commands.common import console, settings, user_errors


def _default_data() -> Path | None:
    here = Path.cwd().resolve()
    for base in (here, *here.parents):
        candidate = base / "shared" / "data"
        if (candidate / "MANIFEST.md").is_file():
            return candidate
    return None


def _clock_start(text: str | None, folder: Path | None) -> int | None:
    """``--clock-start``: None (now), a UTC time, or ``data[:SYMBOL]``."""
    from perptrader.marketdata.download import utc

    if not text:
        return None
    if text == "data" or text.startswith("data:"):
        from perptrader.venues.fake.data import MarketData

        symbol = text.partition(":")[2].upper() or "BTCUSDT"
        first = MarketData(folder).first_bar_ms(symbol)
        if first is None:
            raise typer.BadParameter(f"no recorded bars of {symbol} in {folder}",
                                     param_hint="--clock-start")
        return first
    return int(utc(text).value // 1_000_000)


def fake_exchange(
    port: int = typer.Option(8765, help="Port on 127.0.0.1 (0: a free one)."),
    data: Path | None = typer.Option(None, "--data",
                                     help="Recorded data folder (default: ../shared/data "
                                          "when found)."),
    seed: int = typer.Option(0, help="Seed of the generated series and random faults."),
    weight_limit: int = typer.Option(2400, help="Request weight allowed per window."),
    weight_window: float = typer.Option(60.0, help="Weight window in seconds."),
    ban: float = typer.Option(120.0, help="Seconds of a 418 ban."),
    clock_start: str | None = typer.Option(
        None, help="Start the clock at this UTC time, or 'data[:SYMBOL]' for the first "
                   "recorded bar of SYMBOL (default BTCUSDT). Default: now, so REST "
                   "downloads see all history; but the kline and markPrice STREAMS only "
                   "send while the clock is inside the recorded bars: set this (e.g. "
                   "'data' with --speed 60) to collect klines/mark from the fake."),
    speed: float = typer.Option(1.0, help="Clock speed factor (0: only /_fake/clock moves "
                                          "it)."),
    faults: Path | None = typer.Option(None, help="JSON file of faults "
                                                  '({"rest": [...], "streams": [...]}).'),
) -> None:
    """Serve recorded market data over Binance USD-M's REST/websocket protocol locally."""
    from perptrader.venues.fake.faults import FaultConfigError, FaultInjector
    from perptrader.venues.fake.runner import serve_forever
    from perptrader.venues.fake.server import FakeConfig

    settings()
    folder = data or _default_data()
    with user_errors():
        if folder is not None and not folder.is_dir():
            raise typer.BadParameter(f"no such folder: {folder}", param_hint="--data")
        start_ms = _clock_start(clock_start, folder)
        injector = FaultInjector(seed=seed)
        if faults is not None:
            try:
                injector.configure(json.loads(faults.read_text()))
            except (OSError, ValueError, FaultConfigError) as exc:
                raise typer.BadParameter(str(exc), param_hint="--faults") from None
        config = FakeConfig(data_dir=folder, seed=seed, weight_limit=weight_limit,
                            weight_window_s=weight_window, ban_s=ban, clock_start_ms=start_ms,
                            clock_speed=speed, rest_faults=injector.rest,
                            stream_faults=injector.streams)
        console.print(f"fake exchange on http://127.0.0.1:{port} (websocket "
                      f"ws://127.0.0.1:{port}/ws), data: {folder or 'none (empty venue)'}")
        serve_forever(config, port)
