"""The audit workflow's stages as plain functions, one module per stage, in lineage order:
ingest → forecast → analyze → plan → policy → apply → validate → report → telemetry, and
resume (the HITL continuation: apply → validate → report → telemetry after approval).

Each stage takes the run's ``Snapshot`` (the spec plus the audited commit), earlier stages'
outputs and the run's ``Journal``; the Dagster assets in ``casm_dagster/assets/stages.py``
call them one per asset, and tests call them directly."""
