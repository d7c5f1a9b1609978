"""Alembic for the trading database: migrate a live connection to head, inside the
caller's transaction, and say which revisions this code knows."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
#: not Alembic's default ``alembic_version``: the market-data store uses that one, and the
#: two histories may share a PostgreSQL schema
VERSION_TABLE = "perptrader_trading_version"


def alembic_config(connection: sa.Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


@cache
def known_revisions() -> frozenset[str]:
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    return frozenset(rev.revision for rev in script.walk_revisions())


@cache
def head_revision() -> str:
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head() or ""


def current_revision(connection: sa.Connection) -> str | None:
    ctx = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return ctx.get_current_revision()


def upgrade_to_head(connection: sa.Connection) -> str:
    """Apply pending migrations on ``connection`` (in its transaction); return the head."""
    if current_revision(connection) != head_revision():
        command.upgrade(alembic_config(connection), "head")
    return head_revision()
