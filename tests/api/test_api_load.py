"""Load, bounded: 10 WebSocket clients during a short paced paper replay (another
process) each receive every event, in order: the same audit seqs as the journal (orders,
fills, alerts) and every equity point. No timing asserts (bench/bench_api.py measures
latency with 50 clients)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from api.helpers import PASSWORD, USER
from perptrader.api.events import audit_event
from perptrader.persistence import open_trading_db

pytestmark = pytest.mark.slow
CLIENTS = 10
REPLAY = ["trade", "paper", "--strategy", "sma_cross", "--param", "fast=5", "--param",
          "slow=30", "--symbol", "BTCUSDT", "--replay", "2024-01-03..2024-01-12",
          "--speed", "40", "--json"]


async def _client(url: str, token: str, ready: asyncio.Event, done: asyncio.Event,
                  out: list[dict]) -> None:
    from websockets.asyncio.client import connect

    async with connect(url, max_size=2**24) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello", hello
        ready.set()
        while not done.is_set():
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=0.5)
            except TimeoutError:
                continue
            out.append(json.loads(raw))


async def _run(server: str, data_dir: Path) -> tuple[str, list[list[dict]]]:
    async with httpx.AsyncClient(base_url=server) as http:
        pair = (await http.post("/api/v1/auth/login",
                                json={"username": USER, "password": PASSWORD})).json()
    url = server.replace("http", "ws", 1) + "/api/v1/ws"
    readies = [asyncio.Event() for _ in range(CLIENTS)]
    done = asyncio.Event()
    outs: list[list[dict]] = [[] for _ in range(CLIENTS)]
    tasks = [asyncio.create_task(_client(url, pair["access_token"], r, done, o))
             for r, o in zip(readies, outs, strict=True)]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 30)
    await asyncio.sleep(0.5)  # the shared tail has started (from "now")
    log = data_dir / "replay.log"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "perptrader.cli", *REPLAY, stdout=log.open("w"),
        stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert await asyncio.wait_for(proc.wait(), 240) == 0, log.read_text()[-2000:]
    with open_trading_db(None, data_dir, create=False) as j:
        run_id = str(j.latest_run()["run_id"])
    # every client has the run's last audit event (run.finish), then one more poll
    deadline = time.monotonic() + 30
    while not all(any(e["type"] == "alert" and e["data"].get("kind") == "run.finish"
                      for e in out) for out in outs):
        assert time.monotonic() < deadline, [len(o) for o in outs]
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    done.set()
    await asyncio.gather(*tasks)
    return run_id, outs


def test_every_client_gets_every_event_in_order(server: str, user, market: Path,
                                               data_dir: Path) -> None:
    with open_trading_db(None, data_dir):  # the journal exists before anyone listens
        pass
    run_id, outs = asyncio.run(_run(server, data_dir))
    with open_trading_db(None, data_dir, create=False) as j:
        rows = j.audit_rows(run_id, limit=None)
        balances = [int(b["ts"]) for b in j.balances(run_id)]
    expected = [int(r["seq"]) for r in rows if audit_event(r, "") is not None]
    kinds = {r["kind"] for r in rows}
    assert {"run.start", "order.create", "fill", "run.finish"} <= kinds
    assert len(expected) >= 20 and len(balances) >= 100
    for i, out in enumerate(outs):
        mine = [e for e in out if e["run_id"] == run_id]
        seqs = [e["seq"] for e in mine if e["seq"] is not None]
        assert seqs == expected, (i, len(seqs), len(expected))
        points = [p[0] for e in mine if e["type"] == "equity" for p in e["data"]["points"]]
        assert points == balances, (i, len(points), len(balances))
        assert any(e["type"] == "position" for e in mine)
    # every client saw exactly the same stream
    first = [(e["type"], e["seq"], e["at"]) for e in outs[0]]
    for out in outs[1:]:
        assert [(e["type"], e["seq"], e["at"]) for e in out] == first
