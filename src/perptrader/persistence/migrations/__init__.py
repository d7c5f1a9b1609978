"""Alembic migrations of the trading-state database (SQLite and PostgreSQL)."""
