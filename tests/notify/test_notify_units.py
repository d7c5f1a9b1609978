"""The notifier's parts: the token (environment, 0600 file, masking), the commands'
authorisation and parsing, alert texts and message composition, and the CLI against the
fake Bot API."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from notify.fake_telegram import FakeBotAPI
from perptrader.commands.notify import app as notify_app
from perptrader.config import load_settings
from perptrader.notify.alerts import Alert, audit_alert, compose
from perptrader.notify.replies import Replies, parse
from perptrader.notify.secrets import (
    MASK,
    TokenError,
    install_redaction,
    load_token,
    mask,
    remove_redaction,
)
from perptrader.persistence import open_trading_db

TOKEN = "987654321:AAE-secretPartOfTheTokenXYZ123456"
runner = CliRunner()


def _token_file(tmp_path: Path, mode: int = 0o600, text: str = TOKEN) -> Path:
    path = load_settings().data_dir / "secrets" / "telegram_token"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


def test_token_from_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _token_file(tmp_path, text="1:from-the-file-xxxxxxxx")
    monkeypatch.setenv("PERPTRADER__NOTIFY__TELEGRAM_TOKEN", TOKEN)
    assert load_token(load_settings()) == (TOKEN, "PERPTRADER__NOTIFY__TELEGRAM_TOKEN")


def test_token_from_a_private_file(tmp_path: Path) -> None:
    path = _token_file(tmp_path)
    assert load_token(load_settings()) == (TOKEN, str(path))


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_token_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = _token_file(tmp_path, mode=mode)
    with pytest.raises(TokenError, match="chmod 600") as err:
        load_token(load_settings())
    assert TOKEN not in str(err.value) and str(path) in str(err.value)


def test_no_token_names_both_places(tmp_path: Path) -> None:
    with pytest.raises(TokenError, match="PERPTRADER__NOTIFY__TELEGRAM_TOKEN") as err:
        load_token(load_settings())
    assert "secrets/telegram_token" in str(err.value)


def test_config_command_masks_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    from perptrader.cli import app

    monkeypatch.setenv("PERPTRADER__NOTIFY__TELEGRAM_TOKEN", TOKEN)
    monkeypatch.setenv("PERPTRADER__NOTIFY__CHAT_IDS", "5, -1007")
    res = runner.invoke(app, ["config"])
    assert res.exit_code == 0, res.output
    assert TOKEN not in res.output and TOKEN.split(":")[1] not in res.output
    notify = json.loads(res.stdout)["notify"]
    assert set(notify["telegram_token"]) == {"*"} and notify["chat_ids"] == [5, -1007]


def test_redaction_filter_masks_messages_args_and_tracebacks(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    redactor = install_redaction(TOKEN)
    try:
        logging.getLogger("telegram.Bot").debug("Set Bot API URL: %s",
                                                f"https://api.telegram.org/bot{TOKEN}")
        logging.getLogger("elsewhere").warning("secret half %s", TOKEN.split(":")[1])
        try:
            raise RuntimeError(f"The token `{TOKEN}` was rejected by the server.")
        except RuntimeError:
            logging.getLogger("perptrader.notify").exception("failed")
    finally:
        remove_redaction(redactor)
    text = caplog.text
    assert TOKEN not in text and TOKEN.split(":")[1] not in text
    assert text.count(MASK) >= 3
    assert mask("x", "") == "x"


def test_parse_commands() -> None:
    assert parse("/stop@perptrader_bot flatten now") == ("stop", ["flatten", "now"])
    assert parse("  /STATUS ") == ("status", [])
    assert parse("hello") is None and parse("") is None


def test_replies_only_for_configured_chats(tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with open_trading_db(None, tmp_path) as db:
        replies = Replies(db, [1, -2])
        assert replies.answer(3, "/status", "@eve") is None
        assert replies.answer(None, "/stop") is None
        assert "refused /status from chat 3 (@eve)" in caplog.text
        # a configured chat with no run yet gets a clear line, not a traceback
        assert replies.answer(1, "/status").startswith("error: no trading run yet")
        assert "unknown command /nope" in replies.answer(-2, "/nope")
        assert "/stop" in replies.answer(1, "/help")
        assert replies.answer(1, "just chatting") is None


def test_alert_texts() -> None:
    def row(kind: str, payload: dict, run: str = "r1") -> dict:
        return {"seq": 1, "ts": 1_704_067_200_000, "run_id": run, "kind": kind,
                "payload": json.dumps(payload)}

    fill = audit_alert(row("fill", {"symbol": "BTCUSDT", "side": "buy", "qty": 0.5,
                                    "price": 42000.5, "fee": 1.25, "reason": "signal"}))
    assert fill and fill.kind == "fill" and "BTCUSDT buy 0.5 @ 42000.5" in fill.text
    assert audit_alert(row("fill", {"reason": "signal"}), fills=False) is None
    liq = audit_alert(row("fill", {"symbol": "X", "reason": "liquidation"}), fills=False)
    assert liq and liq.kind == "liquidation" and liq.urgent
    kill = audit_alert(row("kill", {"flatten": True, "reason": "drill", "ts": "t"}))
    assert kill and "KILL SWITCH" in kill.text and "flattening" in kill.text
    breaker = audit_alert(row("breaker.open", {"venue": "binanceusdm", "failures": 5}))
    assert breaker and breaker.urgent and "OPEN" in breaker.text and "failures 5" in breaker.text
    deny = audit_alert(row("order.deny", {"client_order_id": "pt-1", "reason": "max_leverage"}))
    assert deny and "max_leverage" in deny.text
    assert audit_alert(row("order.create", {})) is None


def test_compose_keeps_urgent_alerts_and_counts_the_rest() -> None:
    fills = [Alert("fill", "r", f"fill number {i} " + "x" * 80) for i in range(500)]
    kill = Alert("kill", "r", "KILL SWITCH applied")
    messages = compose([*fills[:250], kill, *fills[250:]])
    assert 1 <= len(messages) <= 3 and all(len(m) <= 3_900 for m in messages)
    joined = "\n".join(messages)
    assert "KILL SWITCH applied" in joined and "more fill" in joined
    assert compose([]) == []
    assert compose([Alert("fill", None, "a"), Alert("fill", None, "b")]) == ["a\nb"]


def test_cli_notify_test_against_the_fake(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeBotAPI(TOKEN) as api:
        monkeypatch.setenv("PERPTRADER__NOTIFY__TELEGRAM_TOKEN", TOKEN)
        monkeypatch.setenv("PERPTRADER__NOTIFY__CHAT_IDS", "11,22")
        monkeypatch.setenv("PERPTRADER__NOTIFY__API_URL", api.base_url)
        res = runner.invoke(notify_app, ["test"])
        assert res.exit_code == 0, res.output
        assert "perptrader_test_bot" in res.output and "2 chat(s)" in res.output
        assert sorted(m.chat_id for m in api.messages()) == [11, 22]
        # a token the server refuses: one line, the token masked
        monkeypatch.setenv("PERPTRADER__NOTIFY__TELEGRAM_TOKEN", TOKEN + "0")
        bad = runner.invoke(notify_app, ["test"])
        assert bad.exit_code == 1
        assert "rejected" in bad.output and TOKEN not in bad.output
    monkeypatch.delenv("PERPTRADER__NOTIFY__CHAT_IDS")
    none = runner.invoke(notify_app, ["test"])
    assert none.exit_code == 1 and "notify.chat_ids" in none.output


def test_cli_notify_run_stops_on_sigterm(tmp_path: Path) -> None:
    """`perptrader notify run` as a process: it polls, then stops cleanly on SIGTERM
    (what `docker compose stop` sends) and touches its heartbeat."""
    import signal
    import subprocess
    import sys
    import time

    heartbeat = tmp_path / "alive"
    with FakeBotAPI(TOKEN) as api:
        env = {**os.environ, "PERPTRADER__NOTIFY__TELEGRAM_TOKEN": TOKEN,
               "PERPTRADER__NOTIFY__CHAT_IDS": "11", "PERPTRADER__NOTIFY__API_URL":
               api.base_url, "PERPTRADER__NOTIFY__POLL_SECONDS": "0.2",
               "PERPTRADER__NOTIFY__UPDATES_TIMEOUT": "1",
               "PERPTRADER__NOTIFY__HEARTBEAT_FILE": str(heartbeat)}
        proc = subprocess.Popen(
            [sys.executable, "-c", "from perptrader.commands.notify import app; app()",
             "run", "--db", str(tmp_path / "t.sqlite")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 60
            while not heartbeat.exists() or "getUpdates" not in api.calls:
                assert proc.poll() is None, proc.communicate()[0]
                assert time.monotonic() < deadline, "the notifier never polled"
                time.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, out
    assert "stopped" in out and TOKEN not in out


def test_delivery_honours_flood_control_skips_blocked_chats_and_reports_outages(
        tmp_path: Path) -> None:
    import asyncio
    import time

    from telegram import Bot

    from perptrader.notify.bot import TelegramNotifier

    with open_trading_db(None, tmp_path) as db, FakeBotAPI(TOKEN) as api:
        notifier = TelegramNotifier(db, TOKEN, [11, 22], api_url=api.base_url)

        async def send(texts: list[str]) -> bool:
            async with Bot(TOKEN, base_url=api.base_url) as bot:
                return await notifier.send(bot, texts)

        api.flood_left, api.flood_retry_after = 1, 1
        t0 = time.monotonic()
        assert asyncio.run(send(["one", "two"]))
        assert time.monotonic() - t0 >= 1.0  # waited as Telegram asked
        assert [(m.chat_id, m.text) for m in api.messages()] == [
            (11, "one"), (22, "one"), (11, "two"), (22, "two")]
        api.blocked.add(11)
        assert asyncio.run(send(["three"]))  # a chat that blocked the bot is skipped
        assert [m.chat_id for m in api.messages() if m.text == "three"] == [22]

        async def outage() -> bool:
            async with Bot(TOKEN, base_url=api.base_url) as bot:
                await asyncio.to_thread(api.stop_serving)
                return await notifier.send(bot, ["four"])

        # the Bot API unreachable: not delivered, the caller keeps the alerts
        assert asyncio.run(outage()) is False
        assert not [m for m in api.messages() if m.text == "four"]
