"""`perptrader data download` as a user runs it: success, and bad input that fails with
one line, a non-zero exit code and the store unchanged."""

from __future__ import annotations

import socket

import pytest
from typer.testing import CliRunner

from perptrader.cli import app
from perptrader.config import load_settings
from perptrader.marketdata.store import open_store
from venues.venue_fakes import fake_exchange

runner = CliRunner()
ARGS = ["data", "download", "--symbol", "BTCUSDT", "--timeframe", "1h",
        "--start", "2024-01-01", "--end", "2024-01-03", "--retries", "2", "--backoff", "0.01"]


def inventory() -> list[dict[str, object]]:
    with open_store(load_settings()) as store:
        return [s.as_json() for s in store.inventory()]


@pytest.fixture(autouse=True)
def _wide_errors(monkeypatch):
    """Rich wraps at 80 columns under the test runner; a real terminal line is wider."""
    from perptrader.commands import common

    monkeypatch.setattr(common.err_console, "width", 400)
    # log handlers bind the stderr of the run that configured them: configure afresh
    monkeypatch.setattr("perptrader.core.logging._configured", None)


@pytest.fixture(scope="module")
def fake():
    with fake_exchange(weight_window_s=60.0) as f:
        yield f


def test_download_then_resume(fake) -> None:
    result = runner.invoke(app, [*ARGS, "--kinds", "ohlcv,mark,funding,oi,ls_ratio,taker_ratio",
                                 "--exchange-url", fake.url, "--json"])
    assert result.exit_code == 0, result.output
    kinds = {s["kind"]: s["rows"] for s in inventory()}
    assert kinds == {"ohlcv": 48, "mark": 48, "funding": 6, "open_interest": 48,
                     "long_short": 48, "taker_ratio": 48}
    result = runner.invoke(app, [*ARGS, "--exchange-url", fake.url])
    assert result.exit_code == 0 and "up-to-date" in result.stdout


def test_url_from_the_environment(fake, monkeypatch) -> None:
    monkeypatch.setenv("PERPTRADER__EXCHANGE__URL", fake.url)
    result = runner.invoke(app, [*ARGS, "--kinds", "funding"])
    assert result.exit_code == 0, result.output


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize(("extra", "message"), [
    (["--exchange", "krakenfutures"], "unknown exchange 'krakenfutures'"),
    (["--symbol", "NOPEUSDT"], "lists no linear perpetual 'NOPEUSDT'"),
    (["--timeframe", "7m"], "has no '7m' candles"),
    (["--start", "2024-02-01"], "is not before --end"),
    (["--kinds", "ohlcv,gossip"], "unknown kind(s) gossip"),
    (["--kinds", "oi", "--period", "8h"], "no '8h' period for open_interest"),
    (["--start", "yesterday-ish"], "not a date or time"),
    (["--exchange-url", "CLOSED"], "cannot reach the venue"),
])
def test_bad_input_one_line_nonzero_store_unchanged(fake, extra, message) -> None:
    runner.invoke(app, [*ARGS, "--kinds", "ohlcv", "--exchange-url", fake.url])
    before = inventory()
    args = [*ARGS, "--exchange-url", fake.url, *extra]
    if "CLOSED" in args:
        args[args.index("CLOSED")] = closed_port_url()
    if "--symbol" in extra:  # replace, not add, the symbol
        args = [*ARGS[:3], "NOPEUSDT", *ARGS[4:], "--exchange-url", fake.url]
    result = runner.invoke(app, args)
    assert result.exit_code != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    assert message in " ".join(result.stderr.split())
    assert inventory() == before
