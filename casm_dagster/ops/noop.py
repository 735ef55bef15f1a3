"""The noop template as a Dagster op job: ingest, then report, in one op.

An op job rather than the stage assets: noop checks an installation end to end and
produces no audit, so it must not materialize the audit assets (its empty report would
replace the last real audit's ``audit_report`` and the rest). Its run is still a run of
the repo's partition, tagged and journaled like any other.
"""

import dagster as dg

from casm_dagster.assets.config import AuditConfig, run_spec, stage_journal, tag_identity
from casm_dagster.assets.partitions import repos_partitions
from casm_dagster.resources import CasmResource, GitHubResource, ModelProvidersResource
from casm_dagster.run.templates import require_job
from casm_dagster.stages.noop import noop


@dg.op(description="Read the repository's HEAD and write a report with no findings and no patches.")
def noop_run(
    context: dg.OpExecutionContext,
    config: AuditConfig,
    casm: CasmResource,
    github: GitHubResource,
    models: ModelProvidersResource,
) -> None:
    spec = run_spec(context, config, casm, github, models)
    require_job(spec.template_id, spec.workflow, "noop_job")
    journal = stage_journal(context, casm, spec)
    tag_identity(context, spec)
    delivery = noop(spec, journal, casm.engine(context.instance))
    context.log.info(f"CASM run {spec.run_id}: {journal.state.status}, report at {delivery.own_report}")
    context.instance.add_run_tags(context.run.run_id, {"casm/status": journal.state.status})


@dg.job(
    partitions_def=repos_partitions,
    executor_def=dg.in_process_executor,
    description="The noop template on one repo partition: ingest → report; no audit asset is materialized.",
)
def noop_job():
    noop_run()
