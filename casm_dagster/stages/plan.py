"""The plan stage: the patch plan — one patch group per safe deterministic fix, then the
model-written fixes and docs the model plan includes — bound by the plan hash."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import sqlalchemy as sa

from casm_dagster.agents import fixer, model_agents
from casm_dagster.contracts.findings import Review
from casm_dagster.contracts.plan import PatchPlan
from casm_dagster.contracts.run import Snapshot
from casm_dagster.run.files import PLAN_FILE, load_environment, planned_tasks, save
from casm_dagster.run.journal import Journal, skipped, stage
from casm_dagster.run.workspace import scratch_checkout
from casm_dagster.safety.sandbox import Sandbox
from casm_dagster.stages.model_work import open_model_session, record_tally


def plan(
    snap: Snapshot,
    review: Review,
    journal: Journal,
    engine: sa.Engine | None = None,
    providers: Mapping[str, str] | None = None,
) -> PatchPlan:
    empty = PatchPlan(base_commit=snap.head_commit, groups=[], plan_sha256=fixer.plan_sha256(snap.head_commit, []))
    if skipped(journal, "plan"):
        return empty
    with stage(journal, "plan", "making patches from safe deterministic fixes"):
        if not snap.spec.manifest.agent_enabled("fixer"):
            journal.decision("plan", "fixer_disabled", "the template disables the fixer: no patches")
            result = empty
        else:
            # The JS/TS tools' fixers run in the repo's environment the analyze stage built.
            box = Sandbox.for_run(snap.spec, load_environment(journal.run_dir))
            with scratch_checkout(Path(snap.spec.repo_path), snap.head_commit) as tree:
                patches = journal.run_dir / "patches"
                result = fixer.plan_fixes(tree, review.findings, snap.head_commit, patches, box)
                result = _model_fixes(snap, review, journal, engine, providers, tree, result)
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


def _model_fixes(
    snap: Snapshot,
    review: Review,
    journal: Journal,
    engine: sa.Engine | None,
    providers: Mapping[str, str] | None,
    tree: Path,
    result: PatchPlan,
) -> PatchPlan:
    """Model-written fixes, then docs for the touched files, on top of the deterministic groups."""
    fix_tasks = planned_tasks(journal.run_dir, "fix")
    doc_tasks = planned_tasks(journal.run_dir, "docgen")
    session = open_model_session(snap, journal, engine, providers) if (fix_tasks or doc_tasks) else None
    if session is None:
        return result
    groups = list(result.groups)
    patch_dir = journal.run_dir / "patches"
    tally = model_agents.fix(session.router, fix_tasks, tree, review.findings, patch_dir, groups)
    record_tally(journal, "plan", "model fixes", tally)
    touched = {path for g in groups for path in g.files}
    tally = model_agents.document(session.router, doc_tasks, tree, touched, patch_dir, groups)
    record_tally(journal, "plan", "docgen", tally)
    return PatchPlan(
        base_commit=result.base_commit,
        groups=groups,
        plan_sha256=fixer.plan_sha256(result.base_commit, groups),
        notes=result.notes,
    )
