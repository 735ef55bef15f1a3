"""The policy stage: score the planned patch before anything is applied.

pass/warn → the run proceeds (warn is reported); gate → an approval request is stored,
the run ends held (``casm approve`` / the PR label or comment decides); block → a
security alert, the run ends blocked, nothing applied and no way to approve it.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from casm_dagster.contracts.findings import Review
from casm_dagster.contracts.plan import PatchPlan
from casm_dagster.contracts.policy import PolicyDecision
from casm_dagster.contracts.run import RunSpec, Snapshot
from casm_dagster.cost.run_cost import Counts
from casm_dagster.errors import ConfigError
from casm_dagster.policy.check import DIFF_ARGS, engine_for
from casm_dagster.policy.diff import parse_diff
from casm_dagster.policy.document import HitlInfo, RunContext, policy_document
from casm_dagster.policy.engine import PolicyResult, SemanticScore
from casm_dagster.policy.hitl import expiry
from casm_dagster.policy.ruleset import Ruleset, load_ruleset
from casm_dagster.policy.sources import PatchOnly
from casm_dagster.run import artifacts
from casm_dagster.run.files import POLICY_FILE, POLICY_RESULT_FILE, load_checks, planned_tasks, save
from casm_dagster.run.ids import new_ulid
from casm_dagster.run.journal import Journal, skipped, stage, utc_now, write_json_atomic
from casm_dagster.run.workspace import scratch_checkout
from casm_dagster.safety import gitops
from casm_dagster.stores.approvals import ApprovalRecord, ApprovalStore

MAX_SIGNALS_IN_EVENT = 100


def ruleset_for(snap: Snapshot) -> Ruleset:
    """The template's ruleset: a bundled id, or a file path relative to the manifest."""
    pinned = snap.spec.effective_config.run.ruleset
    ref = pinned.ref if pinned else snap.spec.manifest.policy.ruleset
    source = "override" if pinned and pinned.overridden else "template"
    ruleset = load_ruleset(ref, source=source, base_dir=Path(snap.spec.manifest_path).parent)
    if pinned and ruleset.sha256 != pinned.sha256:
        raise ConfigError(f"ruleset {ref} changed during run {snap.spec.run_id} (sha256 {ruleset.sha256[:12]})")
    return ruleset


def plan_diff(snap: Snapshot, plan: PatchPlan) -> bytes:
    """The whole plan as one diff against its base (groups applied in order), as scored."""
    if not plan.groups:
        return b""
    with scratch_checkout(Path(snap.spec.repo_path), plan.base_commit) as tree:
        for group in plan.groups:
            gitops.apply_patch(tree, (snap.spec.run_dir / group.patch_file).read_bytes())
        return gitops.git(tree, *DIFF_ARGS, "--cached", plan.base_commit).stdout


def approve_command(run_id: str) -> str:
    return f'casm approve --run-id {run_id} --reason "..."'


def event_data(result: PolicyResult, document: dict[str, Any]) -> dict[str, Any]:
    """What ``casm explain`` shows: components, reason codes, hashed signals, the packet."""
    return {
        "status": result.status,
        "score": result.score,
        "reason_codes": result.reason_codes,
        "conditions": result.conditions,
        "components": document["risk"]["components"],
        "signals": document["signals"][:MAX_SIGNALS_IN_EVENT],
        "signals_total": len(document["signals"]),
        "scope": (
            {
                "allow_files": result.scope.allow_files,
                "deny_files": result.scope.deny_files,
                "notes": result.scope.notes,
            }
            if result.scope
            else None
        ),
        "ruleset": document["ruleset"],
        "semantic": {"score": result.semantic.score, "source": result.semantic.source},
    }


