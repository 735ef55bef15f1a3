"""HITL approval records in the instance database (SQLite by default, PostgreSQL in production).

Every state change is one guarded UPDATE (``WHERE status = 'pending'``, ``WHERE consumed_at
IS NULL``), so two approvers, two sensor ticks or a sensor and ``casm resume`` racing each
other cannot both win.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from casm_dagster.stores.db import approvals_table, hitl_log_table

PENDING, APPROVED, DENIED, EXPIRED = "pending", "approved", "denied", "expired"


@dataclass(frozen=True)
class ApprovalRecord:
    id: int
    request_id: str
    run_id: str
    repo: str
    partition_key: str
    template_id: str
    state_dir: str
    mode: str
    approvers: list[str]
    plan_sha256: str
    ruleset_id: str
    ruleset_sha256: str
    packet: dict[str, Any]
    status: str
    scope: str | None
    approver: str | None
    reason: str | None
    created_at: str
    expires_at: str
    decided_at: str | None
    consumed_at: str | None
    continuation_run_id: str | None
    outcome: str | None
    mac: str | None = None

    @classmethod
    def from_row(cls, row: sa.Row) -> ApprovalRecord:
        return _record(dict(row._mapping))


def _record(data: dict[str, Any]) -> ApprovalRecord:
    data["approvers"] = json.loads(data["approvers"])
    data["packet"] = json.loads(data["packet"])
    return ApprovalRecord(**data)


@dataclass(frozen=True)
class LogEntry:
    id: int
    request_id: str
    ts: str
    actor: str
    action: str
    detail: str


def decision_mac(key: bytes, request_id: str, plan_sha256: str, status: str, approver: str, reason: str,
                 scope: str | None) -> str:  # fmt: skip
    fields = [request_id, plan_sha256, status, approver, reason, scope or ""]
    return hmac.new(key, "\x1f".join(fields).encode("utf-8"), hashlib.sha256).hexdigest()


class ApprovalStore:
    def __init__(self, engine: sa.Engine, key: bytes | None = None) -> None:
        self.engine = engine
        self._key = key

    @property
    def key(self) -> bytes:
        """The installation's key (``policy.keyed_hash``): outside the sandbox's view."""
        if self._key is None:
            from casm_dagster.policy.keyed_hash import load_or_create_key

            self._key = load_or_create_key()
        return self._key

    def verifies(self, record: ApprovalRecord) -> bool:
        """Was this decision written by CASM (with the key)? A row without a MAC, or one
        whose fields were changed after signing, does not verify."""
        if not record.mac or not record.approver or record.reason is None:
            return False
        expected = decision_mac(
            self.key, record.request_id, record.plan_sha256, record.status, record.approver, record.reason,
            record.scope,
        )  # fmt: skip
        return hmac.compare_digest(expected, record.mac)

    def create(self, **values: Any) -> ApprovalRecord:
        values = dict(values, status=PENDING)
        values["approvers"] = json.dumps(values["approvers"])
        values["packet"] = json.dumps(values["packet"], sort_keys=True)
        with self.engine.begin() as conn:
            conn.execute(sa.insert(approvals_table).values(**values))
            self._log(conn, values["request_id"], values["created_at"], "casm", "requested", "approval requested")
        return self.require(values["request_id"])

    def get(self, request_id: str) -> ApprovalRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(approvals_table).where(approvals_table.c.request_id == request_id)).first()
        return ApprovalRecord.from_row(row) if row else None

    def require(self, request_id: str) -> ApprovalRecord:
        record = self.get(request_id)
        if record is None:
            raise KeyError(request_id)
        return record

    def latest_for_run(self, run_id: str) -> ApprovalRecord | None:
        query = (
            sa.select(approvals_table)
            .where(approvals_table.c.run_id == run_id)
            .order_by(approvals_table.c.id.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return ApprovalRecord.from_row(row) if row else None

    def list(self, status: str | None = None, limit: int = 100) -> list[ApprovalRecord]:
        query = sa.select(approvals_table).order_by(approvals_table.c.id).limit(limit)
        if status:
            query = query.where(approvals_table.c.status == status)
        with self.engine.connect() as conn:
            return [ApprovalRecord.from_row(r) for r in conn.execute(query)]

    def decide(self, request_id: str, status: str, approver: str, reason: str, scope: str | None, now: str) -> bool:
        """pending → approved/denied/expired; False if it was no longer pending."""
        plan = self.require(request_id).plan_sha256
        mac = decision_mac(self.key, request_id, plan, status, approver, reason, scope)
        with self.engine.begin() as conn:
            result = conn.execute(
                sa.update(approvals_table)
                .where(approvals_table.c.request_id == request_id, approvals_table.c.status == PENDING)
                .values(status=status, approver=approver, reason=reason, scope=scope, decided_at=now, mac=mac)
            )
            if result.rowcount != 1:
                return False
            self._log(conn, request_id, now, approver, status, reason)
        return True

    def due_for_expiry(self, now: str) -> list[ApprovalRecord]:
        query = sa.select(approvals_table).where(
            approvals_table.c.status == PENDING, approvals_table.c.expires_at <= now
        )
        with self.engine.connect() as conn:
            return [ApprovalRecord.from_row(r) for r in conn.execute(query)]

    def approvals_after(self, log_id: int, limit: int = 50) -> list[tuple[int, ApprovalRecord]]:
        """Approvals logged after ``log_id`` (the sensor's cursor), oldest first."""
        query = (
            sa.select(hitl_log_table.c.id.label("log_id"), *approvals_table.c)
            .join(approvals_table, approvals_table.c.request_id == hitl_log_table.c.request_id)
            .where(hitl_log_table.c.id > log_id, hitl_log_table.c.action == APPROVED)
            .order_by(hitl_log_table.c.id)
            .limit(limit)
        )
        out = []
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                data = dict(row._mapping)
                entry = int(data.pop("log_id"))
                out.append((entry, _record(data)))
        return out

    def unconsumed_approvals(self, decided_before: str, limit: int = 50) -> list[ApprovalRecord]:
        query = (
            sa.select(approvals_table)
            .where(
                approvals_table.c.status == APPROVED,
                approvals_table.c.consumed_at.is_(None),
                approvals_table.c.decided_at <= decided_before,
            )
            .order_by(approvals_table.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [ApprovalRecord.from_row(r) for r in conn.execute(query)]

    def claim(self, request_id: str, continuation_run_id: str, now: str) -> bool:
        """Mark an approval consumed by one continuation; False if another got it first."""
        with self.engine.begin() as conn:
            result = conn.execute(
                sa.update(approvals_table)
                .where(
                    approvals_table.c.request_id == request_id,
                    approvals_table.c.status == APPROVED,
                    approvals_table.c.consumed_at.is_(None),
                )
                .values(consumed_at=now, continuation_run_id=continuation_run_id)
            )
            if result.rowcount != 1:
                return False
            self._log(conn, request_id, now, "casm", "consumed", f"continuation {continuation_run_id}")
        return True

    def finish(self, request_id: str, outcome: str, now: str, consume: bool = False) -> None:
        values: dict[str, Any] = {"outcome": outcome}
        if consume:
            values["consumed_at"] = now
        with self.engine.begin() as conn:
            conn.execute(sa.update(approvals_table).where(approvals_table.c.request_id == request_id).values(**values))
            self._log(conn, request_id, now, "casm", "outcome", outcome)

    def log(self, request_id: str, now: str, actor: str, action: str, detail: str) -> None:
        with self.engine.begin() as conn:
            self._log(conn, request_id, now, actor, action, detail)

    def log_entries(self, request_id: str) -> list[LogEntry]:
        query = sa.select(hitl_log_table).where(hitl_log_table.c.request_id == request_id).order_by(hitl_log_table.c.id)
        with self.engine.connect() as conn:
            return [LogEntry(**r._mapping) for r in conn.execute(query)]

    @staticmethod
    def _log(conn: sa.Connection, request_id: str, now: str, actor: str, action: str, detail: str) -> None:
        conn.execute(
            sa.insert(hitl_log_table).values(request_id=request_id, ts=now, actor=actor, action=action, detail=detail)
        )
