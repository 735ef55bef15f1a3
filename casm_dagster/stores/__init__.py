"""Durable CASM records kept in the same database as the Dagster instance
(SQLite by default, PostgreSQL in production), reached through SQLAlchemy."""
