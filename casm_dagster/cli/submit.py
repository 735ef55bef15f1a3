"""``casm run --submit``: an audit through the Dagster instance's run queue, followed to its end.

The run is created from the code location in a workspace file and submitted with
``dagster job launch`` (Dagster's own CLI: the run records the location, and the daemon's
queued coordinator starts it with the instance's run launcher, under the per-repo limit and
the run retries of ``dagster.yaml``). This process then follows the run: its stage progress
from the CASM journal, its Dagster status from the instance, until it ends.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import click
import dagster as dg

from casm_dagster.cli.launch import LaunchResult, PreparedRun, error_line, read_state
from casm_dagster.contracts.events import RunEvent
from casm_dagster.errors import CasmError, RunFailedError
from casm_dagster.resources import CasmResource
from casm_dagster.run.journal import print_progress
from casm_dagster.safety.redact import redact

WORKSPACE_ENV = "CASM_WORKSPACE"
LOCATION = "casm"  # the code location name: the daemon's workspace must load CASM under this name
# How long a run may sit queued before we check that a daemon is there to start it.
QUEUED_NOTE_AFTER_S = 15.0
RETRY_WAIT_S = 120.0  # the retry daemon's tick is 30 s; a busy daemon may take longer


def given_workspace(given: Path | None) -> Path | None:
    """``--workspace``, else ``$CASM_WORKSPACE``, checked; None when neither is set."""
    path = given or (Path(os.environ[WORKSPACE_ENV]) if os.environ.get(WORKSPACE_ENV) else None)
    if path is not None and not path.is_file():
        raise CasmError(f"workspace file {path} does not exist")
    return path.resolve() if path else None


def default_workspace(state_dir: Path) -> Path:
    """``<state dir>/workspace.yaml``: ``casm_dagster.definitions`` as location ``casm``, as
    the bundled ``workspace.yaml`` and ``infra/`` load it."""
    written = state_dir / "workspace.yaml"
    written.parent.mkdir(parents=True, exist_ok=True)
    written.write_text(
        f"load_from:\n  - python_module:\n      module_name: casm_dagster.definitions\n"
        f"      location_name: {LOCATION}\n",
        encoding="utf-8",
    )
    return written


def config_dict(run_config: dg.RunConfig | dict) -> dict:
    return run_config.to_config_dict() if isinstance(run_config, dg.RunConfig) else run_config


def submit_run(launch: PreparedRun, workspace: Path) -> str:
    """Create and submit the run; returns its Dagster run id."""
    dagster_run_id = str(uuid.uuid4())
    tags = {**launch.tags, "dagster/partition": launch.partition_key, "casm/launcher": "queue"}
    # The run config holds paths and ids, no secret (tokens stay in the daemon's environment).
    config = json.dumps(config_dict(launch.run_config))
    command = [
        sys.executable, "-m", "dagster", "job", "launch", "-w", str(workspace), "-j", launch.job_name,
        "--config-json", config, "--tags", json.dumps(tags), "--run-id", dagster_run_id,
    ]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
        reason = next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else "no output")
        raise CasmError(f"could not submit the run to the Dagster instance ({workspace}): {redact(reason.strip())}")
    return dagster_run_id


def _daemon_running(instance: dg.DagsterInstance) -> bool:
    statuses = instance.get_daemon_statuses(["QUEUED_RUN_COORDINATOR"])
    return any(status.healthy for status in statuses.values())


class _Progress:
    """Prints the journal's new events as the in-process run does."""

    def __init__(self, run_dir: Path, artifacts_dir: Path | None) -> None:
        self.path = run_dir / "events.jsonl"
        self.offset = 0
        self.artifacts_dir = artifacts_dir  # set when the run keeps its artifacts where it executes

    def _here(self, event: RunEvent) -> RunEvent:
        """Say where the report will be here, not where the executing host wrote it."""
        if self.artifacts_dir is None or event.type != "stage_completed" or event.stage != "report":
            return event
        return event.model_copy(update={"message": f"report written; copied to {self.artifacts_dir} at the end"})

    def show(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line being written waits for the next poll
        self.offset += len(complete)
        for line in complete.decode("utf-8").splitlines():
            print_progress(self._here(RunEvent.model_validate_json(line)))


def follow(
    instance: dg.DagsterInstance, dagster_run_id: str, launch: PreparedRun, state_dir: Path, artifacts_dir: Path
) -> LaunchResult:
    """Poll the run until it ends; Ctrl-C stops following, not the run. ``artifacts_dir``:
    where the submitter gets the artifacts of a run that executes on another host."""
    run_dir = state_dir / "runs" / launch.run_id
    shared = CasmResource(state_dir=str(state_dir)).run_files(instance)  # the run may be on another host
    progress = _Progress(run_dir, artifacts_dir if shared is not None else None)
    seen: dg.DagsterRunStatus | None = None
    queued_at = time.monotonic()
    noted = False
    try:
        while True:
            run = instance.get_run_by_id(dagster_run_id)
            if run is None:
                raise CasmError(f"Dagster run {dagster_run_id} is not in the instance")
            if run.status != seen:
                seen = run.status
                click.echo(f"casm: Dagster run {dagster_run_id}: {seen.value.lower()}", err=True)
            if shared is not None:
                shared.pull(launch.run_id, run_dir)
            progress.show()
            if run.is_finished:
                retry = _retry_of(instance, run)
                if retry is None:
                    break
                click.echo(f"casm: Dagster retries it as run {retry} (from the failed stage on)", err=True)
                dagster_run_id, seen = retry, None
                continue
            if seen == dg.DagsterRunStatus.QUEUED and not noted and time.monotonic() - queued_at > QUEUED_NOTE_AFTER_S:
                noted = True
                if not _daemon_running(instance):
                    click.echo(
                        "casm: note: the run is queued and no dagster-daemon is running for this instance; "
                        "it starts when one does (`dagster-daemon run -w WORKSPACE`)",
                        err=True,
                    )
            time.sleep(1.0)
    except KeyboardInterrupt:
        raise RunFailedError(
            f"stopped following Dagster run {dagster_run_id}; the run goes on in the daemon: "
            f"casm explain --run-id {launch.run_id}"
        ) from None
    state = read_state(run_dir)
    success = run.status == dg.DagsterRunStatus.SUCCESS
    if not success and state is None:
        raise CasmError(
            f"the Dagster run {dagster_run_id} {run.status.value.lower()} before CASM could start: "
            f"{_first_failure(instance, dagster_run_id)}"
        )
    return LaunchResult(launch.run_id, dagster_run_id, success, state, run_dir)


def _retry_of(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str | None:
    """The run Dagster's retry daemon launches for a failed ``run`` (``run_retries`` in
    ``dagster.yaml``; a killed run worker is retried from its failed stage), waited for while
    the instance says a retry is coming."""
    if run.status != dg.DagsterRunStatus.FAILURE:
        return None
    deadline = time.monotonic() + RETRY_WAIT_S
    while True:
        tags = run.tags
        if tags.get("dagster/auto_retry_run_id"):
            return tags["dagster/auto_retry_run_id"]
        # The instance tags a failed run will_retry just after it records the failure: with
        # retries on, an untagged failed run is still being decided.
        undecided = "dagster/will_retry" not in tags and instance.run_retries_enabled
        if (tags.get("dagster/will_retry") != "true" and not undecided) or time.monotonic() > deadline:
            return None
        time.sleep(1.0)
        run = instance.get_run_by_id(run.run_id) or run


def _first_failure(instance: dg.DagsterInstance, dagster_run_id: str) -> str:
    """The first step or run failure's reason, one line."""
    failures = (dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE)
    for record in instance.all_logs(dagster_run_id):
        event = record.dagster_event
        if event is None or event.event_type not in failures:
            continue
        error = getattr(event.event_specific_data, "error", None)
        return error_line(error) if error is not None else record.message or "unknown error"
    return "see the run in the Dagster UI"
