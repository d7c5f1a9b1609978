"""Alembic migrations shared by the DuckDB and PostgreSQL stores."""
