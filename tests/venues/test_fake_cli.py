"""`perptrader fake-exchange` starts a server a client can talk to (run as a process)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

SCRIPT = ("import typer; from perptrader.commands.venues import fake_exchange; "
          "app = typer.Typer(); app.command()(fake_exchange); app()")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[dict[str, str], object]:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return dict(resp.headers), json.loads(resp.read())


def test_fake_exchange_command_serves(tmp_path: Path) -> None:
    port = free_port()
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps({"rest": [{"kind": "latency", "endpoint": "time",
                                            "delay_s": 0.01}]}))
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, "--port", str(port), "--data",
                             str(tmp_path), "--weight-limit", "100", "--faults", str(faults)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                headers, body = get(f"http://127.0.0.1:{port}/fapi/v1/ping")
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode()  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "fake exchange did not start"
                time.sleep(0.2)
        assert body == {} and headers["X-MBX-USED-WEIGHT-1M"] == "1"
        _, info = get(f"http://127.0.0.1:{port}/fapi/v1/exchangeInfo")
        assert info["rateLimits"][0]["limit"] == 100  # type: ignore[index]
        _, rules = get(f"http://127.0.0.1:{port}/_fake/faults")
        assert rules["rest"][0]["kind"] == "latency"  # type: ignore[index]
    finally:
        proc.terminate()
        proc.wait(10)


def test_clock_start_data_is_the_first_recorded_bar(tmp_path: Path) -> None:
    """``--clock-start data[:SYMBOL]``: the first bar of the symbol's finest kline series
    (so the kline and markPrice streams have bars to send); a plain time still works."""
    import pandas as pd
    import pytest
    import typer

    from perptrader.commands.venues import _clock_start
    from perptrader.venues.fake.data import MarketData
    from venues.venue_fakes import START, bars

    folder = tmp_path / "binance_vision" / "futures_um"
    folder.mkdir(parents=True)
    frame = bars(30, start=START + pd.Timedelta(hours=5))
    open_ms = frame["ts"].astype("int64") // 1_000_000
    pd.DataFrame({
        "open_time": open_ms, "open": frame["open"], "high": frame["high"],
        "low": frame["low"], "close": frame["close"], "volume": frame["volume"],
        "close_time": open_ms + 3_599_999, "quote_volume": frame["quote_volume"],
        "count": frame["trade_count"], "taker_buy_volume": frame["taker_buy_base"],
        "taker_buy_quote_volume": frame["taker_buy_quote"], "ignore": 0,
    }).to_csv(folder / "BTCUSDT-1h-futures.csv", index=False)
    data = MarketData(tmp_path)
    first = int((START + pd.Timedelta(hours=5)).value // 1_000_000)
    assert data.first_bar_ms("BTCUSDT") == first
    assert _clock_start("data", tmp_path) == first == _clock_start("data:btcusdt", tmp_path)
    assert _clock_start("2024-01-02", tmp_path) == int(
        pd.Timestamp("2024-01-02", tz="UTC").value // 1_000_000)
    assert _clock_start(None, tmp_path) is None
    with pytest.raises(typer.BadParameter):
        _clock_start("data:ETHUSDT", tmp_path)
