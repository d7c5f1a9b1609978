"""python-telegram-bot wiring: long polling for commands, a loop over the journal for
alerts, delivery with Telegram's flood-control answers honoured.

Database reads and writes are synchronous (SQLAlchemy) and run on one worker thread, so
the event loop that talks to Telegram never blocks on the journal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from telegram import Bot, Update
from telegram.error import BadRequest, ChatMigrated, Forbidden, NetworkError, RetryAfter
from telegram.ext import Application, ApplicationBuilder, ContextTypes, MessageHandler, filters
from telegram.warnings import PTBDeprecationWarning

from perptrader.core.errors import PerptraderError
from perptrader.notify.alerts import JournalAlerts, compose
from perptrader.notify.replies import HELP, Replies
from perptrader.notify.secrets import mask
from perptrader.persistence.db import TradingDB
from perptrader.persistence.errors import TradingStateError

log = logging.getLogger("perptrader.notify")
T = TypeVar("T")
DEFAULT_API = "https://api.telegram.org/bot"
#: longest wait a flood-control answer (RetryAfter) is honoured before giving up a poll
MAX_RETRY_AFTER = 60.0


class TelegramNotifier:
    """Alerts to every configured chat and answers to their commands, until ``stop``."""

    def __init__(self, db: TradingDB, token: str, chat_ids: list[int], *,
                 api_url: str | None = None, run: str | None = None,
                 poll_seconds: float = 2.0, updates_timeout: int = 10,
                 liquidation_ratio: float = 0.8, fills: bool = True,
                 daily: bool = True, heartbeat: Path | None = None) -> None:
        if not chat_ids:
            raise PerptraderError("no chat to notify: set notify.chat_ids "
                                  "(PERPTRADER__NOTIFY__CHAT_IDS=123,456)")
        self.db = db
        self.token = token
        self.chat_ids = list(dict.fromkeys(int(c) for c in chat_ids))
        self.api_url = api_url or DEFAULT_API
        self.run_filter = run
        self.poll_seconds = poll_seconds
        self.updates_timeout = updates_timeout
        self.heartbeat = heartbeat
        self.replies = Replies(db, self.chat_ids, run)
        self._alert_options = {"run": run, "liquidation_ratio": liquidation_ratio,
                               "fills": fills, "daily": daily}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="notify-db")
        #: texts delivered (for the CLI's summary and tests)
        self.sent = 0

    async def _db(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, lambda: fn(*args, **kw))

    # ---- telegram ------------------------------------------------------------------------
    def application(self) -> Application:  # type: ignore[type-arg]
        app = (ApplicationBuilder().token(self.token).base_url(self.api_url)
               .get_updates_read_timeout(self.updates_timeout + 10.0).build())
        allowed = filters.Chat(chat_id=self.chat_ids)
        app.add_handler(MessageHandler(filters.COMMAND & allowed, self._on_command))
        # everyone else: no answer, a logged refusal
        app.add_handler(MessageHandler(~allowed, self._on_refused), group=1)
        app.add_error_handler(self._on_error)
        return app

    async def _on_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        chat = update.effective_chat
        if message is None or chat is None:
            return
        reply = await self._db(self.replies.answer, chat.id, message.text or "",
                               _sender(update))
        if reply:
            await message.reply_text(reply)

    async def _on_refused(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        chat = update.effective_chat
        self.replies.answer(chat.id if chat else None,
                            (message.text or "") if message else "", _sender(update))

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("telegram: handler failed: %s", mask(str(context.error), self.token))

    async def send(self, bot: Bot, texts: list[str]) -> bool:
        """Send every text to every chat, in order. False when Telegram could not be
        reached (the caller keeps the alerts for the next poll); a chat that refuses
        (bot blocked, chat gone) is logged and skipped."""
        for text in texts:
            for chat_id in self.chat_ids:
                for _attempt in range(3):
                    try:
                        await bot.send_message(chat_id=chat_id, text=text)
                        self.sent += 1
                        break
                    except RetryAfter as exc:
                        seconds = _seconds(exc)
                        if seconds > MAX_RETRY_AFTER:
                            log.warning("telegram: flood control asks %.0f s; retrying "
                                        "next poll", seconds)
                            return False
                        await asyncio.sleep(seconds)
                    except (BadRequest, Forbidden, ChatMigrated) as exc:
                        log.error("telegram: chat %s refused a message: %s", chat_id,
                                  mask(str(exc), self.token))
                        break
                    except NetworkError as exc:
                        log.warning("telegram: cannot send (%s); retrying next poll",
                                    mask(str(exc), self.token))
                        return False
                else:
                    return False
        return True

    # ---- the loops -----------------------------------------------------------------------
    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Poll Telegram for commands and the journal for alerts until ``stop`` is set."""
        stop = stop or asyncio.Event()
        app = self.application()
        async with app:  # getMe: a bad token fails here
            log.info("telegram: bot @%s serving chats %s", app.bot.username, self.chat_ids)
            await app.start()
            assert app.updater is not None
            await app.updater.start_polling(timeout=self.updates_timeout, poll_interval=0.0)
            try:
                await self._journal_loop(app.bot, stop)
            finally:
                await app.updater.stop()
                await app.stop()
        self._pool.shutdown(wait=False)

    async def _journal_loop(self, bot: Bot, stop: asyncio.Event) -> None:
        alerts: JournalAlerts | None = None
        while not stop.is_set():
            try:
                if alerts is None:
                    alerts = await self._db(JournalAlerts, self.db, **self._alert_options)
                found = await self._db(alerts.poll)
                if await self.send(bot, compose(found)):
                    await self._db(alerts.commit)
                    self._beat()
            except (TradingStateError, PerptraderError, sa.exc.SQLAlchemyError) as exc:
                log.warning("notify: journal unavailable (%s); retrying", exc)
            except Exception:  # a long-running service: log it, keep alerting
                log.exception("notify: the journal loop failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.poll_seconds)


    def _beat(self) -> None:
        """Touch the heartbeat file: the journal was read and the alerts delivered."""
        if self.heartbeat is None:
            return
        try:
            self.heartbeat.parent.mkdir(parents=True, exist_ok=True)
            self.heartbeat.touch()
        except OSError as exc:
            log.warning("notify: cannot touch %s: %s", self.heartbeat, exc)


def _seconds(exc: RetryAfter) -> float:
    """RetryAfter's wait in seconds (an int now, a timedelta in PTB's next major)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        wait = exc.retry_after
    return wait.total_seconds() if hasattr(wait, "total_seconds") else float(wait)


def _sender(update: Update) -> str:
    user = update.effective_user
    if user is None:
        return ""
    return f"@{user.username}" if user.username else str(user.id)


async def send_test(token: str, chat_ids: list[int], api_url: str | None = None
                    ) -> tuple[str, int]:
    """Check the token (getMe) and send one test message to every chat: (bot username,
    messages sent)."""
    async with Bot(token, base_url=api_url or DEFAULT_API) as bot:
        sent = 0
        for chat_id in chat_ids:
            await bot.send_message(chat_id=chat_id, text="perptrader: test message; "
                                   "commands: " + " ".join(f"/{c}" for c in HELP))
            sent += 1
        return bot.username, sent
