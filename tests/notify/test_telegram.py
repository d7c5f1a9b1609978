"""The Telegram bot end to end: a paper run journals, the notifier (python-telegram-bot
against a local fake Bot API on 127.0.0.1) sends the alerts, answers commands from the
configured chats only, and /stop pulls the kill switch the engine then applies."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from pathlib import Path

import pandas as pd
import pytest

from notify.fake_telegram import FakeBotAPI
from perptrader.marketdata.store.duckdb_store import DuckDBStore
from perptrader.notify.alerts import CURSOR_KEY, CURSOR_RUN
from perptrader.notify.bot import TelegramNotifier
from perptrader.notify.journal import latest_balance, margin_ratios
from perptrader.notify.secrets import install_redaction, remove_redaction
from perptrader.persistence import open_trading_db
from perptrader.strategies import get_strategy
from perptrader.trading.engine import Engine
from perptrader.trading.feeds import ReplayFeed
from perptrader.trading.spec import RunSpec
from store_frames import fill_store

TOKEN = "123456789:AAHfakeTokenForTestsOnly_x1y2z3w4v5u6"
ALLOWED, OTHER_ALLOWED, STRANGER = 111, -100222, 999
START, END = pd.Timestamp("2024-01-03", tz="UTC"), pd.Timestamp("2024-01-20", tz="UTC")


@pytest.fixture
def market(tmp_path: Path):
    with DuckDBStore(tmp_path / "market.duckdb") as store:
        store.migrate()
        fill_store(store, n=24 * 20, seed=3)
    store = DuckDBStore(tmp_path / "market.duckdb")
    yield store
    store.close()


@pytest.fixture
def api():
    with FakeBotAPI(TOKEN) as fake:
        yield fake


class Running:
    """A notifier on its own thread and event loop, like `perptrader notify run`."""

    def __init__(self, notifier: TelegramNotifier) -> None:
        self.notifier = notifier
        self.loop = asyncio.new_event_loop()
        self.stop = asyncio.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        try:
            self.loop.run_until_complete(self.notifier.run(self.stop))
        except BaseException as exc:  # surfaced by close()
            self.error = exc

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(30)
        assert not self.thread.is_alive(), "the notifier did not stop"
        self.loop.close()
        if self.error is not None:
            raise self.error


def _cursor(db, run_id: str) -> dict:
    entry = db.get_state(CURSOR_RUN, CURSOR_KEY)
    return ((entry.value or {}).get("runs") or {}).get(run_id, {}) if entry else {}


def _wait(predicate, timeout: float = 20.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_alerts_commands_and_kill_switch(market, api: FakeBotAPI, tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    redactor = install_redaction(TOKEN)
    path = tmp_path / "trading.sqlite"
    spec = RunSpec(mode="paper", strategy="sma_cross", symbols=("BTCUSDT",), timeframe="1h",
                   params={"fast": "5", "slow": "20"}, leverage=3.0,
                   replay=(START.isoformat(), END.isoformat()))
    policy = get_strategy("sma_cross", spec.params)
    feed = ReplayFeed(market, spec.symbols, "1h", START, END)
    try:
        with open_trading_db(str(path), tmp_path) as engine_db, \
                open_trading_db(str(path), tmp_path) as notify_db:
            notifier = TelegramNotifier(notify_db, TOKEN, [ALLOWED, OTHER_ALLOWED],
                                        api_url=api.base_url, poll_seconds=0.1,
                                        updates_timeout=1, liquidation_ratio=0.005)
            with Running(notifier):
                api.wait_call("getUpdates")
                engine = Engine.open(engine_db, spec, policy, feed)
                run_id = engine.run_id
                for chat in (ALLOWED, OTHER_ALLOWED):
                    api.wait_for(lambda m, c=chat: m.chat_id == c and "run started" in m.text)
                # the first day's bars (no position yet): the notifier sees the run's day
                engine.run(max_bars=12)
                _wait(lambda: _cursor(engine_db, run_id).get("day") == "2024-01-03")
                # four more days: fills, a closed day, a position at risk (threshold 0.5%)
                engine.run(max_bars=24 * 4)
                fills = api.wait_for(lambda m: m.chat_id == ALLOWED and "fill BTCUSDT" in m.text)
                assert " @ " in fills[0].text and run_id in fills[0].text
                daily = api.wait_for(lambda m: "daily summary" in m.text, count=2)
                assert {m.chat_id for m in daily} == {ALLOWED, OTHER_ALLOWED}
                assert "equity" in daily[0].text and "fills" in daily[0].text
                api.wait_for(lambda m: "LIQUIDATION RISK BTCUSDT" in m.text)

                # commands: a stranger gets nothing; the configured chats get answers
                api.push(STRANGER, "/status", username="mallory")
                api.push(STRANGER, "/stop", username="mallory")
                api.push(ALLOWED, "/status")
                status = api.wait_for(lambda m: m.chat_id == ALLOWED
                                      and m.text.startswith(run_id))[0]
                assert "equity:" in status.text and "kill switch: off" in status.text
                for command, expect in (("/positions", "positions of"), ("/pnl", "PnL of"),
                                        ("/daily", "daily summary"), ("/help", "/resume")):
                    api.push(ALLOWED, command)
                    api.wait_for(lambda m, e=expect: m.chat_id == ALLOWED and e in m.text)
                assert api.messages(STRANGER) == []
                refusals = [r.getMessage() for r in caplog.records
                            if "refused" in r.getMessage()]
                assert any(f"chat {STRANGER}" in r and "/stop" in r for r in refusals)
                assert engine_db.get_state(run_id, "control") is None  # the stranger's /stop

                # /stop from a configured group: the engine halts at its next bar
                api.push(OTHER_ALLOWED, "/stop flatten drill")
                api.wait_for(lambda m: m.chat_id == OTHER_ALLOWED
                             and "kill switch set" in m.text)
                orders_before = len(engine_db.orders(run_id))
                engine.run(max_bars=6)
                assert engine.risk.trading_state.value == "halted"
                kill = api.wait_for(lambda m: "KILL SWITCH applied" in m.text, count=2)
                assert "flattening" in kill[0].text and "drill" in kill[0].text
                orders = engine_db.orders(run_id)[orders_before:]
                # the flattening order; whatever the policy still wants is denied
                assert orders[0]["reduce_only"] and orders[0]["target_exposure"] == 0.0
                assert orders[0]["status"] == "filled", orders[0]
                assert {o["status"] for o in orders[1:]} <= {"denied"}, orders
                assert all(p["qty"] == 0.0 for p in engine_db.positions(run_id))
                api.push(ALLOWED, "/status")
                api.wait_for(lambda m: m.chat_id == ALLOWED and "kill switch: ON" in m.text)

                api.push(ALLOWED, "/resume")
                api.wait_for(lambda m: "resume sent" in m.text)
                engine.run(max_bars=2)
                assert engine.risk.trading_state.value == "active"
                api.wait_for(lambda m: "trading resumed" in m.text, count=2)
                assert api.messages(STRANGER) == []
    finally:
        remove_redaction(redactor)
    logged = caplog.text + "\n".join(str(r.msg) for r in caplog.records)
    assert TOKEN not in logged and TOKEN.split(":")[1] not in logged
    assert "<telegram-token>" in logged  # python-telegram-bot did log its URL, masked


def test_margin_ratio_matches_the_account_view(market, tmp_path: Path) -> None:
    """The liquidation-risk estimate from the journal equals the engine's own
    AccountView.margin_ratio (maintenance margin / (position margin + uPnL))."""
    spec = RunSpec(mode="paper", strategy="sma_cross", symbols=("BTCUSDT",), timeframe="1h",
                   params={"fast": "5", "slow": "20"}, leverage=5.0,
                   replay=(START.isoformat(), END.isoformat()))
    feed = ReplayFeed(market, spec.symbols, "1h", START, END)
    with open_trading_db(None, tmp_path) as db:
        engine = Engine.open(db, spec, get_strategy("sma_cross", spec.params), feed)
        checked = 0
        for n in range(6):
            engine.run(max_bars=13)
            balance = latest_balance(db, engine.run_id)
            view = engine.broker.view("BTCUSDT", pd.Timestamp(balance["ts"], unit="ms",
                                                              tz="UTC"))
            if view.position_qty == 0.0:
                continue
            ratio = margin_ratios(balance)["BTCUSDT"]
            assert math.isclose(ratio, view.margin_ratio, rel_tol=1e-9), (n, ratio)
            checked += 1
        assert checked >= 3
