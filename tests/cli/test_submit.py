"""`casm run --submit` through the instance's run queue, on PostgreSQL with a real
dagster-daemon: the run waits queued until a daemon starts it, an in-process `casm run` on
the same repo meanwhile is refused (no overlap), and the submitter follows the daemon's run
to the same output and exit code as an in-process run."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
from helpers import (
    CASM,
    ROOT,
    assert_delivered_once,
    commit_slow_test,
    dagster_run,
    instance_of,
    isolated_env,
    last_json,
    owner_pid,
    postgres_home,
    run_casm,
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_port(port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"the code server did not listen on {port} within {timeout} s")


def _queued_run(env: dict[str, str], timeout: float = 120) -> dg.DagsterRun:
    with instance_of(env) as instance:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED]))
            if runs:
                return runs[0]
            time.sleep(0.5)
    raise AssertionError("the submitted run never reached the queue")


def test_a_submitted_run_waits_for_the_daemon_and_excludes_in_process_runs(
    tmp_path: Path, demo_repo: Path, pg_database
) -> None:
    env = isolated_env(tmp_path / "unused") | postgres_home(tmp_path / "pg_home", pg_database)
    env |= {"CASM_STATE_DIR": str(tmp_path / "state")}
    work = tmp_path / "work"
    work.mkdir()
    # The production layout (infra/): one code server, the daemon and the submitter reach it
    # through infra/dagster/workspace.yaml (here on a free port).
    port = _free_port()
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text((ROOT / "infra" / "dagster" / "workspace.yaml").read_text().replace("4266", str(port)))
    code_server = subprocess.Popen(
        [sys.executable, "-m", "dagster", "code-server", "start", "-m", "casm_dagster.definitions",
         "--location-name", "casm", "-h", "127.0.0.1", "-p", str(port)],
        cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    args = ["run", "--template", "repo-auditor", "--repo", str(demo_repo), "--json"]
    daemon = submitter = None
    try:
        _wait_port(port)
        submitter = subprocess.Popen(
            [*CASM, *args, "--submit", "--workspace", str(workspace)],
            cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        queued = _queued_run(env)
        assert queued.tags["casm/launcher"] == "queue" and queued.tags["dagster/partition"]
        # No daemon yet: the run stays queued, and an in-process run on the repo is refused.
        refused = run_casm(args, work, env)
        assert refused.returncode == 2, refused.stderr
        assert f"Dagster run {queued.run_id} (queued) is auditing" in refused.stderr
        daemon = subprocess.Popen(
            [sys.executable, "-m", "dagster._daemon", "run", "-w", str(workspace)],
            cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        out, err = submitter.communicate(timeout=300)
    finally:
        if submitter is not None and submitter.poll() is None:
            submitter.kill()
        for process in (daemon, code_server):
            if process is not None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=60)
    assert submitter is not None
    assert submitter.returncode == 0, err
    for line in ("starting", "started", "success"):
        assert f"Dagster run {queued.run_id}: {line}" in err
    assert "✓ validate" in err and "✓ telemetry" in err  # the journal's progress, as in-process
    summary = last_json(out)
    assert summary["status"] == "succeeded" and summary["dagster_run_id"] == queued.run_id
    assert summary["branch"] and summary["patches"] >= 1
    state = json.loads((Path(summary["run_dir"]) / "state.json").read_text())
    assert state["dagster_run_id"] == queued.run_id and state["status"] == "succeeded"
    run = dagster_run(env, queued.run_id)
    assert run.status == dg.DagsterRunStatus.SUCCESS and "casm/owner" not in run.tags  # the daemon ran it
    explained = run_casm(["explain", "--run-id", summary["run_id"]], work, env)
    assert explained.returncode == 0 and summary["run_id"] in explained.stdout, explained.stderr


def test_submit_refuses_a_missing_workspace_before_touching_anything(tmp_path: Path, demo_repo: Path) -> None:
    env = isolated_env(tmp_path / "home")
    args = ["run", "--template", "noop", "--repo", str(demo_repo), "--submit", "--workspace", str(tmp_path / "no.yaml")]
    proc = run_casm(args, tmp_path, env)
    assert proc.returncode == 2 and f"workspace file {tmp_path / 'no.yaml'} does not exist" in proc.stderr
    lonely = run_casm(["run", "--template", "noop", "--repo", str(demo_repo), "--workspace", "w.yaml"], tmp_path, env)
    assert lonely.returncode == 2 and "--workspace is for --submit" in lonely.stderr


def test_a_run_worker_killed_mid_audit_is_retried_to_one_delivered_branch(
    tmp_path: Path, demo_repo: Path, pg_database
) -> None:
    commit_slow_test(demo_repo)
    env = isolated_env(tmp_path / "unused") | postgres_home(tmp_path / "pg_home", pg_database)
    config = tmp_path / "pg_home" / "dagster.yaml"
    config.write_text(config.read_text().replace("poll_interval_seconds: 15", "poll_interval_seconds: 2"))
    env |= {"CASM_STATE_DIR": str(tmp_path / "state")}
    work = tmp_path / "work"
    work.mkdir()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "dagster._daemon", "run", "-w", str(ROOT / "workspace.yaml")],
        cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    args = ["run", "--template", "repo-auditor", "--repo", str(demo_repo), "--json", "--submit"]
    submitter = subprocess.Popen([*CASM, *args], cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)  # fmt: skip
    try:
        assert submitter.stderr is not None
        seen = []
        for line in submitter.stderr:  # wait until the run worker is in analyze
            seen.append(line)
            if "… analyze" in line:
                break
        run_id = next(line.split()[3] for line in seen if "submitted run" in line)
        pid = None
        for _ in range(50):
            pid = owner_pid(tmp_path / "state" / "runs" / run_id / "state.json")
            if pid:
                break
            time.sleep(0.1)
        assert pid and pid != submitter.pid
        os.kill(pid, signal.SIGKILL)
        out, rest = submitter.communicate(timeout=400)
    finally:
        if submitter.poll() is None:
            submitter.kill()
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=60)
    err = "".join(seen) + rest
    assert submitter.returncode == 0, err
    assert ": failure" in err and "Dagster retries it as run" in err
    summary = last_json(out)
    assert summary["status"] == "succeeded" and summary["branch"]
    state, calls = assert_delivered_once(demo_repo, summary)  # one branch, one record per model call
    retry = re.search(r"Dagster retries it as run (\S+)", err)
    assert retry and state["dagster_run_id"] == summary["dagster_run_id"] == retry.group(1)  # not the killed run
    run_summary = json.loads((Path(summary["run_dir"]) / "run_summary.json").read_text())
    assert run_summary["calls"]["count"] == len(calls)
