"""Market-data tables: bars, funding, open interest, long/short, taker ratio,
liquidations, order-book snapshots, trades.

On PostgreSQL with the ``timescaledb`` extension available, every table becomes a
hypertable on ``ts`` with compression after 7 days; order-book snapshots and trades
also get a retention policy (they grow fastest). Without the extension the tables
stay plain, indexed by their primary key (instrument, ..., ts) plus a BRIN index on
``ts`` for cheap time-range scans.

Revision ID: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

F = sa.Float(precision=53)
I64 = sa.BigInteger()
T = sa.Text()
TS = sa.DateTime(timezone=True).with_variant(sa.DateTime(), "duckdb")

# name -> (key columns after exchange/market/symbol, value columns: (name, type, nullable))
TABLES: dict[str, tuple[list[tuple[str, object]], list[tuple[str, object, bool]]]] = {
    "bars": (
        [("timeframe", T), ("price_type", T), ("ts", TS)],
        [("open", F, False), ("high", F, False), ("low", F, False), ("close", F, False),
         ("volume", F, True), ("quote_volume", F, True), ("trade_count", I64, True),
         ("taker_buy_base", F, True), ("taker_buy_quote", F, True)],
    ),
    "funding": (
        [("ts", TS)],
        [("rate", F, False), ("interval_hours", F, True), ("exchange_ts", TS, True),
         ("mark_price", F, True)],
    ),
    "open_interest": ([("ts", TS)], [("oi_contracts", F, True), ("oi_value", F, True)]),
    "long_short": (
        [("ts", TS)],
        [("global_account_ratio", F, True), ("top_account_ratio", F, True),
         ("top_position_ratio", F, True)],
    ),
    "taker_ratio": (
        [("ts", TS)],
        [("buy_sell_ratio", F, False), ("buy_volume", F, True), ("sell_volume", F, True)],
    ),
    "liquidations": (
        [("ts", TS), ("side", T), ("price", F), ("qty", F)],
        [("order_type", T, True)],
    ),
    "book_snapshots": (
        [("ts", TS), ("level", I64)],
        [("bid_price", F, True), ("bid_qty", F, True), ("ask_price", F, True),
         ("ask_qty", F, True), ("update_id", I64, True)],
    ),
    "trades": (
        [("ts", TS), ("trade_id", I64)],
        [("price", F, False), ("qty", F, False), ("side", T, True), ("last_trade_id", I64, True)],
    ),
}

FAST_GROWING = ("book_snapshots", "trades")


def upgrade() -> None:
    for name, (key, values) in TABLES.items():
        ident = [("exchange", T), ("market", T), ("symbol", T)]
        cols = [sa.Column(c, t, nullable=False) for c, t in ident + key]
        cols += [sa.Column(c, t, nullable=n) for c, t, n in values]
        pk = [c for c, _ in ident + key]
        op.create_table(name, *cols, sa.PrimaryKeyConstraint(*pk, name=f"pk_{name}"))
    if op.get_context().dialect.name == "postgresql":
        _postgres_extras()


def _postgres_extras() -> None:
    bind = op.get_bind()
    has_timescale = bind.execute(
        sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
    ).first()
    if has_timescale:
        op.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        for name in TABLES:
            chunk = "1 day" if name in FAST_GROWING else "30 days"
            op.execute(
                f"SELECT create_hypertable('{name}', 'ts', chunk_time_interval => "
                f"INTERVAL '{chunk}', migrate_data => true, if_not_exists => true)"
            )
            op.execute(
                f"ALTER TABLE {name} SET (timescaledb.compress, "
                f"timescaledb.compress_segmentby = 'exchange, market, symbol')"
            )
            op.execute(f"SELECT add_compression_policy('{name}', INTERVAL '7 days')")
        for name in FAST_GROWING:
            op.execute(f"SELECT add_retention_policy('{name}', INTERVAL '365 days')")
    else:
        for name in TABLES:
            op.execute(f"CREATE INDEX IF NOT EXISTS brin_{name}_ts ON {name} USING brin (ts)")


def downgrade() -> None:
    for name in reversed(list(TABLES)):
        op.drop_table(name)
