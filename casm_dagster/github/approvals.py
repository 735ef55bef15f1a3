"""Approvals read on a pull request: a label or a comment, from a webhook or from the HITL
sensor's poll, decided by ``hitl.decide_from_github`` (allowlist, timing, regex)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from casm_dagster.github.connector import GitHubConnector
from casm_dagster.policy import hitl
from casm_dagster.stores.approvals import PENDING, ApprovalRecord, ApprovalStore

GITHUB_MODES = ("github_label", "github_comment")


@dataclass(frozen=True)
class Outcome:
    request_id: str
    run_id: str
    outcome: str  # approved | refused | not_an_approval
    detail: str

    def as_json(self) -> dict[str, str]:
        return {"request_id": self.request_id, "run_id": self.run_id, "outcome": self.outcome, "detail": self.detail}


def pull_of(record: ApprovalRecord) -> tuple[str, int] | None:
    pull = (record.packet.get("hitl") or {}).get("github")
    return (pull["repo"], int(pull["pr"])) if pull else None


def pending_for(store: ApprovalStore, repo: str | None = None, pr: int | None = None) -> list[ApprovalRecord]:
    """Pending GitHub-mode requests (of one PR, when given)."""
    found = []
    for record in store.list(status=PENDING, limit=1000):
        where = pull_of(record)
        if record.mode in GITHUB_MODES and where and (repo is None or where == (repo, pr)):
            found.append(record)
    return found


def apply_event(
    store: ApprovalStore, record: ApprovalRecord, event: hitl.GithubEvent, dry_run: bool = False
) -> Outcome:
    if dry_run:
        return Outcome(record.request_id, record.run_id, "not_decided", "dry run: nothing recorded")
    try:
        decided = hitl.decide_from_github(store, record, event)
    except hitl.ApproverRefused as exc:
        return Outcome(record.request_id, record.run_id, "refused", str(exc))
    except hitl.ApprovalError as exc:
        return Outcome(record.request_id, record.run_id, "not_an_approval", str(exc))
    if decided is None:
        return Outcome(
            record.request_id, record.run_id, "not_an_approval", f"{event.kind} by {event.actor} does not approve"
        )
    return Outcome(record.request_id, record.run_id, "approved", f"approved by {decided.approver}: {decided.reason}")


def poll_pull(
    store: ApprovalStore, connector: GitHubConnector, record: ApprovalRecord, orgs: Callable[[str], list[str]]
) -> Outcome | None:
    """Read the PR's label events or comments and decide the request from the first that
    approves it (None when nothing on the PR approves it yet)."""
    where = pull_of(record)
    if where is None:
        return None
    repo, pr = where
    needs_orgs = any(a.startswith("ORG:") for a in record.approvers)

    def orgs_of(login: str) -> tuple[str, ...]:
        return tuple(orgs(login)) if needs_orgs else ()

    events: list[hitl.GithubEvent] = []
    if record.mode == "github_label":
        for e in connector.label_events(repo, pr):
            events.append(hitl.GithubEvent("label", e.actor, e.created_at, orgs_of(e.actor), label=e.label))
    else:
        for c in connector.comments(repo, pr):
            events.append(hitl.GithubEvent("comment", c.author, c.created_at, orgs_of(c.author), body=c.body))
    # A refusal is logged once per person, not again on every poll.
    refused = {entry.actor for entry in store.log_entries(record.request_id) if entry.action == "refused"}
    last: Outcome | None = None
    for event in events:
        if event.actor in refused:
            continue
        outcome = apply_event(store, record, event)
        if outcome.outcome == "approved":
            return outcome
        if outcome.outcome == "refused":
            last = outcome
    return last
