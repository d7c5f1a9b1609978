"""Alembic environment of the trading database: always run with a live connection
passed in by ``persistence.migrate`` (``config.attributes['connection']``), already inside
the transaction (and lock) that serialises migrating processes.

The version table has its own name, so that the trading tables can share a PostgreSQL
schema with the market-data store (whose Alembic history is separate) without clashing.
"""

from __future__ import annotations

from alembic import context

from perptrader.persistence.migrate import VERSION_TABLE

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - misuse guard
    raise RuntimeError("trading migrations run through perptrader.persistence.open_trading_db")

context.configure(connection=connection, target_metadata=None, transactional_ddl=True,
                  version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
