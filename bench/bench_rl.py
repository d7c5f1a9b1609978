"""RL speed: the numba-backed environments against a naive pandas environment doing the
same accounting, and MaskablePPO training throughput on the vectorized environment.

    .venv/bin/python bench/bench_rl.py [--bars N] [--repeat 3] [--ppo-steps 32768]

Data: the real freqtrade BTCUSDT 1h futures bars of ../shared/data (with 8h funding and
1h mark bars, imported into a temporary store and loaded with the research loader), or,
when that is absent, a seeded synthetic 1h random walk with marks and 8h funding (a note
says so). Market state: 60 float columns, the ``vsa`` (39) and ``momentum`` (21) feature
families of ``perptrader.features`` computed on those bars (NaN warm-up rows read as 0).
All environments use ``rl_sim_config()`` (2x isolated margin, default costs, fill one bar
after the decision) and 720-bar episodes at random starts.

Measured in one run, best of ``--repeat`` after one untimed warm-up (numba compilation,
imports, first-touch allocations):

1. naive: a gymnasium env in this file that per step reads ONE pandas row
   (``data.iloc[t]``), builds a ``BarInput`` from it, advances ``sim.Account.step`` (the
   backtester's kernel, bar by bar) and builds the observation from the row. Because
   ``Account.step`` queues the decision with the bar that closes, its reward and equity
   lag the fast envs' by one bar; the work per step is the same and a check prints that
   both equity paths agree for one action sequence.
2. ``PerpFuturesEnv`` (one env, gymnasium API, info dict every step).
3. ``PerpVecEnv`` with 64 envs: env-steps/s (64 per ``step_wait``, auto-resets included),
   on one thread and on numba's threads (``parallel=True``, the default from 32 envs).
4. ``MaskablePPO`` on ``PerpVecEnv(16)``: timesteps / wall seconds of ``learn(N)``, with
   the share of that time spent in env stepping and action masks.

Every action is a random VALID one, sampled cheaply as ``argmax(mask * uniform)``; the
sampling and mask calls are inside the timed loops of 1-3 (an agent has to pay them).
Target: the vectorized env steps >= 100x faster than the naive env.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numba
import numpy as np
import pandas as pd

from perptrader.features.base import FeatureContext
from perptrader.features.pipeline import compute_features, plan
from perptrader.features.sets import get_set
from perptrader.rl import EnvMarket, PerpFuturesEnv, PerpVecEnv, rl_sim_config
from perptrader.rl import actions as ACT
from perptrader.rl import core as C
from perptrader.sim import Account, BarInput, SimConfig
from real_data import SHARED, btc_1h_store, have_btc_1h

STATE_FAMILIES = ("vsa", "momentum")
EPISODE_BARS = 720
TARGET_RATIO = 100.0
SYMBOL, TIMEFRAME = "BTCUSDT", "1h"


# ---- data ---------------------------------------------------------------------------------
def real_frame() -> pd.DataFrame | None:
    """The loader's BTCUSDT 1h frame (bars + marks + funding), None when data is absent."""
    from perptrader.marketdata.loader import load

    if not have_btc_1h():
        return None
    with btc_1h_store() as store:
        return load(SYMBOL, TIMEFRAME, store=store)


