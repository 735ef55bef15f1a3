"""The run journal: append-only ``events.jsonl`` plus an atomically rewritten ``state.json``.

Every stage reports through the journal, so the files on disk always tell how far a run
got, even when the process is killed mid-stage.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from casm_dagster.contracts.events import EventType, RunEvent, Stage
from casm_dagster.contracts.run import RunSpec, RunState
from casm_dagster.errors import RunNotFoundError
from casm_dagster.run import leftovers

Listener = Callable[[RunEvent], None]
# At these the run folder is consistent (a stage starts or ends, the run ends): the moments
# to publish it for other hosts (stores/run_files.py), not after every model call's event.
# A stage's start too, so a follower on another host sees which stage is running.
BOUNDARIES = frozenset({
    "stage_started", "stage_completed", "stage_failed", "stage_skipped",
    "run_completed", "run_failed", "run_held", "run_stopped", "run_blocked", "run_resumed", "hitl_decision",
})  # fmt: skip


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON so readers never see a half-written file (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    text = json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class Journal:
    def __init__(
        self, spec: RunSpec, listener: Listener | None = None, publish: Callable[[Path], None] | None = None
    ) -> None:
        self.spec = spec
        self.run_dir = spec.run_dir
        self.events_path = self.run_dir / "events.jsonl"
        self.state_path = self.run_dir / "state.json"
        self._listener = listener
        self._publish = publish  # called with the run folder at each boundary event
        self._lock = threading.RLock()  # model tasks run concurrently and all report here
        self.state = self._load_or_init()
        self._seq = sum(1 for _ in read_events(self.run_dir)) if self.events_path.exists() else 0

    def _load_or_init(self) -> RunState:
        if self.state_path.exists():
            return RunState.model_validate_json(self.state_path.read_text(encoding="utf-8"))
        return RunState(
            run_id=self.spec.run_id,
            status="running",
            template_id=self.spec.template_id,
            repo=self.spec.repo,
            partition_key=self.spec.partition_key,
            started_at=utc_now(),
            stages={stage: "pending" for stage in self.spec.stages},
            effective_config=self.spec.effective_config.model_dump(mode="json"),
        )

    def emit(
        self,
        type_: EventType,
        message: str,
        stage: Stage | None = None,
        **data: Any,
    ) -> RunEvent:
        with self._lock:
            return self._emit(type_, message, stage, data)

    def _emit(self, type_: EventType, message: str, stage: Stage | None, data: dict[str, Any]) -> RunEvent:
        self._seq += 1
        event = RunEvent(
            seq=self._seq,
            run_id=self.spec.run_id,
            ts=utc_now(),
            type=type_,
            stage=stage,
            message=message,
            data=data,
        )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with self.events_path.open("a", encoding="utf-8") as handle:
            handle.write(event.model_dump_json() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self._apply(event)
        if self._publish and type_ in BOUNDARIES:
            self._publish(self.run_dir)
        if self._listener:
            self._listener(event)
        return event

    def decision(self, stage: Stage, decision: str, reason: str, **data: Any) -> RunEvent:
        return self.emit("decision", reason, stage=stage, decision=decision, **data)

    def _apply(self, event: RunEvent) -> None:
        state = self.state
        if event.type == "stage_started" and event.stage:
            state.stages[event.stage] = "running"
            state.owner = leftovers.me().tag
        elif event.type == "stage_completed" and event.stage:
            state.stages[event.stage] = "completed"
        elif event.type == "stage_skipped" and event.stage:
            state.stages[event.stage] = "skipped"
        elif event.type == "stage_failed" and event.stage:
            state.stages[event.stage] = "failed"
            state.error = event.message
        elif event.type == "run_completed":
            state.status = "succeeded"
            state.finished_at = event.ts
        elif event.type == "run_failed":
            state.status = "failed"
            state.finished_at = event.ts
            state.error = state.error or event.message
        elif event.type == "run_held":
            state.status = "awaiting_approval"
            state.finished_at = event.ts
        elif event.type == "run_stopped":
            state.status = "stopped"
            state.finished_at = event.ts
            state.error = event.message
        elif event.type == "run_blocked":
            state.status = "blocked"
            state.finished_at = event.ts
            state.error = event.message
        elif event.type == "hitl_decision" and event.data.get("outcome") in ("denied", "expired"):
            state.status = event.data["outcome"]
            state.finished_at = event.ts
        elif event.type == "run_resumed":
            state.status = "running"
            state.finished_at = None
            state.error = None
        self.save_state()

    def save_state(self) -> None:
        write_json_atomic(self.state_path, self.state.model_dump(mode="json"))


def read_events(run_dir: Path) -> list[RunEvent]:
    path = run_dir / "events.jsonl"
    if not path.exists():
        raise RunNotFoundError(f"no events for this run: {path} does not exist")
    events = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            events.append(RunEvent.model_validate_json(line))
        except ValueError as exc:
            raise RunNotFoundError(f"{path}:{number}: corrupt event line: {exc}") from None
    return events


def print_progress(event: RunEvent) -> None:
    """Human progress on stderr, so ``--json`` keeps stdout clean."""
    if event.type in ("stage_started", "stage_completed", "stage_skipped", "stage_failed"):
        verb = {
            "stage_started": "…",
            "stage_completed": "✓",
            "stage_skipped": "-",
            "stage_failed": "✗",
        }[event.type]
        print(f"  {verb} {event.stage:<9} {event.message}", file=sys.stderr, flush=True)
    elif event.type == "decision" and event.data.get("decision") == "model_routed":
        return  # one per model task: the cost report lists them; progress stays readable
    elif event.type in ("decision", "security_alert", "run_held", "run_blocked", "hitl_decision", "run_resumed"):
        print(f"    ! {event.message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def stage(journal: Journal, name: Stage, doing: str) -> Iterator[None]:
    """One stage's bracket of events: started, then failed (with the run) if it raises."""
    journal.emit("stage_started", doing, stage=name)
    try:
        yield
    except BaseException as exc:
        journal.emit("stage_failed", f"{type(exc).__name__}: {exc}", stage=name)
        journal.emit("run_failed", f"stage {name} failed", stage=None)
        raise


