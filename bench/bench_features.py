"""Feature benchmark: the full feature set on 100k+ real BTCUSDT 5m bars, and the TA-Lib
indicator families against pandas-ta-classic computing the equivalent indicators.

    .venv/bin/python bench/bench_features.py [--bars 105120] [--repeat 3]

The real freqtrade BTCUSDT 5m file of ../shared/data is imported into a temporary
embedded store and loaded with the research loader (bars + funding + mark, as a build
sees them). Both sides are timed in the same run, best of ``--repeat``, after one
warm-up call (numba compilation and imports excluded). Target: the full set in < 3 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from perptrader.features.base import FeatureContext
from perptrader.features.pipeline import compute_features, plan
from perptrader.features.sets import get_set
from perptrader.marketdata.importer import import_paths
from perptrader.marketdata.loader import load
from perptrader.marketdata.sources.base import ImportHints
from perptrader.marketdata.store.duckdb_store import DuckDBStore

SHARED = Path(os.environ.get("PERPTRADER_SHARED_DATA",
                             Path(__file__).resolve().parents[2] / "shared" / "data"))
FILES = ("freqtrade/binance/futures/BTC_USDT_USDT-5m-futures.feather",
         "freqtrade/binance/futures/BTC_USDT_USDT-8h-funding_rate.feather",
         "freqtrade/binance/futures/BTC_USDT_USDT-1h-mark.feather")
TARGET_S = 3.0
INDICATOR_FAMILIES = ("trend", "momentum", "volatility", "volume")


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    fn()  # warm-up: imports, numba compilation, caches
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def real_frame(bars: int) -> pd.DataFrame:
    missing = [f for f in FILES if not (SHARED / f).exists()]
    if missing:
        sys.exit(f"real data absent: {missing} under {SHARED} (set PERPTRADER_SHARED_DATA)")
    with tempfile.TemporaryDirectory() as tmp:
        store = DuckDBStore(Path(tmp) / "market.duckdb")
        store.migrate()
        import_paths([SHARED / f for f in FILES], store, ImportHints())
        frame = load("BTCUSDT", "5m", store=store)
        store.close()
    if len(frame) < bars:
        sys.exit(f"only {len(frame)} 5m bars stored, {bars} asked")
    return frame.iloc[-bars:]


def pandas_ta_subset(frame: pd.DataFrame) -> pd.DataFrame:
    """The indicators of our four TA families, the pandas-ta-classic way."""
    import warnings

    import pandas_ta_classic as ta

    warnings.filterwarnings("ignore", module="pandas_ta_classic")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message="Converting to PeriodArray")
    h, lo, c, v = frame["high"], frame["low"], frame["close"], frame["volume"]
    cols = []
    for n in (10, 20, 50, 200):
        cols += [ta.sma(c, n), ta.ema(c, n)]
    cols += [ta.macd(c), ta.adx(h, lo, c), ta.supertrend(h, lo, c), ta.ichimoku(h, lo, c)[0],
             ta.rsi(c, 14), ta.rsi(c, 28), ta.stoch(h, lo, c), ta.stochrsi(c), ta.willr(h, lo, c),
             ta.cci(h, lo, c), ta.mfi(h, lo, c, v), ta.roc(c, 10), ta.mom(c, 10),
             ta.bbands(c, 20), ta.atr(h, lo, c, 14), ta.natr(h, lo, c, 14), ta.kc(h, lo, c),
             ta.donchian(h, lo, 20, 20), ta.donchian(h, lo, 55, 55), ta.obv(c, v),
             ta.vwap(h, lo, c, v), ta.ad(h, lo, c, v), ta.adosc(h, lo, c, v),
             ta.cmf(h, lo, c, v), ta.pvt(c, v), ta.nvi(c, v)]
    return pd.concat(cols, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bars", type=int, default=105_120, help="5m bars (105,120 = 1 year)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    frame = real_frame(args.bars)
    ctx = FeatureContext(symbol="BTCUSDT", timeframe="5m")
    full_plan = plan(frame, get_set("default"), ctx)
    families = full_plan.families
    ta_families = [f for f in families if f.name in INDICATOR_FAMILIES]
    n_full = sum(len(f.names) for f in families)
    n_ta = sum(len(f.names) for f in ta_families)

    print(f"perptrader feature benchmark · {platform.processor() or platform.machine()} · "
          f"{os.cpu_count()} CPUs · {len(frame):,} BTCUSDT 5m bars "
          f"{frame.index[0]:%Y-%m-%d} .. {frame.index[-1]:%Y-%m-%d}")
    t_full = best_of(args.repeat, lambda: compute_features(frame, families, ctx))
    per_family = {f.name: best_of(1, lambda f=f: f.run(frame, ctx)) for f in families}
    t_ours = best_of(args.repeat, lambda: compute_features(frame, ta_families, ctx))
    t_peer = best_of(args.repeat, lambda: pandas_ta_subset(frame))
    n_peer = pandas_ta_subset(frame).shape[1]

    print(f"\nfull default set: {n_full} features in {len(families)} families "
          f"(absent here: {', '.join(full_plan.absent) or 'none'})")
    print(f"  {t_full:.3f} s  ·  {n_full * len(frame) / t_full / 1e6:.1f} M feature-values/s"
          f"  ·  {n_full / t_full:,.0f} features/s  ·  target < {TARGET_S:.0f} s: "
          f"{'met' if t_full < TARGET_S else 'MISSED'}")
    print("  slowest families: " + ", ".join(
        f"{k} {v * 1000:.0f} ms" for k, v in sorted(per_family.items(), key=lambda kv: -kv[1])[:6]))
    print(f"\nindicator families ({', '.join(INDICATOR_FAMILIES)}), same bars, same run:")
    print(f"  perptrader (TA-Lib, stationary outputs): {n_ta} features in {t_ours:.3f} s")
    print(f"  pandas-ta-classic (raw indicators):      {n_peer} columns in {t_peer:.3f} s")
    print(f"  ratio: perptrader is {t_peer / t_ours:.1f}x faster "
          f"({n_ta / t_ours:,.0f} vs {n_peer / t_peer:,.0f} features/s)")


if __name__ == "__main__":
    main()
