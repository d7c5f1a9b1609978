"""The paper engine on synthetic stores: parity with the backtester, the journal, the kill
switch, restarts, PostgreSQL, and refusals of bad input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
from typer.testing import CliRunner

from perptrader.backtest.engine import run_on_frame
from perptrader.cli import app
from perptrader.config import load_settings
from perptrader.marketdata.loader import funding_events, load
from perptrader.marketdata.store.duckdb_store import DuckDBStore
from perptrader.persistence import open_trading_db
from perptrader.strategies import get_strategy
from perptrader.trading.engine import Engine
from perptrader.trading.feeds import ReplayFeed
from perptrader.trading.spec import RunSpec
from store_frames import fill_store

runner = CliRunner()
START, END = pd.Timestamp("2024-01-03", tz="UTC"), pd.Timestamp("2024-02-10", tz="UTC")
REL = 1e-9


@pytest.fixture
def market(tmp_path: Path):
    """The store the CLI opens (PERPTRADER__DATA_DIR is the test's), 1,200 1h bars."""
    path = load_settings().data_dir / "market.duckdb"
    path.parent.mkdir(parents=True, exist_ok=True)
    with DuckDBStore(path) as store:
        store.migrate()
        fill_store(store, n=1_200, seed=7)
    store = DuckDBStore(path)
    yield store
    store.close()


def spec_for(strategy: str, **kw) -> RunSpec:
    return RunSpec(mode="paper", strategy=strategy, symbols=("BTCUSDT",), timeframe="1h",
                   replay=(START.isoformat(), END.isoformat()), **kw)


def paper_run(store, db, strategy: str, params=None, **kw) -> Engine:
    spec = spec_for(strategy, params=params or {}, **kw)
    policy = get_strategy(strategy, spec.params)
    feed = ReplayFeed(store, spec.symbols, spec.timeframe, START, END)
    engine = Engine.open(db, spec, policy, feed)
    assert engine.run() == "finished"
    return engine


def backtest(store, strategy: str, params=None, leverage: float = 1.0):
    frame = load("BTCUSDT", "1h", START, END, store=store)
    return run_on_frame(frame, get_strategy(strategy, params), symbol="BTCUSDT",
                        timeframe="1h", leverage=leverage,
                        funding=funding_events(store, "BTCUSDT", frame, "1h"))


def journal_fills(db, run_id: str) -> pd.DataFrame:
    fills = pd.DataFrame(db.fills(run_id))
    return fills.sort_values(["ts", "fill_id"]).reset_index(drop=True)


@pytest.mark.parametrize(("strategy", "params", "leverage"), [
    ("sma_cross", {"fast": "5", "slow": "30"}, 1.0),
    ("vsa", {"hold_bars": "8"}, 2.0),
    ("random", {"p_entry": "0.05", "p_exit": "0.1"}, 3.0),
])
def test_paper_equals_backtest(market, tmp_path: Path, strategy, params, leverage) -> None:
    """Same fills (time, side, qty, price, fee), funding, fees, liquidations and final
    equity as the backtest of the same policy over the same bars."""
    with open_trading_db(None, tmp_path / "j") as db:
        engine = paper_run(market, db, strategy, params, leverage=leverage)
        res = backtest(market, strategy, params, leverage)
        fills = journal_fills(db, engine.run_id)
        curve = db.equity_curve(engine.run_id)
        status = db.get_run(engine.run_id)
    assert status["status"] == "finished"
    sim = res.sim.fills.reset_index(drop=True)
    assert len(fills) == len(sim) > 5
    np.testing.assert_array_equal(pd.to_datetime(fills["ts"], unit="ms", utc=True),
                                  pd.DatetimeIndex(sim["ts"]))
    np.testing.assert_allclose(fills["qty"], sim["qty"].abs(), rtol=REL)
    np.testing.assert_allclose(fills["price"], sim["price"], rtol=REL)
    np.testing.assert_allclose(fills["fee"], sim["fee"], rtol=REL)
    assert list(fills["side"]) == ["buy" if s > 0 else "sell" for s in sim["side"]]
    bars = res.sim.bars
    np.testing.assert_allclose(curve["equity"].to_numpy(), bars["equity"].to_numpy(), rtol=REL)
    assert math.isclose(curve["fees_paid"].iloc[-1], res.sim.fees_paid, rel_tol=REL)
    assert math.isclose(curve["funding_paid"].iloc[-1], res.sim.funding_paid, rel_tol=REL,
                        abs_tol=1e-12)
    assert math.isclose(curve["equity"].iloc[-1], res.metrics["final_equity"], rel_tol=REL)


def test_cli_status_json_and_journal(market, tmp_path: Path) -> None:
    db = str(tmp_path / "t.sqlite")
    res = runner.invoke(app, ["trade", "paper", "--strategy", "sma_cross", "--param", "fast=5",
                              "--param", "slow=30", "--symbol", "BTCUSDT", "--replay",
                              "2024-01-03..2024-02-10", "--db", db, "--json"])
    assert res.exit_code == 0, res.output
    status = orjson.loads(res.stdout)
    bt = backtest(market, "sma_cross", {"fast": "5", "slow": "30"})
    assert math.isclose(status["final_equity"], bt.metrics["final_equity"], rel_tol=REL)
    assert status["status"] == "finished" and status["fills"] == len(bt.sim.fills)
    again = runner.invoke(app, ["trade", "status", "--db", db, "--json"])
    assert orjson.loads(again.stdout)["final_equity"] == status["final_equity"]
    for cmd in ("orders", "fills", "positions"):
        out = runner.invoke(app, ["trade", cmd, "--db", db, "--json"])
        assert out.exit_code == 0, out.output
        rows = orjson.loads(out.stdout)
        assert rows or cmd == "positions"
    orders = orjson.loads(runner.invoke(app, ["trade", "orders", "--db", db, "--json"]).stdout)
    assert {o["status"] for o in orders} <= {"filled", "expired"}
    ids = [o["client_order_id"] for o in orders]
    assert len(ids) == len(set(ids)) and all(len(i) <= 36 for i in ids)
    audit = runner.invoke(app, ["audit", "verify", "--db", db])
    assert audit.exit_code == 0, audit.output
    # the same command again: the run is finished, and says so
    rerun = runner.invoke(app, ["trade", "paper", "--strategy", "sma_cross", "--param",
                                "fast=5", "--param", "slow=30", "--symbol", "BTCUSDT",
                                "--replay", "2024-01-03..2024-02-10", "--db", db])
    assert rerun.exit_code == 1 and "already finished" in rerun.output


def test_restart_in_the_middle_gives_the_same_journal(market, tmp_path: Path) -> None:
    """A run stopped after 300 bars and opened again (a new process would do the same)
    ends with the same orders, fills and equity curve as an uninterrupted one."""
    params = {"hold_bars": "6"}
    with open_trading_db(None, tmp_path / "a") as db:
        whole = paper_run(market, db, "vsa", params)
        expect = (db.orders(whole.run_id), db.fills(whole.run_id),
                  db.equity_curve(whole.run_id))
    with open_trading_db(None, tmp_path / "b") as db:
        spec = spec_for("vsa", params=params)
        feed = ReplayFeed(market, spec.symbols, "1h", START, END)
        first = Engine.open(db, spec, get_strategy("vsa", params), feed)
        assert first.run(max_bars=300) == "running"
        second = Engine.open(db, spec, get_strategy("vsa", params), feed)
        assert second.run() == "finished"
        got = (db.orders(spec.run_id), db.fills(spec.run_id), db.equity_curve(spec.run_id))
        assert db.verify_audit().ok
    drop = ("created_at", "updated_at")
    assert [{k: v for k, v in o.items() if k not in drop} for o in got[0]] == \
        [{k: v for k, v in o.items() if k not in drop} for o in expect[0]]
    assert [{k: v for k, v in f.items() if k != "created_at"} for f in got[1]] == \
        [{k: v for k, v in f.items() if k != "created_at"} for f in expect[1]]
    pd.testing.assert_frame_equal(got[2], expect[2])


def test_kill_switch_cancels_blocks_flattens_and_survives_restart(market, tmp_path) -> None:
    dbpath = str(tmp_path / "k.sqlite")
    params = {"p_entry": "0.2", "p_exit": "0.2"}
    spec = spec_for("random", params=params)
    feed = ReplayFeed(market, spec.symbols, "1h", START, END)
    with open_trading_db(dbpath) as db:
        engine = Engine.open(db, spec, get_strategy("random", params), feed)
        engine.run(max_bars=100)
        while engine.broker.accounts["BTCUSDT"].position == 0.0:
            engine.run(max_bars=1)
        res = runner.invoke(app, ["trade", "stop", "--flatten", "--db", dbpath])
        assert res.exit_code == 0, res.output
        engine.run(max_bars=3)
        acc = engine.broker.accounts["BTCUSDT"]
        assert acc.position == 0.0  # flattened by the next open
        def sent() -> int:
            return sum(o["status"] != "denied" for o in db.orders(spec.run_id))

        n_orders = sent()
        engine.run(max_bars=50)
        assert sent() == n_orders  # intents are journaled as denied, none is sent
        denied = [o for o in db.orders(spec.run_id) if o["status"] == "denied"]
        assert denied and all("kill" in str(o["data"]) or o["status"] == "denied"
                              for o in denied)
        # a new process (a restart) is still killed
        again = Engine.open(db, spec, get_strategy("random", params), feed)
        again.run(max_bars=50)
        assert sent() == n_orders
        status = orjson.loads(runner.invoke(app, ["trade", "status", "--db", dbpath,
                                                  "--json"]).stdout)
        assert status["kill_switch"] and status["risk"]["trading_state"] == "halted"
        assert runner.invoke(app, ["trade", "resume", "--db", dbpath]).exit_code == 0
        again.run(max_bars=100)
        assert sent() > n_orders
        kinds = [r["kind"] for r in db.audit_rows(spec.run_id, limit=100_000)]
        assert "control.stop" in kinds and "kill" in kinds and "resume" in kinds
        assert db.verify_audit().ok


def test_risk_limits_deny_and_are_journaled(market, tmp_path: Path) -> None:
    """A leverage cap below the policy's exposure: every entry is denied with its reason,
    nothing trades, and the denials are in the journal."""
    with open_trading_db(None, tmp_path / "r") as db:
        engine = paper_run(market, db, "sma_cross", {"fast": "5", "slow": "30"},
                           leverage=3.0, risk=("max_leverage=2",))
        orders = db.orders(engine.run_id)
        assert orders and {o["status"] for o in orders} == {"denied"}
        assert not db.fills(engine.run_id)
        events = db.order_events(engine.run_id)
        assert any(e["kind"] == "deny" and "leverage" in str(e["detail"]) for e in events)


@pytest.mark.postgres
def test_paper_run_on_postgres_equals_sqlite(market, tmp_path: Path, pg_url: str) -> None:
    params = {"fast": "5", "slow": "30"}
    with open_trading_db(pg_url, tmp_path) as pg, open_trading_db(None, tmp_path / "s") as lite:
        a = paper_run(market, pg, "sma_cross", params)
        b = paper_run(market, lite, "sma_cross", params)
        pd.testing.assert_frame_equal(pg.equity_curve(a.run_id), lite.equity_curve(b.run_id))
        assert len(pg.fills(a.run_id)) == len(lite.fills(b.run_id))
        assert pg.verify_audit().ok


@pytest.mark.parametrize(("args", "message"), [
    (["--strategy", "no_such_policy"], "unknown strategy"),
    (["--strategy", "model:absent"], "no model named"),
    (["--strategy", "sma_cross", "--replay", "2030-01-01..2030-02-01"], "no 1h bars"),
    (["--strategy", "sma_cross", "--risk", "max_daily_loss=-0.1"], "max_daily_loss"),
    (["--strategy", "sma_cross", "--risk", "max_leverag=3"], "max_leverage"),
    (["--strategy", "sma_cross", "--replay", "2024-02-01..2024-01-01"], "not after"),
    (["--strategy", "sma_cross", "--leverage", "0.5"], "leverage"),
])
def test_bad_input_is_one_line_and_writes_nothing(market, tmp_path: Path, args, message):
    db = tmp_path / "bad" / "t.sqlite"
    base = ["trade", "paper", "--symbol", "BTCUSDT", "--db", str(db)]
    if "--replay" not in args:
        base += ["--replay", "2024-01-03..2024-02-10"]
    res = runner.invoke(app, base + args)
    assert res.exit_code != 0
    assert message in res.output, res.output
    assert "Traceback" not in res.output
    assert not db.exists()


def test_corrupted_trading_db_is_refused_untouched(market, tmp_path: Path) -> None:
    db = tmp_path / "t.sqlite"
    db.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 8)
    before = db.read_bytes()
    res = runner.invoke(app, ["trade", "paper", "--strategy", "sma_cross", "--symbol",
                              "BTCUSDT", "--replay", "2024-01-03..2024-02-10", "--db",
                              str(db)])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "trading database" in res.output or "not a" in res.output, res.output
    assert db.read_bytes() == before
    res = runner.invoke(app, ["trade", "status", "--db", str(db)])
    assert res.exit_code == 1 and db.read_bytes() == before
