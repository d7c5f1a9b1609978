"""Run the Alembic migrations on a live SQLAlchemy connection (both backends)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.ddl.postgresql import PostgresqlImpl
from alembic.runtime.migration import MigrationContext

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class DuckDBImpl(PostgresqlImpl):
    """Alembic has no DuckDB dialect; DuckDB speaks PostgreSQL's DDL closely enough."""

    __dialect__ = "duckdb"


def alembic_config(connection: sa.Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade_to_head(connection: sa.Connection) -> str:
    """Apply pending migrations; return the revision now current."""
    command.upgrade(alembic_config(connection), "head")
    return current_revision(connection) or ""


def current_revision(connection: sa.Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()
