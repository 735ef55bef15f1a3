"""repo-auditor's delivery in GitHub mode: push the branch, open (or, on a rerun, update)
the PR with the report as its body, and post the cost report as one comment."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from casm_dagster.contracts.run import RunSpec
from casm_dagster.github import markers
from casm_dagster.github.connector import GitHubConnector
from casm_dagster.github.mirror import push
from casm_dagster.run.journal import Journal
from casm_dagster.safety import gitops
from casm_dagster.safety.redact import redact

MAX_BODY = 60_000  # GitHub's limit is 65,536 characters


@dataclass(frozen=True)
class PrDelivery:
    number: int
    url: str
    created: bool
    comment_action: str


def _body(kind: str, run_id: str, text: str) -> str:
    text = redact(text)
    if len(text) > MAX_BODY:
        text = text[:MAX_BODY] + "\n\n_(truncated: the full text is in the run's artifacts)_"
    return f"{markers.render(kind, {'run_id': run_id})}\n{text}"


def open_pull(
    connector: GitHubConnector,
    spec: RunSpec,
    journal: Journal,
    branch: str,
    commit: str,
    report: Path,
    cost_report: Path,
) -> PrDelivery | None:
    """None when the template does not open PRs (``outputs.github.create_pr: false``)."""
    gh = spec.github
    assert gh is not None, "open_pull is GitHub mode's delivery"
    outputs = spec.manifest.outputs.github
    mirror = Path(spec.repo_path)
    # The mirror is CASM's own: a rerun of this run may move its branch.
    gitops.git(mirror, "update-ref", f"refs/heads/{branch}", commit)
    push(mirror, gh.clone_url, connector.settings.token, branch, commit)
    journal.decision("report", "branch_pushed", f"pushed {branch} to {gh.repo}", branch=branch, commit=commit)
    if not outputs.create_pr:
        return None
    body = _body("repo-auditor", spec.run_id, report.read_text(encoding="utf-8"))
    pr, created = connector.open_or_update_pull(gh.repo, branch, gh.default_branch, outputs.pr_title, body)
    journal.decision(
        "report",
        "pr_opened" if created else "pr_updated",
        f"{'opened' if created else 'updated'} {gh.repo}#{pr.number}",
        pr=pr.number,
        url=pr.html_url,
    )
    action = "skipped"
    if outputs.comment_artifact and cost_report.exists():
        kind = "cost-report"
        comment = _body(kind, spec.run_id, cost_report.read_text(encoding="utf-8"))
        _, action = connector.upsert_comment(gh.repo, pr.number, markers.marker_tag(kind), comment)
        journal.decision("report", f"cost_comment_{action}", f"cost report comment {action} on #{pr.number}")
    return PrDelivery(pr.number, pr.html_url, created, action)
