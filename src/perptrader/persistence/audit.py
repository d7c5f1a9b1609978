"""The audit chain: how a row's hash is made, and how the whole log is checked.

``hash = sha256(prev_hash + canonical JSON of [seq, ts, run_id, kind, payload])`` (hex;
UTF-8). The payload is stored as its canonical JSON text (sorted keys, no whitespace,
written by ``codec.canonical``) and spliced into the envelope as stored, so checking a
row never re-serialises it: the check depends on the bytes in the database, not on the
JSON library of the version that checks.

Each row's ``prev_hash`` is the previous row's ``hash`` (``GENESIS_HASH`` before seq 1),
and ``audit_head`` holds the last seq and hash. Editing a row breaks its hash; removing
or reordering rows breaks the seq run or the prev_hash links; removing the newest rows
leaves the head pointing past the end. What a hash chain cannot catch alone is someone
rewriting every hash after a change, head included: for that, keep the head hash
somewhere else too (``perptrader audit verify`` prints it; the engine logs it).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from perptrader.persistence.codec import canonical
from perptrader.persistence.models import GENESIS_HASH, AuditHead, AuditLog

if TYPE_CHECKING:
    from perptrader.persistence.db import TradingDB

#: rows fetched per round trip while verifying (the log is streamed, never loaded whole)
BATCH = 5_000


def envelope(seq: int, ts: int, run_id: str | None, kind: str, payload_text: str) -> str:
    """Canonical JSON of ``[seq, ts, run_id, kind, payload]`` with the stored payload text
    spliced in (equal to ``canonical([...])`` of the decoded payload)."""
    return f"[{int(seq)},{int(ts)},{canonical(run_id)},{canonical(kind)},{payload_text}]"


def chain_hash(prev_hash: str, seq: int, ts: int, run_id: str | None, kind: str,
               payload_text: str) -> str:
    data = prev_hash + envelope(seq, ts, run_id, kind, payload_text)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class AuditReport:
    """The result of checking the chain. ``rows``: rows checked good before the first
    problem (all rows when ``ok``); ``first_bad_seq``: where the chain breaks."""

    ok: bool
    rows: int
    first_bad_seq: int | None = None
    problem: str | None = None
    head_seq: int | None = None
    head_hash: str | None = None

    def summary(self) -> str:
        """One line for the CLI and logs."""
        if self.ok:
            return f"audit log ok: {self.rows} rows, head {(self.head_hash or '')[:12]}"
        where = f"at seq {self.first_bad_seq}" if self.first_bad_seq is not None else "in head"
        return f"audit log BROKEN {where}: {self.problem}"

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def verify_audit(db: TradingDB, *, batch: int = BATCH) -> AuditReport:
    """Check the whole audit log of ``db`` in one consistent snapshot, streaming rows."""
    with db._snapshot() as conn:
        return verify_connection(conn, batch=batch)


def verify_connection(conn: sa.Connection, *, batch: int = BATCH) -> AuditReport:
    head_t, log_t = AuditHead.__table__, AuditLog.__table__
    head = conn.execute(sa.select(head_t.c.seq, head_t.c.hash).where(head_t.c.id == 1)).first()
    if head is None:
        return AuditReport(False, 0, None, "the audit_head row is missing (deleted?)")
    head_seq, head_hash = int(head.seq), str(head.hash)

    def bad(rows: int, seq: int, problem: str) -> AuditReport:
        return AuditReport(False, rows, seq, problem, head_seq, head_hash)

    expected, prev = 1, GENESIS_HASH
    result = conn.execution_options(stream_results=True, yield_per=batch).execute(
        sa.select(log_t.c.seq, log_t.c.ts, log_t.c.run_id, log_t.c.kind, log_t.c.payload,
                  log_t.c.prev_hash, log_t.c.hash).order_by(log_t.c.seq))
    try:
        for seq, ts, run_id, kind, payload, prev_hash, hash_ in result:
            rows = expected - 1
            if seq != expected:
                if seq > expected:
                    gone = f"seq {expected}" if seq == expected + 1 else \
                        f"seq {expected}..{seq - 1}"
                    return bad(rows, expected,
                               f"{gone} missing (rows deleted; the next row is seq {seq})")
                return bad(rows, seq, f"unexpected seq {seq} (expected {expected})")
            if prev_hash != prev:
                return bad(rows, seq, f"prev_hash does not match the hash of seq {seq - 1} "
                                      "(rows replaced, reordered or removed before it)")
            if chain_hash(prev_hash, seq, ts, run_id, kind, payload) != hash_:
                return bad(rows, seq, "hash mismatch (the row was edited)")
            prev, expected = hash_, expected + 1
    finally:
        result.close()
    last = expected - 1
    if head_seq > last:
        return bad(last, last + 1, f"audit_head says the log ends at seq {head_seq} but it "
                                   f"ends at seq {last} (the newest rows were deleted)")
    if head_seq < last:
        return bad(head_seq, head_seq + 1, f"rows after the audit_head's seq {head_seq} "
                                           "(the head was moved back)")
    if head_hash != prev:
        return bad(last - 1 if last else 0, last,
                   f"audit_head's hash does not match seq {last}'s hash")
    return AuditReport(True, last, None, None, head_seq, head_hash)
