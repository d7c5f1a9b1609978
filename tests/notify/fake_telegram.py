"""A local fake of the Telegram Bot API (aiohttp on 127.0.0.1), speaking the calls
python-telegram-bot makes: getMe, deleteWebhook, getUpdates (long polling with offset
and timeout), sendMessage, setMyCommands, close/logOut. It runs on its own thread and
event loop, so synchronous tests and the bot under test both talk to it over HTTP.

    with FakeBotAPI(token) as api:
        Bot(token, base_url=api.base_url)      # http://127.0.0.1:PORT/bot
        api.push(chat_id, "/status")           # a user writes to the bot
        api.wait_for(lambda m: m.chat_id == chat_id)   # the bot's sendMessage calls
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

BOT_USER = {"id": 4242, "is_bot": True, "first_name": "perptrader",
            "username": "perptrader_test_bot", "can_join_groups": True,
            "can_read_all_group_messages": False, "supports_inline_queries": False}
#: form fields python-telegram-bot JSON-encodes (strings such as ``text`` go as they are)
JSON_FIELDS = {"chat_id", "offset", "limit", "timeout", "allowed_updates",
               "reply_parameters", "reply_markup", "commands", "drop_pending_updates",
               "disable_notification", "protect_content", "link_preview_options",
               "reply_to_message_id", "allow_sending_without_reply", "entities"}


class Flood(Exception):
    def __init__(self, seconds: int) -> None:
        super().__init__(seconds)
        self.seconds = seconds


class Blocked(Exception):
    pass


@dataclass(frozen=True)
class Sent:
    chat_id: int
    text: str
    params: dict[str, Any]


class FakeBotAPI:
    def __init__(self, token: str) -> None:
        self.token = token
        self.sent: list[Sent] = []
        self.calls: list[str] = []
        self._updates: list[dict[str, Any]] = []
        self._next_update = 1
        self._next_message = 1
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._new_update: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0
        #: sendMessage calls still to answer with 429 (flood control), and after how long
        self.flood_left = 0
        self.flood_retry_after = 1
        #: chats that blocked the bot (sendMessage answers 403)
        self.blocked: set[int] = set()

    # ---- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> FakeBotAPI:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop_serving(self) -> None:
        """Close the server (the Bot API becomes unreachable)."""
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)

    def __exit__(self, *exc: object) -> None:
        self.stop_serving()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        self._new_update = asyncio.Event()
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._handle)
        app.router.add_get("/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    # ---- the test's side -----------------------------------------------------------------
    def push(self, chat_id: int, text: str, user_id: int | None = None,
             username: str = "someone") -> None:
        """A user writes ``text`` in chat ``chat_id`` (a command gets its entity)."""
        with self._lock:
            update_id, message_id = self._next_update, self._next_message
            self._next_update += 1
            self._next_message += 1
        message: dict[str, Any] = {
            "message_id": message_id, "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group",
                     **({"first_name": username} if chat_id > 0 else {"title": "group"})},
            "from": {"id": user_id or abs(chat_id), "is_bot": False, "first_name": username,
                     "username": username},
            "text": text}
        if text.startswith("/"):
            message["entities"] = [{"type": "bot_command", "offset": 0,
                                    "length": len(text.split()[0])}]
        update = {"update_id": update_id, "message": message}

        def add() -> None:
            self._updates.append(update)
            assert self._new_update is not None
            self._new_update.set()
        self._loop.call_soon_threadsafe(add)

    def messages(self, chat_id: int | None = None) -> list[Sent]:
        with self._lock:
            return [m for m in self.sent if chat_id is None or m.chat_id == chat_id]

    def wait_for(self, predicate: Callable[[Sent], bool], timeout: float = 20.0,
                 count: int = 1) -> list[Sent]:
        """The sent messages matching ``predicate`` once there are ``count`` of them."""
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in self.messages() if predicate(m)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                texts = "\n---\n".join(m.text for m in self.messages())
                raise AssertionError(f"no such message within {timeout} s; sent:\n{texts}")
            time.sleep(0.05)

    def wait_call(self, method: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while method not in self.calls:
            if time.monotonic() > deadline:
                raise AssertionError(f"{method} never called; calls: {self.calls}")
            time.sleep(0.05)

    # ---- the Bot API -----------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401,
                                      "description": "Unauthorized"}, status=401)
        method = request.match_info["method"]
        params: dict[str, Any] = {}
        for key, value in (await request.post()).items():
            params[key] = json.loads(value) if key in JSON_FIELDS else value  # type: ignore[arg-type]
        self.calls.append(method)
        handler = getattr(self, f"_m_{method.lower()}", None)
        if handler is None:
            return web.json_response({"ok": False, "error_code": 404,
                                      "description": "Not Found"}, status=404)
        try:
            result = await handler(params)
        except Flood as exc:
            return web.json_response({"ok": False, "error_code": 429,
                                      "description": f"Too Many Requests: retry after "
                                                     f"{exc.seconds}",
                                      "parameters": {"retry_after": exc.seconds}}, status=429)
        except Blocked:
            return web.json_response({"ok": False, "error_code": 403, "description":
                                      "Forbidden: bot was blocked by the user"}, status=403)
        except LookupError as exc:
            return web.json_response({"ok": False, "error_code": 400,
                                      "description": f"Bad Request: {exc}"}, status=400)
        return web.json_response({"ok": True, "result": result})

    async def _m_getme(self, params: dict[str, Any]) -> Any:
        return BOT_USER

    async def _m_deletewebhook(self, params: dict[str, Any]) -> Any:
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _m_setmycommands(self, params: dict[str, Any]) -> Any:
        return True

    async def _m_close(self, params: dict[str, Any]) -> Any:
        return True

    async def _m_logout(self, params: dict[str, Any]) -> Any:
        return True

    async def _m_getupdates(self, params: dict[str, Any]) -> Any:
        offset = int(params.get("offset") or 0)
        self._updates = [u for u in self._updates if u["update_id"] >= offset]
        if not self._updates and params.get("timeout"):
            assert self._new_update is not None
            self._new_update.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_update.wait(), float(params["timeout"]))
        limit = int(params.get("limit") or 100)
        return self._updates[:limit]

    async def _m_sendmessage(self, params: dict[str, Any]) -> Any:
        if "chat_id" not in params or not params.get("text"):
            raise LookupError("chat_id and text are required")
        chat_id = int(params["chat_id"])
        if self.flood_left > 0:
            self.flood_left -= 1
            raise Flood(self.flood_retry_after)
        if chat_id in self.blocked:
            raise Blocked()
        with self._lock:
            message_id = self._next_message
            self._next_message += 1
            self.sent.append(Sent(chat_id, str(params["text"]), params))
        return {"message_id": message_id, "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
                "from": BOT_USER, "text": params["text"]}
