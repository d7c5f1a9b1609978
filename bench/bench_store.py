"""Store benchmark: ingest speed and 1M-bar load time, embedded DuckDB vs PostgreSQL.

    .venv/bin/python bench/bench_store.py [--rows 1000000] [--url postgresql://...]

Both stores are measured in the same run on the same data: synthetic 1m bars (all
columns filled, like Binance klines) and, when present, the real BTCUSDT 5m freqtrade
file of ../shared/data. DuckDB writes to a temporary directory, PostgreSQL to a
throwaway schema that is dropped at the end. Targets (embedded store): ingest
>= 200k rows/s, loading 1M bars into a DataFrame < 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
import numpy as np
import pandas as pd

from perptrader.core.errors import StoreError
from perptrader.core.instruments import Instrument
from perptrader.marketdata.dataset import Dataset, validate
from perptrader.marketdata.kinds import Kind
from perptrader.marketdata.store.base import MarketStore
from perptrader.marketdata.store.duckdb_store import DuckDBStore
from perptrader.marketdata.store.postgres_store import PostgresStore

BTC = Instrument.parse("BTCUSDT")
INGEST_TARGET = 200_000  # rows/s
LOAD_TARGET_S = 1.0  # per 1M bars
REAL_5M = "freqtrade/binance/futures/BTC_USDT_USDT-5m-futures.feather"


def synthetic_bars(rows: int, seed: int = 7) -> Dataset:
    """A random walk of 1m bars with every column filled."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2019-01-01", periods=rows, freq="1min", tz="UTC")
    close = 10_000.0 * np.exp(np.cumsum(rng.normal(0, 5e-4, rows)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    spread = np.abs(rng.normal(0, 5e-4, rows)) * close
    volume = rng.gamma(2.0, 50.0, rows)
    frame = pd.DataFrame({
        "ts": ts,
        "open": open_,
        "high": np.maximum(open_, close) + spread,
        "low": np.minimum(open_, close) - spread,
        "close": close,
        "volume": volume,
        "quote_volume": volume * close,
        "trade_count": rng.integers(100, 5000, rows),
        "taker_buy_base": volume * rng.uniform(0.3, 0.7, rows),
    })
    frame["taker_buy_quote"] = frame["taker_buy_base"] * close
    return validate(Dataset(Kind.OHLCV, BTC, frame, "1m", source=f"synthetic {rows} 1m bars"))


def real_bars(shared: Path) -> Dataset | None:
    path = shared / REAL_5M
    if not path.exists():
        return None
    raw = pd.read_feather(path)
    frame = raw.rename(columns={"date": "ts"})[["ts", "open", "high", "low", "close", "volume"]]
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return validate(Dataset(Kind.OHLCV, BTC, frame, "5m", source=str(path)))


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(store: MarketStore, ds: Dataset, repeat: int) -> dict[str, float]:
    """Ingest into an empty store, ingest again (all duplicates), load (best of repeat)."""
    first = timed(lambda: store.write([ds]))
    again = timed(lambda: store.write([ds]))
    loads = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        frame = store.read(ds.kind, ds.instrument, ds.timeframe)
        loads.append(time.perf_counter() - t0)
        assert len(frame) == ds.rows, (len(frame), ds.rows)
    return {
        "ingest_rows_s": ds.rows / first,
        "reingest_rows_s": ds.rows / again,
        "load_s": min(loads),
        "load_median_s": statistics.median(loads),
        "load_s_per_1m": min(loads) * 1_000_000 / ds.rows,
    }


def run_duckdb(ds: Dataset, repeat: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-duckdb-") as tmp:
        store = DuckDBStore(Path(tmp) / "market.duckdb")
        try:
            store.migrate()
            return measure(store, ds, repeat)
        finally:
            store.close()


def run_postgres(url: str, ds: Dataset, repeat: int) -> dict[str, float]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    sep = "&" if "?" in url else "?"
    store = PostgresStore(f"{url}{sep}schema={schema}")
    try:
        store.migrate()
        return measure(store, ds, repeat)
    finally:
        store.close()
        asyncio.run(_drop_schema(url, schema))


async def _drop_schema(url: str, schema: str) -> None:
    con = await asyncpg.connect(url.replace("+asyncpg", ""), timeout=10)
    try:
        await con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await con.close()


def ratio(duck: float, pg: float, higher_is_better: bool) -> str:
    if not duck or not pg:
        return "-"
    factor = duck / pg if higher_is_better else pg / duck
    return f"PG {factor:.1f}x slower" if factor >= 1 else f"PG {1 / factor:.1f}x faster"


def report(name: str, rows: int, duck: dict[str, float], pg: dict[str, float] | None) -> None:
    print(f"\n{name}: {rows:,} rows")
    header = f"  {'metric':<30} {'duckdb':>12} {'postgresql':>12}  {'ratio':<18} target (embedded)"
    print(header)
    print("  " + "-" * (len(header) - 2))
    lines = [
        ("ingest, empty store (rows/s)", "ingest_rows_s", True, f">= {INGEST_TARGET:,}"),
        ("re-ingest, all dups (rows/s)", "reingest_rows_s", True, ""),
        ("load into DataFrame (s, best)", "load_s", False, ""),
        ("load into DataFrame (s, median)", "load_median_s", False, ""),
        ("load, per 1M bars (s)", "load_s_per_1m", False, f"< {LOAD_TARGET_S:g} s"),
    ]
    for label, key, higher, target in lines:
        d = duck[key]
        p = pg[key] if pg else None
        fmt = (lambda v: f"{v:,.0f}") if key.endswith("rows_s") else (lambda v: f"{v:.3f}")
        verdict = ""
        if target:
            ok = d >= INGEST_TARGET if key == "ingest_rows_s" else d < LOAD_TARGET_S
            verdict = f"{target}  {'OK' if ok else 'MISSED'}"
        print(f"  {label:<30} {fmt(d):>12} {fmt(p) if p else 'n/a':>12}  "
              f"{ratio(d, p, higher) if p else '-':<18} {verdict}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="synthetic 1m bars")
    ap.add_argument("--url", default=os.environ.get("PERPTRADER_BENCH_POSTGRES_URL",
                                                     "postgresql://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--repeat", type=int, default=3, help="loads per store (best is reported)")
    ap.add_argument("--no-real", action="store_true", help="skip the real 5m file")
    args = ap.parse_args(argv)

    shared = Path(os.environ.get("PERPTRADER_SHARED_DATA",
                                 Path(__file__).resolve().parents[2] / "shared" / "data"))
    print(f"perptrader store benchmark  python {platform.python_version()}  "
          f"{os.cpu_count()} CPUs  {platform.platform(terse=True)}")
    datasets = [("synthetic 1m bars (random walk, all columns filled)", synthetic_bars(args.rows))]
    real = None if args.no_real else real_bars(shared)
    if real is not None:
        datasets.append((f"real BTCUSDT 5m ({REAL_5M}, OHLCV only)", real))
    else:
        print(f"(real 5m file not used: {shared / REAL_5M} absent or --no-real)")

    for name, ds in datasets:
        duck = run_duckdb(ds, args.repeat)
        try:
            pg = run_postgres(args.url, ds, args.repeat)
        except StoreError as exc:
            print(f"(PostgreSQL skipped: {exc})")
            pg = None
        report(name, ds.rows, duck, pg)
    print("\ningest = store.write([dataset]) incl. staging, merge counting and upsert, one "
          "transaction;\nload = store.read(kind, instrument, timeframe) -> canonical DataFrame.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
