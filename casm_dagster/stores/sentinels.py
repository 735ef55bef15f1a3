"""Continuous Sentinel registrations and the webhook inbox, in the instance database.

A registration is durable (it survives restarts and lives beside Dagster's own tables, in
SQLite or PostgreSQL); the repo's dynamic partition is added by whoever registers it,
because a schedule cannot create partitions.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from casm_dagster.errors import ConfigError
from casm_dagster.run.journal import utc_now
from casm_dagster.stores.db import sentinels_table, webhook_inbox_table

SCHEDULES = ("hourly", "daily")


@dataclass(frozen=True)
class Sentinel:
    partition_key: str
    repo: str
    schedule: str
    template: str  # the heartbeat's audit template; "" when only PRs are watched
    pr_template: str  # the PR sensor's template; "" when PRs are not watched
    added_at: str
    updated_at: str
    host_queue: str | None = None  # a local-path repo's worker queue (its host has the path)


@dataclass(frozen=True)
class InboxItem:
    id: int
    delivery_id: str
    event: str
    repo: str
    pr: int
    head_sha: str
    received_at: str


class SentinelStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def register(
        self,
        partition_key: str,
        repo: str,
        schedule: str,
        template: str,
        pr_template: str,
        host_queue: str | None = None,
    ) -> Sentinel:
        """Add the repo, or change its settings (registering twice is not an error)."""
        if schedule not in SCHEDULES:
            raise ConfigError(f"--schedule {schedule!r}: one of {', '.join(SCHEDULES)}")
        now = utc_now()
        values = {
            "repo": repo,
            "schedule": schedule,
            "template": template,
            "pr_template": pr_template,
            "host_queue": host_queue,
            "updated_at": now,
        }
        with self.engine.begin() as conn:
            updated = conn.execute(
                sa.update(sentinels_table).where(sentinels_table.c.partition_key == partition_key).values(**values)
            ).rowcount
            if not updated:
                conn.execute(sa.insert(sentinels_table).values(partition_key=partition_key, added_at=now, **values))
        return self.require(partition_key)

    def remove(self, partition_key: str) -> bool:
        with self.engine.begin() as conn:
            return bool(
                conn.execute(
                    sa.delete(sentinels_table).where(sentinels_table.c.partition_key == partition_key)
                ).rowcount
            )

    def get(self, partition_key: str) -> Sentinel | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(sentinels_table).where(sentinels_table.c.partition_key == partition_key)
            ).first()
        return Sentinel(**row._mapping) if row else None

    def require(self, partition_key: str) -> Sentinel:
        found = self.get(partition_key)
        if found is None:
            raise ConfigError(f"{partition_key} is not registered (see `casm sentinel list`)")
        return found

    def list(self, schedule: str | None = None, watching_prs: bool = False) -> list[Sentinel]:
        """All registrations; ``schedule``: those the heartbeat audits on it; ``watching_prs``:
        those whose PRs are watched."""
        query = sa.select(sentinels_table).order_by(sentinels_table.c.partition_key)
        if schedule is not None:
            query = query.where(sentinels_table.c.schedule == schedule, sentinels_table.c.template != "")
        if watching_prs:
            query = query.where(sentinels_table.c.pr_template != "")
        with self.engine.connect() as conn:
            return [Sentinel(**row._mapping) for row in conn.execute(query)]

    # -- the webhook inbox -----------------------------------------------------------

    def enqueue(self, delivery_id: str, event: str, repo: str, pr: int, head_sha: str) -> bool:
        """False when this delivery was already received (GitHub redelivers)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    sa.insert(webhook_inbox_table).values(
                        delivery_id=delivery_id, event=event, repo=repo, pr=pr, head_sha=head_sha, received_at=utc_now()
                    )
                )
        except sa.exc.IntegrityError:
            return False
        return True

    def inbox_after(self, cursor: int, limit: int) -> list[InboxItem]:
        query = (
            sa.select(webhook_inbox_table)
            .where(webhook_inbox_table.c.id > cursor)
            .order_by(webhook_inbox_table.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [InboxItem(**row._mapping) for row in conn.execute(query)]