def synthetic_frame(n: int, seed: int = 0) -> pd.DataFrame:
    """A loader-shaped 1h random walk with mark bars and 8h funding (fallback only)."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2023-01-01", periods=n, freq="1h", tz="UTC", name="ts")
    close = 30_000 * np.exp(np.cumsum(rng.normal(0, 0.006, n)))
    open_ = np.r_[close[0], close[:-1]]
    wick = np.abs(rng.normal(0, 0.003, (2, n))) * close
    frame = pd.DataFrame({"open": open_, "high": np.maximum(open_, close) + wick[0],
                          "low": np.minimum(open_, close) - wick[1], "close": close,
                          "volume": rng.lognormal(6, 0.6, n)}, index=idx)
    mark = close * (1 + rng.normal(0, 2e-4, n))
    frame["mark_open"], frame["mark_close"] = open_, mark
    frame["mark_high"] = np.maximum(frame["high"], mark)
    frame["mark_low"] = np.minimum(frame["low"], mark)
    slot = (idx + pd.Timedelta("1h")).floor("8h")
    rates = pd.Series(rng.normal(1e-4, 1e-4, len(slot.unique())), index=slot.unique())
    frame["funding_rate"] = rates.reindex(slot).to_numpy()
    frame["funding_interval_hours"] = 8.0
    frame["funding_time"] = slot
    return frame


def market_state(frame: pd.DataFrame) -> pd.DataFrame:
    """The VSA + momentum feature columns: a realistic ~60-column float state."""
    ctx = FeatureContext(symbol=SYMBOL, timeframe=TIMEFRAME)
    families = [f for f in plan(frame, get_set("bars"), ctx).families
                if f.name in STATE_FAMILIES]
    return compute_features(frame, families, ctx).astype(np.float32)


# ---- the naive environment ------------------------------------------------------------------
class NaivePandasEnv(gym.Env):
    """One account, one pandas row per step: what an environment written without
    precomputed arrays looks like. Same actions, masks and accounting kernel as
    ``PerpFuturesEnv``; the observation is the row's state plus the same nine account
    values computed in Python (margin ratio as maintenance margin / equity)."""

    def __init__(self, data: pd.DataFrame, state_columns: list[str], config: SimConfig,
                 episode_bars: int = EPISODE_BARS) -> None:
        super().__init__()
        self.data = data
        self.state_columns = state_columns
        # positions, not labels: ``row[state_columns]`` (a label-list lookup per row) would
        # make this env ~3x slower and the comparison a strawman
        self._state_pos = data.columns.get_indexer(state_columns)
        self.config = config
        self.episode_bars = episode_bars
        self.max_exposure = config.leverage
        n_obs = len(state_columns) + C.N_ACCOUNT
        self.observation_space = gym.spaces.Box(-C.OBS_CLIP, C.OBS_CLIP, shape=(n_obs,),
                                                dtype=np.float32)
        self.action_space = gym.spaces.Discrete(ACT.N_ACTIONS)
        self._rng = np.random.default_rng()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        options = options or {}
        hi = len(self.data) - 1 - self.episode_bars
        self.t = int(options.get("start", self._rng.integers(0, hi + 1)))
        self.end = self.t + self.episode_bars
        self.account = Account(self.config, SYMBOL, timeframe=TIMEFRAME)
        self.target = 0.0
        self.prev_equity = self.peak = self.config.initial_cash
        self.entry_t = -1
        self.row = self.data.iloc[self.t]  # the bar that just closed, read once
        return self._observe(self.row), {}

    def action_masks(self) -> np.ndarray:
        return ACT.action_mask(self.target, self.max_exposure)

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not ACT.action_valid(self.target, int(action), self.max_exposure):
            action = ACT.HOLD
        new = float(ACT.next_target(self.target, int(action)))
        report = self.account.step(bar_input(self.row), new)
        self.target = 0.0 if report.liquidated else new
        if report.position_qty != 0.0 and self.entry_t < 0:
            self.entry_t = self.t
        elif report.position_qty == 0.0:
            self.entry_t = -1
        eq = report.equity
        reward = 100.0 * math.log(max(eq, 1e-9) / self.prev_equity)
        self.prev_equity, self.peak = eq, max(self.peak, eq)
        self.t += 1
        terminated = eq <= 0.0
        truncated = not terminated and self.t >= self.end
        self.row = self.data.iloc[self.t]
        obs = self._observe(self.row)
        return obs, reward, terminated, truncated, {"equity": eq, "target": self.target}

    def _observe(self, row: pd.Series) -> np.ndarray:
        state = row.to_numpy()[self._state_pos].astype(np.float32)
        acc = self.account
        eq = max(acc.equity, 1e-9)
        qty, ep, mark = acc.position, acc.entry_price, float(row["mark_close"])
        side = float(np.sign(qty))
        notional = abs(qty) * mark
        account = np.array([
            side, notional / eq, abs(self.target) / self.max_exposure,
            side * (float(row["close"]) - ep) / ep if qty and ep > 0 else 0.0,
            qty * (mark - ep) / eq if qty else 0.0,
            math.log(eq / self.config.initial_cash),
            acc.tiers.maintenance_margin(notional) / eq if qty else 0.0,
            (self.t - self.entry_t) / C.TIME_SCALE if self.entry_t >= 0 else 0.0,
            1.0 - eq / self.peak], dtype=np.float32)
        return np.clip(np.nan_to_num(np.concatenate([state, account])), -C.OBS_CLIP,
                       C.OBS_CLIP)


def bar_input(row: pd.Series) -> BarInput:
    """The loader row as ``Account.step`` receives it (what ``MarketData.bar`` builds)."""
    ft = row["funding_time"]
    return BarInput(ts=row.name, open=float(row["open"]), high=float(row["high"]),
                    low=float(row["low"]), close=float(row["close"]),
                    mark_open=float(row["mark_open"]), mark_high=float(row["mark_high"]),
                    mark_low=float(row["mark_low"]), mark_close=float(row["mark_close"]),
                    funding_rate=float(row["funding_rate"]),
                    funding_time=None if pd.isna(ft) else pd.Timestamp(ft))


# ---- timed loops ----------------------------------------------------------------------------
def sample(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random valid action per row of ``mask`` (argmax of mask * uniform)."""
    return (mask * rng.random(mask.shape)).argmax(-1)


