"""The jobs of the ``casm`` code location (the HITL continuation and noop are op jobs, in ``ops/``)."""

import dagster as dg

from casm_dagster.assets import economics, pr_sentinel
from casm_dagster.assets.stages import GROUP
from casm_dagster.ops.hitl import hitl_continuation_job
from casm_dagster.ops.noop import noop_job

audit_job = dg.define_asset_job(
    "audit_job",
    selection=dg.AssetSelection.groups(GROUP),
    executor_def=dg.in_process_executor,
    description="One audit of one repo partition: ingest → analyze → plan → policy → apply → validate → report.",
)

pr_sentinel_job = dg.define_asset_job(
    "pr_sentinel_job",
    selection=dg.AssetSelection.groups(pr_sentinel.GROUP),
    executor_def=dg.in_process_executor,
    description="pr-sentinel on one PR head: score the diff, review the changed files, update the sticky comment.",
)

diurnal_optimization_job = dg.define_asset_job(
    "diurnal_optimization_job",
    selection=dg.AssetSelection.groups(economics.GROUP),
    executor_def=dg.in_process_executor,
    description="The cost/KPI tables and the routing_policy the router reads next: daily.",
)

JOBS = [audit_job, noop_job, pr_sentinel_job, hitl_continuation_job, diurnal_optimization_job]
