"""Trading state: runs, orders, order events, fills, positions, balances, decisions,
run state, and the hash-chained audit log with its head.

The tables are written out here rather than created from the models, so that this
revision stays what it was when later revisions change the models; a test compares the
migrated schema with the models on both backends.

The database itself keeps the audit log append-only: triggers refuse UPDATE and DELETE
(and TRUNCATE on PostgreSQL) of ``audit_log``, refuse an insert that does not continue
the chain at ``audit_head``, and let ``audit_head`` only move one row forward. Someone
with write access to the file can drop the triggers; ``verify_audit`` then still finds
the tampering from the hashes.

Revision ID: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

F = sa.Float(precision=53)
MS = sa.BigInteger()
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSONDoc = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
T = sa.Text()
GENESIS_HASH = "0" * 64


def _col(name: str, type_: object, nullable: bool = False, **kw: object) -> sa.Column:
    return sa.Column(name, type_, nullable=nullable, **kw)


def _run_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], name=f"fk_{table}_run_id")


def upgrade() -> None:
    op.create_table(
        "runs",
        _col("run_id", T), _col("mode", T), _col("strategy", T), _col("params", JSONDoc),
        _col("symbols", JSONDoc), _col("timeframe", T), _col("config", JSONDoc),
        _col("status", T), _col("created_at", MS), _col("updated_at", MS),
        sa.PrimaryKeyConstraint("run_id", name="pk_runs"),
    )
    op.create_index("ix_runs_mode_created_at", "runs", ["mode", "created_at"])

    op.create_table(
        "orders",
        _col("client_order_id", T), _col("run_id", T), _col("seq", sa.BigInteger()),
        _col("symbol", T), _col("side", T), _col("type", T), _col("qty", F),
        _col("price", F, True), _col("stop_price", F, True),
        _col("reduce_only", sa.Boolean()), _col("post_only", sa.Boolean()),
        _col("time_in_force", T, True), _col("status", T), _col("filled_qty", F),
        _col("avg_fill_price", F, True), _col("fees", F), _col("venue_order_id", T, True),
        _col("reason", T, True), _col("target_exposure", F, True),
        _col("decided_ts", MS, True), _col("created_at", MS), _col("updated_at", MS),
        _col("data", JSONDoc, True),
        sa.PrimaryKeyConstraint("client_order_id", name="pk_orders"),
        _run_fk("orders"),
        sa.UniqueConstraint("run_id", "seq", name="uq_orders_run_id_seq"),
    )
    op.create_index("ix_orders_run_id_status", "orders", ["run_id", "status"])
    op.create_index("ix_orders_venue_order_id", "orders", ["venue_order_id"])

    op.create_table(
        "order_events",
        _col("id", ID, autoincrement=True), _col("client_order_id", T), _col("run_id", T),
        _col("ts", MS), _col("from_status", T, True), _col("to_status", T, True),
        _col("kind", T), _col("detail", JSONDoc, True),
        sa.PrimaryKeyConstraint("id", name="pk_order_events"),
        sa.ForeignKeyConstraint(["client_order_id"], ["orders.client_order_id"],
                                name="fk_order_events_client_order_id"),
        _run_fk("order_events"),
    )
    op.create_index("ix_order_events_client_order_id_id", "order_events",
                    ["client_order_id", "id"])
    op.create_index("ix_order_events_run_id_id", "order_events", ["run_id", "id"])

    op.create_table(
        "fills",
        _col("fill_id", T), _col("client_order_id", T, True), _col("run_id", T),
        _col("symbol", T), _col("ts", MS), _col("side", T), _col("qty", F), _col("price", F),
        _col("fee", F), _col("liquidity", T, True), _col("reason", T, True),
        sa.PrimaryKeyConstraint("fill_id", name="pk_fills"),
        sa.ForeignKeyConstraint(["client_order_id"], ["orders.client_order_id"],
                                name="fk_fills_client_order_id"),
        _run_fk("fills"),
    )
    op.create_index("ix_fills_run_id_ts", "fills", ["run_id", "ts"])
    op.create_index("ix_fills_client_order_id", "fills", ["client_order_id"])

    op.create_table(
        "positions",
        _col("run_id", T), _col("symbol", T), _col("qty", F), _col("entry_price", F, True),
        _col("realized_pnl", F), _col("fees", F), _col("funding", F), _col("updated_ts", MS),
        sa.PrimaryKeyConstraint("run_id", "symbol", name="pk_positions"),
        _run_fk("positions"),
    )

    op.create_table(
        "balances",
        _col("run_id", T), _col("ts", MS), _col("equity", F), _col("wallet_balance", F),
        _col("unrealized_pnl", F), _col("margin", F), _col("fees_paid", F),
        _col("funding_paid", F), _col("position", JSONDoc, True),
        sa.PrimaryKeyConstraint("run_id", "ts", name="pk_balances"),
        _run_fk("balances"),
    )

    op.create_table(
        "decisions",
        _col("run_id", T), _col("symbol", T), _col("ts", MS), _col("policy", T),
        _col("policy_version", T, True), _col("feature_hash", T, True),
        _col("target", F, True), _col("detail", JSONDoc, True),
        sa.PrimaryKeyConstraint("run_id", "symbol", "ts", name="pk_decisions"),
        _run_fk("decisions"),
    )

    op.create_table(
        "run_state",
        _col("run_id", T), _col("key", T), _col("value", JSONDoc, True),
        _col("blob", sa.LargeBinary(), True), _col("updated_at", MS),
        sa.PrimaryKeyConstraint("run_id", "key", name="pk_run_state"),
    )

    op.create_table(
        "audit_log",
        _col("seq", sa.BigInteger(), autoincrement=False), _col("ts", MS),
        _col("run_id", T, True), _col("kind", T), _col("payload", T), _col("prev_hash", T),
        _col("hash", T),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_run_id_seq", "audit_log", ["run_id", "seq"])

    head = op.create_table(
        "audit_head",
        _col("id", sa.Integer(), autoincrement=False), _col("seq", sa.BigInteger()),
        _col("hash", T),
        sa.PrimaryKeyConstraint("id", name="pk_audit_head"),
        sa.CheckConstraint("id = 1", name="ck_audit_head_single_row"),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS_HASH}])

    if op.get_context().dialect.name == "postgresql":
        _postgres_triggers()
    else:
        _sqlite_triggers()


SQLITE_TRIGGERS = {
    "audit_log_no_update": "BEFORE UPDATE ON audit_log BEGIN "
    "SELECT RAISE(ABORT, 'audit_log is append-only'); END",
    "audit_log_no_delete": "BEFORE DELETE ON audit_log BEGIN "
    "SELECT RAISE(ABORT, 'audit_log is append-only'); END",
    "audit_log_in_sequence": "BEFORE INSERT ON audit_log "
    "WHEN NEW.seq IS NOT (SELECT seq + 1 FROM audit_head WHERE id = 1) "
    "OR NEW.prev_hash IS NOT (SELECT hash FROM audit_head WHERE id = 1) BEGIN "
    "SELECT RAISE(ABORT, 'audit_log insert does not continue the chain at audit_head'); END",
    "audit_head_forward": "BEFORE UPDATE ON audit_head "
    "WHEN NEW.id IS NOT 1 OR NEW.seq IS NOT OLD.seq + 1 OR NOT EXISTS "
    "(SELECT 1 FROM audit_log WHERE seq = NEW.seq AND hash = NEW.hash) BEGIN "
    "SELECT RAISE(ABORT, 'audit_head only moves to the newest audit_log row'); END",
    "audit_head_no_delete": "BEFORE DELETE ON audit_head BEGIN "
    "SELECT RAISE(ABORT, 'audit_head cannot be deleted'); END",
}


def _sqlite_triggers() -> None:
    for name, body in SQLITE_TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {body}")


POSTGRES_FUNCTIONS = {
    "audit_log_append_only": """
