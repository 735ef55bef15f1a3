"""The apply stage: one commit per patch group on a scratch checkout of the audited commit
(the user's tree untouched). A group that no longer applies is recorded, not fatal."""

from __future__ import annotations

from pathlib import Path

from casm_dagster.contracts.plan import PatchGroup, PatchPlan
from casm_dagster.contracts.run import Applied, RunSpec, Snapshot
from casm_dagster.run.journal import Journal, skipped, stage
from casm_dagster.run.workspace import scratch_checkout
from casm_dagster.safety import gitops


def apply(snap: Snapshot, patch_plan: PatchPlan, journal: Journal) -> Applied:
    if skipped(journal, "apply"):
        return Applied(base_commit=snap.head_commit, commits={}, tip=snap.head_commit)
    with stage(journal, "apply", f"applying {len(patch_plan.groups)} patch groups"):
        result = commit_groups(snap.spec, patch_plan, journal)
        journal.emit(
            "stage_completed", f"{len(result.commits)} commits", stage="apply", tip=result.tip, commits=result.commits
        )
    return result


PLAN_TRAILER = "CASM-Plan"


def commit_message(spec: RunSpec, group: PatchGroup, plan_sha256: str) -> str:
    """The trailers name the run, the group and the plan: a rerun of the same plan finds
    the branch that already holds it (``stages.report``)."""
    return (
        f"casm({spec.template_id}): {group.title}\n\n"
        f"CASM-Run: {spec.run_id}\nCASM-Group: {group.group_id}\n{PLAN_TRAILER}: {plan_sha256}\n"
    )


def commit_groups(spec: RunSpec, patch_plan: PatchPlan, journal: Journal) -> Applied:
    commits: dict[str, str] = {}
    failed: dict[str, str] = {}
    with scratch_checkout(Path(spec.repo_path), patch_plan.base_commit) as tree:
        for group in patch_plan.groups:
            try:
                gitops.apply_patch(tree, (spec.run_dir / group.patch_file).read_bytes())
            except gitops.RepoError as exc:
                failed[group.group_id] = str(exc)
                journal.decision("apply", "group_not_applied", f"{group.group_id} does not apply: {exc}")
                continue
            commits[group.group_id] = gitops.commit_staged(tree, commit_message(spec, group, patch_plan.plan_sha256))
        tip = gitops.git_text(tree, "rev-parse", "HEAD")
    return Applied(base_commit=patch_plan.base_commit, commits=commits, tip=tip, failed_groups=failed)
