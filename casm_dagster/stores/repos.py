"""The repo registry: partition key ↔ where the repo lives (a local path or owner/name).

Dagster's dynamic partitions hold only the keys; this table holds what a key means, so a
run launched from the Dagster UI with just a partition key knows which repo to audit.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from casm_dagster.errors import RepoError
from casm_dagster.run.journal import utc_now
from casm_dagster.stores.db import repos_table

_GITHUB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class RepoRecord:
    partition_key: str
    kind: str
    location: str
    added_at: str


def is_github_name(value: str) -> bool:
    """``owner/name`` with no such local path: the GitHub form of ``--repo``."""
    return bool(_GITHUB_NAME.match(value)) and not Path(value).exists()


def partition_key_for(kind: str, location: str) -> str:
    """A slug Dagster accepts as a partition key (no ``/``: see DAGSTER.md)."""
    if kind == "github":
        owner, name = location.split("/", 1)
        return f"{_UNSAFE.sub('-', owner)}__{_UNSAFE.sub('-', name)}"
    path = Path(location)
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:8]
    return f"local__{_UNSAFE.sub('-', path.name)[:40]}__{digest}"


class RepoRegistry:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def add(self, kind: str, location: str) -> RepoRecord:
        key = partition_key_for(kind, location)
        existing = self.get(key)
        if existing:
            return existing
        record = RepoRecord(partition_key=key, kind=kind, location=location, added_at=utc_now())
        with self.engine.begin() as conn:
            conn.execute(sa.insert(repos_table).values(**record.__dict__))
        return record

    def get(self, partition_key: str) -> RepoRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(repos_table).where(repos_table.c.partition_key == partition_key)).first()
        return RepoRecord(**row._mapping) if row else None

    def require(self, partition_key: str) -> RepoRecord:
        record = self.get(partition_key)
        if record is None:
            raise RepoError(f"unknown repo partition {partition_key!r}: register it with `casm repos add`")
        return record

    def list(self) -> list[RepoRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(repos_table).order_by(repos_table.c.partition_key)).all()
        return [RepoRecord(**row._mapping) for row in rows]
