"""pr-sentinel end to end: ingest → scope → forecast → analyze (the PR's files only) →
policy (the PR's diff) → report (one sticky comment) → telemetry.

GitHub mode posts or updates the comment on the PR; a local range (``--base``/``--head``)
writes the same comment to ``pr_comment.md``. Nothing is ever applied to the repo.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from casm_dagster.contracts.run import GitHubCheckout, RunSpec, Snapshot
from casm_dagster.cost import proof
from casm_dagster.cost.run_cost import Counts
from casm_dagster.github import markers
from casm_dagster.github.approvals import pending_for
from casm_dagster.github.connector import GitHubConnector, GitHubError
from casm_dagster.github.mirror import show_file
from casm_dagster.policy import hitl
from casm_dagster.prsentinel import comment
from casm_dagster.prsentinel.policy import PrPolicy, score
from casm_dagster.prsentinel.scope import Scope, changed_files, is_ancestor, save_scope, select
from casm_dagster.prsentinel.settings import SETTINGS_FILE, RepoSettings, parse_settings
from casm_dagster.run import artifacts
from casm_dagster.run.journal import Journal, stage, write_json_atomic, write_text_atomic
from casm_dagster.run.workspace import scratch_checkout
from casm_dagster.safety import gitops
from casm_dagster.safety.repo_scan import scan
from casm_dagster.stages.analyze import analyze
from casm_dagster.stages.forecast import forecast
from casm_dagster.stages.ingest import ingest
from casm_dagster.stores.approvals import ApprovalStore

COMMENT_FILE = "pr_comment.md"


@dataclass(frozen=True)
class PrOutcome:
    run_id: str
    status: str  # commented | held | blocked | stopped
    policy_status: str
    risk_score: float
    findings: int
    reviewed_files: int
    comment_file: str
    comment_action: str  # created | updated | unchanged | written (local)
    comment_id: int | None = None


def _previous_state(connector: GitHubConnector, gh: GitHubCheckout) -> dict | None:
    """The state in CASM's own sticky comment on the PR (None before the first review)."""
    for c in connector.comments(gh.repo, gh.pr or 0):
        if markers.marker_tag(comment.MARKER) in c.body and connector.is_mine(c.author, is_bot=c.author_is_bot):
            return markers.read(c.body, comment.MARKER)
    return None


def _known(repo: Path, commit: str) -> bool:
    """A commit from the marker (text anyone with edit rights could change) that the mirror has."""
    if not re.fullmatch(r"[0-9a-f]{40}", commit):
        return False
    return gitops.git(repo, "cat-file", "-e", f"{commit}^{{commit}}", check=False).returncode == 0


def _scope(
    snap: Snapshot, journal: Journal, start: str, settings: RepoSettings, previous: dict | None
) -> tuple[Scope, int]:
    repo = Path(snap.spec.repo_path)
    head = snap.head_commit
    last = (previous or {}).get("head")
    covered = {p for p in (previous or {}).get("covered") or [] if isinstance(p, str)}
    since = None
    if isinstance(last, str) and last != head and covered and _known(repo, last) and is_ancestor(repo, last, head):
        since = set(changed_files(repo, last, head))
    elif isinstance(last, str) and last != head:
        journal.decision(
            "ingest",
            "review_full",
            f"last reviewed head {last[:12]} is unknown or not an ancestor (force-push?), or the "
            "earlier review's coverage is not recorded: full review",
        )
    changed = changed_files(repo, start, head)
    with scratch_checkout(repo, head) as tree:
        inventory = scan(tree)
    scope = select(changed, inventory, settings, since, last if since is not None else None, covered)
    save_scope(journal.run_dir, scope)
    journal.decision(
        "ingest",
        "review_scope",
        f"{len(scope.reviewed)} of {len(changed)} changed files to review, {len(scope.carried)} carried over, "
        f"{len(scope.not_reviewed)} not reviewed",
        reviewed=scope.reviewed,
        carried=scope.carried,
        not_reviewed=scope.not_reviewed,
    )
    return scope, len(changed)


