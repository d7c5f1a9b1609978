"""``perptrader research run | lockbox | show`` end to end on a store of synthetic bars:
every planned trial recorded, the report and verdict written, the lockbox counted and
never seen by the research run, Ray and local runs identical."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from feature_frames import synthetic_frame
from perptrader.cli import app

runner = CliRunner()
SYMBOLS = {"BTCUSDT": 7, "ETHUSDT": 8, "SOLUSDT": 9}
N_BARS = 2000  # 1h: ~83 days

STUDY = """
[study]
name = "syn"
symbols = ["BTCUSDT", "ETHUSDT"]
timeframes = ["1h"]
lockbox = "12d"
feature_sets = ["bars"]
seed = 3

[walkforward]
"1h" = "train=40d,test=12d,valid=0.2"

[[labels]]
name = "adaptive"
kind = "adaptive"

[[labels]]
name = "tb_net"
kind = "triple_barrier"
k = 1.0

[[models]]
name = "lgbm"
kind = "lightgbm"

[[decisions]]
name = "threshold_045"
kind = "threshold"

[[decisions]]
name = "cost_aware"
kind = "cost_aware"

[[decisions]]
name = "meta"
kind = "meta"

[pooled]
enabled = true
timeframe = "1h"
train_symbols = ["BTCUSDT", "ETHUSDT"]
unseen_symbols = ["SOLUSDT"]

[[agents]]
name = "ppo"
timeframe = "1h"
symbols = ["BTCUSDT"]
seeds = [0, 1]
settings = {timesteps = 600}
"""

SMALL = """
[study]
name = "small"
symbols = ["BTCUSDT"]
timeframes = ["1h"]
lockbox = "12d"
feature_sets = ["bars"]

[walkforward]
"1h" = "train=40d,test=12d,valid=0.2"

[[decisions]]
name = "threshold_045"
kind = "threshold"

[[decisions]]
name = "cost_aware"
kind = "cost_aware"

