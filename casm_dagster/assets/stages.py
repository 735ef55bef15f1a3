"""The audit stages as partitioned assets (one partition per repo), in lineage order:
repo_snapshot → cost_forecast → review_findings → patch_plan → policy_decision →
applied_patches → validation_result → audit_report → run_cost. Each body calls its stage in
``casm_dagster.stages`` and returns the value with metadata."""

import dagster as dg

from casm_dagster.assets.config import AuditConfig, run_spec, stage_journal, tag_identity
from casm_dagster.assets.partitions import repos_partitions
from casm_dagster.contracts.findings import Review
from casm_dagster.contracts.plan import PatchPlan
from casm_dagster.contracts.policy import PolicyDecision
from casm_dagster.contracts.run import Applied, Delivery, Snapshot
from casm_dagster.contracts.validation import Validation
from casm_dagster.resources import CasmResource, GitHubResource, ModelProvidersResource
from casm_dagster.resources.instance import POOLS
from casm_dagster.resources.stage_io import STAGE_IO
from casm_dagster.run.templates import require_job
from casm_dagster.stages.analyze import analyze
from casm_dagster.stages.apply import apply
from casm_dagster.stages.forecast import ForecastResult, forecast
from casm_dagster.stages.ingest import ingest
from casm_dagster.stages.plan import plan
from casm_dagster.stages.policy import approve_command, policy
from casm_dagster.stages.report import report
from casm_dagster.stages.telemetry import telemetry
from casm_dagster.stages.validate import validate

GROUP = "audit"
# Concurrency pools (limits in dagster.yaml): stages that call models, and stages that run
# the target repo's commands in the sandbox — the scarce things an audit holds.
MODEL_POOL, SANDBOX_POOL = POOLS


def _asset(**kwargs):
    return dg.asset(partitions_def=repos_partitions, group_name=GROUP, io_manager_key=STAGE_IO, **kwargs)


@_asset(kinds={"git"})
def repo_snapshot(
    context: dg.AssetExecutionContext,
    config: AuditConfig,
    casm: CasmResource,
    github: GitHubResource,
    models: ModelProvidersResource,
) -> dg.MaterializeResult:
    """Ingest: the commit being audited (HEAD of the repo), with the run's fixed spec."""
    spec = run_spec(context, config, casm, github, models)
    require_job(spec.template_id, spec.workflow, "audit_job")  # noop would replace the last audit's assets
    journal = stage_journal(context, casm, spec)
    tag_identity(context, spec)
    snap = ingest(spec, journal)
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


@_asset(kinds={"python"}, output_required=False)
def cost_forecast(context: dg.AssetExecutionContext, casm: CasmResource, repo_snapshot: Snapshot):
    """Forecast: the run's model tasks, their routed models and cost (P50/P90), fitted to the
    budget (downgrade, reduce scope, stop). A stopped run materializes nothing further."""
    result = forecast(repo_snapshot, stage_journal(context, casm, repo_snapshot.spec), casm.engine(context.instance))
    if not result.proceeds:
        context.instance.add_run_tags(context.run.run_id, {"casm/budget": "stopped", "casm/status": "stopped"})
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


@_asset(kinds={"python"}, pool=MODEL_POOL)
def review_findings(
    context: dg.AssetExecutionContext,
    casm: CasmResource,
    models: ModelProvidersResource,
    repo_snapshot: Snapshot,
    cost_forecast: ForecastResult,
) -> dg.MaterializeResult:
    """Analyze: the reviewer's findings (issues.json) and the baseline checks."""
    journal = stage_journal(context, casm, repo_snapshot.spec)
    review = analyze(repo_snapshot, journal, casm.engine(context.instance), models.env())
    return dg.MaterializeResult(
        value=review,
        metadata={
            "casm_run_id": repo_snapshot.spec.run_id,
            "findings": len(review.findings),
            "auto_fixable": sum(f.auto_fixable for f in review.findings),
            "analysers": ", ".join(f"{a.name}:{a.status}" for a in review.analysers),
        },
    )


@_asset(kinds={"python"}, pool=MODEL_POOL)
def patch_plan(
    context: dg.AssetExecutionContext,
    casm: CasmResource,
    models: ModelProvidersResource,
    repo_snapshot: Snapshot,
    review_findings: Review,
) -> dg.MaterializeResult:
    """Plan: the fixer's patch groups (deterministic, then model-written fixes and docs), one
    patch file each, bound by the plan hash."""
    journal = stage_journal(context, casm, repo_snapshot.spec)
    result = plan(repo_snapshot, review_findings, journal, casm.engine(context.instance), models.env())
    return dg.MaterializeResult(
        value=result,
        metadata={
            "casm_run_id": repo_snapshot.spec.run_id,
            "groups": len(result.groups),
            "plan_sha256": result.plan_sha256,
        },
    )