def _redteam(snap: Snapshot, journal: Journal, engine, providers, diff: bytes) -> SemanticScore | None:
    """redteam-lite's verdict on the planned patch, as the policy's semantic score."""
    from casm_dagster.agents import model_agents
    from casm_dagster.llm.session import open_session

    tasks = planned_tasks(journal.run_dir, "redteam")
    if not tasks or not diff.strip():
        return None
    session = open_session(snap.spec, journal, engine, providers)
    semantic, tally, concerns = model_agents.redteam(session.router, tasks, diff.decode("utf-8", "replace"))
    for note in tally.notes:
        journal.decision("policy", "model_task_dropped", note)
    if semantic is not None:
        journal.decision(
            "policy",
            "redteam_verdict",
            f"redteam-lite ({semantic.source}): score {semantic.score:.2f}; {semantic.detail}",
            score=semantic.score,
            concerns=concerns,
        )
    return semantic


def repo_type(spec: RunSpec) -> str:
    return "github" if spec.github else "local"


def hitl_info(spec: RunSpec, mode: str) -> HitlInfo:
    """How a gated run is approved: ``mode`` with the template's approvers and channel."""
    cfg = spec.manifest.policy.hitl
    github = cfg.github
    approvers = cfg.local.approvers if mode == "local" else (github.approvers if github else [])  # type: ignore[union-attr]
    return HitlInfo(
        mode=mode,
        status="pending",
        approvers=tuple(approvers),
        required_label=github.required_label if github and mode == "github_label" else None,
        approval_comment_regex=github.approval_comment_regex if github and mode == "github_comment" else None,
    )


def request_approval(
    approvals: ApprovalStore,
    spec: RunSpec,
    journal: Journal,
    hitl: HitlInfo,
    bound_sha256: str,
    ruleset: Ruleset,
    result: PolicyResult,
    data: dict[str, Any],
    channel: dict[str, Any] | None = None,
) -> ApprovalRecord:
    """Store the decision packet of a gated run (``bound_sha256``: what the approval is for;
    ``channel``: where a GitHub approval is read, e.g. the PR)."""
    now = utc_now()
    request = approvals.create(
        request_id=new_ulid(),
        run_id=spec.run_id,
        repo=spec.repo,
        partition_key=spec.partition_key,
        template_id=spec.template_id,
        state_dir=spec.state_dir,
        mode=hitl.mode,
        approvers=list(hitl.approvers),
        plan_sha256=bound_sha256,
        ruleset_id=ruleset.id,
        ruleset_sha256=ruleset.sha256,
        packet={
            "status": result.status,
            "score": result.score,
            "reason_codes": result.reason_codes,
            "summary": result.human_summary,
            "scope": data["scope"],
            "hitl": {
                "required_label": hitl.required_label,
                "approval_comment_regex": hitl.approval_comment_regex,
                **(channel or {}),
            },
        },
        created_at=now,
        expires_at=expiry(now, spec.manifest.policy.hitl.expires_after_hours),
    )
    journal.state.hitl_request_id = request.request_id
    return request


