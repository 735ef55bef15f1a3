"""The daily diurnal optimization schedule: after the night's heartbeat audits, the cost/KPI
tables and the routing policy are rebuilt, so the next runs route by the fresh policy."""

import dagster as dg

from casm_dagster.jobs import diurnal_optimization_job

diurnal_optimization = dg.ScheduleDefinition(
    name="diurnal_optimization",
    job=diurnal_optimization_job,
    cron_schedule="0 4 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Diurnal optimization: per task type, the cheapest model meeting the quality target.",
)
