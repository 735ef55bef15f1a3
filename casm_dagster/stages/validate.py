"""The validate stage: the allowlisted checks on the patched tip, against the baseline the
analyze stage ran. A group that makes a passing check fail is found (re-applied one by
one) and dropped; benchmarks compare the audited commit with the tip."""

from __future__ import annotations

from pathlib import Path

from casm_dagster.agents import benchmarker, validator
from casm_dagster.contracts.plan import PatchPlan
from casm_dagster.contracts.run import Applied, Snapshot
from casm_dagster.contracts.validation import Validation
from casm_dagster.run.files import load_checks
from casm_dagster.run.journal import Journal, skipped, stage
from casm_dagster.run.workspace import scratch_checkout
from casm_dagster.safety import gitops
from casm_dagster.safety.repo_scan import scan
from casm_dagster.safety.sandbox import Sandbox
from casm_dagster.stages.apply import commit_message


def validate(snap: Snapshot, patch_plan: PatchPlan, applied: Applied, journal: Journal) -> Validation:
    if skipped(journal, "validate"):
        return Validation(checks=[], accepted_groups=[], rejected_groups={}, final_commit=None)
    with stage(journal, "validate", "running the allowlisted checks on the patched tree"):
        result = _validate(snap, patch_plan, applied, journal)
        journal.emit(
            "stage_completed",
            f"{len(result.accepted_groups)} groups accepted, {len(result.rejected_groups)} rejected",
            stage="validate",
            accepted=result.accepted_groups,
            rejected=result.rejected_groups,
            final_commit=result.final_commit,
        )
    return result


def _validate(snap: Snapshot, patch_plan: PatchPlan, applied: Applied, journal: Journal) -> Validation:
    sandbox = Sandbox.for_run(snap.spec)
    before = load_checks(snap.spec.run_dir)
    commands = [c.command for c in before]
    rejected = dict(applied.failed_groups)
    accepted = [g.group_id for g in patch_plan.groups if g.group_id in applied.commits]
    tip = applied.tip
    repo = Path(snap.spec.repo_path)
    with scratch_checkout(repo, tip) as tree:
        after = validator.run_checks(sandbox, commands, tree, "after")
    broken = validator.regressions(before, after)
    if broken and accepted:
        # Find the culprits: re-apply group by group, running only the checks that broke.
        accepted, tip, culprits = _isolate(snap, patch_plan, accepted, broken, sandbox)
        rejected.update(culprits)
        with scratch_checkout(repo, tip) as tree:
            after = validator.run_checks(sandbox, commands, tree, "after")
    for group_id, why in sorted(rejected.items()):
        journal.decision("validate", "patch_rejected", f"rejected {group_id}: {why}", group=group_id)
    for run in after:
        if run.network == "not_enforced":
            journal.decision(
                "validate", "network_not_enforced", f"network isolation not enforced: {run.network_detail}"
            )
            break
    benchmarks = []
    with scratch_checkout(repo, applied.base_commit) as base_tree:
        bench_commands = validator.applicable_benchmarks(sandbox, base_tree, scan(base_tree))
        if bench_commands and tip != applied.base_commit:
            with scratch_checkout(repo, tip) as tip_tree:
                benchmarks = [benchmarker.compare(sandbox, c, base_tree, tip_tree) for c in bench_commands]
    final = tip if accepted and tip != applied.base_commit else None
    return Validation(
        checks=[*before, *after],
        accepted_groups=accepted,
        rejected_groups=rejected,
        benchmarks=benchmarks,
        final_commit=final,
    )


def _isolate(
    snap: Snapshot, patch_plan: PatchPlan, accepted: list[str], broken: list[str], sandbox: Sandbox
) -> tuple[list[str], str, dict[str, str]]:
    kept: list[str] = []
    culprits: dict[str, str] = {}
    groups = {g.group_id: g for g in patch_plan.groups}
    with scratch_checkout(Path(snap.spec.repo_path), patch_plan.base_commit) as tree:
        for group_id in accepted:
            group = groups[group_id]
            try:
                gitops.apply_patch(tree, (snap.spec.run_dir / group.patch_file).read_bytes())
            except gitops.RepoError as exc:
                culprits[group_id] = f"no longer applies once an earlier group was rejected: {exc}"
                continue
            gitops.commit_staged(tree, commit_message(snap.spec, group))
            runs = validator.run_checks(sandbox, broken, tree, "after")
            failing = [r.command for r in runs if r.status != "passed"]
            if failing:
                culprits[group_id] = f"makes the passing check `{failing[0]}` fail"
                gitops.git(tree, "reset", "--quiet", "--hard", "HEAD~1")
            else:
                kept.append(group_id)
        tip = gitops.git_text(tree, "rev-parse", "HEAD")
    return kept, tip, culprits
