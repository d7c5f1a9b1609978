"""Per-bar decision latency of the policies the paper engine runs, against recomputing
the batch targets on the whole window every bar.

    .venv/bin/python bench/bench_decide.py [--bars 300] [--history 6000] [--peer-bars 5]
                                           [--skip-rl]

Data: the real BTCUSDT 1h futures bars of ../shared/data (with 1h marks and 8h funding,
imported into a temporary store and loaded with the research loader, as the paper
engine's history would be); the benchmark refuses to run without them.

Policies:

* ``vsa``: the VSA entries strategy (its ``decide`` keeps the hold state between bars);
* ``model:bench-gbdt``: a quick LightGBM (a few dozen trees) trained here on the default
  feature set of the ``--history`` bars before the timed ones and registered in a
  temporary data directory; its ``decide`` computes one bar's features on the live path
  (``features.incremental``);
* ``rl:bench``: a tiny MaskablePPO agent trained here for a few hundred steps on that
  gbdt's state (its quality does not matter, only the work per decision does).

Each policy decides ``--bars`` consecutive bars (``decide(frame[: t + 1], view)``, t
rising), the first one a cold call that builds the policy's live state (reported apart,
not in the percentiles). The PEER is ``policy.targets(frame[: t + 1])[-1]``: what a
policy without a per-bar path costs (features on the whole window every bar); it is timed
on ``--peer-bars`` bars only, because it is slow. Both paths are checked to give the
same target on those bars.

Two timed paths per bar: ``decide`` alone (``time_bar``), and the paper engine's whole
bar (``Engine.process``: the account advances over the bar, the policy decides from the
real account, the risk manager checks the order, and the bar's fills, order, decision,
equity point, audit rows and checkpoint are committed to a SQLite journal with
``synchronous=FULL``, one transaction per bar, as a paced or live run does).

Wall-clock percentiles on a shared machine mostly measure the other processes, so every
line also gives the CPU time of the timed path (``time.thread_time``: the same work,
without the waiting; it still grows somewhat under load) and the wall p50 of the bars
that close a 4h bucket and of those that close a UTC day, where the higher-timeframe
copies of the default feature set are recomputed (they set the p99). The machine's load
average is printed before and after.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from real_data import btc_1h_store, have_btc_1h

SYMBOL, TIMEFRAME = "BTCUSDT", "1h"


# ---- timing ------------------------------------------------------------------------------------
def after_decision(target: float) -> None:
    """Nothing: ``decide`` alone (the engine's whole bar is timed by ``measure_engine``)."""


def time_bar(decide: Callable[[], float],
             after: Callable[[float], None] = after_decision) -> tuple[float, float]:
    """(target, seconds) of one bar's timed path: ``decide()`` then ``after(target)``."""
    return time_bar_cpu(decide, after)[:2]


def time_bar_cpu(decide: Callable[[], float],
                 after: Callable[[float], None] = after_decision
                 ) -> tuple[float, float, float]:
    """(target, wall seconds, CPU seconds of this thread) of one bar's timed path."""
    c0, t0 = time.thread_time(), time.perf_counter()
    target = decide()
    after(target)
    return target, time.perf_counter() - t0, time.thread_time() - c0


# ---- policies ----------------------------------------------------------------------------------
def quick_gbdt(frame: pd.DataFrame, name: str) -> None:
    """A LightGBM on the default feature set of ``frame``, registered as ``name``."""
    from perptrader.ml.dataset import build_ml_frame
    from perptrader.ml.gbdt import LightGBMModel
    from perptrader.ml.registry import register
    from perptrader.ml.splits import WalkForwardSpec

    data = build_ml_frame(frame, symbol=SYMBOL, timeframe=TIMEFRAME, feature_set="default")
    model = LightGBMModel({"n_estimators": 40, "num_leaves": 15, "num_threads": 2,
                           "early_stopping_rounds": 10, "learning_rate": 0.1})
    split = int(len(data) * 0.8)
    model.fit(data, np.arange(split - 50), np.arange(split, len(data) - 50))
    register(name, model, data=data, summary={}, spec=WalkForwardSpec())


def quick_agent(store: object, start: pd.Timestamp, model: str, name: str) -> None:
    """A tiny ppo agent on ``model``'s state, trained on the store from ``start``."""
    from perptrader.rl.agents import PPOSettings
    from perptrader.rl.train import train_agent

    train_agent(store, symbol=SYMBOL, timeframe=TIMEFRAME, agent="ppo", name=name,
                timesteps=512, start=start, models=[model], log=lambda *_: None,
                settings=PPOSettings(n_envs=2, n_steps=256, batch_size=256, n_epochs=1,
                                     net_arch=(64, 64), eval_every=512, episode_bars=200))


# ---- measuring ---------------------------------------------------------------------------------
def view_of(frame: pd.DataFrame, t: int) -> object:
    from perptrader.strategies.base import AccountView

    return AccountView.flat(frame.index[t], 10_000.0, float(frame["close"].iloc[t]))


def measure(policy: object, frame: pd.DataFrame, bars: int, peer_bars: int) -> dict:
    """Per-bar decide latencies over the last ``bars`` bars and the peer's."""
    n = len(frame)
    first = n - bars
    cold_target, cold = time_bar(lambda: policy.decide(frame.iloc[: first + 1],
                                                       view_of(frame, first)))
    lat, cpu, kinds, decided = [], [], [], {first: cold_target}
    for t in range(first + 1, n):
        target, dt, dc = time_bar_cpu(lambda t=t: policy.decide(frame.iloc[: t + 1],
                                                                view_of(frame, t)))
        lat.append(dt)
        cpu.append(dc)
        kinds.append(closes(frame.index[t]))
        decided[t] = target
    peer, mismatches = [], 0
    for t in range(n - peer_bars, n):
        target, dt = time_bar(lambda t=t: float(policy.targets(frame.iloc[: t + 1])[-1]))
        peer.append(dt)
        mismatches += target != decided[t]
    ms = np.asarray(lat) * 1000.0
    cpu_ms = np.asarray(cpu) * 1000.0
    peer_ms = np.asarray(peer) * 1000.0
    kind = np.asarray(kinds)
    return {"cold_ms": cold * 1000.0, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max()),
            "cpu_p50_ms": float(np.percentile(cpu_ms, 50)),
            "cpu_p99_ms": float(np.percentile(cpu_ms, 99)),
            **{f"{k}_p50_ms": float(np.percentile(ms[kind == k], 50))
               if (kind == k).any() else float("nan") for k in ("4h", "1d")},
            "peer_p50_ms": float(np.percentile(peer_ms, 50)),
            "ratio": float(np.percentile(peer_ms, 50) / np.percentile(ms, 50)),
            "peer_mismatches": int(mismatches), "decisions": len(ms) + 1}


