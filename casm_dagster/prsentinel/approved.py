"""A gated PR's approval: nothing is applied (pr-sentinel only comments), so the
continuation records the approval in the run's story and turns the sticky comment's
held notice into the approver's decision."""

from __future__ import annotations

import re
from pathlib import Path

from casm_dagster.contracts.run import GitHubCheckout, RunSpec
from casm_dagster.github import markers
from casm_dagster.github.connector import GitHubConnector, GitHubError
from casm_dagster.prsentinel.comment import HITL_END, HITL_START, MARKER
from casm_dagster.run.journal import Journal, utc_now, write_text_atomic
from casm_dagster.stores.approvals import ApprovalRecord, ApprovalStore

COMMENT_FILE = "pr_comment.md"


def approved_body(body: str, record: ApprovalRecord) -> str:
    notice = f"**✅ Approved** by `{record.approver}` at {record.decided_at}: {record.reason}"
    pattern = re.compile(re.escape(HITL_START) + r".*?" + re.escape(HITL_END), re.S)
    body = pattern.sub(lambda _m: f"{HITL_START}\n{notice}\n{HITL_END}", body, count=1)
    return re.sub(r"^(## CASM pr-sentinel — risk [0-9.]+) .*$", r"\1 ✅ APPROVED", body, count=1, flags=re.M)


def _sticky_head(connector: GitHubConnector, gh: GitHubCheckout) -> str | None:
    for c in connector.comments(gh.repo, gh.pr or 0):
        if markers.marker_tag(MARKER) in c.body and connector.is_mine(c.author, is_bot=c.author_is_bot):
            head = (markers.read(c.body, MARKER) or {}).get("head")
            return head if isinstance(head, str) else None
    return None


def acknowledge(
    store: ApprovalStore,
    record: ApprovalRecord,
    spec: RunSpec,
    journal: Journal,
    continuation_run_id: str,
    connector: GitHubConnector | None = None,
) -> bool:
    """False when another continuation already consumed the approval. ``connector``: a
    GitHub-mode review's comment is marked approved through it."""
    if not store.claim(record.request_id, continuation_run_id, utc_now()):
        return False
    journal.emit(
        "run_resumed",
        f"PR approved by {record.approver}: {record.reason}",
        request_id=record.request_id,
        approver=record.approver,
        continuation_run_id=continuation_run_id,
    )
    path = spec.run_dir / COMMENT_FILE
    body = approved_body(path.read_text(encoding="utf-8"), record)
    write_text_atomic(path, body)
    gh = spec.github
    if gh:
        if connector is None:
            raise GitHubError("marking the PR comment approved needs GitHub credentials (GITHUB_TOKEN)")
        current = _sticky_head(connector, gh)
        if current not in (None, gh.head_commit):  # a newer push was reviewed since: its comment stays
            journal.decision(
                "report", "pr_comment_kept", f"approved by {record.approver}, but the PR comment now reviews "
                f"{current[:12]}; left as is",
            )  # fmt: skip
        else:
            _, action = connector.upsert_comment(gh.repo, gh.pr or 0, markers.marker_tag(MARKER), body)
            journal.decision("report", f"pr_comment_{action}", f"comment {action}: approved by {record.approver}")
    if Path(spec.artifacts_dir, COMMENT_FILE).exists():
        write_text_atomic(Path(spec.artifacts_dir) / COMMENT_FILE, body)
    store.finish(record.request_id, f"acknowledged: approved by {record.approver}", utc_now())
    journal.emit("run_completed", f"approved by {record.approver}")
    return True
