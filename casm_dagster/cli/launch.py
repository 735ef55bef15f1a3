"""Launch an audit as a real Dagster run (in-process, recorded in the instance)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from casm_dagster.assets.config import CELERY_QUEUE_TAG, HOST_QUEUE_ENV, AuditConfig, PrReviewConfig
from casm_dagster.cli.stores import approvals, register_local_repo, register_repo
from casm_dagster.contracts.run import RunState
from casm_dagster.errors import CasmError, RunFailedError
from casm_dagster.jobs.run_config import (
    audit_run_config,
    continuation_run_config,
    noop_run_config,
    pr_review_run_config,
)
from casm_dagster.resources import CasmResource
from casm_dagster.resources.instance import ACTIVE_RUN_STATUSES
from casm_dagster.run import leftovers
from casm_dagster.run.ids import new_ulid
from casm_dagster.run.journal import fail_dead_run, utc_now
from casm_dagster.run.spec import RunOptions
from casm_dagster.run.templates import Template
from casm_dagster.sensors.hitl import continuation_request
from casm_dagster.stores.run_files import local_run_dir, shared_store

if TYPE_CHECKING:
    from dagster._utils.error import SerializableErrorInfo


def _job(name: str) -> dg.JobDefinition:
    # The definitions (every asset, the economics charts) load only when a run launches.
    from casm_dagster.definitions import defs

    return defs.resolve_job_def(name)


@dataclass(frozen=True)
class LaunchResult:
    run_id: str
    dagster_run_id: str
    success: bool
    state: RunState | None
    run_dir: Path


@dataclass(frozen=True)
class PreparedRun:
    """One audit's Dagster run, before it is executed or submitted."""

    run_id: str
    job_name: str
    partition_key: str
    run_config: dg.RunConfig | dict
    tags: dict[str, str]


def prepare(
    instance: dg.DagsterInstance,
    template: Template,
    template_ref: str,
    repo: str,
    repo_root: Path,
    state_dir: Path,
    artifacts_dir: Path,
    seed: int,
    progress: bool,
    options: RunOptions | None,
    github: str | None,
    own_paths: bool = True,
) -> PreparedRun:
    """The run's id, job, run config and tags, with the repo registered as a partition;
    ``github``: owner/name in GitHub mode (``repo_root`` is then the mirror). ``own_paths``
    False: the run keeps its state and artifacts under the executing host's ``CASM_STATE_DIR``
    (a worker host's own), not this process's paths. A local-path repo is pinned to this
    host's worker queue (``CASM_HOST_QUEUE``): only this host has the path."""
    record = register_repo(instance, "github", github) if github else register_local_repo(instance, repo_root)
    run_id = new_ulid()
    fields = {
        "template": template_ref,
        "run_id": run_id,
        "repo": repo,
        "artifacts_dir": str(artifacts_dir) if own_paths else "",
        "seed": seed,
        **(options.as_config() if options else {}),
    }
    casm = CasmResource(state_dir=str(state_dir), progress=progress) if own_paths else None
    job_name = template.job
    if job_name == "pr_sentinel_job":
        run_config = pr_review_run_config(PrReviewConfig(**fields), casm)
    elif job_name == "noop_job":
        run_config = noop_run_config(AuditConfig(**fields), casm)
    else:
        run_config = audit_run_config(AuditConfig(**fields), casm)
    tags = {
        "casm/run_id": run_id,
        "casm/template": template.id,
        "casm/repo": repo,
        "casm/partition": record.partition_key,
    }
    if not github and os.environ.get(HOST_QUEUE_ENV):
        tags[CELERY_QUEUE_TAG] = os.environ[HOST_QUEUE_ENV]
    return PreparedRun(run_id, job_name, record.partition_key, run_config, tags)


def launch_audit(instance: dg.DagsterInstance, launch: PreparedRun, repo: str, state_dir: Path) -> LaunchResult:
    """Execute a prepared run in this process, under the repo's lock."""
    with repo_lock(instance, launch.partition_key, repo):
        result = _job(launch.job_name).execute_in_process(
            run_config=launch.run_config,
            instance=instance,
            partition_key=launch.partition_key,
            tags={**launch.tags, **in_process_tags()},
            raise_on_error=False,
        )
    run_dir = state_dir / "runs" / launch.run_id
    state = read_state(run_dir)
    if not result.success and state is None:
        raise CasmError(f"the Dagster run {result.run_id} failed before CASM could start: {_first_error(result)}")
    return LaunchResult(launch.run_id, result.run_id, result.success, state, run_dir)


