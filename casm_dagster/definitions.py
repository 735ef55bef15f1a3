"""The one ``Definitions`` object of the ``casm`` code location: the stage, pr-sentinel and
economics assets, the jobs, the heartbeat and diurnal schedules, the PR and HITL sensors,
and the resources (``casm``, ``github``, ``models``, the stages' run-scoped IO manager)."""

import warnings

import dagster as dg

from casm_dagster.assets import economics, pr_sentinel
from casm_dagster.assets.stages import STAGE_ASSETS
from casm_dagster.jobs import JOBS
from casm_dagster.resources import casm_resource, github_resource, models_resource
from casm_dagster.resources.stage_io import STAGE_IO, RunScopedIOManager
from casm_dagster.sensors.economics import diurnal_optimization
from casm_dagster.sensors.hitl import hitl_approval_sensor
from casm_dagster.sensors.sentinel import heartbeat_daily, heartbeat_hourly, pr_sensor

# Dagster 1.13 itself passes the beta ``owners`` parameter when it binds a sensor's job to
# the resources below, and warns about its own call on every load; nothing here uses it.
warnings.filterwarnings(
    "ignore", message=r"Parameter `owners` of initializer `SensorDefinition", category=dg.BetaWarning
)

defs = dg.Definitions(
    assets=[*STAGE_ASSETS, pr_sentinel.pr_review, *economics.ECONOMICS_ASSETS],
    asset_checks=economics.ECONOMICS_CHECKS,
    jobs=JOBS,
    schedules=[heartbeat_hourly, heartbeat_daily, diurnal_optimization],
    sensors=[hitl_approval_sensor, pr_sensor],
    resources={
        "casm": casm_resource(),
        "github": github_resource(),
        "models": models_resource(),
        STAGE_IO: RunScopedIOManager(),
    },
)
