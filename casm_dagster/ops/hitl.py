"""The HITL continuation as a Dagster job: one op that resumes an approved, gated run.

It is an op job rather than the stage assets because its inputs are the gated run's own
persisted plan (bound by hash), not the partition's latest materializations, which a
newer audit may have replaced. It reports the assets it updates as materializations,
``run_cost`` included: an approved run reconciles its cost like any other.
"""

import dagster as dg

from casm_dagster.assets.stages import SANDBOX_POOL, run_cost_metadata
from casm_dagster.resources import CasmResource, GitHubResource
from casm_dagster.run.journal import print_progress
from casm_dagster.stages.resume import resume


class ContinuationConfig(dg.Config):
    request_id: str


@dg.op(
    description="Apply the approved plan of a gated run, validate it, deliver it and reconcile its cost.",
    pool=SANDBOX_POOL,  # it validates: the target repo's commands run in the sandbox
)
def continue_approved_run(
    context: dg.OpExecutionContext, config: ContinuationConfig, casm: CasmResource, github: GitHubResource
) -> None:
    store = casm.approvals(context.instance)
    outcome = resume(
        store,
        config.request_id,
        context.run_id,
        listener=print_progress if casm.progress else None,
        github=github.get_client() if github.configured else None,
    )
    if outcome.status == "acknowledged":
        context.instance.add_run_tags(context.run_id, {"casm/hitl": "approved"})
        return
    if outcome.status != "applied" or outcome.delivery is None:
        context.log.info(f"approval {config.request_id} was already consumed by another continuation; nothing to do")
        return
    delivery = outcome.delivery
    partition = outcome.partition_key
    common = {"casm_run_id": outcome.run_id, "hitl_request_id": config.request_id}
    groups = len(outcome.plan.groups) if outcome.plan else 0
    for key, metadata in (
        ("applied_patches", {"groups_in_scope": groups}),
        ("validation_result", {"accepted": delivery.patches, "checks_after": delivery.checks}),
        (
            "audit_report",
            {
                "status": delivery.status,
                "branch": delivery.branch or "none",
                "report": dg.MetadataValue.path(delivery.own_report),
            },
        ),
        ("run_cost", run_cost_metadata(outcome.run_id, outcome.cost_summary or {})),
    ):
        context.log_event(dg.AssetMaterialization(asset_key=key, partition=partition, metadata={**common, **metadata}))
    context.instance.add_run_tags(context.run_id, {"casm/hitl": "applied", "casm/status": "succeeded"})


@dg.job(
    description="Continue a gated audit after its HITL approval (launched by hitl_approval_sensor).",
    executor_def=dg.in_process_executor,
)
def hitl_continuation_job():
    continue_approved_run()