def review_pull(
    spec: RunSpec,
    journal: Journal,
    engine: sa.Engine,
    approvals: ApprovalStore,
    connector: GitHubConnector | None = None,
    providers: Mapping[str, str] | None = None,
) -> PrOutcome:
    run = spec.effective_config.run
    gh = spec.github
    if gh and connector is None:
        raise GitHubError(f"reviewing {gh.repo}#{gh.pr} needs GitHub credentials (GITHUB_TOKEN)")
    snap = ingest(spec, journal)
    repo = Path(spec.repo_path)
    base = run.base
    start = gitops.git_text(repo, "merge-base", base, snap.head_commit)
    settings_at = gh.default_commit if gh else base
    settings, problem = parse_settings(show_file(repo, settings_at, SETTINGS_FILE))
    where = f"{SETTINGS_FILE} from {gh.default_branch if gh else 'the base'} ({settings_at[:12]})"
    if problem:
        journal.decision("ingest", "repo_settings_invalid", f"{problem}; defaults used")
    previous = _previous_state(connector, gh) if gh and connector else None
    scope, changed = _scope(snap, journal, start, settings, previous)
    forecasted = forecast(snap, journal, engine)
    if not forecasted.proceeds:
        return PrOutcome(spec.run_id, "stopped", "none", 0.0, 0, 0, "", "none")
    review = analyze(snap, journal, engine, providers)
    in_scope = set(scope.reviewed)
    fresh = [f for f in review.findings if f.file in in_scope]
    carried = comment.carried_findings(previous, scope.carried)
    pull = None
    if gh:
        pull = {"repo": gh.repo, "pr": gh.pr, "head": snap.head_commit, "url": gh.pr_url, "author": gh.pr_author}
        for old in pending_for(approvals, gh.repo, gh.pr):  # a new head needs a new approval
            if (old.packet.get("hitl") or {}).get("github", {}).get("head") != snap.head_commit:
                why = f"superseded by the review of {snap.head_commit[:12]} (run {spec.run_id})"
                if hitl.supersede(approvals, old, why):
                    journal.decision("policy", "hitl_superseded", f"request {old.request_id} {why}")
    policy = score(snap, journal, approvals, start, settings.hitl.mode, pull)
    with stage(journal, "report", "writing the PR comment"):
        counts = Counts(findings=len(fresh) + len(carried), loc_audited=review.loc_audited)
        ending = {"gate": "awaiting_approval", "block": "blocked"}.get(policy.status, "succeeded")
        cost = proof.finalize(spec, journal, engine, [], counts, status=ending)
        data = comment.CommentData(
            run_id=spec.run_id,
            head=snap.head_commit,
            start=start,
            policy=policy,
            findings=[*fresh, *carried],
            carried_ids={f.id for f in carried},
            scope=scope,
            changed=changed,
            severity_threshold=settings.severity_threshold,
            max_findings=settings.max_findings,
            forecast_p50_usd=forecasted.total_p50_usd,
            forecast_p90_usd=forecasted.total_p90_usd,
            model_mode=cost.mode,
            settings_note=f"{SETTINGS_FILE} is malformed, defaults used: {problem}"
            if problem
            else f"settings: {where}",
            settings_error=bool(problem),
        )
        body = comment.render(data)
        write_text_atomic(journal.run_dir / COMMENT_FILE, body)
        write_text_atomic(journal.run_dir / "report.md", body.split("\n", 1)[1])
        write_json_atomic(journal.run_dir / "issues.json", artifacts.issues_document(snap, review))
        action, comment_id = "written", None
        if gh and connector:
            posted, action = connector.upsert_comment(gh.repo, gh.pr or 0, markers.marker_tag(comment.MARKER), body)
            comment_id = posted.id
            journal.decision(
                "report", f"pr_comment_{action}", f"{action} the comment on {gh.repo}#{gh.pr}", comment_id=posted.id
            )
        names = spec.effective_config.artifact_names
        artifacts.publish_artifacts(spec, [COMMENT_FILE, "report.md", "issues.json", *names.values()])
        journal.state.counts = {"findings": counts.findings, "patches": 0, "checks": 0}
        journal.emit("stage_completed", f"comment {action}", stage="report", report=str(journal.run_dir / "report.md"))
    _end(journal, policy)
    proof.telemetry(spec, journal, engine)
    status = {"gate": "held", "block": "blocked"}.get(policy.status, "commented")
    return PrOutcome(
        spec.run_id,
        status,
        policy.status,
        policy.score,
        counts.findings,
        len(scope.reviewed),
        str(Path(spec.artifacts_dir) / COMMENT_FILE),
        action,
        comment_id,
    )


def _end(journal: Journal, policy: PrPolicy) -> None:
    if policy.status == "gate":
        journal.emit(
            "run_held",
            f"held for approval: request {policy.request_id}, expires {policy.expires_at}",
            request_id=policy.request_id,
            expires_at=policy.expires_at,
        )
    elif policy.status == "block":
        journal.emit("run_blocked", f"blocked by policy: {', '.join(policy.reason_codes)}")
    else:
        journal.emit("run_completed", f"reviewed: {policy.status} (risk {policy.score:.2f})")
