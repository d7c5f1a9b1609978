"""The audit chain: a clean log verifies; tampering (triggers dropped first, as an
attacker with write access to the database would) is found at the right seq; and the
triggers themselves refuse changes made through normal SQL."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest
import sqlalchemy as sa

from perptrader.persistence import GENESIS_HASH, TradingDB, verify_audit
from perptrader.persistence.audit import chain_hash, envelope
from perptrader.persistence.codec import canonical

#: the ``raw_sql`` fixture: statements on a connection outside the package
RawSQL = Callable[..., list[tuple]]
N = 200
T0 = 1_735_689_600_000


def fill_log(db: TradingDB, n: int = N) -> None:
    """``n`` rows in transactions of 20, with payloads that stress the canonical form."""
    for start in range(0, n, 20):
        with db.transaction() as tx:
            for i in range(start, min(n, start + 20)):
                tx.audit("order.intent" if i % 2 else "decision",
                         {"i": i, "z": [1.5, None, True], "a": {"ü": "naïve", "b": 1e16}},
                         run_id=None if i % 7 == 0 else "r1", ts=T0 + i)


def disarm(db: TradingDB, raw_sql: RawSQL) -> None:
    """What an attacker with write access does first: switch the triggers off."""
    if db.backend == "sqlite":
        names = raw_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        raw_sql(*[f"DROP TRIGGER {name}" for (name,) in names])
    else:
        raw_sql("ALTER TABLE audit_log DISABLE TRIGGER USER",
                "ALTER TABLE audit_head DISABLE TRIGGER USER")


def test_hash_is_sha256_of_prev_hash_and_canonical_envelope() -> None:
    payload = {"b": [1, 2.5], "a": "é", "c": None}
    text = canonical(payload)
    assert text == '{"a":"é","b":[1,2.5],"c":null}'
    env = envelope(3, T0, "r1", "order.intent", text)
    assert env == orjson.dumps([3, T0, "r1", "order.intent", payload],
                               option=orjson.OPT_SORT_KEYS).decode()
    expected = hashlib.sha256((GENESIS_HASH + env).encode()).hexdigest()
    assert chain_hash(GENESIS_HASH, 3, T0, "r1", "order.intent", text) == expected


def test_clean_log_verifies(db: TradingDB) -> None:
    fill_log(db)
    report = verify_audit(db)
    assert report.ok and report.rows == N and report.head_seq == N
    assert report.summary() == f"audit log ok: {N} rows, head {report.head_hash[:12]}"  # type: ignore[index]
    rows = db.audit_rows(limit=None)
    assert [r["seq"] for r in rows] == list(range(1, N + 1))
    assert rows[0]["prev_hash"] == GENESIS_HASH and rows[1]["prev_hash"] == rows[0]["hash"]
    assert rows[-1]["hash"] == report.head_hash
    assert orjson.loads(rows[5]["payload"])["a"] == {"b": 1e16, "ü": "naïve"}
    assert [r["seq"] for r in db.audit_rows(run_id="r1", after_seq=190)] == \
        [191, 192, 193, 194, 195, 196, 198, 199, 200]  # seq 197: i = 196, no run
    assert verify_audit(db, batch=7).ok  # streamed in small batches: same answer


def test_concurrent_appends_get_consecutive_seqs(db: TradingDB) -> None:
    """Writers on several connections at once (the head row is locked / BEGIN IMMEDIATE)."""

    def append(worker: int) -> list[int]:
        seqs = []
        for i in range(15):
            with db.transaction() as tx:
                seqs.append(tx.audit("tick", {"worker": worker, "i": i}))
        return seqs

    with ThreadPoolExecutor(4) as pool:
        seqs = sorted(s for part in pool.map(append, range(4)) for s in part)
    assert seqs == list(range(1, 61))
    assert verify_audit(db).rows == 60


@pytest.mark.parametrize(("attack", "bad_seq", "problem"), [
    ("edit", 57, "hash mismatch"),
    ("edit_and_rehash", 58, "prev_hash does not match the hash of seq 57"),
    ("delete_middle", 100, "seq 100 missing"),
    ("delete_last", N, f"ends at seq {N - 1}"),
    ("swap", 10, "prev_hash does not match"),
])
def test_tampering_is_found(db: TradingDB, raw_sql: RawSQL, attack: str, bad_seq: int,
                            problem: str) -> None:
    fill_log(db)
    disarm(db, raw_sql)
    if attack == "edit":
        raw_sql("UPDATE audit_log SET payload = replace(payload, '1.5', '2.5') "
                "WHERE seq = 57")
    elif attack == "edit_and_rehash":
        [(seq, ts, run_id, kind, payload, prev)] = raw_sql(
            "SELECT seq, ts, run_id, kind, payload, prev_hash FROM audit_log WHERE seq = 57")
        forged = payload.replace("1.5", "2.5")
        digest = chain_hash(prev, seq, ts, run_id, kind, forged)
        raw_sql(f"UPDATE audit_log SET payload = '{forged}', hash = '{digest}' WHERE seq = 57")
    elif attack == "delete_middle":
        raw_sql("DELETE FROM audit_log WHERE seq = 100")
    elif attack == "delete_last":
        raw_sql(f"DELETE FROM audit_log WHERE seq = {N}")
    elif attack == "swap":
        raw_sql("UPDATE audit_log SET seq = -1 WHERE seq = 10",
                "UPDATE audit_log SET seq = 10 WHERE seq = 11",
                "UPDATE audit_log SET seq = 11 WHERE seq = -1")
    report = verify_audit(db)
    assert not report.ok
    assert report.first_bad_seq == bad_seq
    assert problem in (report.problem or "")
    assert report.rows == bad_seq - 1
    assert report.summary().startswith(f"audit log BROKEN at seq {bad_seq}: ")


def test_missing_head_is_found(db: TradingDB, raw_sql: RawSQL) -> None:
    fill_log(db, 3)
    disarm(db, raw_sql)
    raw_sql("DELETE FROM audit_head")
    report = verify_audit(db)
    assert not report.ok and "audit_head row is missing" in (report.problem or "")


def test_triggers_refuse_changes(db: TradingDB) -> None:
    fill_log(db, 3)
    refused = (sa.exc.IntegrityError, sa.exc.OperationalError, sa.exc.ProgrammingError,
               sa.exc.InternalError)
    statements = {
        "UPDATE audit_log SET payload = '{}' WHERE seq = 2": "append-only",
        "DELETE FROM audit_log WHERE seq = 3": "append-only",
        "DELETE FROM audit_log": "append-only",
        "INSERT INTO audit_log (seq, ts, run_id, kind, payload, prev_hash, hash) "
        "VALUES (9, 0, NULL, 'x', '{}', 'p', 'h')": "does not continue the chain",
        "UPDATE audit_head SET seq = 2": "only moves to the newest",
        "DELETE FROM audit_head": "audit_head",
    }
    if db.backend == "postgresql":
        statements["TRUNCATE audit_log"] = "append-only"
    for stmt, message in statements.items():
        with pytest.raises(refused, match=message), db.engine.begin() as conn:
            conn.exec_driver_sql(stmt)
    report = verify_audit(db)
    assert report.ok and report.rows == 3