@contextlib.contextmanager
def repo_lock(instance: dg.DagsterInstance, partition: str, repo: str) -> Iterator[None]:
    """One run per repo at a time, as the daemon's ``casm/repo`` limit does for queued runs:
    two runs on one repo interleave their stage outputs and journals. An in-process run
    holds a lock file under ``$DAGSTER_HOME/locks``; a run the daemon has queued or started
    for the repo counts too. The second run is refused, clearly, rather than waiting."""
    locks = Path(instance.root_directory) / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(partition.encode()).hexdigest()[:24]
    with open(locks / f"{name}.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CasmError(f"another casm run is auditing {repo} right now: wait for it to finish") from None
        try:
            active = dg.RunsFilter(statuses=ACTIVE_RUN_STATUSES, tags={"casm/partition": partition})
            busy = instance.get_runs(active, limit=1)
            if busy:
                raise CasmError(
                    f"Dagster run {busy[0].run_id} ({busy[0].status.value.lower()}) is auditing {repo}: "
                    "wait for it to finish"
                )
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def in_process_tags() -> dict[str, str]:
    """An in-process run has no run monitor: its owner tag lets the next start tell a run
    whose process was killed from one still going."""
    # Dagster's run retries would relaunch it through the daemon behind its owner's back;
    # `casm run` marks a killed in-process run failed, and the user runs it again.
    return {"casm/launcher": "in-process", "casm/owner": leftovers.me().tag, "dagster/max_retries": "0"}


def recover(instance: dg.DagsterInstance, state_dir: Path, dry_run: bool = False) -> list[str]:
    """Close what killed in-process runs left: Dagster runs still STARTED and CASM runs
    still ``running`` whose process is gone are marked failed (with why), their scratch
    clones and temp dirs removed. Returns one line per thing done (or that would be)."""
    verb = "would mark" if dry_run else "marked"
    notes = []
    for run_dir, state in leftovers.dead_runs(state_dir):
        orphan = leftovers.undelivered_branch(run_dir, state)
        if not dry_run:
            fail_dead_run(run_dir, f"{KILLED} ({state.owner})")
            _close_continuation(instance, state)
            if orphan and state.branch_commit:
                leftovers.delete_branch(*orphan, state.branch_commit)
        notes.append(f"{verb} run {state.run_id} failed: {KILLED}")
        if orphan:
            notes.append(f"{'would delete' if dry_run else 'deleted'} branch {orphan[1]} of that run in {orphan[0]}")
    alive = (dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.NOT_STARTED)
    for run in instance.get_runs(dg.RunsFilter(statuses=list(alive), tags={"casm/launcher": "in-process"})):
        owner = leftovers.Owner.parse(run.tags.get("casm/owner", ""))
        if owner and not owner.alive():
            if not dry_run:
                instance.report_run_failed(run, f"{KILLED} ({owner.tag}); marked failed by CASM at the next start")
                # Its pool slots (casm_models, casm_sandbox) are never released by a dead process:
                # without this the next run's steps wait for them forever.
                if instance.event_log_storage.supports_global_concurrency_limits:
                    instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            notes.append(f"{verb} Dagster run {run.run_id} failed: {KILLED}")
    removed = leftovers.reap_temp_dirs(dry_run=dry_run)
    if removed:
        notes.append(f"{'would remove' if dry_run else 'removed'} {len(removed)} temp dirs left by killed runs")
    return notes


KILLED = "the process running it is gone (killed or crashed)"


def _close_continuation(instance: dg.DagsterInstance, state: RunState) -> None:
    """A continuation killed after it consumed its approval: the approval records that it
    failed (it said "in progress" forever). Approvals are used once: a new run is needed."""
    if not state.hitl_request_id:
        return
    store = approvals(instance)
    record = store.get(state.hitl_request_id)
    if record is not None and record.consumed_at and not record.outcome:
        store.finish(record.request_id, f"failed: {KILLED}", utc_now())


def read_state(run_dir: Path) -> RunState | None:
    path = run_dir / "state.json"
    return RunState.model_validate_json(path.read_text()) if path.exists() else None


def error_line(error: SerializableErrorInfo) -> str:
    """The user-facing reason in a Dagster error: its innermost cause (Dagster wraps the
    op's exception), last line, without the exception's class name."""
    while error.cause is not None:
        error = error.cause
    lines = error.message.strip().splitlines()
    return lines[-1].split(": ", 1)[-1] if lines else error.cls_name or "unknown error"


def _first_error(result: dg.ExecuteInProcessResult) -> str:
    """The first step failure's reason, one line."""
    for event in result.all_events:
        if event.is_failure and event.step_failure_data and event.step_failure_data.error:
            return error_line(event.step_failure_data.error)
    return "unknown error"


def launch_continuation(instance: dg.DagsterInstance, request_id: str, state_dir: Path, progress: bool) -> LaunchResult:
    """Run the HITL continuation now, in this process (the sensor does the same from the daemon)."""
    record = approvals(instance).get(request_id)
    if record is None:
        raise CasmError(f"no approval request {request_id}")
    request = continuation_request(record)
    casm = CasmResource(state_dir=str(state_dir), progress=progress)
    result = _job("hitl_continuation_job").execute_in_process(
        run_config=continuation_run_config(record.request_id, casm),
        instance=instance,
        tags={**request.tags, "dagster/run_key": request.run_key or "", **in_process_tags()},
        raise_on_error=False,
    )
    run_dir = local_run_dir(record.state_dir, record.run_id, shared_store(approvals(instance).engine))
    state = read_state(run_dir)
    if not result.success:
        raise RunFailedError(f"the continuation of run {record.run_id} failed: {_first_error(result)}")
    return LaunchResult(record.run_id, result.run_id, result.success, state, run_dir)
