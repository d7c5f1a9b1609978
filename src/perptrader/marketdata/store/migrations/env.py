"""Alembic environment: always run with a live connection passed in by the store
(``config.attributes['connection']``), never from a URL in an ini file, so that the
embedded and PostgreSQL stores migrate through the same code path."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - misuse guard
    raise RuntimeError("perptrader migrations run through MarketStore.migrate()")

context.configure(connection=connection, target_metadata=None, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
