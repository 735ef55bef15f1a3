"""The audit stages as partitioned assets (one partition per repo), in lineage order:
repo_snapshot → cost_forecast → review_findings → patch_plan → policy_decision →
applied_patches → validation_result → audit_report → run_cost. Each body calls the matching
function in ``casm_dagster.pipeline`` (or ``planning``, ``gate``, ``proof``)."""

from pathlib import Path

import dagster as dg

from casm_dagster import gate, pipeline, planning
from casm_dagster.contracts.findings import Review
from casm_dagster.contracts.plan import PatchPlan
from casm_dagster.contracts.policy import GateResult
from casm_dagster.contracts.run import Applied, Delivery, Snapshot
from casm_dagster.contracts.validation import Validation
from casm_dagster.economics.routing_policy import routing_view
from casm_dagster.partitions import repos_partitions
from casm_dagster.resources import CasmResource, latest_routing_policy
from casm_dagster.runspec import RunOptions, build_spec, resolve_repo
from casm_dagster.templates import load_template

GROUP = "audit"


class AuditConfig(dg.Config):
    """What to run. From the UI, only ``template`` matters; the CLI fills in the rest."""

    template: str = "repo-auditor"
    run_id: str = ""  # empty: a new ULID
    repo: str = ""  # empty: the location registered for the partition
    artifacts_dir: str = ""  # empty: <state_dir>/artifacts
    seed: int = 0
    # The replay flags (SPEC §3); None: the template's setting.
    budget_usd: float | None = None
    proof_mode: bool | None = None
    routing: str | None = None
    prices: str | None = None
    replay_of: str | None = None
    base: str | None = None
    head: str | None = None
    ruleset: str | None = None
    ruleset_hash: str | None = None
    pr: int | None = None  # GitHub mode, pr-sentinel: the pull request

    def options(self) -> RunOptions:
        return RunOptions(
            budget_usd=self.budget_usd,
            proof_mode=self.proof_mode,
            routing=self.routing,
            prices=self.prices,
            replay_of=self.replay_of,
            base=self.base,
            head=self.head,
            ruleset=self.ruleset,
            ruleset_hash=self.ruleset_hash,
            pr=self.pr,
        )


def _journal(casm: CasmResource, snap: Snapshot):
    return casm.journal(snap.spec)


@dg.asset(partitions_def=repos_partitions, group_name=GROUP, kinds={"git"})
def repo_snapshot(context: dg.AssetExecutionContext, config: AuditConfig, casm: CasmResource) -> dg.MaterializeResult:
    """Ingest: the commit being audited (HEAD of the repo), with the run's fixed spec."""
    record = casm.registry(context.instance).require(context.partition_key)
    repo = config.repo or record.location
    template = load_template(config.template)
    state_dir = casm.state_path()
    artifacts = Path(config.artifacts_dir) if config.artifacts_dir else state_dir / "artifacts"
    info, github = resolve_repo(record.location, state_dir)
    spec = build_spec(
        template,
        repo,
        info,
        state_dir,
        artifacts,
        seed=config.seed,
        run_id=config.run_id or None,
        options=config.options(),
        github=github,
        routing_policy=routing_view(latest_routing_policy(context.instance)),
    )
    journal = casm.journal(spec)
    journal.state.dagster_run_id = context.run.run_id
    snap = pipeline.ingest(spec, journal)
    return dg.MaterializeResult(
        value=snap,
        metadata={
            "casm_run_id": spec.run_id,
            "template": spec.template_id,
            "repo": spec.repo,
            "commit": snap.head_commit,
            "dirty_working_tree": snap.dirty,
        },
    )


