"""Parity on real data: paper trading ``vsa``, ``sma_cross`` and a ``model:`` gbdt (plain
thresholds, and through a stored cost-aware layer) on a
replay of BTCUSDT 1h 2024 gives the same fills, fees, funding, liquidations and final
equity as ``backtest run`` of the same policy over the same bars (relative difference
< 1e-9), and ``trade status --json`` prints that final equity.

The model is a small LightGBM trained on 2023 on the ``vsa`` feature set (so the test
runs in CI time; its per-bar ``decide`` goes through the same live feature path, registry
and thresholds as a default-set model's)."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest
from typer.testing import CliRunner

from perptrader.backtest.engine import run_backtest
from perptrader.cli import app
from perptrader.config import load_settings
from perptrader.marketdata.importer import import_paths
from perptrader.marketdata.loader import load
from perptrader.marketdata.sources.base import ImportHints
from perptrader.marketdata.store.duckdb_store import DuckDBStore
from perptrader.ml.dataset import build_ml_frame
from perptrader.ml.decision import CostAwareRule, DecisionParams
from perptrader.ml.gbdt import LightGBMModel
from perptrader.ml.registry import register
from perptrader.ml.splits import WalkForwardSpec
from perptrader.strategies import get_strategy
from perptrader.trading.parity import TOLERANCE

REAL_FILES = (
    "freqtrade/binance/futures/BTC_USDT_USDT-1h-futures.feather",
    "freqtrade/binance/futures/BTC_USDT_USDT-1h-mark.feather",
    "freqtrade/binance/futures/BTC_USDT_USDT-8h-funding_rate.feather",
    "binance_vision/futures_um/BTCUSDT-1h-futures.csv",
    "binance_vision/futures_um/BTCUSDT-funding.csv",
)
runner = CliRunner()


@pytest.mark.integration
@pytest.mark.slow
def test_paper_equals_backtest_on_btcusdt_1h_2024(tmp_path) -> None:
    from shared_data import real_file

    paths = [real_file(name) for name in REAL_FILES]  # skips when the data is absent
    store_path = load_settings().data_dir / "market.duckdb"
    store_path.parent.mkdir(parents=True, exist_ok=True)
    with DuckDBStore(store_path) as store:
        store.migrate()
        import_paths(paths, store, ImportHints())
        train = load("BTCUSDT", "1h", "2023-01-01", "2024-01-01", store=store)
    data = build_ml_frame(train, symbol="BTCUSDT", timeframe="1h", feature_set="vsa")
    model = LightGBMModel({"n_estimators": 40, "num_leaves": 15, "num_threads": 1,
                           "early_stopping_rounds": 10, "learning_rate": 0.1})
    n = len(data.index)
    model.fit(data, np.arange(0, int(n * 0.8)), np.arange(int(n * 0.8) + 30, n))
    register("pt-vsa-gbdt", model, data=data, summary={}, spec=WalkForwardSpec())
    # the same model through a stored cost-aware layer: a path-dependent policy (the
    # position held decides the next target), its state carried bar by bar in paper
    rule = CostAwareRule(DecisionParams(enter=1.5, exit=0.25, min_hold=4), k=1.0,
                         horizon=24, round_trip_cost=0.0012, vol_window=72,
                         fundings_per_bar=1 / 8)
    register("pt-vsa-ca", model, data=data, spec=WalkForwardSpec(),
             summary={"decision": {"use": "cost_aware", "cost_aware": rule.as_dict(),
                                   "chosen_on": {}}})

    db = str(tmp_path / "trading.sqlite")
    # the small model is rarely sure: lower thresholds make it trade
    model_params = {"buy_threshold": "0.36", "sell_threshold": "0.36"}
    for name, params in (("vsa", {}), ("sma_cross", {}), ("model:pt-vsa-gbdt", model_params),
                         ("model:pt-vsa-ca", {})):
        args = [a for k, v in params.items() for a in ("--param", f"{k}={v}")]
        res = runner.invoke(app, ["trade", "paper", "--strategy", name, "--symbol", "BTCUSDT",
                                  "--replay", "2024-01-01..2025-01-01", "--db", db, "--json",
                                  *args])
        assert res.exit_code == 0, res.output
        status = orjson.loads(res.stdout)
        with DuckDBStore(store_path) as store:
            bt = run_backtest("BTCUSDT", "1h", get_strategy(name, params), "2024-01-01",
                              "2025-01-01", store=store)
        assert status["bars"] == bt.metrics.get("bars", len(bt.frame)) == 8_784
        assert status["fills"] == len(bt.sim.fills) > 10, name
        for paper, backtest in ((status["final_equity"], bt.metrics["final_equity"]),
                                (status["fees_paid"], bt.sim.fees_paid),
                                (status["funding_paid"], bt.sim.funding_paid)):
            assert math.isclose(paper, backtest, rel_tol=TOLERANCE, abs_tol=1e-9), name
        assert status["liquidations"] == bt.sim.liquidations
        # the journal's fills, one by one
        from perptrader.persistence import open_trading_db
        from perptrader.trading.parity import compare

        with open_trading_db(db, tmp_path, create=False) as journal:
            parity = compare(journal, status["run_id"], bt)
        assert parity.ok, parity.line()