def measure_engine(store: object, name: str, policy: object, frame: pd.DataFrame,
                   bars: int, tmp: str) -> dict:
    """Per-bar latency of ``Engine.process`` over the last ``bars`` bars of ``frame`` (the
    bars before them are the policy's history), journaled with one FULL commit per bar."""
    from perptrader.persistence import open_trading_db
    from perptrader.trading.engine import Engine
    from perptrader.trading.feeds import ReplayFeed
    from perptrader.trading.spec import RunSpec

    start = frame.index[len(frame) - bars]
    end = frame.index[-1] + pd.Timedelta(TIMEFRAME)
    history = len(frame) - bars
    spec = RunSpec(mode="paper", strategy=name, symbols=(SYMBOL,), timeframe=TIMEFRAME,
                   replay=(start.isoformat(), end.isoformat()), history_bars=history)
    feed = ReplayFeed(store, spec.symbols, TIMEFRAME, start, end, history_bars=history)
    lat, cpu = [], []
    with open_trading_db(None, Path(tmp) / f"journal-{name.replace(':', '-')}",
                         synchronous="FULL") as db:
        engine = Engine.open(db, spec, policy, feed, commit_every=1)
        for k, batch in enumerate(feed.batches()):
            c0, t0 = time.thread_time(), time.perf_counter()
            engine.process(batch)
            if not k:
                gc.freeze()  # as Engine.run does after its first bar
            if k:  # the first bar builds the policy's live state (cold)
                lat.append(time.perf_counter() - t0)
                cpu.append(time.thread_time() - c0)
        orders = len(db.orders(spec.run_id))
    ms, cpu_ms = np.asarray(lat) * 1000.0, np.asarray(cpu) * 1000.0
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "cpu_p50_ms": float(np.percentile(cpu_ms, 50)),
            "cpu_p99_ms": float(np.percentile(cpu_ms, 99)), "orders": orders}


def _init_args(policy: object) -> dict:
    """A fresh policy object's arguments (a new object: empty live caches)."""
    import dataclasses

    return {f.name: getattr(policy, f.name) for f in dataclasses.fields(policy) if f.init}