def run_single(env: gym.Env, steps: int, seed: int = 0) -> float:
    """Step a gymnasium env ``steps`` times with random valid actions; returns seconds."""
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    t0 = time.perf_counter()
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(int(sample(env.action_masks(), rng)))
        if term or trunc:
            env.reset()
    return time.perf_counter() - t0


def run_vec(vec: PerpVecEnv, steps: int, seed: int = 0) -> float:
    """``steps`` calls of step_async/step_wait over all envs; returns seconds."""
    rng = np.random.default_rng(seed)
    vec.reset()
    t0 = time.perf_counter()
    for _ in range(steps):
        vec.step_async(sample(vec.action_masks(), rng))
        vec.step_wait()
    return time.perf_counter() - t0


def best_of(repeat: int, fn: Callable[[], float]) -> float:
    fn()  # warm-up: numba compilation / cache load, imports, allocations
    return min(fn() for _ in range(repeat))


def equity_check(naive: NaivePandasEnv, fast: PerpFuturesEnv, steps: int = 500) -> float:
    """Max |equity difference| of one random action path through both envs: the naive
    env's equity after its step k+1 is the fast env's after step k (one-bar lag)."""
    rng = np.random.default_rng(1)
    start = len(naive.data) // 3
    naive.reset(options={"start": start})
    fast.reset(options={"start": start, "end": start + steps})
    fast_eq, naive_eq = [], []
    for _ in range(steps):
        a = int(sample(fast.action_masks(), rng))
        fast_eq.append(fast.step(a)[4]["equity"])
        naive_eq.append(naive.step(a)[4]["equity"])
    return float(np.max(np.abs(np.array(fast_eq[:-1]) - np.array(naive_eq[1:]))))


class TimedVecEnv(PerpVecEnv):
    """PerpVecEnv that adds up the wall time PPO spends in it (steps and masks)."""

    env_seconds = 0.0

    def step_wait(self) -> Any:
        t0 = time.perf_counter()
        out = super().step_wait()
        self.env_seconds += time.perf_counter() - t0
        return out

    def env_method(self, method_name: str, *args: Any, **kwargs: Any) -> list[Any]:
        t0 = time.perf_counter()
        out = super().env_method(method_name, *args, **kwargs)
        self.env_seconds += time.perf_counter() - t0
        return out


def run_ppo(market: EnvMarket, timesteps: int) -> tuple[float, float]:
    """Seconds of ``MaskablePPO.learn(timesteps)`` and the share spent in the env."""
    from sb3_contrib import MaskablePPO

    vec = TimedVecEnv(market, 16, episode_bars=EPISODE_BARS, seed=0)
    model = MaskablePPO("MlpPolicy", vec, n_steps=256, batch_size=1024, n_epochs=4,
                        policy_kwargs=dict(net_arch=[64, 64]), device="cpu", seed=0,
                        verbose=0)
    t0 = time.perf_counter()
    model.learn(timesteps)
    wall = time.perf_counter() - t0
    return wall, vec.env_seconds / wall


