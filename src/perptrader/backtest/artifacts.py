"""What a run leaves on disk, and reading it back for ``backtest compare``.

``DIR/result.json`` (metrics, config, data range, params, benchmark), ``DIR/trades.csv``
(the simulator's closed trades), ``DIR/equity.parquet`` (per-bar accounting of the
strategy plus the benchmark's equity) and ``DIR/report.html``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from perptrader.core.errors import PerptraderError

if TYPE_CHECKING:
    from perptrader.backtest.engine import BacktestResult

RESULT_FILE = "result.json"
TRADES_FILE = "trades.csv"
EQUITY_FILE = "equity.parquet"
REPORT_FILE = "report.html"


def write_run(res: BacktestResult, out_dir: Path, *, report: bool = True) -> dict[str, Path]:
    """Write the four files of a run into ``out_dir`` (created); returns their paths."""
    from perptrader.backtest.report import write_report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"result": out / RESULT_FILE, "trades": out / TRADES_FILE,
             "equity": out / EQUITY_FILE}
    paths["result"].write_bytes(orjson.dumps(res.as_json(), option=orjson.OPT_INDENT_2))
    res.sim.trades.to_csv(paths["trades"], index=False)
    equity = res.sim.bars.copy()
    equity["target"] = res.targets
    equity["benchmark_equity"] = res.benchmark.bars["equity"].to_numpy()
    equity.to_parquet(paths["equity"])
    if report:
        paths["report"] = write_report(res, out / REPORT_FILE)
    return paths


def read_result(run_dir: Path) -> dict[str, Any]:
    """``result.json`` of a run folder (or the file itself); a clear error otherwise."""
    path = Path(run_dir)
    if path.is_dir():
        path = path / RESULT_FILE
    if not path.is_file():
        raise PerptraderError(f"{run_dir}: no {RESULT_FILE} (not a `backtest run --out` "
                              f"folder)")
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise PerptraderError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or "benchmark" not in data or "strategy" not in data:
        raise PerptraderError(f"{path}: not a backtest result (no strategy/benchmark keys)")
    return data


__all__ = ["EQUITY_FILE", "REPORT_FILE", "RESULT_FILE", "TRADES_FILE", "read_result",
           "write_run"]
