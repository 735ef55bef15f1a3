"""Human-in-the-loop decisions: who may approve, how, until when, and what gets logged.

The store (``stores/approvals.py``) holds the records; this module holds the rules:
a reason is always required; an approver outside the request's allowlist is refused
(and the refusal is logged); a request decided once stays decided; a request past its
expiry can only expire. Every outcome is also appended to the run's own journal, so
``casm explain`` tells the whole story from the run's events.
"""

from __future__ import annotations

import os
import pwd
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from casm_dagster.contracts.run import RunSpec
from casm_dagster.errors import CasmError, RunNotFoundError
from casm_dagster.run.files import SPEC_FILE
from casm_dagster.run.journal import Journal, utc_now
from casm_dagster.stores.approvals import APPROVED, DENIED, EXPIRED, PENDING, ApprovalRecord, ApprovalStore
from casm_dagster.stores.run_files import local_run_dir, publisher, shared_store

Scope = str  # "packet" (the packet's allow_files) | "full" (every file of the plan)
SCOPES = ("packet", "full")


class ApprovalError(CasmError):
    """The decision cannot be recorded (no such request, already decided, expired, wrong mode)."""


class ApproverRefused(CasmError):
    """The approver is not on the request's allowlist (the refusal is logged)."""


def _utc(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(UTC)


def local_user() -> str:
    """The approver in local mode: this process's OS account, not a name from the
    environment (``USER`` is whatever the caller sets)."""
    return pwd.getpwuid(os.geteuid()).pw_name


def expiry(now: str, hours: float) -> str:
    moment = datetime.fromisoformat(now.replace("Z", "+00:00")) + timedelta(hours=hours)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def approver_allowed(approver: str, orgs: Iterable[str], patterns: list[str]) -> bool:
    """``USER:<login>`` matches the approver, ``ORG:<org>`` any org they belong to (case-insensitive)."""
    who = approver.lower()
    member_of = {o.lower() for o in orgs}
    for pattern in patterns:
        kind, _, name = pattern.partition(":")
        if (kind == "USER" and name.lower() == who) or (kind == "ORG" and name.lower() in member_of):
            return True
    return False


def comment_reason(body: str, regex: str) -> str | None:
    """The reason an approval comment gives (its ``reason`` group, else the whole match), or None."""
    match = re.search(regex, body.strip(), flags=re.MULTILINE)
    if not match:
        return None
    reason = match.groupdict().get("reason") or match.group(0)
    return reason.strip() or None


def run_journal(record: ApprovalRecord, store: ApprovalStore) -> Journal | None:
    """The gated run's journal, to append the decision to (None if its run dir is gone). On a
    shared instance the run may have been held on another host: its folder is pulled here
    first, and what is appended is published back (stores/run_files.py)."""
    shared = shared_store(store.engine)
    run_dir = local_run_dir(record.state_dir, record.run_id, shared)
    path = run_dir / SPEC_FILE
    if not path.exists():
        return None
    spec = RunSpec.model_validate_json(path.read_text(encoding="utf-8"))
    spec = spec.model_copy(update={"state_dir": str(run_dir.parent.parent)})  # this host's copy
    return Journal(spec, publish=publisher(shared, record.run_id) if shared else None)


def gated_dagster_run_id(record: ApprovalRecord, store: ApprovalStore) -> str | None:
    """The Dagster run that stopped at the gate (to keep its ``casm/hitl`` tag current)."""
    journal = run_journal(record, store)
    return journal.state.dagster_run_id if journal else None


def require_request(store: ApprovalStore, run_id: str) -> ApprovalRecord:
    record = store.latest_for_run(run_id)
    if record is None:
        raise RunNotFoundError(f"run {run_id} has no approval request (only gated runs wait for a decision)")
    return record


def decide(
    store: ApprovalStore,
    record: ApprovalRecord,
    outcome: str,
    approver: str,
    reason: str,
    via: str,
    orgs: Iterable[str] = (),
    scope: Scope = "packet",
    now: str | None = None,
) -> ApprovalRecord:
    """Record ``approved`` or ``denied`` for a pending request, or raise saying why not."""
    now = now or utc_now()
    reason = (reason or "").strip()
    if outcome not in (APPROVED, DENIED):
        raise ValueError(outcome)
    if not reason:
        raise ApprovalError('a reason is required (--reason "..."): it is logged with the decision')
    if scope not in SCOPES:
        raise ApprovalError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    if record.status != PENDING:
        by = f" by {record.approver}" if record.approver else ""
        raise ApprovalError(
            f"request {record.request_id} (run {record.run_id}) is already {record.status}{by} at {record.decided_at}"
        )
    if record.expires_at <= now:
        expire(store, record, now)
        raise ApprovalError(f"request {record.request_id} (run {record.run_id}) expired at {record.expires_at}")
    if via != record.mode:
        raise ApprovalError(
            f"request {record.request_id} is decided through {record.mode}"
            f"{' (the casm-approved label or an approval comment on the PR)' if record.mode != 'local' else ''}, "
            f"not {via}"
        )
    if record.approvers and not approver_allowed(approver, orgs, record.approvers):
        detail = (
            f"{approver} is not on the allowlist ({', '.join(record.approvers)}); tried to {outcome[:-1]}: {reason}"
        )
        store.log(record.request_id, now, approver, "refused", detail)
        journal = run_journal(record, store)
        if journal:
            journal.emit(
                "hitl_decision",
                f"refused: {approver} is not an allowed approver",
                outcome="refused",
                approver=approver,
                reason=reason,
                request_id=record.request_id,
            )
        raise ApproverRefused(f"{approver} may not decide request {record.request_id}: not in {record.approvers}")
    if not store.decide(record.request_id, outcome, approver, reason, scope if outcome == APPROVED else None, now):
        fresh = store.require(record.request_id)
        raise ApprovalError(f"request {record.request_id} was decided meanwhile: {fresh.status} by {fresh.approver}")
    journal = run_journal(record, store)
    if journal:
        scope_text = f" (scope: {scope})" if outcome == APPROVED else ""
        journal.emit(
            "hitl_decision",
            f"{outcome} by {approver}{scope_text}: {reason}",
            outcome=outcome,
            approver=approver,
            reason=reason,
            scope=scope if outcome == APPROVED else None,
            via=via,
            request_id=record.request_id,
        )
    return store.require(record.request_id)


@dataclass(frozen=True)
class GithubEvent:
    """A PR label or comment, as the GitHub connector (sensor or webhook) reads it."""

    kind: str  # "label" | "comment"
    actor: str  # the GitHub login that added the label or wrote the comment
    at: str  # when (ISO 8601 UTC): events from before the request never count
    orgs: tuple[str, ...] = ()  # the actor's organisations (for ORG: patterns)
    label: str | None = None
    body: str | None = None


def decide_from_github(store: ApprovalStore, record: ApprovalRecord, event: GithubEvent) -> ApprovalRecord | None:
    """Approve from a PR event when it is the approval the request's mode asks for.

    Returns None for events that are not approvals (another label, a comment that does not
    match the regex or gives no reason); raises like ``decide`` for refused approvers.
    """
    # GitHub times events to the second, the request to the millisecond: an approval in the
    # request's own second counts (it was ignored when the label came fast, as in a test).
    if _utc(event.at) < _utc(record.created_at).replace(microsecond=0):
        return None  # e.g. the label was already on the PR for an earlier plan
    channel = record.packet.get("hitl") or {}
    author = ((channel.get("github") or {}).get("author") or "").lower()
    if author and event.actor.lower() == author and _is_approval(record, channel, event):
        detail = f"{event.actor} wrote the pull request and cannot approve it"
        store.log(record.request_id, utc_now(), event.actor, "refused", detail)
        raise ApproverRefused(f"{detail} (request {record.request_id})")
    if record.mode == "github_label" and event.kind == "label":
        if event.label != channel.get("required_label"):
            return None
        reason = f"label {event.label} added by {event.actor}"
    elif record.mode == "github_comment" and event.kind == "comment":
        reason = comment_reason(event.body or "", channel.get("approval_comment_regex") or "(?!)")
        if reason is None:
            return None
    else:
        return None
    return decide(store, record, APPROVED, event.actor, reason, via=record.mode, orgs=event.orgs)


def _is_approval(record: ApprovalRecord, channel: dict, event: GithubEvent) -> bool:
    if record.mode == "github_label":
        return event.kind == "label" and event.label == channel.get("required_label")
    regex = channel.get("approval_comment_regex") or "(?!)"
    return event.kind == "comment" and comment_reason(event.body or "", regex) is not None


def supersede(store: ApprovalStore, record: ApprovalRecord, why: str, now: str | None = None) -> bool:
    """End a pending request that a newer review replaced (e.g. a new push to the PR)."""
    now = now or utc_now()
    if not store.decide(record.request_id, EXPIRED, "casm", why, None, now):
        return False
    journal = run_journal(record, store)
    if journal:
        journal.emit(
            "hitl_decision", f"expired: {why}", outcome="expired", approver="casm", reason=why,
            request_id=record.request_id,
        )  # fmt: skip
    return True


def expire(store: ApprovalStore, record: ApprovalRecord, now: str) -> bool:
    if not store.decide(record.request_id, EXPIRED, "casm", f"no decision before {record.expires_at}", None, now):
        return False
    journal = run_journal(record, store)
    if journal:
        journal.emit(
            "hitl_decision",
            f"expired: no decision before {record.expires_at}; nothing was applied",
            outcome="expired",
            approver="casm",
            reason="expired",
            request_id=record.request_id,
        )
    return True


def expire_due(store: ApprovalStore, now: str | None = None) -> list[ApprovalRecord]:
    now = now or utc_now()
    return [record for record in store.due_for_expiry(now) if expire(store, record, now)]
