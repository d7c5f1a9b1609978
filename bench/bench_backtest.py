"""Backtest speed: perptrader.sim.simulate vs vectorbt and backtesting.py on ONE signal.

Data: a synthetic 1-minute random walk of 1,000,000 bars (about 1.9 years; seeded),
with a funding settlement every 8h (random rates around +0.01 %). Signal: SMA(50) vs
SMA(200) cross, long above / short below, decided at a bar close and filled at the next
bar's open in all three engines; 0.05 % taker fee.

* perptrader: full accounting (fees, 1 bp slippage, funding at every settlement, mark
  price, maintenance-margin tiers and liquidation checks on every bar).
* vectorbt ``Portfolio.from_signals``: fees only; the signal is shifted by one bar and
  filled at the open (``price=open``). Its numba functions compile on the first call: a
  warm-up on 5,000 bars runs first and is not timed.
* backtesting.py: event loop in Python, run on the first 100,000 bars only (it is
  slow); its bars/s is scaled from that slice.

Run: ``.venv/bin/python bench/bench_backtest.py [--bars N] [--slice N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
import warnings

import numpy as np
import pandas as pd
import talib

from perptrader.sim import CostModel, MarketData, SimConfig, simulate


def make_frame(n: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2023-01-01", periods=n, freq="1min", tz="UTC", name="ts")
    close = 30_000 * np.exp(np.cumsum(rng.normal(0, 0.0007, n)))
    open_ = np.r_[30_000.0, close[:-1]]
    wick = np.abs(rng.normal(0, 0.0003, n)) * close
    frame = pd.DataFrame({"open": open_, "high": np.maximum(open_, close) + wick,
                          "low": np.minimum(open_, close) - wick, "close": close,
                          "volume": rng.lognormal(3, 0.5, n)}, index=idx)
    slots = pd.date_range(idx[0], idx[-1] + pd.Timedelta("1min"), freq="8h")
    funding = pd.DataFrame({"ts": slots, "rate": rng.normal(1e-4, 5e-5, len(slots)),
                            "interval_hours": 8.0})
    return frame, funding


def sma_signal(close: np.ndarray, fast: int = 50, slow: int = 200) -> np.ndarray:
    diff = talib.SMA(close, fast) - talib.SMA(close, slow)
    return np.where(diff > 0, 1.0, np.where(diff < 0, -1.0, 0.0))


def run_ours(frame: pd.DataFrame, funding: pd.DataFrame, sig: np.ndarray) -> tuple[float, int]:
    cfg = SimConfig(initial_cash=10_000.0, leverage=1.0,
                    costs=CostModel(taker_fee=0.0005, slippage_bps=1.0))
    t = time.perf_counter()
    market = MarketData.from_frame(frame, symbol="BTCUSDT", timeframe="1m", funding=funding)
    res = simulate(market, sig, cfg)
    return time.perf_counter() - t, len(res.trades)


def run_vectorbt(frame: pd.DataFrame, sig: np.ndarray) -> tuple[float, int]:
    import vectorbt as vbt

    s = pd.Series(sig, index=frame.index).shift(1).fillna(0.0)  # decided at t, filled t+1
    change = s.ne(s.shift(1).fillna(0.0))
    t = time.perf_counter()
    pf = vbt.Portfolio.from_signals(
        frame["close"], entries=change & (s > 0), exits=change & (s <= 0),
        short_entries=change & (s < 0), short_exits=change & (s >= 0),
        price=frame["open"], fees=0.0005, init_cash=10_000.0, freq="1min")
    n_trades = int(pf.trades.count())
    return time.perf_counter() - t, n_trades


def run_backtesting_py(frame: pd.DataFrame, sig: np.ndarray) -> tuple[float, int]:
    from backtesting import Backtest, Strategy

    data = frame.rename(columns=str.capitalize).tz_localize(None)
    data["Sig"] = sig

    class Cross(Strategy):
        def init(self) -> None:
            self.sig = self.I(lambda: self.data.Sig, name="sig")

        def next(self) -> None:
            s = self.sig[-1]
            pos = self.position
            if s > 0 and not pos.is_long:
                pos.close()
                self.buy(size=0.99)
            elif s < 0 and not pos.is_short:
                pos.close()
                self.sell(size=0.99)
            elif s == 0 and pos:
                pos.close()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # whole units only in backtesting.py: a large account lets 99 % of equity buy
        # ~33,000 units at 30,000 (fees are proportional, so results scale)
        bt = Backtest(data, Cross, cash=1e9, commission=0.0005, finalize_trades=True)
        t = time.perf_counter()
        with contextlib.redirect_stderr(io.StringIO()):  # its tqdm progress bar
            stats = bt.run()
    return time.perf_counter() - t, int(stats["# Trades"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bars", type=int, default=1_000_000)
    ap.add_argument("--slice", type=int, default=100_000, help="bars for backtesting.py")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many timed runs")
    args = ap.parse_args()
    frame, funding = make_frame(args.bars)
    sig = sma_signal(frame["close"].to_numpy())
    print(f"data: synthetic 1m random walk, {len(frame):,} bars, {len(funding)} funding "
          f"settlements; signal: SMA(50)/SMA(200) cross, long/short")

    small, small_f = make_frame(5_000, seed=1)  # warm-ups (numba compile / caches)
    run_ours(small, small_f, sma_signal(small["close"].to_numpy()))
    run_vectorbt(small, sma_signal(small["close"].to_numpy()))

    # best of --repeat: the first big run of either engine also pays for page faults on
    # freshly allocated arrays, which says little about the engine
    ours_s, ours_n = min(run_ours(frame, funding, sig) for _ in range(args.repeat))
    vbt_s, vbt_n = min(run_vectorbt(frame, sig) for _ in range(args.repeat))
    k = min(args.slice, len(frame))
    bpy_s, bpy_n = run_backtesting_py(frame.iloc[:k], sig[:k])
    ours_k = run_ours(frame.iloc[:k], funding[funding["ts"] <= frame.index[k - 1]], sig[:k])[1]
    vbt_k = run_vectorbt(frame.iloc[:k], sig[:k])[1]

    rows = [("perptrader.sim (full accounting)", len(frame), ours_s, ours_n),
            ("vectorbt from_signals (fees only)", len(frame), vbt_s, vbt_n),
            (f"backtesting.py (first {k:,} bars)", k, bpy_s, bpy_n)]
    print(f"{'engine':40s} {'bars':>10s} {'seconds':>9s} {'bars/s':>12s} {'trades':>8s}")
    for name, n, sec, trades in rows:
        print(f"{name:40s} {n:>10,} {sec:>9.3f} {n / sec:>12,.0f} {trades:>8,}")
    ours_rate = len(frame) / ours_s
    print(f"ratio perptrader / vectorbt bars/s:      {ours_rate / (len(frame) / vbt_s):.2f}")
    print(f"ratio perptrader / backtesting.py bars/s: {ours_rate / (k / bpy_s):.1f} "
          f"(backtesting.py scaled from {k:,} bars)")
    print(f"trades on the full set: perptrader {ours_n:,}, vectorbt {vbt_n:,} "
          f"({(ours_n - vbt_n) / max(vbt_n, 1):+.1%})")
    print(f"trades on the first {k:,} bars: perptrader {ours_k:,}, vectorbt {vbt_k:,}, "
          f"backtesting.py {bpy_n:,}")


if __name__ == "__main__":
    main()
