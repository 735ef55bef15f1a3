"""The one ``Definitions`` object of the ``casm`` code location."""

import dagster as dg

from casm_dagster.assets.stages import GROUP, STAGE_ASSETS
from casm_dagster.resources import CasmResource

audit_job = dg.define_asset_job(
    "audit_job",
    selection=dg.AssetSelection.groups(GROUP),
    executor_def=dg.in_process_executor,
    description="One audit of one repo partition: ingest → analyze → plan → apply → validate → report.",
)

defs = dg.Definitions(
    assets=STAGE_ASSETS,
    jobs=[audit_job],
    resources={"casm": CasmResource(state_dir=dg.EnvVar("CASM_STATE_DIR").get_value(".casm") or ".casm")},
)