@dg.asset(partitions_def=repos_partitions, group_name=GROUP, kinds={"python"}, output_required=False)
def cost_forecast(context: dg.AssetExecutionContext, casm: CasmResource, repo_snapshot: Snapshot):
    """Forecast: the run's model tasks, their routed models and cost (P50/P90), fitted to the
    budget (downgrade, reduce scope, stop). A stopped run materializes nothing further."""
    result = planning.forecast(repo_snapshot, _journal(casm, repo_snapshot), casm.engine(context.instance))
    if not result.proceeds:
        context.instance.add_run_tags(context.run.run_id, {"casm/budget": "stopped"})
        return
    yield dg.MaterializeResult(
        value=result,
        metadata={
            "casm_run_id": repo_snapshot.spec.run_id,
            "model_tasks": result.tasks,
            "forecast_p50_usd": result.total_p50_usd,
            "forecast_p90_usd": result.total_p90_usd,
            "budget_status": result.status,
            "budget_action": result.action,
        },
    )


@dg.asset(partitions_def=repos_partitions, group_name=GROUP, kinds={"python"})
def review_findings(
    context: dg.AssetExecutionContext,
    casm: CasmResource,
    repo_snapshot: Snapshot,
    cost_forecast: planning.ForecastResult,
) -> dg.MaterializeResult:
    """Analyze: the reviewer's findings (issues.json) and the baseline checks."""
    review = pipeline.analyze(repo_snapshot, _journal(casm, repo_snapshot), casm.engine(context.instance))
    return dg.MaterializeResult(
        value=review,
        metadata={
            "casm_run_id": repo_snapshot.spec.run_id,
            "findings": len(review.findings),
            "auto_fixable": sum(f.auto_fixable for f in review.findings),
            "analysers": ", ".join(f"{a.name}:{a.status}" for a in review.analysers),
        },
    )


@dg.asset(partitions_def=repos_partitions, group_name=GROUP, kinds={"python"})
def patch_plan(
    context: dg.AssetExecutionContext, casm: CasmResource, repo_snapshot: Snapshot, review_findings: Review
) -> dg.MaterializeResult:
    """Plan: the fixer's patch groups (deterministic, then model-written fixes and docs), one
    patch file each, bound by the plan hash."""
    plan = pipeline.plan(repo_snapshot, review_findings, _journal(casm, repo_snapshot), casm.engine(context.instance))
    return dg.MaterializeResult(
        value=plan,
        metadata={
            "casm_run_id": repo_snapshot.spec.run_id,
            "groups": len(plan.groups),
            "plan_sha256": plan.plan_sha256,
        },
    )


@dg.asset(partitions_def=repos_partitions, group_name=GROUP, kinds={"python"})
def policy_decision(
    context: dg.AssetExecutionContext,
    casm: CasmResource,
    repo_snapshot: Snapshot,
    review_findings: Review,
    patch_plan: PatchPlan,
) -> dg.MaterializeResult:
    """Policy: the planned patch scored before apply (pass/warn proceed; gate holds for a human; block stops)."""
    result = gate.gate(
        repo_snapshot,
        review_findings,
        patch_plan,
        _journal(casm, repo_snapshot),
        casm.approvals(context.instance),
        casm.engine(context.instance),
    )
    metadata: dict = {
        "casm_run_id": repo_snapshot.spec.run_id,
        "status": result.status,
        "risk_score": result.score,
        "reason_codes": ", ".join(result.reason_codes) or "none",
        "ruleset": f"{result.ruleset_id} {result.ruleset_sha256[:12]}",
    }
    if result.status == "gate":
        metadata |= {
            "hitl": "pending approval",
            "hitl_request_id": result.request_id,
            "expires_at": result.expires_at,
            "approve_with": dg.MetadataValue.md(f"`{gate.approve_command(repo_snapshot.spec.run_id)}`"),
            "suggested_scope": result.scope_notes,
        }
        context.instance.add_run_tags(
            context.run.run_id, {"casm/hitl": "pending", "casm/hitl_request": result.request_id or ""}
        )
    elif result.status == "block":
        context.instance.add_run_tags(context.run.run_id, {"casm/policy": "blocked"})
    if result.document:
        metadata["policy_decisions"] = dg.MetadataValue.path(result.document)
    return dg.MaterializeResult(value=result, metadata=metadata)


