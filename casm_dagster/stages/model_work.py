"""What the model-calling stages (analyze, plan, policy) share: opening the run's model
session, and recording how much of the model plan was done."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import sqlalchemy as sa

from casm_dagster.contracts.events import Stage
from casm_dagster.contracts.run import Snapshot
from casm_dagster.run.journal import Journal

if TYPE_CHECKING:
    from casm_dagster.agents.model_agents import Tally
    from casm_dagster.llm.session import ModelSession


def open_model_session(
    snap: Snapshot, journal: Journal, engine: sa.Engine | None, providers: Mapping[str, str] | None = None
) -> ModelSession | None:
    """None without an engine (nothing can record the calls, so nothing is called).
    ``providers``: keys and base URLs (see ``llm.session.open_session``)."""
    from casm_dagster.llm.session import open_session

    return open_session(snap.spec, journal, engine, providers) if engine is not None else None


def record_tally(journal: Journal, stage_name: Stage, what: str, tally: Tally) -> None:
    for note in tally.notes:
        journal.decision(stage_name, "model_task_dropped", note)
    if tally.done or tally.dropped:
        if journal.spec.models.offline:  # the offline provider's answers are not model work
            message = f"{what}: offline, no model called ({tally.done + tally.dropped} planned tasks not run)"
        else:
            message = (
                f"{what}: {tally.done} model tasks done, {tally.dropped} dropped, {tally.failed_calls} failed calls"
            )
        journal.decision(
            stage_name,
            "model_work",
            message,
            done=tally.done,
            dropped=tally.dropped,
            failed_calls=tally.failed_calls,
        )