def policy(
    snap: Snapshot,
    review: Review,
    plan: PatchPlan,
    journal: Journal,
    approvals: ApprovalStore,
    engine=None,
    providers: Mapping[str, str] | None = None,
) -> PolicyDecision:
    """``providers``: the model providers' keys for redteam-lite (see ``llm.session.open_session``)."""
    if skipped(journal, "policy"):
        return PolicyDecision(
            status="skipped",
            score=0.0,
            reason_codes=[],
            ruleset_id="",
            ruleset_sha256="",
            plan_sha256=plan.plan_sha256,
            summary="policy stage not part of this workflow",
        )
    spec = snap.spec
    with stage(journal, "policy", f"scoring the planned patch ({len(plan.groups)} groups)"):
        ruleset = ruleset_for(snap)
        diff = plan_diff(snap, plan)
        files = parse_diff(diff)
        semantic = _redteam(snap, journal, engine or approvals.engine, providers, diff)
        result = engine_for(ruleset).evaluate(files, PatchOnly(Path(spec.repo_path), plan.base_commit), semantic)
        hitl_cfg = spec.manifest.policy.hitl
        ctx = RunContext(
            run_id=spec.run_id,
            template_id=spec.template_id,
            repo_type=repo_type(spec),
            repo_id=spec.repo if repo_type(spec) == "github" else spec.repo_path,
            started_at=journal.state.started_at,
            base=plan.base_commit,
            head=f"plan:{plan.plan_sha256}",
        )
        request = None
        hitl = HitlInfo()
        if result.status == "gate":
            hitl = hitl_info(spec, hitl_cfg.mode)
        document = policy_document(result, ctx, hitl)
        data = event_data(result, document)
        journal.state.policy_status = result.status
        journal.decision("policy", f"policy_{result.status}", result.human_summary, **data)
        if result.status == "gate":
            request = request_approval(approvals, spec, journal, hitl, plan.plan_sha256, ruleset, result, data)
        write_json_atomic(journal.run_dir / POLICY_FILE, document)
        outcome = PolicyDecision(
            status=result.status,
            score=result.score,
            reason_codes=result.reason_codes,
            ruleset_id=ruleset.id,
            ruleset_sha256=ruleset.sha256,
            plan_sha256=plan.plan_sha256,
            summary=result.human_summary,
            allow_files=result.scope.allow_files if result.scope else sorted({f.path for f in files}),
            deny_files=result.scope.deny_files if result.scope else [],
            scope_notes=result.scope.notes if result.scope else "",
            request_id=request.request_id if request else None,
            expires_at=request.expires_at if request else None,
            document=str(journal.run_dir / POLICY_FILE),
        )
        journal.emit(
            "stage_completed",
            f"{result.status} (risk {result.score:.2f})",
            stage="policy",
            **{"status": result.status, "score": result.score, "request_id": outcome.request_id},
        )
        if result.status == "block":
            # The patches hold what blocked them (e.g. a secret): a blocked plan can never be
            # applied, so its patch files are deleted rather than kept or published.
            shutil.rmtree(journal.run_dir / "patches", ignore_errors=True)
            journal.decision("policy", "patches_withheld", "the blocked plan's patch files were deleted")
            journal.emit(
                "security_alert",
                f"blocked: {', '.join(result.reason_codes)} in {', '.join(outcome.deny_files) or 'the patch'}",
                stage="policy",
                reason_codes=result.reason_codes,
                files=outcome.deny_files,
                signals=[s for s in data["signals"] if s["severity"] == "high"],
            )
        save(journal.run_dir, POLICY_RESULT_FILE, outcome)
        if not outcome.proceeds:
            _end_held_or_blocked(snap, review, plan, outcome, journal, engine or approvals.engine)
    return outcome


def _end_held_or_blocked(
    snap: Snapshot, review: Review, plan: PatchPlan, outcome: PolicyDecision, journal: Journal, engine
) -> None:
    from casm_dagster.cost import proof

    held = outcome.status == "gate"
    why = "held for approval" if held else "blocked by policy"
    for name in ("apply", "validate", "report", "telemetry"):
        if name in snap.spec.stages:
            journal.emit("stage_skipped", why, stage=name)
    journal.state.counts = {"findings": len(review.findings), "patches": 0, "checks": 0}
    counts = Counts(findings=len(review.findings), loc_audited=review.loc_audited)
    checks = load_checks(snap.spec.run_dir)
    cost = proof.finalize(snap.spec, journal, engine, checks, counts, status="awaiting_approval" if held else "blocked")
    artifacts.write_held(snap, review, plan, outcome, journal, cost)
    if held:
        journal.emit(
            "run_held",
            f"held for approval: request {outcome.request_id}, expires {outcome.expires_at}; "
            f"approve with: {approve_command(snap.spec.run_id)}",
            request_id=outcome.request_id,
            expires_at=outcome.expires_at,
        )
    else:
        journal.emit("run_blocked", f"blocked by policy: {', '.join(outcome.reason_codes)}; nothing applied")
