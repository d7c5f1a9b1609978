"""``perptrader train / models / predict`` and ``backtest run --strategy model:NAME`` on
a temporary store of synthetic bars."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from feature_frames import synthetic_frame
from perptrader.cli import app

QUICK = ["--symbol", "BTCUSDT", "--timeframe", "1h", "--set", "bars", "--quick",
         "--walk-forward", "train=40d,test=12d,folds=2"]


@pytest.fixture
def filled_store() -> None:
    from perptrader.core.instruments import Instrument
    from perptrader.marketdata.dataset import Dataset, validate
    from perptrader.marketdata.kinds import Kind
    from perptrader.marketdata.store.duckdb_store import DuckDBStore

    frame = synthetic_frame(2600, extras=False).reset_index()
    ds = Dataset(Kind.OHLCV, Instrument.parse("BTCUSDT"), frame, "1h", source="synthetic")
    # the store the CLI opens: data_dir (set per test by conftest) / market.duckdb
    with DuckDBStore(Path(os.environ["PERPTRADER__DATA_DIR"]) / "market.duckdb") as store:
        store.migrate()
        store.write([validate(ds)])


def test_train_models_predict_backtest(filled_store, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["train", *QUICK, "--model", "lightgbm", "--name", "syn",
                              "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["model"] == "lightgbm" and out["name"] == "syn" and out["version"] == 1
    for key in ("macro_f1", "accuracy", "prediction_distribution", "log_loss", "folds",
                "baselines", "trading", "warnings"):
        assert key in out, key
    assert len(out["folds"]) == 2
    assert {"macro_f1", "accuracy", "prediction_distribution"} <= set(out["folds"][0])
    assert set(out["baselines"]) == {"majority", "persistence", "logistic"}
    for b in out["baselines"].values():
        assert {"macro_f1", "accuracy", "prediction_distribution"} <= set(b)
    assert set(out["trading"]) >= {"model", "buy_and_hold", "first_bar", "bars"}
    # both decision layers on the same OOS probabilities; the stored one is cost-aware
    dec = out["decision"]
    assert dec["use"] == "cost_aware" and len(dec["folds"]) == 2
    cmp_ = dec["comparison"]
    assert cmp_["threshold"]["trades"] == out["trading"]["model"]["trades"]
    for key in ("threshold", "cost_aware", "buy_and_hold"):
        assert {"turnover", "cost_share", "sharpe"} <= set(cmp_[key]), key
    assert cmp_["cost_aware"]["turnover"] <= cmp_["threshold"]["turnover"]
    assert dec["chosen_on"]["tuning_rows"] >= out["n"] - 24
    assert Path(out["report"]).is_file()
    assert "plain 0.45 rule vs the cost-aware layer" in Path(out["report"]).read_text()
    # a second run is version 2; list and show see it
    res = runner.invoke(app, ["train", *QUICK[:-1], "train=40d,test=12d,folds=1",
                              "--model", "lightgbm", "--name", "syn"])
    assert res.exit_code == 0, res.output
    assert "baseline: logistic" in res.stdout and "buy_and_hold" in res.stdout
    assert "registered syn v2" in res.stdout
    assert "Decision layers" in res.stdout and "model:syn trades with" in res.stdout
    res = runner.invoke(app, ["models", "list", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [(r["name"], r["version"], r["versions"]) for r in rows] == [("syn", 2, [1, 2])]
    res = runner.invoke(app, ["models", "show", "syn", "--version", "1", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["metrics"]["oos"]["macro_f1"] == \
        pytest.approx(out["macro_f1"])
    res = runner.invoke(app, ["models", "show", "syn"])
    assert res.exit_code == 0 and "syn v2" in res.stdout
    # predict
    preds = tmp_path / "preds.parquet"
    res = runner.invoke(app, ["predict", "--model", "syn", "--symbol", "BTCUSDT",
                              "--out", str(preds), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    frame = pd.read_parquet(preds)
    assert info["version"] == 2 and len(frame) == info["rows"] > 1000
    assert info["skipped_rows"] == 0  # trees predict every row after the warm-up
    assert list(frame.columns[:4]) == ["SELL", "HOLD", "BUY", "predicted"]
    assert set(frame["predicted"].astype(str)) <= {"SELL", "HOLD", "BUY"}
    # the model as a backtest strategy
    res = runner.invoke(app, ["backtest", "run", "--symbol", "BTCUSDT", "--strategy",
                              "model:syn@1", "--param", "buy_threshold=0.4",
                              "--out", str(tmp_path / "bt"), "--json"])
    assert res.exit_code == 0, res.output
    bt = json.loads(res.stdout)
    assert bt["strategy"] == "model:syn" and bt["params"]["version"] == 1
    assert bt["params"]["buy_threshold"] == 0.4 and "benchmark" in bt
    assert bt["params"]["decision"] == "threshold"  # a threshold picks its rule
    res = runner.invoke(app, ["backtest", "run", "--symbol", "BTCUSDT", "--strategy",
                              "model:syn@1", "--out", str(tmp_path / "bt2"), "--json"])
    assert res.exit_code == 0, res.output
    params = json.loads(res.stdout)["params"]
    assert params["decision"] == "cost_aware"
    assert params["cost_aware"] == dec["cost_aware"]  # the layer train stored


def test_cli_errors(filled_store) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["train", *QUICK, "--model", "nope", "--name", "x"])
    assert res.exit_code == 2 and "unknown model" in res.output
    res = runner.invoke(app, ["predict", "--model", "absent", "--out", "x.parquet"])
    assert res.exit_code == 1 and "no model named" in res.output
    res = runner.invoke(app, ["train", *QUICK[:-1], "train=900d,test=30d", "--model",
                              "lightgbm", "--name", "x"])
    assert res.exit_code == 1 and "too short" in res.output
    res = runner.invoke(app, ["models", "list"])
    assert res.exit_code == 0 and "No models registered" in res.stdout
