"""GitHub approval modes: a PR label or comment becomes a decision only from an allowlisted
approver, with the label or comment the request asks for (the connector supplies events)."""

from __future__ import annotations

from pathlib import Path

import pytest

from casm_dagster.contracts.manifest import DEFAULT_APPROVAL_COMMENT
from casm_dagster.policy import hitl
from casm_dagster.run.journal import utc_now
from casm_dagster.stores.approvals import ApprovalStore
from casm_dagster.stores.db import engine_for


def ev(kind: str, actor: str, orgs: tuple[str, ...] = (), **fields: str) -> hitl.GithubEvent:
    """A PR event a few seconds after the request."""
    return hitl.GithubEvent(kind, actor, hitl.expiry(utc_now(), 0.001), orgs, **fields)


@pytest.fixture
def store(tmp_path: Path) -> ApprovalStore:
    return ApprovalStore(engine_for(f"sqlite:///{tmp_path / 'casm.db'}"))


def _request(store: ApprovalStore, mode: str, tmp_path: Path) -> object:
    now = utc_now()
    return store.create(
        request_id=f"REQ{mode.upper()}",
        run_id="01RUN",
        repo="acme/widgets",
        partition_key="acme__widgets",
        template_id="repo-auditor",
        state_dir=str(tmp_path / "state"),
        mode=mode,
        approvers=["USER:Octocat", "ORG:acme"],
        plan_sha256="p" * 64,
        ruleset_id="default.devtools",
        ruleset_sha256="r" * 64,
        packet={
            "reason_codes": ["PATH_SENSITIVE_HIGH"],
            "hitl": {"required_label": "casm-approved", "approval_comment_regex": DEFAULT_APPROVAL_COMMENT},
        },
        created_at=now,
        expires_at=hitl.expiry(now, 1),
    )


def test_required_label_by_an_allowlisted_user_approves(store: ApprovalStore, tmp_path: Path) -> None:
    record = _request(store, "github_label", tmp_path)
    assert hitl.decide_from_github(store, record, ev("label", "octocat", label="wip")) is None
    decided = hitl.decide_from_github(store, record, ev("label", "octocat", label="casm-approved"))
    assert decided.status == "approved" and decided.approver == "octocat"
    assert decided.reason == "label casm-approved added by octocat"


def test_org_membership_counts_and_outsiders_are_refused_and_logged(store: ApprovalStore, tmp_path: Path) -> None:
    record = _request(store, "github_label", tmp_path)
    with pytest.raises(hitl.ApproverRefused):
        hitl.decide_from_github(store, record, ev("label", "mallory", ("evil",), label="casm-approved"))
    assert store.require(record.request_id).status == "pending"
    refused = [e for e in store.log_entries(record.request_id) if e.action == "refused"]
    assert refused and refused[0].actor == "mallory"
    decided = hitl.decide_from_github(store, record, ev("label", "dev1", ("ACME",), label="casm-approved"))
    assert decided.status == "approved"


def test_comment_mode_takes_the_reason_from_the_comment(store: ApprovalStore, tmp_path: Path) -> None:
    record = _request(store, "github_comment", tmp_path)
    assert hitl.decide_from_github(store, record, ev("comment", "octocat", body="LGTM")) is None
    assert hitl.decide_from_github(store, record, ev("comment", "octocat", body="/casm approve")) is None
    # A label is not how a comment-mode request is approved.
    assert hitl.decide_from_github(store, record, ev("label", "octocat", label="casm-approved")) is None
    decided = hitl.decide_from_github(
        store, record, ev("comment", "octocat", body="/casm approve workflow change reviewed")
    )
    assert decided.status == "approved" and decided.reason == "workflow change reviewed"


def test_local_approval_is_refused_for_github_modes(store: ApprovalStore, tmp_path: Path) -> None:
    record = _request(store, "github_label", tmp_path)
    with pytest.raises(hitl.ApprovalError, match="decided through github_label"):
        hitl.decide(store, record, "approved", "octocat", "looks fine", via="local")


def test_an_event_from_before_the_request_never_approves(store: ApprovalStore, tmp_path: Path) -> None:
    record = _request(store, "github_label", tmp_path)
    stale = hitl.GithubEvent("label", "octocat", "2020-01-01T00:00:00.000Z", label="casm-approved")
    assert hitl.decide_from_github(store, record, stale) is None
    assert store.require(record.request_id).status == "pending"


def test_an_event_in_the_requests_own_second_counts(store: ApprovalStore, tmp_path: Path) -> None:
    """GitHub times events to the second: a label added in the second the request was made
    (its created_at has milliseconds) is after it, not before."""
    record = _request(store, "github_label", tmp_path)
    same_second = record.created_at.split(".")[0] + "Z"  # 12:00:00Z for a request at 12:00:00.734Z
    event = hitl.GithubEvent("label", "octocat", same_second, label="casm-approved")
    decided = hitl.decide_from_github(store, record, event)
    assert decided is not None and decided.status == "approved"