def skipped(journal: Journal, name: Stage) -> bool:
    """True (and recorded) when the run's workflow leaves this stage out."""
    if name in journal.spec.stages:
        return False
    journal.emit("stage_skipped", f"not part of workflow {journal.spec.workflow}", stage=name)
    return True


def worked_seconds(events: list[RunEvent], started_at: str, now: float) -> float:
    """The run's wall time without its holds: from ``run_held`` until the next stage starts
    (the continuation, after a human decided and the sensor or `casm resume` launched it)
    nothing of CASM's runs, so a held run's infra cost does not count those hours."""

    def at(ts: str) -> float:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()

    total, held_at = now - at(started_at), None
    for event in events:
        if event.type == "run_held":
            held_at = at(event.ts)
        elif event.type == "stage_started" and held_at is not None:
            total, held_at = total - (at(event.ts) - held_at), None
    if held_at is not None:
        total -= now - held_at
    return max(0.0, total)


def fail_dead_run(run_dir: Path, reason: str) -> None:
    """Close a dead run's journal: its stage in progress and the run fail, with why. Written
    here rather than through ``Journal``: a run killed early has no spec.json to build one."""
    state = RunState.model_validate_json((run_dir / "state.json").read_text(encoding="utf-8"))
    path = run_dir / "events.jsonl"
    written = path.read_bytes() if path.exists() else b""
    seq = sum(1 for line in written.splitlines() if line.strip())
    now = utc_now()
    events = [(name, "stage_failed") for name, status in state.stages.items() if status == "running"]
    with path.open("a", encoding="utf-8") as journal:
        if written and not written.endswith(b"\n"):
            journal.write("\n")  # the killed process's last line stays cut off, on its own line
        for stage, kind in [*events, (None, "run_failed")]:
            seq += 1
            event = RunEvent(seq=seq, run_id=state.run_id, ts=now, type=kind, stage=stage, message=reason, data={})
            journal.write(event.model_dump_json() + "\n")
        journal.flush()
        os.fsync(journal.fileno())
    for stage, _ in events:
        state.stages[stage] = "failed"
    state.status, state.error, state.finished_at = "failed", reason, now
    write_json_atomic(run_dir / "state.json", state.model_dump(mode="json"))
