"""The validate stage: the allowlisted checks on the patched tip, against the baseline the
analyze stage ran, per test where the runner reports tests. A group that breaks a passing
test, or makes a check fail differently, is found (re-applied one by one) and dropped; a
test that fails once and passes on a re-run is named flaky. No check, no delivery (unless
the template opts in); a check that fails at the audited commit validates only by passing
on the patched tree. Benchmarks compare the audited commit with the tip."""

from __future__ import annotations

from pathlib import Path

from casm_dagster.agents import benchmarker, validator
from casm_dagster.contracts.plan import PatchPlan
from casm_dagster.contracts.run import Applied, Snapshot
from casm_dagster.contracts.validation import CheckRun, Validation
from casm_dagster.run.files import load_checks, load_environment
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


def _checked(
    sandbox: Sandbox, before: list[CheckRun], commands: list[str], tree: Path
) -> tuple[list[CheckRun], list[validator.Regression]]:
    """Run the checks on ``tree``; re-run once whatever regressed, so a flaky test is named
    as flaky instead of costing a patch its place."""
    after = validator.run_checks(sandbox, commands, tree, "after")
    regressed = validator.regressions(before, after)
    if regressed:
        again = validator.run_checks(sandbox, [r.command for r in regressed], tree, "after")
        after = validator.with_retry(before, after, again)
        regressed = validator.regressions(before, after)
    return after, regressed


def _validated_by(before: list[CheckRun]) -> str:
    """Why no check can validate a patch ("" when one can). A check validates only if it
    passed at the audited commit or at least one of its tests did: a suite that cannot even
    run there (a missing dependency, a collection error) vouches for nothing."""
    if not before:
        return "no allowlisted check applies to this repo"
    if any(c.status == "passed" or any(o == "passed" for o in (c.tests or {}).values()) for c in before):
        return ""
    states = []
    for c in before:
        tests = f", {len(c.tests)} tests, none passed" if c.tests else ""
        code = f" (exit {c.exit_code})" if c.exit_code is not None else ""
        states.append(f"`{c.command}` {c.status}{code}{tests}")
    return "no check passes at the audited commit: " + "; ".join(states)


def _validate(snap: Snapshot, patch_plan: PatchPlan, applied: Applied, journal: Journal) -> Validation:
    env = load_environment(snap.spec.run_dir)
    sandbox = Sandbox.for_run(snap.spec, env)
    before = load_checks(snap.spec.run_dir)
    commands = [c.command for c in before if c.status not in ("unavailable", "error")]
    rejected = dict(applied.failed_groups)
    accepted = [g.group_id for g in patch_plan.groups if g.group_id in applied.commits]
    tip = applied.tip
    repo = Path(snap.spec.repo_path)
    if not accepted:
        journal.decision("validate", "nothing_to_validate", "no patch group to validate: the checks are not re-run")
        return Validation(checks=before, accepted_groups=[], rejected_groups=rejected, final_commit=None)
    unvalidated: dict[str, str] = {}
    env_failed = env is not None and env.status == "failed"
    why_not = env.detail if env_failed else _validated_by(before)
    first: list[CheckRun] | None = None
    if why_not and not env_failed and commands:
        # A check that failed at the audited commit before any test reported (a lint
        # error ahead of the tests in `npm test`) and passes, whole, on the patched tree
        # vouches for it: everything it runs now passes. Not a suite that could not
        # collect there: its passing now may only mean the patch deleted what failed.
        with scratch_checkout(repo, tip) as tree:
            first = validator.run_checks(sandbox, commands, tree, "after")
        untested = {c.command for c in before if c.tests is None}
        now_passing = [c.command for c in first if c.status == "passed" and c.command in untested]
        if now_passing:
            why_not = ""
            journal.decision("validate", "validated_by_fix", f"`{now_passing[0]}` fails at the audited commit "
                             "and passes on the patched tree")  # fmt: skip
    if why_not:
        unvalidated = {g: f"not validated: {why_not}" for g in accepted}
        if snap.spec.manifest.deliver_unvalidated():
            why = f"the template delivers unvalidated groups ({why_not})"
            journal.decision("validate", "delivered_unvalidated", why)
        else:
            journal.decision("validate", "not_validated", f"nothing is delivered unvalidated: {why_not}")
            accepted, tip = [], applied.base_commit
        after: list[CheckRun] = first or []
    else:
        if first is not None and not validator.regressions(before, first):
            after, regressed = first, []
        else:
            with scratch_checkout(repo, tip) as tree:
                after, regressed = _checked(sandbox, before, commands, tree)
        if regressed:
            # Find the culprits: re-apply group by group, running only the checks that regressed.
            accepted, tip, culprits = _isolate(snap, patch_plan, accepted, before, regressed, sandbox)
            rejected.update(culprits)
            with scratch_checkout(repo, tip) as tree:
                after, _ = _checked(sandbox, before, commands, tree)
    for group_id, why in sorted(rejected.items()):
        journal.decision("validate", "patch_rejected", f"rejected {group_id}: {why}", group=group_id)
    for run in after:
        if run.flaky:
            journal.decision("validate", "flaky_tests", f"`{run.command}`: flaky (failed, then passed): "
                             + ", ".join(run.flaky[:10]), tests=run.flaky)  # fmt: skip
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
        unvalidated_groups=unvalidated,
        benchmarks=benchmarks,
        final_commit=final,
    )


def _isolate(
    snap: Snapshot,
    patch_plan: PatchPlan,
    accepted: list[str],
    before: list[CheckRun],
    regressed: list[validator.Regression],
    sandbox: Sandbox,
) -> tuple[list[str], str, dict[str, str]]:
    kept: list[str] = []
    culprits: dict[str, str] = {}
    groups = {g.group_id: g for g in patch_plan.groups}
    commands = sorted({r.command for r in regressed})
    with scratch_checkout(Path(snap.spec.repo_path), patch_plan.base_commit) as tree:
        for group_id in accepted:
            group = groups[group_id]
            try:
                gitops.apply_patch(tree, (snap.spec.run_dir / group.patch_file).read_bytes())
            except gitops.RepoError as exc:
                culprits[group_id] = f"no longer applies once an earlier group was rejected: {exc}"
                continue
            gitops.commit_staged(tree, commit_message(snap.spec, group, patch_plan.plan_sha256))
            _, broke = _checked(sandbox, before, commands, tree)
            if broke:
                culprits[group_id] = broke[0].why
                gitops.git(tree, "reset", "--quiet", "--hard", "HEAD~1")
            else:
                kept.append(group_id)
        tip = gitops.git_text(tree, "rev-parse", "HEAD")
    return kept, tip, culprits
