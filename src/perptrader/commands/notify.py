"""``perptrader notify ...``: Telegram alerts and commands over the trading journal."""

from __future__ import annotations

import asyncio
import signal

import typer

from perptrader.commands.common import console, err_console, settings, user_errors
from perptrader.commands.trade import DB_HELP, trading_db
from perptrader.core.errors import PerptraderError

app = typer.Typer(help="Telegram: alerts from the trading journal, commands from "
                       "configured chats (docs/deploy.md).", no_args_is_help=True)


def _token_and_chats() -> tuple[str, list[int], object]:
    from perptrader.notify.secrets import install_redaction, load_token

    cfg = settings()
    with user_errors():
        token, _source = load_token(cfg)
        if not cfg.notify.chat_ids:
            raise PerptraderError("no chat to notify: set notify.chat_ids "
                                  "(PERPTRADER__NOTIFY__CHAT_IDS=123,456)")
    install_redaction(token)
    return token, list(cfg.notify.chat_ids), cfg


@app.command("run")
def run(run: str | None = typer.Option(None, "--run", help="Follow one run (default: "
                                       "every running run; commands act on the latest)."),
        db: str | None = typer.Option(None, "--db", help=DB_HELP)) -> None:
    """Send alerts (fills, liquidation risk, breakers, kill switch, daily summary) and
    answer /status /positions /pnl /daily /stop /resume until stopped (Ctrl-C, SIGTERM)."""
    from telegram.error import TelegramError

    from perptrader.notify.bot import TelegramNotifier
    from perptrader.notify.secrets import mask

    token, chats, cfg = _token_and_chats()
    n = cfg.notify  # type: ignore[attr-defined]
    # create: the notifier may start before the first run made the journal
    with trading_db(db, create=True) as journal, user_errors():
        notifier = TelegramNotifier(journal, token, chats, api_url=n.api_url, run=run,
                                    poll_seconds=n.poll_seconds,
                                    updates_timeout=n.updates_timeout,
                                    liquidation_ratio=n.liquidation_margin_ratio,
                                    fills=n.fills, daily=n.daily_summary,
                                    heartbeat=n.heartbeat_file)
        err_console.print(f"notifying {len(chats)} chat(s) from {journal.url}; "
                          f"Ctrl-C to stop")

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await notifier.run(stop)

        try:
            asyncio.run(main())
        except TelegramError as exc:
            raise PerptraderError(f"Telegram: {mask(str(exc), token)}") from None
    console.print(f"stopped; {notifier.sent} message(s) sent")


@app.command("test")
def test() -> None:
    """Check the token and send one test message to every configured chat."""
    from telegram.error import TelegramError

    from perptrader.notify.bot import send_test
    from perptrader.notify.secrets import mask

    token, chats, cfg = _token_and_chats()
    with user_errors():
        try:
            username, sent = asyncio.run(send_test(token, chats,
                                                   cfg.notify.api_url))  # type: ignore[attr-defined]
        except TelegramError as exc:
            raise PerptraderError(f"Telegram: {mask(str(exc), token)}") from None
    console.print(f"bot @{username}: test message sent to {sent} chat(s)")