def closes(open_time: pd.Timestamp) -> str:
    """Which higher bucket the 1h bar opening at ``open_time`` closes: "1d", "4h" or ""."""
    close_h = open_time.value // 3_600_000_000_000 + 1
    return "1d" if close_h % 24 == 0 else "4h" if close_h % 4 == 0 else ""


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:  # not Linux
        return "n/a"


def report(name: str, res: dict, note: str = "", *, compared: bool = True) -> None:
    check = ("OK" if res["peer_mismatches"] == 0 else f"MISMATCH {res['peer_mismatches']}"
             ) if compared else "n/a"
    print(f"{name:18s} p50 {res['p50_ms']:8.2f} ms  p99 {res['p99_ms']:8.2f} ms  "
          f"max {res['max_ms']:8.1f} ms  cold {res['cold_ms']:8.0f} ms  | peer p50 "
          f"{res['peer_p50_ms']:9.1f} ms  x{res['ratio']:.0f}  "
          f"{check}"
          f"{'  ' + note if note else ''}")
    print(f"{'':18s} cpu p50 {res['cpu_p50_ms']:6.2f} ms  cpu p99 {res['cpu_p99_ms']:6.2f} ms"
          f"  | wall p50 on bars closing 4h {res['4h_p50_ms']:6.2f} ms, 1d "
          f"{res['1d_p50_ms']:6.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bars", type=int, default=300, help="consecutive bars decided")
    ap.add_argument("--history", type=int, default=6000,
                    help="bars held before the timed ones (the engine's history)")
    ap.add_argument("--peer-bars", type=int, default=5, help="bars the peer is timed on")
    ap.add_argument("--skip-rl", action="store_true", help="no agent (saves ~1 minute)")
    args = ap.parse_args()
    if not have_btc_1h():
        raise SystemExit("bench_decide needs the real BTCUSDT 1h files of ../shared/data")
    from perptrader.marketdata.loader import load
    from perptrader.ml.strategy import ModelStrategy
    from perptrader.rl.strategy import RLStrategy
    from perptrader.strategies.vsa import VsaStrategy

    print(f"# bench_decide  {platform.processor() or platform.machine()}  "
          f"{os.cpu_count()} CPUs  python {platform.python_version()}  "
          f"loadavg {loadavg()}")
    with tempfile.TemporaryDirectory() as tmp, btc_1h_store() as store:
        os.environ["PERPTRADER__DATA_DIR"] = str(Path(tmp) / "user_data")
        full = load(SYMBOL, TIMEFRAME, store=store)
        frame = full.iloc[-(args.history + args.bars):]
        print(f"# {len(frame)} bars {frame.index[0]} .. {frame.index[-1]}; "
              f"{args.bars} decided, peer on the last {args.peer_bars}")
        t0 = time.perf_counter()
        quick_gbdt(frame.iloc[: args.history // 2], "bench-gbdt")
        print(f"# quick gbdt trained in {time.perf_counter() - t0:.0f} s")
        policies: list[tuple[str, object]] = [
            ("vsa", VsaStrategy()),
            ("model:bench-gbdt", ModelStrategy("bench-gbdt")),
        ]
        if not args.skip_rl:
            t0 = time.perf_counter()
            quick_agent(store, frame.index[0], "bench-gbdt", "bench")
            print(f"# tiny agent trained in {time.perf_counter() - t0:.0f} s")
            policies.append(("rl:bench", RLStrategy("bench")))
        for name, policy in policies:
            res = measure(policy, frame, args.bars, args.peer_bars)
            rl = name.startswith("rl:")
            # the agent's batch targets run on its own simulated account, decide here on a
            # flat view: the latencies compare, the targets need not (tests check them)
            report(name, res, "(peer: run_agent on its own account)" if rl else "",
                   compared=not rl)
            if math.isnan(res["p50_ms"]):
                raise SystemExit(f"{name}: no latency measured")
            eng = measure_engine(store, name, type(policy)(**_init_args(policy)), frame,
                                 args.bars, tmp)
            print(f"{'':18s} engine bar (advance, decide, risk, journal commit): p50 "
                  f"{eng['p50_ms']:6.2f} ms  p99 {eng['p99_ms']:6.2f} ms  | cpu p50 "
                  f"{eng['cpu_p50_ms']:6.2f} ms  cpu p99 {eng['cpu_p99_ms']:6.2f} ms  | "
                  f"x{res['peer_p50_ms'] / eng['p50_ms']:.1f} vs the peer  "
                  f"({eng['orders']} orders)")
        print(f"# loadavg after {loadavg()}")


if __name__ == "__main__":
    main()