[[decisions]]
name = "meta"
kind = "meta"
"""


def _write_store(path: Path, lockbox_shock: float = 1.0) -> None:
    """Synthetic 1h bars of three symbols; ``lockbox_shock`` scales the prices of the
    last 12 days (the lockbox), to prove the research run never reads them."""
    from perptrader.core.instruments import Instrument
    from perptrader.marketdata.dataset import Dataset, validate
    from perptrader.marketdata.kinds import Kind
    from perptrader.marketdata.store.duckdb_store import DuckDBStore

    datasets = []
    for symbol, seed in SYMBOLS.items():
        frame = synthetic_frame(N_BARS, seed=seed, extras=False).reset_index()
        tail = frame.index >= N_BARS - 12 * 24
        for col in ("open", "high", "low", "close"):
            frame.loc[tail, col] *= lockbox_shock
        datasets.append(Dataset(Kind.OHLCV, Instrument.parse(symbol), frame, "1h",
                                source="synthetic"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with DuckDBStore(path) as store:
        store.migrate()
        store.write([validate(ds) for ds in datasets])


@pytest.fixture
def store_dir() -> Path:
    data_dir = Path(os.environ["PERPTRADER__DATA_DIR"])
    _write_store(data_dir / "market.duckdb")
    return data_dir


def _run(args: list[str]):
    result = runner.invoke(app, args)
    return result


def test_study_run_lockbox_show(store_dir: Path, tmp_path: Path) -> None:
    study = tmp_path / "study.toml"
    study.write_text(STUDY)
    res = _run(["research", "run", str(study), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    folder = Path(out["folder"])
    # every planned trial ran and was recorded: 2 cells x 2 labels x 3 decisions, plus
    # 3 pooled symbols x 2 labels x 3 decisions, plus one agent trial (two seeds)
    assert out["planned_trials"] == 2 * 2 * 3 + 3 * 2 * 3 + 1
    assert out["n_trials"] == out["planned_trials"]
    trials = [json.loads(x) for x in (folder / "trials.jsonl").read_text().splitlines()]
    assert len(trials) == out["n_trials"]
    assert {t["kind"] for t in trials} == {"symbol", "pooled", "agent"}
    agent = next(t for t in trials if t["kind"] == "agent")
    assert len(agent["agent"]["seeds"]) == 2 and agent["verdict"].startswith(("ok", "fail"))
    trials = [t for t in trials if t["kind"] != "agent"]
    unseen = [t for t in trials if t["symbol"] == "SOLUSDT"]
    assert unseen and not any(t["seen"] for t in unseen)
    for t in trials:
        assert {"macro_f1", "ic", "rank_ic", "f1"} <= set(t["signal"])
        assert {"sharpe", "max_drawdown", "turnover", "cost_share"} <= set(t["trading"])
        assert "total_return" in t["buy_and_hold"]
        # no trial's test window reaches into the lockbox
        assert pd.Timestamp(t["last_bar"]) < pd.Timestamp(out["cells"][0]["research_end"])
    assert out["verdict"]["line"].startswith(("EDGE", "NO EDGE"))
    assert out["decision_comparison"]["summary"]["pairs"] == 2 * 2 + 3 * 2
    assert out["lockbox"]["looks"] == 0
    page = (folder / "report.html").read_text()
    assert "id='verdict'" in page and f"<b id='n-trials'>{out['n_trials']}</b>" in page
    assert "<b id='lockbox-looks'>0</b>" in page and "plotly" in page

    res = _run(["research", "lockbox", str(folder), "--json"])
    assert res.exit_code == 0, res.output
    looked = json.loads(res.stdout)["lockbox"]
    assert looked["looks"] == 1
    first = looked["first_look"]
    assert first["recipe"] == out["champion"]["recipe"] and first["cells"]
    for cell in first["cells"]:
        assert pd.Timestamp(cell["first_bar"]) >= pd.Timestamp(out["cells"][0]["research_end"])
        assert "total_return" in cell["trading"] and "total_return" in cell["buy_and_hold"]
        assert cell["deflated_sharpe"]["n_trials"] == out["n_trials"]
    # a second look is refused unless asked for, and then counted
    res = _run(["research", "lockbox", str(folder)])
    assert res.exit_code == 1 and "looked at 1 time(s) already" in res.output
    assert len(res.output.strip().splitlines()) == 1
    res = _run(["research", "lockbox", str(folder), "--again", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["lockbox"]["looks"] == 2
    page = (folder / "report.html").read_text()
    assert "<b id='lockbox-looks'>2</b>" in page and "only the first look" in page
    assert len((folder / "lockbox" / "looks.jsonl").read_text().splitlines()) == 2

    res = _run(["research", "show", str(folder)])
    assert res.exit_code == 0, res.output
    assert "lockbox looks: 2" in res.output


def _comparable(trials: list[dict]) -> list[dict]:
    drop = {"seconds", "train_seconds"}
    return [{k: v for k, v in t.items() if k not in drop} for t in trials]


def test_lockbox_prices_never_reach_the_research_trials(tmp_path: Path) -> None:
    from perptrader.marketdata.store.duckdb_store import DuckDBStore
    from perptrader.research.runner import run_study
    from perptrader.research.study import parse_study

    study = parse_study(SMALL)
    results = []
    for shock in (1.0, 3.0):
        path = tmp_path / f"s{shock}" / "market.duckdb"
        _write_store(path, lockbox_shock=shock)
        with DuckDBStore(path, read_only=True) as store:
            results.append(run_study(store, study, root=tmp_path / f"runs{shock}"))
    assert results[0].trials and _comparable(results[0].trials) == _comparable(
        results[1].trials)


def test_ray_and_local_give_the_same_trials(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is the optional 'distributed' extra")
    from perptrader.marketdata.store.duckdb_store import DuckDBStore
    from perptrader.research.runner import run_study
    from perptrader.research.study import parse_study

    study = parse_study(SMALL.replace('name = "threshold_045"', 'name = "t045"')
                        + '\n[[labels]]\nname = "adaptive"\n[[labels]]\nname = "tb"\n'
                          'kind = "triple_barrier"\n')
    path = tmp_path / "market.duckdb"
    _write_store(path)
    with DuckDBStore(path, read_only=True) as store:
        local = run_study(store, study, backend="local", root=tmp_path / "local")
        ray_run = run_study(store, study, backend="ray", jobs=2, root=tmp_path / "ray")
    assert len(local.trials) == 6
    assert _comparable(local.trials) == _comparable(ray_run.trials)
    assert local.summary["verdict"] == ray_run.summary["verdict"]


def test_bad_input_is_one_line(store_dir: Path, tmp_path: Path) -> None:
    cases = [
        (["research", "run", str(tmp_path / "nope.toml")], "cannot read the study file"),
        (["research", "run", str(tmp_path / "nope.toml"), "--backend", "spark"],
         "--backend must be one of local, ray"),
        (["research", "lockbox", str(tmp_path)], "not a study run folder"),
        (["research", "show", str(tmp_path)], "not a study run folder"),
    ]
    bad = tmp_path / "bad.toml"
    bad.write_text("[study]\nname='x'\nsymbols=['NOPEUSDT']\ntimeframes=['1h']\n")
    cases.append((["research", "run", str(bad)], "NOPEUSDT"))
    for args, message in cases:
        res = _run(args)
        assert res.exit_code == 1, (args, res.output)
        assert message in res.output, (args, res.output)
        assert "Traceback" not in res.output
    res = _run(["research", "init", str(tmp_path / "s.toml")])
    assert res.exit_code == 0 and (tmp_path / "s.toml").is_file()
    res = _run(["research", "init", str(tmp_path / "s.toml")])
    assert res.exit_code == 1 and "--force" in res.output


def test_selected_feature_set_in_a_study(store_dir: Path, tmp_path: Path) -> None:
    # rows before the first test bar only (synthetic bars start 2024-01-01; train 40d)
    res = _run(["research", "select", "--symbol", "BTCUSDT", "--set", "bars", "--name", "sel",
                "--end", "2024-02-05", "--min-t", "0", "--quick", "--json"])
    assert res.exit_code == 0, res.output
    chosen = json.loads(res.stdout)
    assert 0 < len(chosen["columns"]) < chosen["features_in"]
    study = tmp_path / "study.toml"
    study.write_text(SMALL.replace('feature_sets = ["bars"]', 'feature_sets = ["selected:sel"]'))
    res = _run(["research", "run", str(study), "--json"])
    assert res.exit_code == 0, res.output
    trials = json.loads(res.stdout)
    assert all(t["recipe"].startswith("selected:sel/") for t in trials["recipes"])
    # a set selected on rows the study tests on is refused
    res = _run(["research", "select", "--symbol", "BTCUSDT", "--set", "bars", "--name", "late",
                "--end", "2024-03-01", "--min-t", "0", "--quick"])
    assert res.exit_code == 0, res.output
    study.write_text(SMALL.replace('feature_sets = ["bars"]', 'feature_sets = ["selected:late"]'))
    res = _run(["research", "run", str(study)])
    assert res.exit_code == 1 and "past the study's first test bar" in res.output


def test_trials_logged_to_mlflow(store_dir: Path, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    mlflow = pytest.importorskip("mlflow", reason="MLflow is the optional 'tracking' extra")
    monkeypatch.chdir(tmp_path)  # MLflow keeps artifacts in ./mlruns beside a sqlite store
    study = tmp_path / "study.toml"
    study.write_text(SMALL)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    res = _run(["research", "run", str(study), "--mlflow", uri, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    client = mlflow.tracking.MlflowClient(uri)
    exp = client.get_experiment_by_name("perptrader-small")
    runs = client.search_runs([exp.experiment_id])
    parent = [r for r in runs if r.info.run_id == out["mlflow_run"]]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == out["mlflow_run"]]
    assert len(parent) == 1 and parent[0].data.metrics["n_trials"] == out["n_trials"]
    assert len(children) == out["n_trials"]
    assert {r.data.params["decision"] for r in children} == {"threshold_045", "cost_aware",
                                                             "meta"}
    assert all("trading.sharpe" in r.data.metrics or r.data.metrics.get("trading.trades") == 0
               for r in children)