@dg.asset(partitions_def=repos_partitions, group_name=GROUP, kinds={"git"}, output_required=False)
def applied_patches(casm: CasmResource, repo_snapshot: Snapshot, patch_plan: PatchPlan, policy_decision: GateResult):
    """Apply: one commit per patch group on a detached checkout (the user's tree untouched).

    Nothing is materialized when the policy gated or blocked the plan, so validation and
    the report are skipped; the HITL continuation applies the plan after approval."""
    if not policy_decision.proceeds:
        return
    applied = pipeline.apply(repo_snapshot, patch_plan, _journal(casm, repo_snapshot))
    yield dg.MaterializeResult(
        value=applied,
        metadata={
            "casm_run_id": repo_snapshot.spec.run_id,
            "commits": len(applied.commits),
            "tip": applied.tip,
        },
    )


@dg.asset(partitions_def=repos_partitions, group_name=GROUP, kinds={"python"})
def validation_result(
    casm: CasmResource, repo_snapshot: Snapshot, patch_plan: PatchPlan, applied_patches: Applied
) -> dg.MaterializeResult:
    """Validate: allowlisted checks after the patch; groups that break a passing check are dropped."""
    validation = pipeline.validate(repo_snapshot, patch_plan, applied_patches, _journal(casm, repo_snapshot))
    return dg.MaterializeResult(
        value=validation,
        metadata={
            "casm_run_id": repo_snapshot.spec.run_id,
            "accepted": len(validation.accepted_groups),
            "rejected": len(validation.rejected_groups),
            "checks_after": ", ".join(f"{c.command}: {c.status}" for c in validation.after()) or "none",
        },
    )


@dg.asset(partitions_def=repos_partitions, group_name=GROUP, kinds={"markdown"})
def audit_report(
    context: dg.AssetExecutionContext,
    casm: CasmResource,
    repo_snapshot: Snapshot,
    review_findings: Review,
    patch_plan: PatchPlan,
    policy_decision: GateResult,
    validation_result: Validation,
) -> dg.MaterializeResult:
    """Report: report.md, cost_report.md, issues.json, and the delivered branch."""
    delivery: Delivery = pipeline.deliver(
        repo_snapshot,
        review_findings,
        patch_plan,
        validation_result,
        _journal(casm, repo_snapshot),
        casm.engine(context.instance),
        policy_decision,
    )
    return dg.MaterializeResult(
        value=delivery,
        metadata={
            "casm_run_id": repo_snapshot.spec.run_id,
            "status": delivery.status,
            "branch": delivery.branch or "none",
            "report": dg.MetadataValue.path(delivery.report),
            "findings": delivery.findings,
            "patches": delivery.patches,
        },
    )


@dg.asset(partitions_def=repos_partitions, group_name=GROUP, kinds={"sql"})
def run_cost(context: dg.AssetExecutionContext, casm: CasmResource, repo_snapshot: Snapshot, audit_report: Delivery):
    """Telemetry: the run's model calls and costs, as recorded (run_summary.json, cost_report.md)."""
    from casm_dagster import proof

    summary = proof.telemetry(repo_snapshot.spec, _journal(casm, repo_snapshot), casm.engine(context.instance))
    if not summary:
        return dg.MaterializeResult(value=summary, metadata={"casm_run_id": repo_snapshot.spec.run_id})
    totals = summary["totals"]
    return dg.MaterializeResult(
        value=summary,
        metadata={
            "casm_run_id": repo_snapshot.spec.run_id,
            "model_mode": summary["model_mode"],
            "calls": summary["calls"]["count"],
            "llm_usd": float(totals["llm_usd"]),
            "run_cost_usd": float(totals["run_cost_usd"]),
            "forecast_p50_usd": float(summary["forecast"]["p50_usd"] or 0),
            "forecast_error_pct": summary["forecast"]["error_pct"],
            "price_registry": summary["price_registry"]["version"],
            "by_model": dg.MetadataValue.json(summary["by_model"]),
        },
    )


STAGE_ASSETS = [
    repo_snapshot,
    cost_forecast,
    review_findings,
    patch_plan,
    policy_decision,
    applied_patches,
    validation_result,
    audit_report,
    run_cost,
]
