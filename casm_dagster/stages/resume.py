"""The gated run's second half: after approval, apply exactly the approved plan.

Bound by hash: the plan on disk must be the plan that was approved (plan hash, and every
patch file's own hash) and the ruleset must be the one that scored it; otherwise the
approval is void and nothing is applied. The approver's scope decides which files may
change: ``packet`` (default) keeps to the decision packet's allowed files, ``full`` allows
every file of the plan. The approval is claimed atomically, so it is consumed once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from casm_dagster.agents import fixer
from casm_dagster.contracts.findings import Review
from casm_dagster.contracts.plan import PatchGroup, PatchPlan
from casm_dagster.contracts.policy import PolicyDecision
from casm_dagster.contracts.run import Delivery, RunSpec, Snapshot
from casm_dagster.errors import CasmError, ConfigError
from casm_dagster.policy.diff import parse_diff
from casm_dagster.policy.hitl import ApprovalError
from casm_dagster.run.files import PLAN_FILE, POLICY_RESULT_FILE, REVIEW_FILE, SNAPSHOT_FILE, SPEC_FILE, load
from casm_dagster.run.journal import Journal, Listener, utc_now
from casm_dagster.run.templates import PR_WORKFLOW
from casm_dagster.stages.apply import apply
from casm_dagster.stages.policy import ruleset_for
from casm_dagster.stages.report import report
from casm_dagster.stages.telemetry import telemetry
from casm_dagster.stages.validate import validate
from casm_dagster.stores.approvals import APPROVED, ApprovalRecord, ApprovalStore
from casm_dagster.stores.run_files import local_run_dir, publisher, shared_store

if TYPE_CHECKING:
    from casm_dagster.github.connector import GitHubConnector

SCOPED_DIR = "patches/scoped"
# After a human approved a risky change, model agents (when the router runs any) use the
# strongest profile: the approval buys care, not speed.
ESCALATED_PROFILE = "reasoning_high"


class ApprovalVoid(CasmError):
    """The approved plan or ruleset changed after approval: nothing is applied."""


@dataclass(frozen=True)
class Resumed:
    status: str  # "applied" | "already_consumed"
    run_id: str
    partition_key: str
    delivery: Delivery | None = None
    plan: PatchPlan | None = None
    cost_summary: dict[str, Any] | None = None  # the telemetry stage's run summary


def binding_problems(record: ApprovalRecord, snap: Snapshot, plan: PatchPlan) -> list[str]:
    problems: list[str] = []
    if snap.spec.run_id != record.run_id or snap.spec.partition_key != record.partition_key:
        problems.append("the run's spec no longer names the approved run and repository")
    if snap.head_commit != plan.base_commit:
        problems.append("the snapshot's commit is not the plan's base commit")
    if plan.plan_sha256 != record.plan_sha256:
        problems.append(
            f"the plan changed since approval (approved {record.plan_sha256[:12]}, now {plan.plan_sha256[:12]})"
        )
    if fixer.plan_sha256(plan.base_commit, plan.groups) != plan.plan_sha256:
        problems.append("plan.json was edited: its groups no longer hash to its plan hash")
    for group in plan.groups:
        path = snap.spec.run_dir / group.patch_file
        actual = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "missing"
        if actual != group.patch_sha256:
            problems.append(f"patch {group.patch_file} changed since approval")
    try:
        ruleset = ruleset_for(snap)
    except ConfigError as exc:
        problems.append(f"the ruleset cannot be loaded any more: {exc}")
    else:
        if ruleset.sha256 != record.ruleset_sha256:
            problems.append(
                f"the ruleset {ruleset.id} changed since approval "
                f"(approved {record.ruleset_sha256[:12]}, now {ruleset.sha256[:12]})"
            )
    return problems


def _sections(patch: bytes) -> list[tuple[set[str], bytes]]:
    """A git patch split into per-file sections, each with the paths it touches (read from
    the patch bytes themselves, never from the plan's own file list)."""
    chunks: list[list[bytes]] = []
    for line in patch.splitlines(keepends=True):
        if line.startswith(b"diff --git ") or not chunks:
            chunks.append([])
        chunks[-1].append(line)
    out = []
    for lines in chunks:
        chunk = b"".join(lines)
        files = parse_diff(chunk)
        out.append(({p for f in files for p in (f.old_path, f.new_path) if p}, chunk))
    return out


def scoped_plan(spec: RunSpec, plan: PatchPlan, allowed: set[str]) -> tuple[PatchPlan, list[str]]:
    """The plan cut down to ``allowed`` files: whole groups kept, trimmed or dropped."""
    groups: list[PatchGroup] = []
    notes: list[str] = []
    for group in plan.groups:
        sections = _sections((spec.run_dir / group.patch_file).read_bytes())
        if all(paths <= allowed for paths, _ in sections):
            groups.append(group)
            continue
        kept = [chunk for paths, chunk in sections if paths <= allowed]
        if not kept:
            notes.append(f"{group.group_id} dropped: it only touches files outside the approved scope")
            continue
        patch = b"".join(kept)
        rel = f"{SCOPED_DIR}/{group.group_id}.patch"
        (spec.run_dir / SCOPED_DIR).mkdir(parents=True, exist_ok=True)
        (spec.run_dir / rel).write_bytes(patch)
        added, removed = fixer.count_lines(patch)
        files = sorted({p for paths, _ in sections if paths <= allowed for p in paths})
        notes.append(f"{group.group_id} trimmed to the approved scope: {', '.join(files)}")
        groups.append(
            group.model_copy(
                update={
                    "files": files,
                    "patch_file": rel,
                    "patch_sha256": hashlib.sha256(patch).hexdigest(),
                    "lines_added": added,
                    "lines_removed": removed,
                }
            )
        )
    scoped = PatchPlan(
        base_commit=plan.base_commit,
        groups=groups,
        plan_sha256=fixer.plan_sha256(plan.base_commit, groups),
        notes=[*plan.notes, *notes],
    )
    return scoped, notes


def require_checkout_here(spec: RunSpec) -> None:
    """A continuation applies the approved plan to the held run's checkout: this host must
    have it (a local repo lives on one host; a GitHub mirror on the host that fetched it)."""
    if spec.workflow != PR_WORKFLOW and not Path(spec.repo_path).is_dir():
        raise ApprovalError(
            f"run {spec.run_id} was held where its repo is {spec.repo_path}, and this host has no such "
            "directory: the HITL sensor continues it on the host that held it (or run `casm resume` there)"
        )


def held_spec(store: ApprovalStore, record: ApprovalRecord) -> RunSpec:
    """The held run's spec, from its folder on this host (pulled from the database first
    when the instance is shared)."""
    run_dir = local_run_dir(record.state_dir, record.run_id, shared_store(store.engine))
    return load(run_dir, SPEC_FILE, RunSpec)


def resume(
    store: ApprovalStore,
    request_id: str,
    continuation_run_id: str,
    listener: Listener | None = None,
    github: GitHubConnector | None = None,
) -> Resumed:
    """Apply → validate → report → telemetry on the approved plan, exactly as gated.
    ``github``: the connector a GitHub-mode run delivers (or acknowledges) through."""
    record = store.get(request_id)
    if record is None:
        raise ApprovalError(f"no approval request {request_id}")
    if record.status != APPROVED:
        raise ApprovalError(
            f"request {request_id} (run {record.run_id}) is {record.status}; only approved runs continue"
        )
    if record.consumed_at:
        return Resumed("already_consumed", record.run_id, record.partition_key)
    if not store.verifies(record):
        why = (
            f"approval of request {request_id} does not verify (its integrity code is missing or wrong: the row "
            "was not written by CASM, or was changed since); refused"
        )
        store.log(request_id, utc_now(), "casm", "refused", why)
        raise ApprovalError(why)
    shared = shared_store(store.engine)  # held on another host: its folder comes from the database
    run_dir = local_run_dir(record.state_dir, record.run_id, shared)
    spec = load(run_dir, SPEC_FILE, RunSpec).model_copy(update={"state_dir": str(run_dir.parent.parent)})
    journal = Journal(spec, listener, publish=publisher(shared, record.run_id) if shared else None)
    if spec.workflow == PR_WORKFLOW:  # a reviewed PR: nothing to apply, the comment says who approved
        from casm_dagster.prsentinel.approved import acknowledge

        done = acknowledge(store, record, spec, journal, continuation_run_id, github)
        return Resumed("acknowledged" if done else "already_consumed", record.run_id, record.partition_key)
    snap = load(run_dir, SNAPSHOT_FILE, Snapshot)
    review = load(run_dir, REVIEW_FILE, Review)
    plan = load(run_dir, PLAN_FILE, PatchPlan)
    decision = load(run_dir, POLICY_RESULT_FILE, PolicyDecision)
    require_checkout_here(spec)  # before the claim: the approval stays usable on the right host
    problems = binding_problems(record, snap, plan)
    if problems:
        why = "approval void: " + "; ".join(problems)
        if store.claim(request_id, continuation_run_id, utc_now()):
            store.finish(request_id, why, utc_now())
            journal.emit("hitl_decision", why, outcome="void", request_id=request_id, approver=record.approver)
            journal.emit("run_failed", f"{why}; nothing applied")
        raise ApprovalVoid(f"{why}; nothing applied")
    if not store.claim(request_id, continuation_run_id, utc_now()):
        return Resumed("already_consumed", record.run_id, record.partition_key)
    scope = record.scope or "packet"
    plan_files = {f for g in plan.groups for f in g.files}
    allowed = plan_files if scope == "full" else set((record.packet.get("scope") or {}).get("allow_files", []))
    journal.emit(
        "run_resumed",
        f"continuing after approval by {record.approver} ({scope} scope: {len(allowed & plan_files)} of "
        f"{len(plan_files)} files)",
        request_id=request_id,
        approver=record.approver,
        scope=scope,
        continuation_run_id=continuation_run_id,
    )
    scoped, notes = scoped_plan(spec, plan, allowed)
    for note in notes:
        journal.decision("apply", "scope_reduced", note)
    journal.decision(
        "apply",
        "model_profile_escalated",
        f"approved continuation: applies the approved plan; any model task re-planned after approval uses "
        f"profile {ESCALATED_PROFILE}",
        profile=ESCALATED_PROFILE,
    )
    try:
        applied = apply(snap, scoped, journal)
        validation = validate(snap, scoped, applied, journal)
        approved = decision.model_copy(update={"allow_files": sorted(allowed & plan_files)})
        delivery = report(snap, review, scoped, validation, journal, store.engine, approved)
        summary = telemetry(spec, journal, store.engine, github)
    except BaseException as exc:
        store.finish(request_id, f"continuation failed: {type(exc).__name__}: {exc}", utc_now())
        raise
    store.finish(request_id, f"applied: {delivery.status}, branch {delivery.branch or 'none'}", utc_now())
    return Resumed("applied", record.run_id, record.partition_key, delivery, scoped, summary)
