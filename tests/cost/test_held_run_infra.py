"""A held run's infra cost counts CASM's working time, not the hours it waited for a human."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from casm_dagster.contracts.events import RunEvent
from casm_dagster.run.journal import worked_seconds

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _ts(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _events(*items: tuple[float, str]) -> list[RunEvent]:
    return [
        RunEvent(
            seq=i,
            run_id="R",
            ts=_ts(at),
            type=kind,
            stage="apply" if kind.startswith("stage") else None,  # type: ignore[arg-type]
            message="",
            data={},
        )
        for i, (at, kind) in enumerate(items, start=1)
    ]


def test_the_wait_between_hold_and_continuation_is_not_worked_time() -> None:
    events = _events((1, "stage_started"), (10, "run_held"), (3600, "hitl_decision"), (7200, "stage_started"))
    assert worked_seconds(events, _ts(0), (T0 + timedelta(seconds=7205)).timestamp()) == 15


def test_a_run_still_held_stops_counting_at_the_hold() -> None:
    events = _events((1, "stage_started"), (10, "run_held"))
    assert worked_seconds(events, _ts(0), (T0 + timedelta(seconds=5000)).timestamp()) == 10


def test_a_run_never_held_counts_its_wall_time() -> None:
    events = _events((1, "stage_started"), (4, "stage_completed"), (5, "stage_started"))
    assert worked_seconds(events, _ts(0), (T0 + timedelta(seconds=9)).timestamp()) == 9
