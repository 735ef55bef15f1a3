"""The noop workflow in one call: ingest, then a report with no findings and no patches.
Each stage it leaves out is called anyway and records itself as skipped, so its journal
reads as that of any other workflow."""

from __future__ import annotations

import sqlalchemy as sa

from casm_dagster.contracts.run import Delivery, RunSpec
from casm_dagster.run.journal import Journal, skipped
from casm_dagster.stages.analyze import analyze
from casm_dagster.stages.apply import apply
from casm_dagster.stages.forecast import forecast
from casm_dagster.stages.ingest import ingest
from casm_dagster.stages.plan import plan
from casm_dagster.stages.report import report
from casm_dagster.stages.telemetry import telemetry
from casm_dagster.stages.validate import validate


def noop(spec: RunSpec, journal: Journal, engine: sa.Engine) -> Delivery:
    snap = ingest(spec, journal)
    forecast(snap, journal, engine)
    review = analyze(snap, journal, engine)
    patch_plan = plan(snap, review, journal, engine)
    skipped(journal, "policy")  # the report says "not evaluated" for a skipped policy
    applied = apply(snap, patch_plan, journal)
    validation = validate(snap, patch_plan, applied, journal)
    delivery = report(snap, review, patch_plan, validation, journal, engine)
    telemetry(spec, journal, engine)
    return delivery
