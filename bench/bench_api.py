"""API load benchmark: 50 WebSocket clients during a paced paper replay, against 50 REST
pollers of the same replay (the peer), in one run.

    .venv/bin/python bench/bench_api.py [--clients 50] [--speed 50] [--data synthetic|real]

What it does, all on loopback in a fresh temporary data dir:

1. a market store (synthetic 1h BTCUSDT bars, or ``--data real``: the real BTCUSDT 1h
   data of ../shared/data), an empty trading journal and a user;
2. ``perptrader serve`` in a subprocess;
3. phase ``ws``: N WebSocket clients log in and subscribe, then ``perptrader trade paper
   ... --speed S`` runs in another subprocess. Every client must receive every event in
   order: the same audit seqs as the journal (orders, fills, alerts) and every equity
   point. Delivery latency of an audit event = the client's receipt time - the time its
   row became visible in the journal, as seen by a watcher thread reading the SQLite
   file every 2 ms (a replay's audit ``ts`` is the simulated clock, not the wall clock);
4. phase ``rest`` (the peer): N clients poll ``GET /fills?limit=100`` every
   ``--interval`` s (the WebSocket hub's own poll interval, 0.2 s) during a second
   replay (initial cash 10,001: another run id); a fill's latency = the first poll that
   returns it - the time its ``fill`` audit row became visible (the same watcher).

Prints the p50 / p99 latency of both and their ratio (fills only, the events both
deliver), and exits non-zero when any WebSocket client missed or reordered an event.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
USER, PASSWORD = "bench", "a bench password, long enough"
SYNTHETIC_RANGE = "2024-01-03..2024-02-01"
REAL_RANGE = "2024-03-01..2024-03-31"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def make_market(data_dir: Path, kind: str) -> str:
    """The market store at <data_dir>/market.duckdb; returns the replay range."""
    from perptrader.marketdata.store.duckdb_store import DuckDBStore

    path = data_dir / "market.duckdb"
    if kind == "real":
        sys.path.insert(0, str(ROOT / "bench"))
        from perptrader.marketdata.importer import import_paths
        from perptrader.marketdata.sources.base import ImportHints
        from real_data import SHARED

        files = [SHARED / "freqtrade/binance/futures" / f for f in (
            "BTC_USDT_USDT-1h-futures.feather", "BTC_USDT_USDT-8h-funding_rate.feather",
            "BTC_USDT_USDT-1h-mark.feather")]
        files = [f for f in files if f.exists()]
        if not files or not files[0].name.endswith("1h-futures.feather"):
            raise SystemExit(f"no real BTCUSDT 1h data under {SHARED}")
        with DuckDBStore(path) as store:
            store.migrate()
            import_paths(files, store, ImportHints())
        return REAL_RANGE
    sys.path.insert(0, str(ROOT / "tests"))
    from store_frames import fill_store

    with DuckDBStore(path) as store:
        store.migrate()
        fill_store(store, n=800, seed=7)
    return SYNTHETIC_RANGE


def replay_cmd(span: str, speed: float, cash: float) -> list[str]:
    return [sys.executable, "-m", "perptrader.cli", "trade", "paper", "--strategy",
            "sma_cross", "--param", "fast=5", "--param", "slow=30", "--symbol", "BTCUSDT",
            "--replay", span, "--speed", str(speed), "--initial-cash", str(cash), "--json"]


async def run_replay(cmd: list[str], log: Path, env: dict[str, str]) -> float:
    t0 = time.monotonic()
    with log.open("w") as out:
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=out,
                                                    stderr=subprocess.STDOUT, env=env)
        rc = await proc.wait()
    if rc != 0:
        raise SystemExit(f"the replay failed ({rc}):\n{log.read_text()[-3000:]}")
    return time.monotonic() - t0


def journal_of(data_dir: Path, cash: float) -> tuple[str, list[dict], list[int]]:
    """(run id, audit rows, balance ts) of the run with that initial cash."""
    from perptrader.persistence import open_trading_db

    with open_trading_db(None, data_dir, create=False) as j:
        run = next(r for r in j.list_runs()
                   if float((r.get("config") or {}).get("initial_cash") or 0) == cash)
        run_id = str(run["run_id"])
        return run_id, j.audit_rows(run_id, limit=None), [int(b["ts"]) for b in
                                                          j.balances(run_id)]


class Watcher(threading.Thread):
    """Wall-clock time at which each audit row first became visible in the journal."""

    def __init__(self, db: Path, period: float = 0.002) -> None:
        super().__init__(name="journal-watcher", daemon=True)
        self.db, self.period = db, period
        self.seen: dict[int, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, check_same_thread=False)
        last = 0
        while not self.stop.is_set():
            try:
                rows = conn.execute("SELECT seq FROM audit_log WHERE seq > ? "
                                    "ORDER BY seq", (last,)).fetchall()
            except sqlite3.OperationalError:  # busy: next time
                rows = []
            now = time.time()
            for (seq,) in rows:
                self.seen[int(seq)] = now
                last = int(seq)
            time.sleep(self.period)
        conn.close()


# ---- phase ws ----------------------------------------------------------------------------
async def ws_client(url: str, token: str, ready: asyncio.Event, done: asyncio.Event,
                    out: list[tuple[float, dict]]) -> None:
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
            out.append((time.time(), json.loads(raw)))


async def phase_ws(base: str, token: str, n: int, cmd: list[str], data_dir: Path,
                   env: dict[str, str], cash: float, watcher: Watcher) -> dict[str, Any]:
    url = base.replace("http", "ws", 1) + "/api/v1/ws"
    readies = [asyncio.Event() for _ in range(n)]
    done = asyncio.Event()
    outs: list[list[tuple[float, dict]]] = [[] for _ in range(n)]
    tasks = [asyncio.create_task(ws_client(url, token, r, done, o))
             for r, o in zip(readies, outs, strict=True)]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 60)
    await asyncio.sleep(0.5)  # the hub's tail has started
    wall = await run_replay(cmd, data_dir / "replay-ws.log", env)
    run_id, rows, balances = journal_of(data_dir, cash)
    deadline = time.monotonic() + 60
    while not all(any(e["type"] == "alert" and e["run_id"] == run_id and
                      e["data"].get("kind") == "run.finish" for _, e in out) for out in outs):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    done.set()
    await asyncio.gather(*tasks, return_exceptions=True)

    from perptrader.api.events import audit_event

    expected = [int(r["seq"]) for r in rows if audit_event(r, "") is not None]
    ts_of = watcher.seen
    fill_seqs = {int(r["seq"]) for r in rows if r["kind"] == "fill"}
    complete, latencies, fill_lat = 0, [], []
    problems = []
    for i, out in enumerate(outs):
        mine = [(t, e) for t, e in out if e["run_id"] == run_id]
        seqs = [e["seq"] for _, e in mine if e["seq"] is not None]
        points = [p[0] for _, e in mine if e["type"] == "equity" for p in e["data"]["points"]]
        if seqs == expected and points == balances:
            complete += 1
        else:
            problems.append(f"client {i}: {len(seqs)}/{len(expected)} audit events, "
                            f"{len(points)}/{len(balances)} equity points, in order: "
                            f"{seqs == sorted(seqs)}")
        for t, e in mine:
            if e["seq"] is not None:
                lat = t - ts_of[e["seq"]]
                latencies.append(lat)
                if e["seq"] in fill_seqs:
                    fill_lat.append(lat)
    return {"run_id": run_id, "replay_s": wall, "events": len(expected),
            "equity_points": len(balances), "fills": len(fill_seqs), "complete": complete,
            "problems": problems, "lat": latencies, "fill_lat": fill_lat,
            "received": sum(len(o) for o in outs)}


# ---- phase rest (the peer) ------------------------------------------------------------------
async def rest_client(base: str, token: str, interval: float, done: asyncio.Event,
                      seen: dict[str, float], stats: list[int]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30,
                                 headers={"Authorization": f"Bearer {token}"}) as http:
        while not done.is_set():
            t0 = time.monotonic()
            res = await http.get("/api/v1/fills", params={"limit": 100})
            now = time.time()
            stats[0] += 1
            if res.status_code == 200:
                body = res.json()
                for row in body.get("rows") or body.get("fills") or []:
                    seen.setdefault(str(row["fill_id"]), now)
            else:
                stats[1] += 1
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - t0)))


async def phase_rest(base: str, token: str, n: int, interval: float, cmd: list[str],
                     data_dir: Path, env: dict[str, str], cash: float,
                     watcher: Watcher) -> dict[str, Any]:
    done = asyncio.Event()
    seens: list[dict[str, float]] = [{} for _ in range(n)]
    stats = [0, 0]
    tasks = [asyncio.create_task(rest_client(base, token, interval, done, s, stats))
             for s in seens]
    await asyncio.sleep(1.0)
    before = [set(s) for s in seens]  # fills of earlier runs
    wall = await run_replay(cmd, data_dir / "replay-rest.log", env)
    await asyncio.sleep(interval * 3 + 1.0)
    done.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    run_id, rows, _ = journal_of(data_dir, cash)
    fills = {}
    for r in rows:
        if r["kind"] == "fill":
            fills[str(json.loads(r["payload"])["fill_id"])] = watcher.seen[int(r["seq"])]
    lat, missing = [], 0
    for seen, old in zip(seens, before, strict=True):
        for fid, ts in fills.items():
            if fid in seen and fid not in old:
                lat.append(seen[fid] - ts)
            else:
                missing += 1
    return {"run_id": run_id, "replay_s": wall, "fills": len(fills), "fill_lat": lat,
            "missing": missing, "requests": stats[0], "errors": stats[1]}


def ms(x: float) -> str:
    return f"{x * 1000:8.1f} ms"


async def main_async(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="perptrader-bench-api-"))
    data_dir = tmp / "user_data"
    data_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERPTRADER__")}
    env.update({"PERPTRADER__DATA_DIR": str(data_dir),
                "PERPTRADER_CONFIG": str(tmp / "absent.toml"), "PYTHONUNBUFFERED": "1"})
    os.environ.update(env)
    proc = None
    try:
        span = args.range or make_market(data_dir, args.data)
        if args.range:
            make_market(data_dir, args.data)
        from perptrader.api.users import UserStore
        from perptrader.persistence import open_trading_db

        UserStore.in_data_dir(data_dir).add(USER, PASSWORD)
        with open_trading_db(None, data_dir):  # the journal exists before anyone listens
            pass
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        serve_log = (tmp / "serve.log").open("w")
        proc = subprocess.Popen([sys.executable, "-m", "perptrader.cli", "serve", "--host",
                                 "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                                stdout=serve_log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("perptrader serve did not start:\n" +
                                     (tmp / "serve.log").read_text()[-3000:])
                try:
                    if (await http.get("/api/v1/health")).is_success:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
            pair = (await http.post("/api/v1/auth/login", json={
                "username": USER, "password": PASSWORD})).json()
            token = pair["access_token"]
        print(f"perptrader API load: {args.clients} clients, replay {span} at "
              f"{args.speed:g} bars/s ({args.data} data), Python {platform.python_version()}, "
              f"{os.cpu_count()} CPUs")
        watcher = Watcher(data_dir / "trading.sqlite")
        watcher.start()
        ws = await phase_ws(base, token, args.clients, replay_cmd(span, args.speed, 10000.0),
                            data_dir, env, 10000.0, watcher)
        print(f"\nwebsocket: run {ws['run_id']}, replay {ws['replay_s']:.1f} s, "
              f"{ws['events']} audit events + {ws['equity_points']} equity points per client, "
              f"{ws['received']} messages received in all")
        print(f"  complete and in order: {ws['complete']}/{args.clients} clients")
        for p in ws["problems"][:10]:
            print("   ", p)
        print(f"  delivery latency, all audit events (n={len(ws['lat'])}): "
              f"p50 {ms(pct(ws['lat'], 50))}  p99 {ms(pct(ws['lat'], 99))}  "
              f"max {ms(max(ws['lat'], default=float('nan')))}")
        print(f"  delivery latency, fills (n={len(ws['fill_lat'])}): "
              f"p50 {ms(pct(ws['fill_lat'], 50))}  p99 {ms(pct(ws['fill_lat'], 99))}")
        rest = await phase_rest(base, token, args.clients, args.interval,
                                replay_cmd(span, args.speed, 10001.0), data_dir, env, 10001.0,
                                watcher)
        watcher.stop.set()
        print(f"\nREST peer: {args.clients} clients polling GET /fills every "
              f"{args.interval:g} s, run {rest['run_id']}, replay {rest['replay_s']:.1f} s, "
              f"{rest['requests']} requests ({rest['errors']} errors), "
              f"{rest['missing']} fills missed")
        print(f"  fill latency (n={len(rest['fill_lat'])}): p50 {ms(pct(rest['fill_lat'], 50))}"
              f"  p99 {ms(pct(rest['fill_lat'], 99))}")
        r50 = pct(rest["fill_lat"], 50) / pct(ws["fill_lat"], 50)
        r99 = pct(rest["fill_lat"], 99) / pct(ws["fill_lat"], 99)
        load = rest["requests"] / max(rest["replay_s"], 1e-9)
        print(f"\nratio REST poll / WebSocket, fill latency: p50 {r50:.2f}x  p99 {r99:.2f}x "
              f"(the REST peer made {load:.0f} requests/s; the WebSocket none)")
        ok = ws["complete"] == args.clients and ws["events"] > 0
        print("\nRESULT:", "ok" if ok else "FAILED: some client missed or reordered events")
        return 0 if ok else 1
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--speed", type=float, default=50.0, help="replay bars per second")
    ap.add_argument("--data", choices=("synthetic", "real"), default="synthetic")
    ap.add_argument("--range", help="replay START..END (default: ~4 weeks of the data)")
    ap.add_argument("--interval", type=float, default=0.2,
                    help="REST poll interval (default: the hub's, 0.2 s)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data dir")
    return asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
