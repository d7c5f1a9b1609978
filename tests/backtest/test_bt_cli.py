"""`perptrader backtest run|compare|list-strategies` on a temporary store."""

from __future__ import annotations

from pathlib import Path

import orjson
import pandas as pd
from typer.testing import CliRunner

from perptrader.cli import app
from perptrader.config import load_settings
from perptrader.marketdata.store.duckdb_store import DuckDBStore

runner = CliRunner()


def _store_with_data(fill) -> None:
    """Bars into the store the CLI opens (PERPTRADER__DATA_DIR points at tmp)."""
    path = load_settings().data_dir / "market.duckdb"
    path.parent.mkdir(parents=True, exist_ok=True)
    with DuckDBStore(path) as s:
        s.migrate()
        fill(s)


def test_run_writes_the_four_files_and_prints_json(fill, tmp_path: Path) -> None:
    _store_with_data(fill)
    out = tmp_path / "run1"
    res = runner.invoke(app, ["backtest", "run", "--symbol", "BTCUSDT", "--timeframe", "1h",
                              "--strategy", "sma_cross", "--param", "fast=5",
                              "--param", "slow=20", "--fee-taker", "0.0004", "--slippage", "2",
                              "--trials", "4", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    js = orjson.loads(res.stdout)
    assert js == orjson.loads((out / "result.json").read_bytes())
    assert js["params"]["fast"] == 5 and js["config"]["taker_fee"] == 0.0004
    assert js["config"]["slippage_bps"] == 2.0 and js["deflated_sharpe"]["n_trials"] == 4
    trades = pd.read_csv(out / "trades.csv")
    assert len(trades) == js["trades"]
    equity = pd.read_parquet(out / "equity.parquet")
    assert len(equity) == js["data"]["bars"] and "benchmark_equity" in equity.columns
    assert (out / "report.html").stat().st_size > 100_000


def test_run_table_then_compare(fill, tmp_path: Path) -> None:
    _store_with_data(fill)
    for name in ("sma_cross", "random"):
        res = runner.invoke(app, ["backtest", "run", "--symbol", "BTCUSDT", "--strategy",
                                  name, "--out", str(tmp_path / name)])
        assert res.exit_code == 0, res.output
        assert "buy_and_hold" in res.stdout and name in res.stdout
    res = runner.invoke(app, ["backtest", "compare", str(tmp_path / "sma_cross"),
                              str(tmp_path / "random"), "--json"])
    assert res.exit_code == 0, res.output
    data = orjson.loads(res.stdout)
    rows = data["runs"]
    assert [r["strategy"] for r in rows] == ["sma_cross", "random", "buy_and_hold"]
    assert rows[2]["label"] == "buy_and_hold"
    # two runs on the same bars: PBO over C(16, 8) = 12,870 CSCV splits
    assert data["pbo"]["n_strategies"] == 2 and data["pbo"]["n_splits"] == 12_870
    assert 0.0 <= data["pbo"]["pbo"] <= 1.0
    res = runner.invoke(app, ["backtest", "compare", str(tmp_path / "sma_cross"),
                              str(tmp_path / "random")])
    assert res.exit_code == 0 and "Backtests" in res.stdout
    assert "Probability of backtest overfitting" in res.stdout


def test_list_strategies() -> None:
    res = runner.invoke(app, ["backtest", "list-strategies", "--json"])
    assert res.exit_code == 0
    names = [s["name"] for s in orjson.loads(res.stdout)]
    assert names == ["buy_and_hold", "sma_cross", "vsa", "random", "always_flat", "model:NAME",
                     "rl:NAME"]
    res = runner.invoke(app, ["backtest", "list-strategies"])
    assert "sma_cross" in res.stdout and "fast=20" in res.stdout


def test_clear_errors(tmp_path: Path) -> None:
    res = runner.invoke(app, ["backtest", "run", "--symbol", "BTCUSDT", "--strategy", "nope",
                              "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "unknown strategy" in res.output
    res = runner.invoke(app, ["backtest", "run", "--symbol", "BTCUSDT", "--param", "fast",
                              "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "key=value" in res.output
    res = runner.invoke(app, ["backtest", "run", "--symbol", "BTCUSDT",
                              "--out", str(tmp_path / "x")])
    assert res.exit_code == 1 and "no 1h bars for BTCUSDT" in res.output  # empty store
    res = runner.invoke(app, ["backtest", "compare", str(tmp_path)])
    assert res.exit_code == 1 and "result.json" in res.output


def test_several_symbols_run_as_one_portfolio(fill, tmp_path: Path) -> None:
    _store_with_data(fill)
    path = load_settings().data_dir / "market.duckdb"
    with DuckDBStore(path) as s:
        fill(s, seed=4, symbol="ETHUSDT")
    res = runner.invoke(app, ["backtest", "run", "--symbol", "BTCUSDT", "--symbol", "ETHUSDT",
                              "--strategy", "random", "--out", str(tmp_path / "p"), "--json"])
    assert res.exit_code == 0, res.output
    js = orjson.loads(res.stdout)
    assert js["symbol"] == "BTCUSDT+ETHUSDT" and js["config"]["margin_mode"] == "cross"
