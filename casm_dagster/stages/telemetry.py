"""The telemetry stage: reconcile the run's recorded model calls with its cost summary
(written by the report stage), exactly — a call missing or counted twice fails the run."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from casm_dagster.contracts.run import RunSpec
from casm_dagster.cost.run_cost import SUMMARY_FILE, load_json
from casm_dagster.cost.usage import usd
from casm_dagster.llm.telemetry import calls_for_run
from casm_dagster.run.journal import Journal, skipped, stage
from casm_dagster.stages.report import deliver_branch, finish_run

if TYPE_CHECKING:
    from casm_dagster.github.connector import GitHubConnector


def telemetry(
    spec: RunSpec, journal: Journal, engine: sa.Engine, github: GitHubConnector | None = None
) -> dict[str, Any]:
    """The telemetry stage: check that every recorded call is in the run's summary (the
    report stage wrote it), then deliver the branch (``github``: the connector a GitHub-mode
    run pushes and opens its PR through), and hand the summary to the asset."""
    if skipped(journal, "telemetry"):
        deliver_branch(journal, github)
        finish_run(journal)
        return load_json(spec.run_dir / SUMMARY_FILE) or {}
    with stage(journal, "telemetry", "reconciling model calls with the cost summary, then delivering the branch"):
        summary = load_json(spec.run_dir / SUMMARY_FILE)
        if summary is None:
            raise RuntimeError(f"{spec.run_dir / SUMMARY_FILE} is missing: the report stage did not finish")
        calls = calls_for_run(engine, spec.run_id)
        recorded = sum((c.cost for c in calls), Decimal(0))
        if len(calls) != summary["calls"]["count"] or recorded != Decimal(summary["totals"]["llm_usd"]):
            raise RuntimeError(
                f"telemetry mismatch: {len(calls)} calls (${recorded}) recorded, the summary has "
                f"{summary['calls']['count']} (${summary['totals']['llm_usd']})"
            )
        deliver_branch(journal, github)
        called = "no model called (offline)" if spec.models.offline else f"{len(calls)} model calls"
        journal.emit(
            "stage_completed",
            f"{called}, ${usd(recorded)} model cost, run cost ${usd(Decimal(summary['totals']['run_cost_usd']))}",
            stage="telemetry",
            calls=len(calls),
            llm_usd=str(recorded),
        )
    finish_run(journal)
    return summary
