"""``perptrader rl train|eval`` and ``backtest run --strategy rl:NAME`` on a temporary
store of ~6000 synthetic 1h BTCUSDT bars with 8h funding.

One ``rl train --agent ppo`` run (quick models fitted and registered, a few thousand
PPO steps) is shared by the slow tests of this module: it is trained once into a
module-level data directory, and each test points ``PERPTRADER__DATA_DIR`` at it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import Result
from typer.testing import CliRunner

from feature_frames import synthetic_frame
from perptrader.cli import app
from perptrader.rl.state import StateSpec

N_BARS = 6000
FIRST = pd.Timestamp("2024-01-01", tz="UTC")  # .. 2024-09-06 23:00
HOUR = pd.Timedelta("1h")
END = "2024-07-20"  # train before, evaluate after
EVAL_BARS = N_BARS - (pd.Timestamp(END, tz="UTC") - FIRST) // HOUR  # 1176
PPO = ["--timesteps", "4096", "--param", "n_envs=4", "--param", "n_steps=256",
       "--param", "batch_size=256", "--param", "eval_every=2048", "--end", END]
QUICK_MODELS = {"gbdt": "t-gbdt", "pattern": "t-xlstm-pattern",
                "indicator": "t-xlstm-indicator"}
KINDS = {"t-gbdt": "gbdt", "t-xlstm-pattern": "xlstm-pattern",
         "t-xlstm-indicator": "xlstm-indicator"}


def isolate(mp: pytest.MonkeyPatch, data_dir: Path) -> None:
    """What tests/conftest.py does per test: no perptrader.toml, data in ``data_dir``."""
    mp.setenv("PERPTRADER_CONFIG", str(data_dir.parent / "absent.toml"))
    mp.setenv("PERPTRADER__DATA_DIR", str(data_dir))
    for key in list(os.environ):
        if key.startswith("PERPTRADER__") and key != "PERPTRADER__DATA_DIR":
            mp.delenv(key)


def fill_store(data_dir: Path) -> None:
    """Synthetic bars and 8h funding in the store the CLI opens."""
    from perptrader.core.instruments import Instrument
    from perptrader.marketdata.dataset import Dataset, validate
    from perptrader.marketdata.kinds import Kind
    from perptrader.marketdata.store.duckdb_store import DuckDBStore

    frame = synthetic_frame(N_BARS, extras=False).reset_index()
    slots = pd.date_range(frame["ts"].iloc[0], frame["ts"].iloc[-1], freq="8h").as_unit("us")
    rates = np.random.default_rng(3).normal(1e-4, 1e-4, len(slots))
    funding = pd.DataFrame({"ts": slots, "rate": rates, "interval_hours": 8.0})
    inst = Instrument.parse("BTCUSDT")
    data_dir.mkdir(parents=True, exist_ok=True)
    with DuckDBStore(data_dir / "market.duckdb") as store:
        store.migrate()
        store.write([validate(Dataset(Kind.OHLCV, inst, frame, "1h", source="synthetic")),
                     validate(Dataset(Kind.FUNDING, inst, funding, source="synthetic"))])


def invoke(args: list[str]) -> Result:
    return CliRunner().invoke(app, args)


def flat_text(res: Result) -> str:
    """The output with Rich's panel borders and line wrapping removed."""
    return re.sub(r"\s+", " ", re.sub(r"[│╭╮╰╯─]", " ", res.output))


def leftovers(data_dir: Path) -> list[str]:
    """Half-written agent folders (the hidden temporaries of ``rl.storage``)."""
    root = data_dir / "agents"
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".")) \
        if root.is_dir() else []


@dataclass
class Trained:
    data_dir: Path
    manifest: dict[str, Any]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """``rl train --agent ppo --name t`` without --models, once for the module."""
    data_dir = tmp_path_factory.mktemp("rl_cli") / "user_data"
    with pytest.MonkeyPatch.context() as mp:
        isolate(mp, data_dir)
        fill_store(data_dir)
        res = invoke(["rl", "train", "--agent", "ppo", "--name", "t", *PPO, "--json"])
    assert res.exit_code == 0, res.output
    return Trained(data_dir, json.loads(res.stdout))


