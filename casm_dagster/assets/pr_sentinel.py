"""pr-sentinel as a partitioned asset: one materialization per reviewed PR head (launched by
the PR sensor, a webhook, or ``casm run --template pr-sentinel``). The body calls
``casm_dagster.prsentinel.run.review_pull``."""

import dagster as dg

from casm_dagster.assets.config import PrReviewConfig, run_spec, stage_journal
from casm_dagster.assets.partitions import repos_partitions
from casm_dagster.prsentinel.run import review_pull
from casm_dagster.resources import CasmResource, GitHubResource, ModelProvidersResource
from casm_dagster.run.templates import require_job

GROUP = "pr_sentinel"


@dg.asset(partitions_def=repos_partitions, group_name=GROUP, kinds={"github"})
def pr_review(
    context: dg.AssetExecutionContext,
    config: PrReviewConfig,
    casm: CasmResource,
    github: GitHubResource,
    models: ModelProvidersResource,
) -> dg.MaterializeResult:
    """The PR's risk score, findings on its changed files, and the sticky comment."""
    spec = run_spec(context, config, casm, github, models, config.pr)
    require_job(spec.template_id, spec.workflow, "pr_sentinel_job")
    checkout = spec.github
    if checkout and config.head_sha and checkout.head_commit != config.head_sha:
        # Pushed again since the trigger: the run for the newer head reviews it.
        context.log.info(f"PR #{config.pr} moved from {config.head_sha[:12]} to {checkout.head_commit[:12]}; skipped")
        return dg.MaterializeResult(
            metadata={"pr": config.pr or 0, "status": "superseded", "head": checkout.head_commit}
        )
    journal = stage_journal(context, casm, spec)
    outcome = review_pull(
        spec,
        journal,
        casm.engine(context.instance),
        casm.approvals(context.instance),
        github.get_client() if checkout else None,
        models.env(),
    )
    if outcome.policy_status == "gate":
        context.instance.add_run_tags(context.run.run_id, {"casm/hitl": "pending", "casm/status": "awaiting_approval"})
    return dg.MaterializeResult(
        metadata={
            "casm_run_id": spec.run_id,
            "pr": config.pr or 0,
            "head": spec.effective_config.run.head or "",
            "status": outcome.status,
            "risk_score": outcome.risk_score,
            "policy": outcome.policy_status,
            "findings": outcome.findings,
            "reviewed_files": outcome.reviewed_files,
            "comment": outcome.comment_action,
            "comment_file": dg.MetadataValue.path(outcome.comment_file) if outcome.comment_file else "none",
        },
    )
