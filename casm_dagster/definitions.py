"""The one ``Definitions`` object of the ``casm`` code location."""

import warnings

import dagster as dg

from casm_dagster.assets import economics, pr_sentinel
from casm_dagster.assets.stages import GROUP, STAGE_ASSETS
from casm_dagster.ops.hitl import hitl_continuation_job
from casm_dagster.resources import CasmResource
from casm_dagster.sensors.hitl import hitl_approval_sensor
from casm_dagster.sensors.sentinel import heartbeat_daily, heartbeat_hourly, pr_sensor

# Dagster 1.13 itself passes the beta ``owners`` parameter when it binds a sensor's job to
# the resources below, and warns about its own call on every load; nothing here uses it.
warnings.filterwarnings(
    "ignore", message=r"Parameter `owners` of initializer `SensorDefinition", category=dg.BetaWarning
)

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

# Daily, after the night's heartbeat audits: the next runs route by the fresh policy.
diurnal_optimization = dg.ScheduleDefinition(
    name="diurnal_optimization",
    job=diurnal_optimization_job,
    cron_schedule="0 4 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Diurnal optimization: per task type, the cheapest model meeting the quality target.",
)

defs = dg.Definitions(
    assets=[*STAGE_ASSETS, pr_sentinel.pr_review, *economics.ECONOMICS_ASSETS],
    asset_checks=economics.ECONOMICS_CHECKS,
    jobs=[audit_job, pr_sentinel_job, hitl_continuation_job, diurnal_optimization_job],
    schedules=[heartbeat_hourly, heartbeat_daily, diurnal_optimization],
    sensors=[hitl_approval_sensor, pr_sensor],
    resources={"casm": CasmResource(state_dir=dg.EnvVar("CASM_STATE_DIR").get_value(".casm") or ".casm")},
)