@pytest.fixture
def agent_dir(trained: Trained, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test runs the CLI on the module's trained data directory."""
    isolate(monkeypatch, trained.data_dir)
    return trained.data_dir


def registered(name: str) -> dict[str, Any]:
    res = invoke(["models", "show", name, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def ts(value: str) -> pd.Timestamp:
    t = pd.Timestamp(value)
    return t.tz_localize("UTC") if t.tzinfo is None else t


# ---- rl train (ppo, quick models) ---------------------------------------------------------
@pytest.mark.slow
def test_train_registers_quick_models_before_the_agent_windows(trained: Trained,
                                                               agent_dir: Path) -> None:
    m = trained.manifest
    assert (m["name"], m["agent"], m["symbol"], m["timeframe"]) == ("t", "ppo", "BTCUSDT",
                                                                    "1h")
    assert {role: ref["name"] for role, ref in m["models"].items()} == QUICK_MODELS
    res = invoke(["models", "list", "--json"])
    assert res.exit_code == 0, res.output
    assert {r["name"] for r in json.loads(res.stdout)} == set(KINDS)
    w = m["windows"]
    assert w["models"]["source"] == "quick"
    train0, train1 = ts(w["train"][0]), ts(w["train"][1])
    valid0, valid1 = ts(w["valid"][0]), ts(w["valid"][1])
    for name, kind in KINDS.items():
        reg = registered(name)
        assert reg["kind"] == kind and reg["version"] == 1
        last = ts(reg["data"]["last_bar"])
        assert last == ts(w["models"]["last_bar"])
        # no bar whose label the models saw is an agent bar
        assert last < train0 - reg["horizon"] * HOUR
    assert train0 < train1 <= valid0 < valid1 < ts(END)
    assert m["timesteps"] == 4096
    assert [r["label"] for r in m["training"]] == ["ppo"]
    assert m["training"][0]["timesteps"] >= 4096


@pytest.mark.slow
def test_train_writes_the_agent_folder(trained: Trained, agent_dir: Path) -> None:
    folder = agent_dir / "agents" / "t"
    assert Path(trained.manifest["path"]) == folder
    assert (folder / "ppo" / "policy.zip").is_file()
    assert (folder / "ppo" / "final.zip").is_file()
    assert any(p.is_file() for p in (folder / "tensorboard").rglob("*"))
    spec = StateSpec.from_dict(json.loads((folder / "state.json").read_text()))
    assert spec.columns == trained.manifest["state"]["columns"]
    assert {"gbdt", "pattern", "indicator", "vsa", "market"} <= set(spec.groups)
    assert leftovers(agent_dir) == []
    res = invoke(["rl", "list", "--json"])
    assert res.exit_code == 0, res.output
    listed = {a["name"]: a for a in json.loads(res.stdout)}
    assert listed["t"]["agent"] == "ppo" and listed["t"]["timesteps"] == 4096
    assert listed["t"]["train"] == trained.manifest["windows"]["train"]


# ---- rl eval -------------------------------------------------------------------------------
@pytest.mark.slow
def test_eval_is_out_of_sample_beside_the_baselines(trained: Trained,
                                                    agent_dir: Path) -> None:
    res = invoke(["rl", "eval", "--name", "t", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    for key in ("sharpe", "max_drawdown", "total_return", "trades", "action_distribution",
                "collapsed"):
        assert key in out, key
    assert isinstance(out["collapsed"], bool)
    assert out["verdict"] == ("ok" if not out["collapsed"] else
                              f"fail: collapsed ({out['collapse_reason']})")
    assert [r["seed"] for r in out["seeds"]] == [0]
    assert out["seeds"][0]["total_return"] == out["total_return"]
    assert sum(out["action_distribution"].values()) == pytest.approx(1.0, abs=1e-3)
    base = out["baselines"]
    assert {"buy_and_hold", "always_flat", "random"} <= set(base)
    threshold = [k for k in base if k.startswith("model_threshold")]
    assert threshold == ["model_threshold (t-gbdt)"]
    assert base["always_flat"]["total_return"] == 0.0 and base["always_flat"]["trades"] == 0
    assert base["buy_and_hold"]["trades"] == 1
    # out of sample: from the bar after the validation slice to the end of the data
    valid_end = ts(trained.manifest["windows"]["valid"][1])
    assert ts(out["start"]) == valid_end + HOUR == ts(END)
    assert ts(out["end"]) == FIRST + N_BARS * HOUR
    assert out["bars"] == EVAL_BARS
    assert not any("IN-SAMPLE" in w for w in out["warnings"])
    assert Path(out["report"]).is_file()
    assert (Path(out["report"]).parent / "rl_eval.json").is_file()
    # a window that overlaps the training data says so
    res = invoke(["rl", "eval", "--name", "t", "--start", "2024-07-01", "--end",
                  "2024-07-25", "--json"])
    assert res.exit_code == 0, res.output
    assert any("IN-SAMPLE" in w for w in json.loads(res.stdout)["warnings"])


# ---- several seeds -----------------------------------------------------------------------------
@pytest.mark.slow
def test_seeds_are_trained_evaluated_and_averaged(trained: Trained, agent_dir: Path) -> None:
    """``--seeds 2``: two policies (the second under seeds/1/), each checked on the
    validation slice at training time and evaluated out of sample; the mean is over both
    and the verdict fails when either collapsed."""
    models = ",".join(QUICK_MODELS.values())
    res = invoke(["rl", "train", "--name", "s2", "--models", models, "--seeds", "2", *PPO])
    assert res.exit_code == 0, res.output
    assert "verdict (validation slice): " in flat_text(res)
    folder = agent_dir / "agents" / "s2"
    assert (folder / "ppo" / "policy.zip").is_file()
    assert (folder / "seeds" / "1" / "ppo" / "policy.zip").is_file()
    m = json.loads((folder / "manifest.json").read_text())
    assert m["seeds"] == [0, 1] and m["ppo"]["seeds"] == 2
    assert m["ppo"]["ent_coef"] > m["ppo"]["ent_coef_end"]
    assert [r["seed"] for r in m["training"]] == [0, 1]
    checks = m["validation"]["seeds"]
    assert [c["seed"] for c in checks] == [0, 1]
    assert m["validation"]["verdict"].startswith("fail: collapsed") == any(
        c["collapsed"] for c in checks)
    res = invoke(["rl", "evaluate", "--name", "s2", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    rows = out["seeds"]
    assert [r["seed"] for r in rows] == [0, 1]
    assert out["total_return"] == rows[0]["total_return"]
    assert out["seed_mean"]["total_return"] == pytest.approx(
        np.mean([r["total_return"] for r in rows]))
    bad = [r["seed"] for r in rows if r["collapsed"]]
    assert out["collapsed"] == bool(bad)
    if bad:
        assert out["verdict"].startswith(f"fail: collapsed (seed {bad[0]}: ")
    else:
        assert out["verdict"] == "ok"
    res = invoke(["rl", "eval", "--name", "s2"])
    assert res.exit_code == 0, res.output
    assert f"verdict (out of sample): {out['verdict']}" in flat_text(res)


# ---- ppo-dual on the registered models --------------------------------------------------------
@pytest.mark.slow
def test_dual_agent_on_registered_models(trained: Trained, agent_dir: Path) -> None:
    models = ",".join(QUICK_MODELS.values())
    res = invoke(["rl", "train", "--agent", "ppo-dual", "--name", "d", "--models", models,
                  *PPO, "--json"])
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)
    folder = agent_dir / "agents" / "d"
    for label in ("pattern", "indicator"):
        assert (folder / label / "policy.zip").is_file()
    assert not (folder / "ppo").exists()
    assert [r["label"] for r in m["training"]] == ["pattern", "indicator"]
    assert m["committee"] is not None
    assert m["windows"]["models"]["source"] == "registry"
    assert {role: ref["name"] for role, ref in m["models"].items()} == QUICK_MODELS
    trained_until = ts(m["windows"]["models"]["trained_until"])
    horizon = registered("t-gbdt")["horizon"] * HOUR
    assert ts(m["windows"]["train"][0]) > trained_until + horizon
    res = invoke(["rl", "eval", "--name", "d", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["agent"] == "ppo-dual"
    for key in ("pattern_proposals", "indicator_proposals"):
        assert sum(out[key].values()) == pytest.approx(1.0, abs=1e-3)


# ---- the agent as a backtest strategy ----------------------------------------------------------
@pytest.mark.slow
def test_backtest_runs_the_agent(agent_dir: Path, tmp_path: Path) -> None:
    res = invoke(["backtest", "run", "--symbol", "BTCUSDT", "--strategy", "rl:t",
                  "--start", END, "--out", str(tmp_path / "bt"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["strategy"] == "rl:t" and out["params"] == {"agent": "t"}
    assert out["bars"] == EVAL_BARS
    assert out["trades"] > 0 and "benchmark" in out
    assert (tmp_path / "bt" / "result.json").is_file()
    res = invoke(["backtest", "run", "--symbol", "BTCUSDT", "--strategy", "rl:absent",
                  "--out", str(tmp_path / "bt2")])
    assert res.exit_code != 0 and "no agent 'absent'" in flat_text(res)


# ---- errors leave nothing half-written ---------------------------------------------------------
@pytest.mark.slow
def test_train_errors_leave_no_agent_folder(trained: Trained, agent_dir: Path) -> None:
    before = (agent_dir / "agents" / "t" / "manifest.json").read_text()
    res = invoke(["rl", "train", "--agent", "ppo", "--name", "t", *PPO])
    assert res.exit_code == 1 and "agent 't' exists" in flat_text(res)
    assert "--overwrite" in flat_text(res)
    assert (agent_dir / "agents" / "t" / "manifest.json").read_text() == before
    # fails after the agent's temporary folder was made (the window was loaded)
    res = invoke(["rl", "train", "--agent", "ppo-dual", "--name", "half", "--models",
                  "t-gbdt", *PPO])
    assert res.exit_code == 1 and "needs both xLSTM experts" in flat_text(res)
    assert not (agent_dir / "agents" / "half").exists()
    # refused before any work (fewer timesteps than one rollout)
    res = invoke(too_few_timesteps())
    assert res.exit_code == 1 and "less than one rollout" in flat_text(res)
    assert not (agent_dir / "agents" / "short").exists()
    assert leftovers(agent_dir) == []


def too_few_timesteps() -> list[str]:
    return ["rl", "train", "--name", "short", "--models", ",".join(QUICK_MODELS.values()),
            "--timesteps", "100", "--end", END]


@pytest.mark.slow
def test_too_few_timesteps_is_a_clean_error(agent_dir: Path) -> None:
    res = invoke(too_few_timesteps())
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit)
    assert "Error: --timesteps 100 is less than one rollout" in flat_text(res)


def test_unknown_agent_and_reward_term_are_refused() -> None:
    data_dir = Path(os.environ["PERPTRADER__DATA_DIR"])  # per test (tests/conftest.py)
    res = invoke(["rl", "train", "--agent", "a2c", "--name", "x", *PPO])
    assert res.exit_code == 1 and "unknown agent 'a2c'" in flat_text(res)
    res = invoke(["rl", "train", "--name", "x", "--reward-weight", "bogus=1", *PPO])
    assert res.exit_code == 2 and "unknown reward term(s) ['bogus']" in flat_text(res)
    res = invoke(["rl", "train", "--name", "x", "--reward", "nope", *PPO])
    assert res.exit_code == 2 and "unknown reward preset 'nope'" in flat_text(res)
    assert not (data_dir / "agents" / "x").exists()
    assert leftovers(data_dir) == []
    res = invoke(["rl", "eval", "--name", "x"])
    assert res.exit_code == 1 and "no agent 'x'" in flat_text(res)