# ---- main -----------------------------------------------------------------------------------
def load_data(bars: int | None) -> tuple[pd.DataFrame, str]:
    frame = real_frame()
    if frame is None:
        n = bars or 20_000
        print(f"NOTE: real data absent under {SHARED} (set PERPTRADER_SHARED_DATA); "
              f"using a synthetic 1h random walk of {n:,} bars")
        return synthetic_frame(n), "synthetic 1h random walk"
    if bars:
        frame = frame.iloc[-bars:]
    return frame, f"real BTCUSDT 1h {frame.index[0]:%Y-%m-%d} .. {frame.index[-1]:%Y-%m-%d}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bars", type=int, default=None, help="last N bars (default: all)")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many timed runs")
    ap.add_argument("--naive-steps", type=int, default=2_000)
    ap.add_argument("--single-steps", type=int, default=20_000)
    ap.add_argument("--vec-steps", type=int, default=2_000, help="step_wait calls (x64)")
    ap.add_argument("--ppo-steps", type=int, default=32_768, help="MaskablePPO timesteps")
    args = ap.parse_args()

    import torch

    frame, what = load_data(args.bars)
    state = market_state(frame)
    config = rl_sim_config()
    market = EnvMarket.build(frame, state, symbol=SYMBOL, timeframe=TIMEFRAME, config=config)
    data = pd.concat([frame, state], axis=1)
    cols = list(state.columns)
    print(f"perptrader RL benchmark · {platform.processor() or platform.machine()} · "
          f"{os.cpu_count()} CPUs · torch threads {torch.get_num_threads()}")
    print(f"data: {what}, {len(frame):,} bars; state: {len(cols)} float columns "
          f"({' + '.join(STATE_FAMILIES)} features), observation {market.state.shape[1]}"
          f" + {C.N_ACCOUNT} account = {len(cols) + C.N_ACCOUNT}")

    naive = NaivePandasEnv(data, cols, config)
    single = PerpFuturesEnv(market, episode_bars=EPISODE_BARS)
    vec = PerpVecEnv(market, 64, episode_bars=EPISODE_BARS, seed=0, parallel=False)
    vec_threads = PerpVecEnv(market, 64, episode_bars=EPISODE_BARS, seed=0, parallel=True)
    diff = equity_check(NaivePandasEnv(data, cols, config),
                        PerpFuturesEnv(market, episode_bars=None))
    print(f"accounting check: naive vs PerpFuturesEnv, 500 random valid actions, "
          f"max |equity diff| = {diff:.2e} USDT")

    t_naive = best_of(args.repeat, lambda: run_single(naive, args.naive_steps))
    t_single = best_of(args.repeat, lambda: run_single(single, args.single_steps))
    t_vec = best_of(args.repeat, lambda: run_vec(vec, args.vec_steps))
    t_vec_threads = best_of(args.repeat, lambda: run_vec(vec_threads, args.vec_steps))
    run_ppo(market, 4_096)  # warm-up: torch kernels, allocator
    t_ppo, env_share = min(run_ppo(market, args.ppo_steps) for _ in range(args.repeat))

    rows = [("naive pandas env (iloc + Account.step)", args.naive_steps / t_naive),
            ("PerpFuturesEnv (1 env)", args.single_steps / t_single),
            ("PerpVecEnv (64 envs, env-steps, one thread)", args.vec_steps * 64 / t_vec),
            (f"PerpVecEnv (64 envs, env-steps, {numba.get_num_threads()} numba threads)",
             args.vec_steps * 64 / t_vec_threads),
            (f"MaskablePPO learn, PerpVecEnv(16), {args.ppo_steps:,} steps",
             args.ppo_steps / t_ppo)]
    base = rows[0][1]
    print(f"\n{'env':52s} {'steps/s':>12s} {'vs naive':>10s}")
    for name, rate in rows:
        print(f"{name:52s} {rate:>12,.0f} {rate / base:>9.1f}x")
    print(f"\nPPO: {t_ppo:.2f} s wall (best of {args.repeat} after a 4,096-step warm-up), "
          f"{env_share:.1%} of it in env stepping + action masks")
    ratio = max(rows[2][1], rows[3][1]) / base
    print(f"target: vectorized env >= {TARGET_RATIO:.0f}x the naive env: {ratio:,.0f}x "
          f"-> {'PASS' if ratio >= TARGET_RATIO else 'FAIL'}")


if __name__ == "__main__":
    main()
