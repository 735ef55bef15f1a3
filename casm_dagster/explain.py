"""``casm explain``: a run's story told from its persisted events only.

Same events in, same bytes out: nothing here reads the clock, the repo or the instance.
"""

from __future__ import annotations

from pathlib import Path

from casm_dagster.contracts.events import RunEvent
from casm_dagster.errors import RunNotFoundError
from casm_dagster.ids import is_ulid
from casm_dagster.journal import read_events


def run_dir_for(state_dir: Path, run_id: str) -> Path:
    if not is_ulid(run_id):
        raise RunNotFoundError(f"not a CASM run id (expected a 26-character ULID): {run_id!r}")
    run_dir = state_dir / "runs" / run_id
    if not run_dir.is_dir():
        raise RunNotFoundError(f"no run {run_id} under {state_dir / 'runs'}")
    return run_dir


def explain(events: list[RunEvent]) -> str:
    if not events:
        return "no events recorded\n"
    first = events[0]
    lines = [f"run {first.run_id}"]
    if first.type == "run_started":
        lines.append(f"  {first.message} (seed {first.data.get('seed')})")
    stage_rows: dict[str, tuple[str, str]] = {}
    decisions: list[str] = []
    outcome = "unfinished (no run_completed or run_failed event: the process may have been killed)"
    for event in events:
        if event.type in ("stage_completed", "stage_skipped", "stage_failed") and event.stage:
            status = event.type.removeprefix("stage_")
            stage_rows[event.stage] = (status, event.message)
        elif event.type == "stage_started" and event.stage and event.stage not in stage_rows:
            stage_rows[event.stage] = ("started", event.message)
        elif event.type == "decision" and event.stage:
            decisions.append(f"  [{event.stage}] {event.data.get('decision', '?')}: {event.message}")
        elif event.type == "run_completed":
            outcome = f"succeeded ({event.message})"
        elif event.type == "run_failed":
            outcome = f"failed ({event.message})"
    lines.append("")
    lines.append("stages:")
    for stage, (status, message) in stage_rows.items():
        lines.append(f"  {stage:<9} {status:<9} {message}")
    lines.append("")
    lines.append("decisions:" if decisions else "decisions: none")
    lines.extend(decisions)
    lines.append("")
    lines.append(f"outcome: {outcome}")
    lines.append(f"events: {len(events)}")
    return "\n".join(lines) + "\n"


def explain_run(state_dir: Path, run_id: str) -> str:
    return explain(read_events(run_dir_for(state_dir, run_id)))