BEGIN
    RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
END""",
    "audit_log_in_sequence": """
DECLARE
    head_seq bigint;
    head_hash text;
BEGIN
    SELECT seq, hash INTO head_seq, head_hash FROM audit_head WHERE id = 1;
    IF NEW.seq IS DISTINCT FROM head_seq + 1 OR NEW.prev_hash IS DISTINCT FROM head_hash THEN
        RAISE EXCEPTION 'audit_log insert does not continue the chain at audit_head'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END""",
    "audit_head_forward": """
BEGIN
    IF TG_OP <> 'UPDATE' OR NEW.id <> 1 OR NEW.seq IS DISTINCT FROM OLD.seq + 1
       OR NOT EXISTS (SELECT 1 FROM audit_log WHERE seq = NEW.seq AND hash = NEW.hash) THEN
        RAISE EXCEPTION 'audit_head only moves to the newest audit_log row'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END""",
}

POSTGRES_TRIGGERS = {
    "audit_log_no_change": "BEFORE UPDATE OR DELETE ON audit_log FOR EACH ROW "
    "EXECUTE FUNCTION audit_log_append_only()",
    "audit_log_no_truncate": "BEFORE TRUNCATE ON audit_log FOR EACH STATEMENT "
    "EXECUTE FUNCTION audit_log_append_only()",
    "audit_log_in_sequence": "BEFORE INSERT ON audit_log FOR EACH ROW "
    "EXECUTE FUNCTION audit_log_in_sequence()",
    "audit_head_forward": "BEFORE UPDATE OR DELETE ON audit_head FOR EACH ROW "
    "EXECUTE FUNCTION audit_head_forward()",
    "audit_head_no_truncate": "BEFORE TRUNCATE ON audit_head FOR EACH STATEMENT "
    "EXECUTE FUNCTION audit_log_append_only()",
}


def _postgres_triggers() -> None:
    for name, body in POSTGRES_FUNCTIONS.items():
        op.execute(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $fn${body}\n$fn$")
    for name, spec in POSTGRES_TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {spec}")


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        for name, spec in POSTGRES_TRIGGERS.items():
            table = spec.split(" ON ", 1)[1].split()[0]
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        for name in POSTGRES_FUNCTIONS:
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    else:
        for name in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    for table in ("audit_head", "audit_log", "run_state", "decisions", "balances",
                  "positions", "fills", "order_events", "orders", "runs"):
        op.drop_table(table)
