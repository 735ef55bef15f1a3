"""The report stage: report.md, cost_report.md, issues.json and the rest of the run's
artifacts, and the delivered branch (local mode) or pushed branch and PR (GitHub mode)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from casm_dagster.contracts.findings import Review
from casm_dagster.contracts.plan import PatchPlan
from casm_dagster.contracts.policy import PolicyDecision
from casm_dagster.contracts.run import Delivery, RunSpec, Snapshot
from casm_dagster.contracts.validation import Validation
from casm_dagster.cost import proof
from casm_dagster.cost.run_cost import Counts
from casm_dagster.run import artifacts
from casm_dagster.run.journal import Journal, stage
from casm_dagster.safety import gitops
from casm_dagster.stages.apply import PLAN_TRAILER

if TYPE_CHECKING:
    from casm_dagster.github.connector import GitHubConnector


def branch_name(spec: RunSpec) -> str:
    """Local mode: one branch per run. GitHub mode: one branch (and so one open PR) per
    template and base branch, moved by every audit — the hourly heartbeat updates its PR
    instead of opening a new one each hour."""
    if spec.github:
        return f"casm/{spec.template_id}/{spec.github.default_branch}"
    return f"casm/{spec.template_id}/{spec.run_id}"


def verify_branch(repo: Path, branch: str, validated: str) -> None:
    """The delivered branch must point at the commit that was validated: anything that
    moved it since (a leftover process, a hook, another tool) fails the run loudly."""
    actual = gitops.git_text(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}")
    if actual != validated:
        raise gitops.RepoError(
            f"branch {branch} points at {actual[:12] or 'nothing'}, not the validated commit {validated[:12]}: "
            "something moved it after validation; do not merge it"
        )


def same_plan_branch(repo: Path, spec: RunSpec, plan: PatchPlan, commit: str) -> str | None:
    """An existing ``casm/<template>/…`` branch whose tip was made from this plan and holds
    the same tree as ``commit`` (a rerun of an unchanged repo), or None."""
    refs = gitops.git_text(
        repo, "for-each-ref", "--format=%(refname:short)", f"refs/heads/casm/{spec.template_id}/"
    ).splitlines()
    tree = gitops.git_text(repo, "rev-parse", f"{commit}^{{tree}}")
    trailer = f"{PLAN_TRAILER}: {plan.plan_sha256}"
    for ref in sorted(refs):
        message = gitops.git_text(repo, "log", "-1", "--format=%B", ref)
        if trailer in message.splitlines() and gitops.git_text(repo, "rev-parse", f"{ref}^{{tree}}") == tree:
            return ref
    return None


def report(
    snap: Snapshot,
    review: Review,
    patch_plan: PatchPlan,
    validation: Validation,
    journal: Journal,
    engine: sa.Engine,
    policy: PolicyDecision | None = None,
) -> Delivery:
    with stage(journal, "report", "writing the report (the branch comes last, after telemetry)"):
        spec = snap.spec
        branch = None
        existing = None
        if validation.final_commit and not spec.github:
            existing = same_plan_branch(Path(spec.repo_path), spec, patch_plan, validation.final_commit)
        if existing:
            branch = existing
            journal.state.branch = branch
            journal.decision(
                "report",
                "branch_reused",
                f"branch {branch} already holds this plan ({patch_plan.plan_sha256[:12]}) with the same tree: "
                "no new branch",
                branch=branch,
            )
        elif validation.final_commit:
            # Created (local mode) or pushed with its PR (GitHub mode) by the telemetry stage,
            # once the report and the cost are on disk: a killed run delivers nothing.
            branch = branch_name(spec)
            journal.state.branch = branch
            journal.state.branch_commit = validation.final_commit
        accepted = set(validation.accepted_groups)
        counts = Counts(
            findings=len(review.findings),
            fixed=len({f for g in patch_plan.groups if g.group_id in accepted for f in g.finding_ids}),
            prs_created=1 if branch else 0,
            loc_audited=review.loc_audited,
        )
        cost = proof.finalize(spec, journal, engine, validation.checks, counts, status="succeeded")
        delivery = artifacts.write_all(snap, review, patch_plan, validation, branch, cost, journal, policy)
        journal.state.counts = {"findings": delivery.findings, "patches": delivery.patches, "checks": delivery.checks}
        journal.emit(
            "stage_completed", f"report at {delivery.report}", stage="report", branch=branch, report=delivery.report
        )
    return delivery


def _delivering(journal: Journal) -> bool:
    """The run reached the end of its report (not held, blocked, stopped, or a workflow
    that finishes on its own, like pr-sentinel's)."""
    return journal.state.status == "running" and journal.state.stages.get("report") == "completed"


def deliver_branch(journal: Journal, github: GitHubConnector | None = None) -> None:
    """Deliver the branch the report named, at the validated commit, only once the report
    and the cost reconciliation are on disk: a killed run leaves no branch and no PR.
    Local mode creates the branch; GitHub mode pushes it and opens (or updates) the PR."""
    state, spec = journal.state, journal.spec
    if not (_delivering(journal) and state.branch and state.branch_commit):
        return
    if spec.github:
        from casm_dagster.github.deliver import open_pull

        if github is None:
            raise ValueError("a GitHub-mode run delivers through a GitHub connector; none was given")
        names = artifacts.artifact_names(spec)
        run_dir = spec.run_dir
        open_pull(
            github,
            spec,
            journal,
            state.branch,
            state.branch_commit,
            run_dir / names["report_md"],
            run_dir / names["cost_report_md"],
        )
        return
    gitops.create_branch(Path(spec.repo_path), state.branch, state.branch_commit)
    verify_branch(Path(spec.repo_path), state.branch, state.branch_commit)
    journal.decision(
        "report",
        "branch_created",
        f"branch {state.branch} at {state.branch_commit[:12]}",
        branch=state.branch,
        commit=state.branch_commit,
    )


def finish_run(journal: Journal) -> None:
    branch = journal.state.branch
    if _delivering(journal):
        journal.emit("run_completed", "delivered" if branch else "no_changes", branch=branch)