@_asset(kinds={"python"})
def policy_decision(
    context: dg.AssetExecutionContext,
    casm: CasmResource,
    models: ModelProvidersResource,
    repo_snapshot: Snapshot,
    review_findings: Review,
    patch_plan: PatchPlan,
) -> dg.MaterializeResult:
    """Policy: the planned patch scored before apply (pass/warn proceed; gate holds for a human; block stops)."""
    result = policy(
        repo_snapshot,
        review_findings,
        patch_plan,
        stage_journal(context, casm, repo_snapshot.spec),
        casm.approvals(context.instance),
        casm.engine(context.instance),
        models.env(),
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
            "approve_with": dg.MetadataValue.md(f"`{approve_command(repo_snapshot.spec.run_id)}`"),
            "suggested_scope": result.scope_notes,
        }
        context.instance.add_run_tags(
            context.run.run_id,
            {"casm/hitl": "pending", "casm/hitl_request": result.request_id or "", "casm/status": "awaiting_approval"},
        )
    elif result.status == "block":
        context.instance.add_run_tags(context.run.run_id, {"casm/policy": "blocked", "casm/status": "blocked"})
    if result.document:
        metadata["policy_decisions"] = dg.MetadataValue.path(result.document)
    return dg.MaterializeResult(value=result, metadata=metadata)


@_asset(kinds={"git"}, output_required=False)
def applied_patches(
    context: dg.AssetExecutionContext,
    casm: CasmResource,
    repo_snapshot: Snapshot,
    patch_plan: PatchPlan,
    policy_decision: PolicyDecision,
):
    """Apply: one commit per patch group on a detached checkout (the user's tree untouched).

    Nothing is materialized when the policy gated or blocked the plan, so validation and
    the report are skipped; the HITL continuation applies the plan after approval."""
    if not policy_decision.proceeds:
        return
    applied = apply(repo_snapshot, patch_plan, stage_journal(context, casm, repo_snapshot.spec))
    yield dg.MaterializeResult(
        value=applied,
        metadata={"casm_run_id": repo_snapshot.spec.run_id, "commits": len(applied.commits), "tip": applied.tip},
    )


@_asset(kinds={"python"}, pool=SANDBOX_POOL)
def validation_result(
    context: dg.AssetExecutionContext,
    casm: CasmResource,
    repo_snapshot: Snapshot,
    patch_plan: PatchPlan,
    applied_patches: Applied,
) -> dg.MaterializeResult:
    """Validate: allowlisted checks after the patch; groups that break a passing check are dropped."""
    validation = validate(repo_snapshot, patch_plan, applied_patches, stage_journal(context, casm, repo_snapshot.spec))
    return dg.MaterializeResult(
        value=validation,
        metadata={
            "casm_run_id": repo_snapshot.spec.run_id,
            "accepted": len(validation.accepted_groups),
            "rejected": len(validation.rejected_groups),
            "checks_after": ", ".join(f"{c.command}: {c.status}" for c in validation.after()) or "none",
        },
    )


@_asset(kinds={"markdown"})
def audit_report(
    context: dg.AssetExecutionContext,
    casm: CasmResource,
    repo_snapshot: Snapshot,
    review_findings: Review,
    patch_plan: PatchPlan,
    policy_decision: PolicyDecision,
    validation_result: Validation,
) -> dg.MaterializeResult:
    """Report: report.md, cost_report.md, issues.json, and the branch to deliver (created,
    or pushed with its PR, by ``run_cost`` once the cost is reconciled)."""
    delivery: Delivery = report(
        repo_snapshot,
        review_findings,
        patch_plan,
        validation_result,
        stage_journal(context, casm, repo_snapshot.spec),
        casm.engine(context.instance),
        policy_decision,
    )
    return dg.MaterializeResult(
        value=delivery,
        metadata={
            "casm_run_id": repo_snapshot.spec.run_id,
            "status": delivery.status,
            "branch": delivery.branch or "none",
            "report": dg.MetadataValue.path(delivery.own_report),
            "findings": delivery.findings,
            "patches": delivery.patches,
        },
    )


def run_cost_metadata(run_id: str, summary: dict) -> dict:
    """``run_cost``'s metadata (also recorded by the HITL continuation)."""
    if not summary:
        return {"casm_run_id": run_id}
    totals = summary["totals"]
    return {
        "casm_run_id": run_id,
        "model_mode": summary["model_mode"],
        "calls": summary["calls"]["count"],
        "llm_usd": float(totals["llm_usd"]),
        "run_cost_usd": float(totals["run_cost_usd"]),
        "forecast_p50_usd": float(summary["forecast"]["p50_usd"] or 0),
        "forecast_error_pct": summary["forecast"]["error_pct"],
        "price_registry": summary["price_registry"]["version"],
        "by_model": dg.MetadataValue.json(summary["by_model"]),
    }


@_asset(kinds={"sql"})
def run_cost(
    context: dg.AssetExecutionContext,
    casm: CasmResource,
    github: GitHubResource,
    repo_snapshot: Snapshot,
    audit_report: Delivery,
):
    """Telemetry: the run's model calls and costs, as recorded (run_summary.json,
    cost_report.md); then the branch is delivered (GitHub mode: pushed, with its PR)."""
    spec = repo_snapshot.spec
    journal = stage_journal(context, casm, spec)
    summary = telemetry(spec, journal, casm.engine(context.instance), github.get_client() if spec.github else None)
    # Dagster shows SUCCESS for every run that did not crash; the tag says how it ended.
    context.instance.add_run_tags(context.run.run_id, {"casm/status": journal.state.status})
    return dg.MaterializeResult(value=summary, metadata=run_cost_metadata(repo_snapshot.spec.run_id, summary))


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
