"""Engines for CASM's own tables, beside Dagster's in the instance database."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

repos_table = sa.Table(
    "casm_repos",
    metadata,
    sa.Column("partition_key", sa.String(255), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # "local" | "github"
    sa.Column("location", sa.Text, nullable=False),  # absolute path, or owner/name
    sa.Column("added_at", sa.String(40), nullable=False),
)


def engine_for(url: str) -> sa.Engine:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    metadata.create_all(engine)
    return engine
