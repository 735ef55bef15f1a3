"""The audit workflow's stages as plain functions: ingest → analyze → plan → apply →
validate → report. The Dagster assets call these one per stage; tests call them directly.

Every stage works in its own scratch checkout (a detached ``git worktree`` in a private
temp dir, removed afterwards), so the user's working tree and current branch are never
touched. The only thing left in the target repo is the delivered branch.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa
from pydantic import BaseModel

from casm_dagster import gitops, model_plan, report
from casm_dagster.agents import benchmarker, fixer, model_agents, reviewer, validator
from casm_dagster.contracts.events import Stage
from casm_dagster.contracts.findings import AnalyserRun, Review
from casm_dagster.contracts.manifest import TemplateManifest
from casm_dagster.contracts.plan import PatchGroup, PatchPlan
from casm_dagster.contracts.policy import GateResult
from casm_dagster.contracts.run import Applied, Delivery, RunSpec, Snapshot
from casm_dagster.contracts.validation import CheckRun, Validation
from casm_dagster.cost.run_cost import Counts
from casm_dagster.errors import RunNotFoundError
from casm_dagster.journal import Journal, write_json_atomic
from casm_dagster.llm.session import offline
from casm_dagster.prsentinel.scope import restrict
from casm_dagster.repo_scan import scan
from casm_dagster.sandbox import Sandbox

M = TypeVar("M", bound=BaseModel)

# What a stage hands the next one, also kept in the run dir so the HITL continuation (a
# separate Dagster run, maybe days later) resumes from exactly what was gated.
SPEC_FILE, SNAPSHOT_FILE, REVIEW_FILE, PLAN_FILE = "spec.json", "snapshot.json", "review.json", "plan.json"


def save(run_dir: Path, name: str, model: BaseModel) -> None:
    write_json_atomic(run_dir / name, model.model_dump(mode="json"))


def load(run_dir: Path, name: str, model: type[M]) -> M:
    path = run_dir / name
    if not path.exists():
        raise RunNotFoundError(f"{path} is missing: the run's state is incomplete")
    return model.model_validate_json(path.read_text(encoding="utf-8"))


def manifest_of(spec: RunSpec) -> TemplateManifest:
    return TemplateManifest.model_validate(spec.effective_config["template"])


def sandbox_of(spec: RunSpec) -> Sandbox:
    box = manifest_of(spec).runtime.sandbox
    return Sandbox(box.allow_commands, box.allow_network, box.command_timeout_seconds)


def branch_name(spec: RunSpec) -> str:
    """Local mode: one branch per run. GitHub mode: one branch (and so one open PR) per
    template and base branch, moved by every audit — the hourly heartbeat updates its PR
    instead of opening a new one each hour."""
    github = spec.effective_config["run"].get("github")
    if github:
        return f"casm/{spec.template_id}/{github['default_branch']}"
    return f"casm/{spec.template_id}/{spec.run_id}"


@contextlib.contextmanager
def scratch_checkout(repo: Path, commit: str) -> Iterator[Path]:
    parent = Path(tempfile.mkdtemp(prefix="casm-wt-"))
    where = parent / "checkout"
    try:
        gitops.add_worktree(repo, where, commit)
        yield where
    finally:
        gitops.remove_worktree(repo, where)
        shutil.rmtree(parent, ignore_errors=True)


@contextlib.contextmanager
def stage(journal: Journal, name: Stage, doing: str) -> Iterator[None]:
    journal.emit("stage_started", doing, stage=name)
    try:
        yield
    except BaseException as exc:
        journal.emit("stage_failed", f"{type(exc).__name__}: {exc}", stage=name)
        journal.emit("run_failed", f"stage {name} failed", stage=None)
        raise


def skipped(journal: Journal, name: Stage) -> bool:
    if name in journal.spec.stages:
        return False
    journal.emit("stage_skipped", f"not part of workflow {journal.spec.workflow}", stage=name)
    return True


def ingest(spec: RunSpec, journal: Journal) -> Snapshot:
    journal.emit(
        "run_started",
        f"{spec.template_id} on {spec.repo}",
        template=spec.template_id,
        repo=spec.repo,
        partition_key=spec.partition_key,
        seed=spec.seed,
    )
    with stage(journal, "ingest", "reading the repository"):
        run = spec.effective_config["run"]
        pinned = run.get("head")
        if run.get("github"):  # the bare mirror has no HEAD to read: the fetched commit is pinned
            info = gitops.RepoInfo(Path(spec.repo_path), pinned, run["github"]["head_ref"], False)
        else:
            info = gitops.inspect_repo(Path(spec.repo_path))
        if pinned and not run.get("github"):  # --head: audit that commit, whatever HEAD is now
            info = gitops.RepoInfo(info.root, pinned, f"pinned {pinned[:12]}", False)
        journal.state.head_commit = info.head_commit
        if info.dirty:
            journal.decision(
                "ingest",
                "audit_head",
                f"working tree has uncommitted changes; auditing HEAD {info.head_commit[:12]} "
                "(uncommitted changes are not part of the audit)",
            )
        journal.emit(
            "stage_completed",
            f"HEAD {info.head_commit[:12]} on {info.head_ref}",
            stage="ingest",
            head_commit=info.head_commit,
            dirty=info.dirty,
        )
    snap = Snapshot(spec=spec, head_commit=info.head_commit, head_ref=info.head_ref, dirty=info.dirty)
    save(journal.run_dir, SPEC_FILE, spec)
    save(journal.run_dir, SNAPSHOT_FILE, snap)
    return snap


def _model_session(snap: Snapshot, journal: Journal, engine: sa.Engine | None):
    from casm_dagster.llm.session import open_session

    return open_session(snap.spec, journal, engine) if engine is not None else None


def _model_tally(journal: Journal, stage_name: Stage, what: str, tally) -> None:
    for note in tally.notes:
        journal.decision(stage_name, "model_task_dropped", note)
    if tally.done or tally.dropped:
        journal.decision(
            stage_name,
            "model_work",
            f"{what}: {tally.done} model tasks done, {tally.dropped} dropped, {tally.failed_calls} failed calls",
            done=tally.done,
            dropped=tally.dropped,
            failed_calls=tally.failed_calls,
        )


def analyze(snap: Snapshot, journal: Journal, engine: sa.Engine | None = None) -> Review:
    if skipped(journal, "analyze"):
        return Review(
            findings=[],
            analysers=[],
            skipped_files=[],
            languages=[],
            files_audited=0,
            loc_audited=0,
        )
    with stage(journal, "analyze", "running analysers and the baseline checks"):
        sandbox = sandbox_of(snap.spec)
        with scratch_checkout(Path(snap.spec.repo_path), snap.head_commit) as tree:
            inventory = restrict(scan(tree), journal.run_dir)  # pr-sentinel: the PR's files
            checks = validator.applicable_checks(sandbox, tree, inventory)
            baseline = validator.run_checks(sandbox, checks, tree, "before")
            findings, analysers = reviewer.review(tree, inventory, baseline)
            tasks = model_plan.planned(journal.run_dir, "review")
            session = _model_session(snap, journal, engine) if tasks else None
            if session is not None:
                files = {f.path: f for f in inventory.files}
                found, tally = model_agents.review(
                    session.router, tasks, files, manifest_of(snap.spec).routing.max_parallel
                )
                known = {f.id for f in findings}
                extra = []
                for item in found:  # the same model finding twice counts once
                    if item.id not in known:
                        known.add(item.id)
                        extra.append(item)
                findings = sorted([*findings, *extra], key=lambda f: (f.file, f.line, f.analyser, f.rule, f.message))
                analysers.append(
                    AnalyserRun(
                        name="model-review",
                        status="ran" if not offline(snap.spec) else "skipped",
                        detail=(
                            f"{tally.done} files reviewed by a model, {tally.dropped} dropped"
                            if not offline(snap.spec)
                            else "offline: no model provider key is set, no model was called"
                        ),
                        files=tally.done,
                        findings=len(extra),
                    )
                )
                _model_tally(journal, "analyze", "model review", tally)
        result = Review(
            findings=findings,
            analysers=analysers,
            skipped_files=inventory.skipped,
            languages=inventory.languages,
            files_audited=len(inventory.files),
            loc_audited=sum(f.loc for f in inventory.files),
        )
        ReviewChecks.store(journal, baseline)
        save(journal.run_dir, REVIEW_FILE, result)
        for run in analysers:
            if run.status != "ran":
                journal.decision(
                    "analyze",
                    f"analyser_{run.status}",
                    f"analyser {run.name} {run.status}: {run.detail}",
                )
        for item in inventory.skipped:
            journal.decision("analyze", "file_skipped", f"skipped {item.path!r}: {item.reason}", path=item.path)
        journal.emit(
            "stage_completed",
            f"{len(findings)} findings in {len(inventory.files)} files",
            stage="analyze",
            findings=len(findings),
            checks=len(baseline),
            severity=reviewer.severity_counts(findings),
        )
    return result


class ReviewChecks:
    """The baseline check runs, kept beside the run (the validator compares against them)."""

    FILE = "checks_before.json"

    @classmethod
    def store(cls, journal: Journal, runs: list[CheckRun]) -> list[CheckRun]:
        report.write_models(journal.run_dir / cls.FILE, runs)
        return runs

    @classmethod
    def load(cls, spec: RunSpec) -> list[CheckRun]:
        return report.read_models(spec.run_dir / cls.FILE, CheckRun)


def plan(snap: Snapshot, review: Review, journal: Journal, engine: sa.Engine | None = None) -> PatchPlan:
    empty = PatchPlan(base_commit=snap.head_commit, groups=[], plan_sha256=fixer.plan_sha256(snap.head_commit, []))
    if skipped(journal, "plan"):
        return empty
    with stage(journal, "plan", "making patches from safe deterministic fixes"):
        if not manifest_of(snap.spec).agent_enabled("fixer"):
            journal.decision("plan", "fixer_disabled", "the template disables the fixer: no patches")
            result = empty
        else:
            with scratch_checkout(Path(snap.spec.repo_path), snap.head_commit) as tree:
                result = fixer.plan_fixes(tree, review.findings, snap.head_commit, journal.run_dir / "patches")
                result = _model_fixes(snap, review, journal, engine, tree, result)
        for note in result.notes:
            journal.decision("plan", "group_empty", note)
        save(journal.run_dir, PLAN_FILE, result)
        journal.emit(
            "stage_completed",
            f"{len(result.groups)} patch groups",
            stage="plan",
            plan_sha256=result.plan_sha256,
            groups=[g.group_id for g in result.groups],
        )
    return result


def _model_fixes(snap: Snapshot, review: Review, journal: Journal, engine, tree: Path, result: PatchPlan) -> PatchPlan:
    """Model-written fixes, then docs for the touched files, on top of the deterministic groups."""
    fix_tasks = model_plan.planned(journal.run_dir, "fix")
    doc_tasks = model_plan.planned(journal.run_dir, "docgen")
    session = _model_session(snap, journal, engine) if (fix_tasks or doc_tasks) else None
    if session is None:
        return result
    groups = list(result.groups)
    patch_dir = journal.run_dir / "patches"
    tally = model_agents.fix(session.router, fix_tasks, tree, review.findings, patch_dir, groups)
    _model_tally(journal, "plan", "model fixes", tally)
    touched = {path for g in groups for path in g.files}
    tally = model_agents.document(session.router, doc_tasks, tree, touched, patch_dir, groups)
    _model_tally(journal, "plan", "docgen", tally)
    return PatchPlan(
        base_commit=result.base_commit,
        groups=groups,
        plan_sha256=fixer.plan_sha256(result.base_commit, groups),
        notes=result.notes,
    )


def apply(snap: Snapshot, patch_plan: PatchPlan, journal: Journal) -> Applied:
    if skipped(journal, "apply"):
        return Applied(base_commit=snap.head_commit, commits={}, tip=snap.head_commit)
    with stage(journal, "apply", f"applying {len(patch_plan.groups)} patch groups"):
        result = _commit_groups(snap, patch_plan, patch_plan.groups, journal)
        journal.emit(
            "stage_completed", f"{len(result.commits)} commits", stage="apply", tip=result.tip, commits=result.commits
        )
    return result


def _commit_message(spec: RunSpec, group: PatchGroup) -> str:
    return f"casm({spec.template_id}): {group.title}\n\nCASM-Run: {spec.run_id}\nCASM-Group: {group.group_id}\n"


def _commit_groups(snap: Snapshot, patch_plan: PatchPlan, groups: list, journal: Journal) -> Applied:
    commits: dict[str, str] = {}
    failed: dict[str, str] = {}
    with scratch_checkout(Path(snap.spec.repo_path), patch_plan.base_commit) as tree:
        for group in groups:
            patch = (snap.spec.run_dir / group.patch_file).read_bytes()
            try:
                gitops.apply_patch(tree, patch)
            except gitops.RepoError as exc:
                failed[group.group_id] = str(exc)
                journal.decision("apply", "group_not_applied", f"{group.group_id} does not apply: {exc}")
                continue
            commits[group.group_id] = gitops.commit_staged(tree, _commit_message(snap.spec, group))
        tip = gitops.git_text(tree, "rev-parse", "HEAD")
    return Applied(base_commit=patch_plan.base_commit, commits=commits, tip=tip, failed_groups=failed)


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
    sandbox = sandbox_of(snap.spec)
    before = ReviewChecks.load(snap.spec)
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
        accepted, tip, culprits = _isolate(snap, patch_plan, accepted, broken, sandbox, journal)
        rejected.update(culprits)
        with scratch_checkout(repo, tip) as tree:
            after = validator.run_checks(sandbox, commands, tree, "after")
    for group_id, why in sorted(rejected.items()):
        journal.decision("validate", "patch_rejected", f"rejected {group_id}: {why}", group=group_id)
    for run in after:
        if run.network == "not_enforced":
            journal.decision(
                "validate",
                "network_not_enforced",
                f"network isolation not enforced: {run.network_detail}",
            )
            break
    benchmarks = []
    bench_commands = []
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


def _isolate(snap, patch_plan, accepted, broken, sandbox, journal):
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
            gitops.commit_staged(tree, _commit_message(snap.spec, group))
            runs = validator.run_checks(sandbox, broken, tree, "after")
            failing = [r.command for r in runs if r.status != "passed"]
            if failing:
                culprits[group_id] = f"makes the passing check `{failing[0]}` fail"
                gitops.git(tree, "reset", "--quiet", "--hard", "HEAD~1")
            else:
                kept.append(group_id)
        tip = gitops.git_text(tree, "rev-parse", "HEAD")
    return kept, tip, culprits


def deliver(
    snap: Snapshot,
    review: Review,
    patch_plan: PatchPlan,
    validation: Validation,
    journal: Journal,
    engine: sa.Engine,
    gate: GateResult | None = None,
) -> Delivery:
    from casm_dagster import proof

    with stage(journal, "report", "writing the report and delivering the branch"):
        spec = snap.spec
        branch = None
        github = spec.effective_config["run"].get("github")
        if validation.final_commit:
            branch = branch_name(spec)
            if not github:  # GitHub mode: the branch is made in the mirror and pushed below
                gitops.create_branch(Path(spec.repo_path), branch, validation.final_commit)
            journal.state.branch = branch
            journal.decision(
                "report",
                "branch_created",
                f"branch {branch} at {validation.final_commit[:12]}",
                branch=branch,
                commit=validation.final_commit,
            )
        accepted = set(validation.accepted_groups)
        counts = Counts(
            findings=len(review.findings),
            fixed=len({f for g in patch_plan.groups if g.group_id in accepted for f in g.finding_ids}),
            prs_created=1 if branch else 0,
            loc_audited=review.loc_audited,
        )
        cost = proof.finalize(spec, journal, engine, validation.checks, counts, status="succeeded")
        delivery = report.write_all(snap, review, patch_plan, validation, branch, cost, journal, gate)
        if github and branch and validation.final_commit:
            from casm_dagster.github.deliver import open_pull
            from casm_dagster.proof import cost_report_name

            pr = open_pull(
                spec,
                journal,
                branch,
                validation.final_commit,
                Path(delivery.report),
                spec.run_dir / cost_report_name(spec),
            )
            if pr:
                delivery = delivery.model_copy(update={"pull_request": pr.url})
        journal.state.counts = {
            "findings": delivery.findings,
            "patches": delivery.patches,
            "checks": delivery.checks,
        }
        journal.emit(
            "stage_completed", f"report at {delivery.report}", stage="report", branch=branch, report=delivery.report
        )
        journal.emit("run_completed", delivery.status, branch=branch)
    return delivery
