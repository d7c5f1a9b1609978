"""Round trips of every table, transactions, duplicates, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from perptrader.persistence import (
    DuplicateError,
    StateEntry,
    TradingDB,
    TradingStateError,
    Tx,
    open_trading_db,
    to_ms,
)
from perptrader.persistence.migrate import VERSION_TABLE
from perptrader.persistence.models import Base

T0 = 1_735_689_600_000  # 2025-01-01T00:00Z
H = 3_600_000


def order(seq: int, run_id: str = "r1", **extra: object) -> dict[str, object]:
    return {"client_order_id": f"{run_id}-{seq}", "run_id": run_id, "seq": seq,
            "symbol": "BTCUSDT", "side": "buy", "type": "limit", "qty": 0.5, "price": 100.0,
            "status": "new", **extra}


def new_run(tx: Tx, run_id: str = "r1", mode: str = "paper", created_at: int = T0) -> None:
    tx.create_run(run_id, mode=mode, strategy="sma_cross", timeframe="1h",
                  symbols=["BTCUSDT", "ETHUSDT"], params={"fast": 10, "slow": 30},
                  config={"leverage": 2.0, "costs": {"taker": 5e-4}, "replay": [T0, T0 + H]},
                  created_at=created_at)


def test_runs(db: TradingDB) -> None:
    with db.transaction() as tx:
        new_run(tx, "r1", created_at=T0)
        new_run(tx, "r2", mode="live", created_at=T0 + 1)
        new_run(tx, "r3", created_at=T0 + 2)
        with pytest.raises(ValueError, match="mode"):
            new_run(tx, "r4", mode="backtest")
    run = db.get_run("r1")
    assert run is not None
    assert {k: run[k] for k in ("mode", "strategy", "params", "symbols", "timeframe",
                                "config", "status", "created_at")} == {
        "mode": "paper", "strategy": "sma_cross", "params": {"fast": 10, "slow": 30},
        "symbols": ["BTCUSDT", "ETHUSDT"], "timeframe": "1h",
        "config": {"leverage": 2.0, "costs": {"taker": 5e-4}, "replay": [T0, T0 + H]},
        "status": "running", "created_at": T0}
    assert [r["run_id"] for r in db.list_runs()] == ["r3", "r2", "r1"]
    assert db.latest_run()["run_id"] == "r3"  # type: ignore[index]
    assert db.latest_run(mode="live")["run_id"] == "r2"  # type: ignore[index]
    assert db.get_run("nope") is None
    with db.transaction() as tx:
        tx.update_run_status("r1", "stopped")
        with pytest.raises(TradingStateError, match="no run 'nope'"):
            tx.update_run_status("nope", "stopped")
    assert db.get_run("r1")["status"] == "stopped"  # type: ignore[index]


def test_orders_events_and_seq(db: TradingDB) -> None:
    with db.transaction() as tx:
        new_run(tx)
        assert tx.next_seq("r1") == 1
        tx.insert_order(order(1, decided_ts=pd.Timestamp(T0, unit="ms", tz="UTC"),
                              target_exposure=np.float32(0.5), reduce_only=np.bool_(True),
                              data={"signal": np.float64(0.25), "features": np.arange(3)}))
        assert tx.next_seq("r1") == 2
        tx.insert_order(order(2, type="stop_market", price=None, stop_price=95.0,
                              time_in_force="GTC", post_only=False))
        tx.insert_order(order(3))
    assert db.next_seq("r1") == 4
    first = db.order("r1-1")
    assert first is not None
    assert first["decided_ts"] == T0 and first["target_exposure"] == 0.5
    assert first["reduce_only"] is True and first["post_only"] is False
    assert first["data"] == {"signal": 0.25, "features": [0, 1, 2]}
    assert first["filled_qty"] == 0.0 and first["fees"] == 0.0 and first["avg_fill_price"] is None

    with db.transaction() as tx:
        tx.update_order("r1-1", venue_order_id="V1")
        event = tx.transition_order("r1-1", "filled", kind="fill", ts=T0 + 5,
                                    detail={"fill_id": "f1"}, filled_qty=0.5,
                                    avg_fill_price=100.5, fees=0.01)
        tx.add_order_event("r1-2", kind="ack", ts=T0 + 6, to_status="open")
        tx.update_order("r1-3", status="canceled")
        with pytest.raises(ValueError, match="cannot change"):
            tx.update_order("r1-2", seq=9)
        with pytest.raises(ValueError, match="no column"):
            tx.update_order("r1-2", sttaus="open")
        with pytest.raises(TradingStateError, match="no order 'nope'"):
            tx.update_order("nope", status="open")
        with pytest.raises(TradingStateError, match="no order 'nope'"):
            tx.add_order_event("nope", kind="ack", ts=T0)
    assert isinstance(event, int)
    filled = db.order_by_venue_id("V1")
    assert filled is not None and filled["client_order_id"] == "r1-1"
    assert (filled["status"], filled["filled_qty"], filled["avg_fill_price"]) == \
        ("filled", 0.5, 100.5)
    assert filled["updated_at"] >= filled["created_at"]
    assert [o["seq"] for o in db.orders("r1")] == [1, 2, 3]
    assert [o["seq"] for o in db.orders("r1", open_only=True)] == [2]
    events = db.order_events(run_id="r1")
    assert [(e["client_order_id"], e["kind"], e["from_status"], e["to_status"]) for e in events] \
        == [("r1-1", "fill", "new", "filled"), ("r1-2", "ack", None, "open")]
    assert events[0]["detail"] == {"fill_id": "f1"} and events[0]["ts"] == T0 + 5
    assert [e["kind"] for e in db.order_events(client_order_id="r1-2")] == ["ack"]


def test_duplicate_order_raises_and_the_transaction_goes_on(db: TradingDB) -> None:
    with db.transaction() as tx:
        new_run(tx)
        tx.insert_order(order(1))
        with pytest.raises(DuplicateError, match="order 'r1-1'"):
            tx.insert_order(order(1))
        with pytest.raises(DuplicateError):  # same (run, seq), another id
            tx.insert_order({**order(1), "client_order_id": "other"})
        with pytest.raises(DuplicateError, match="run 'r1'"):
            new_run(tx)
        tx.insert_order(order(2))  # the savepoint kept the transaction usable
    assert [o["seq"] for o in db.orders("r1")] == [1, 2]
    with pytest.raises(ValueError, match="lacks qty, status"), db.transaction() as tx:
        tx.insert_order({k: v for k, v in order(3).items() if k not in ("qty", "status")})
    # no such run: the foreign key refuses
    with pytest.raises(TradingStateError, match="refused by the database"), \
            db.transaction() as tx:
        tx.insert_order(order(1, run_id="ghost"))


def test_fills_are_deduplicated(db: TradingDB) -> None:
    fill = {"fill_id": "binance:BTCUSDT:123", "client_order_id": "r1-1", "run_id": "r1",
            "symbol": "BTCUSDT", "ts": T0 + 10, "side": "buy", "qty": np.float64(0.5),
            "price": 100.5, "fee": 0.01, "liquidity": "taker", "reason": "signal"}
    with db.transaction() as tx:
        new_run(tx)
        tx.insert_order(order(1))
        assert tx.insert_fill(fill) is True
        assert tx.insert_fill({**fill, "qty": 9.0}) is False  # the first record stands
        assert tx.insert_fill({**fill, "fill_id": "liq-1", "client_order_id": None,
                               "ts": T0 + 20, "reason": "liquidation"}) is True
        with pytest.raises(ValueError, match="liquidity"):
            tx.insert_fill({**fill, "fill_id": "x", "liquidity": "both"})
    with db.transaction() as tx:
        assert tx.insert_fill(fill) is False  # again in a later transaction
    fills = db.fills("r1")
    assert [(f["fill_id"], f["qty"]) for f in fills] == [("binance:BTCUSDT:123", 0.5),
                                                         ("liq-1", 0.5)]
    assert fills[0] == fill | {"qty": 0.5}
    assert [f["fill_id"] for f in db.fills("r1", client_order_id="r1-1")] == \
        ["binance:BTCUSDT:123"]


def test_positions_balances_decisions(db: TradingDB) -> None:
    with db.transaction() as tx:
        new_run(tx)
        tx.upsert_position("r1", "BTCUSDT", qty=0.5, entry_price=100.0, updated_ts=T0)
        tx.upsert_position("r1", "BTCUSDT", qty=0.0, entry_price=None, realized_pnl=1.5,
                           fees=0.02, funding=-0.01, updated_ts=T0 + H)
        tx.upsert_position("r1", "ETHUSDT", qty=-2, entry_price=3000, updated_ts=T0 + H)
        for i in range(3):
            tx.insert_balance("r1", T0 + i * H, equity=1000.0 + i, wallet_balance=1000.0,
                              unrealized_pnl=float(i), margin=50.0, fees_paid=0.01 * i,
                              funding_paid=0.0, position={"BTCUSDT": 0.5})
        with pytest.raises(DuplicateError, match="balance"):
            tx.insert_balance("r1", T0, equity=1.0, wallet_balance=1.0)
        tx.insert_decision("r1", "BTCUSDT", pd.Timestamp(T0, unit="ms", tz="UTC"),
                           policy="model:lgbm", policy_version="lgbm-2025-01-01",
                           feature_hash="abc123", target=0.5, detail={"proba": 0.61})
        tx.insert_decision("r1", "ETHUSDT", T0, policy="sma_cross", target=None)
        with pytest.raises(DuplicateError, match="decision"):
            tx.insert_decision("r1", "BTCUSDT", T0, policy="x", target=0.0)
    assert db.positions("r1") == [
        {"run_id": "r1", "symbol": "BTCUSDT", "qty": 0.0, "entry_price": None,
         "realized_pnl": 1.5, "fees": 0.02, "funding": -0.01, "updated_ts": T0 + H},
        {"run_id": "r1", "symbol": "ETHUSDT", "qty": -2.0, "entry_price": 3000.0,
         "realized_pnl": 0.0, "fees": 0.0, "funding": 0.0, "updated_ts": T0 + H}]
    points = db.balances("r1")
    assert [b["equity"] for b in points] == [1000.0, 1001.0, 1002.0]
    assert points[0]["position"] == {"BTCUSDT": 0.5}
    assert [b["ts"] for b in db.balances("r1", start=T0 + H)] == [T0 + H, T0 + 2 * H]
    curve = db.equity_curve("r1")
    assert list(curve["equity"]) == [1000.0, 1001.0, 1002.0]
    assert curve.index[0] == pd.Timestamp("2025-01-01", tz="UTC")
    assert "run_id" not in curve.columns
    decisions = db.decisions("r1")
    assert [(d["symbol"], d["policy"], d["target"]) for d in decisions] == [
        ("BTCUSDT", "model:lgbm", 0.5), ("ETHUSDT", "sma_cross", None)]
    assert decisions[0]["detail"] == {"proba": 0.61} and decisions[0]["ts"] == T0
    assert db.decisions("r1", symbol="ETHUSDT")[0]["policy_version"] is None


def test_run_state(db: TradingDB) -> None:
    blob = bytes(range(256)) * 100
    with db.transaction() as tx:
        tx.put_state("*", "kill_switch", {"active": True, "reason": "drawdown"})
        tx.put_state("r1", "checkpoint", blob=blob)
        assert tx.get_state("r1", "checkpoint").blob == blob  # type: ignore[union-attr]
    kill = db.get_state("*", "kill_switch")
    assert isinstance(kill, StateEntry)
    assert kill.value == {"active": True, "reason": "drawdown"} and kill.blob is None
    with db.transaction() as tx:
        tx.put_state("*", "kill_switch", {"active": False})
        assert tx.delete_state("r1", "checkpoint") is True
        assert tx.delete_state("r1", "checkpoint") is False
    assert db.get_state("*", "kill_switch").value == {"active": False}  # type: ignore[union-attr]
    assert db.get_state("r1", "checkpoint") is None


def test_exception_rolls_everything_back(db: TradingDB) -> None:
    with pytest.raises(RuntimeError, match="venue down"), db.transaction() as tx:
        new_run(tx)
        tx.insert_order(order(1))
        tx.put_state("r1", "k", 1)
        assert tx.audit("order.intent", {"id": "r1-1"}, run_id="r1", ts=T0) == 1
        raise RuntimeError("venue down")
    assert db.get_run("r1") is None and db.order("r1-1") is None
    assert db.get_state("r1", "k") is None
    assert db.audit_rows() == []
    report = db.verify_audit()
    assert report.ok and report.rows == 0 and report.head_seq == 0
    with db.transaction() as tx:  # the next append starts at seq 1 again
        assert tx.audit("order.intent", {"id": "r1-1"}) == 1
    with pytest.raises(TradingStateError, match="transaction is over"):
        tx.audit("late", {})


def test_caught_database_error_still_fails_the_transaction(db: TradingDB) -> None:
    """PostgreSQL aborts a transaction after a failed statement; SQLite would commit the
    rest. Both refuse to commit, so that the backends agree: all or nothing."""
    with pytest.raises(TradingStateError, match="nothing was committed"), \
            db.transaction() as tx:
        new_run(tx)
        with pytest.raises(TradingStateError, match="refused by the database"):
            tx.insert_fill({"fill_id": "f", "run_id": "ghost", "symbol": "X", "ts": T0,
                            "side": "buy", "qty": 1.0, "price": 1.0})
        with contextlib.suppress(TradingStateError):  # PostgreSQL refuses it: aborted
            tx.audit("after", {})
    assert db.get_run("r1") is None and db.audit_rows() == []


def test_refused_insert_in_a_savepoint_leaves_the_transaction_sound(db: TradingDB) -> None:
    with db.transaction() as tx:
        new_run(tx)
        with pytest.raises(TradingStateError, match="refused by the database"):
            tx.insert_order(order(1, run_id="ghost"))
        tx.insert_order(order(1))
    assert [o["seq"] for o in db.orders("r1")] == [1]


def test_times(db: TradingDB) -> None:
    aware = dt.datetime(2025, 1, 1, 1, tzinfo=dt.UTC)
    assert to_ms(aware) == T0 + H
    assert to_ms(pd.Timestamp(aware)) == T0 + H
    assert to_ms(np.datetime64("2025-01-01T01:00:00")) == T0 + H
    with pytest.raises(ValueError, match="naive"):
        to_ms(dt.datetime(2025, 1, 1))
    with db.transaction() as tx:
        new_run(tx)
        tx.insert_balance("r1", aware, equity=1.0, wallet_balance=1.0)
        with pytest.raises(ValueError, match="naive"):
            tx.insert_balance("r1", dt.datetime(2025, 1, 1), equity=1.0, wallet_balance=1.0)
    assert db.balances("r1")[0]["ts"] == T0 + H


def test_migrated_schema_matches_the_models(db: TradingDB) -> None:
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = [d for d in compare_metadata(ctx, Base.metadata)
                 if not (d[0] == "remove_table" and d[1].name == VERSION_TABLE)]
    assert diffs == []


def test_reopen_keeps_the_data_and_close_is_idempotent(db_url: str, tmp_path: Path) -> None:
    with open_trading_db(db_url, tmp_path) as first, first.transaction() as tx:
        new_run(tx)
    with open_trading_db(db_url, tmp_path, create=False) as again:
        assert again.get_run("r1") is not None
        again.close()
        again.close()
        with pytest.raises(TradingStateError, match="closed"):
            again.get_run("r1")


def test_values_are_checked_and_normalised(db: TradingDB) -> None:
    import enum

    class Side(enum.Enum):
        BUY = "buy"

    with db.transaction() as tx:
        new_run(tx)
        tx.insert_order(order(1, side=Side.BUY, avg_fill_price=float("nan")))
        for bad, error in [({"seq": 2.5}, TypeError), ({"reduce_only": "false"}, TypeError),
                           ({"symbol": 42}, TypeError), ({"sidee": "buy"}, ValueError)]:
            with pytest.raises(error):
                tx.insert_order({**order(2), **bad})
        with pytest.raises(TypeError, match="audit kind"):
            tx.audit(None, {})  # type: ignore[arg-type]
    stored = db.order("r1-1")
    assert stored is not None and stored["side"] == "buy" and stored["avg_fill_price"] is None
    with pytest.raises(TradingStateError, match="refused by the database"), \
            db.transaction() as tx:  # NaN is NULL, and qty may not be NULL
        tx.insert_order(order(2, qty=float("nan")))
