"""Whole audits on Celery worker "hosts" through dagster-celery's CeleryRunLauncher
(``infra/dagster/dagster.celery.yaml``), on PostgreSQL, RabbitMQ and Redis, with a real
dagster-daemon: each worker runs in its own mount namespace (bubblewrap) where the control
plane's directories and the other worker's are empty, with its own state dir and temp dir.
The audits' run folders reach the control plane only through the instance database, and
`casm explain`/`casm cost` there show them. A GitHub repo is fetched by the worker that takes
its run, into that host's own mirror, and delivered by push (the local GitHub server)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from github_fake.fake_github import FakeGitHub
from helpers import (
    CASM,
    GATED_FILES,
    ROOT,
    assert_delivered_once,
    commit_slow_test,
    dagster_run,
    git,
    instance_of,
    isolated_env,
    last_json,
    make_repo,
    owner_pid,
    postgres_home,
    run_casm,
)

from casm_dagster.policy.keyed_hash import load_or_create_key

BROKER, BACKEND = "pyamqp://guest:guest@127.0.0.1:5672//", "redis://127.0.0.1:6379/15"
TOKEN = "ghp_" + "W0rkerT0k" * 4


def _require(host: str, port: int, what: str) -> None:
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{what} is required under CI=true and is unreachable at {host}:{port}: {exc}")
        pytest.skip(f"{what} not reachable at {host}:{port}: {exc}")


@pytest.fixture
def brokers() -> None:
    _require("127.0.0.1", 5672, "RabbitMQ")
    _require("127.0.0.1", 6379, "Redis")
    if shutil.which("bwrap") is None:
        pytest.fail("bubblewrap (bwrap) is required: the workers run in their own mount namespaces")


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    }


def _story(env: dict[str, str], err: str) -> str:
    """The Dagster runs' tags and engine messages named in ``err``: why a run was not retried."""
    lines = []
    with instance_of(env) as instance:
        for run_id in sorted(set(re.findall(r"Dagster run ([0-9a-f-]{36})", err))):
            run = instance.get_run_by_id(run_id)
            lines.append(f"{run_id}: {run.status if run else None} {dict(run.tags) if run else ''}")
            for record in instance.all_logs(run_id)[-15:]:
                error = getattr(getattr(record.dagster_event, "event_specific_data", None), "error", None)
                lines.append(f"  {record.message}" + (f" {error.to_string()[-1500:]}" if error else ""))
    return "\n".join(lines)


def _delete_queues(names: list[str]) -> None:
    from kombu import Connection

    with Connection(BROKER) as conn:
        channel = conn.channel()
        for name in names:
            with contextlib.suppress(Exception):
                channel.queue_delete(name)


@contextlib.contextmanager
def _cluster(
    tmp_path: Path, pg_database: dict[str, str], poll_s: int = 15, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[dict, list[Path], Path]]:
    """A control plane (daemon, CeleryRunLauncher) and two worker hosts on this test's own
    queues; yields the control plane's environment, the hosts and its working directory.
    ``extra_env``: for every host (e.g. GitHub credentials)."""
    queue = f"casm-test-{uuid.uuid4().hex[:8]}"  # no other run's messages
    control = tmp_path / "control"
    home = control / "dagster_home"
    env = isolated_env(control / "unused") | postgres_home(home, pg_database) | (extra_env or {})
    config = (ROOT / "infra" / "dagster" / "dagster.celery.yaml").read_text()
    (home / "dagster.yaml").write_text(config.replace("poll_interval_seconds: 15", f"poll_interval_seconds: {poll_s}"))
    env |= {
        "CASM_STATE_DIR": str(control / "state"),
        "CASM_CELERY_BROKER": BROKER,
        "CASM_CELERY_BACKEND": BACKEND,
        "CASM_CELERY_QUEUE": queue,
    }
    work = control / "work"
    work.mkdir(parents=True)
    # The installation's policy key: approvals carry an HMAC under it, so every host has a copy.
    load_or_create_key(Path(env["CASM_POLICY_KEY_FILE"]))
    hosts = [tmp_path / "host1", tmp_path / "host2"]
    processes: list[subprocess.Popen] = []
    try:
        for host in hosts:
            for sub in ("state", "tmp", "work", "dagster_home"):
                (host / sub).mkdir(parents=True)
            # A worker host's own DAGSTER_HOME, with the same instance config as the control plane's.
            shutil.copyfile(home / "dagster.yaml", host / "dagster_home" / "dagster.yaml")
            shutil.copyfile(env["CASM_POLICY_KEY_FILE"], host / "policy.key")
            host_env = env | {
                "DAGSTER_HOME": str(host / "dagster_home"),
                "CASM_STATE_DIR": str(host / "state"),
                "TMPDIR": str(host / "tmp"),
                "CASM_HOST_QUEUE": f"{queue}-{host.name}",
                "CASM_POLICY_KEY_FILE": str(host / "policy.key"),
            }
            others = [control, *(h for h in hosts if h != host)]
            hidden = [arg for path in others for arg in ("--tmpfs", str(path))]
            processes.append(
                subprocess.Popen(
                    [
                        "bwrap",
                        "--dev-bind",
                        "/",
                        "/",
                        *hidden,
                        "--die-with-parent",
                        "--",
                        sys.executable,
                        "-m",
                        "celery",
                        "-A",
                        "casm_dagster.jobs.celery_worker",
                        "worker",
                        "-Q",
                        f"{queue},{queue}-{host.name}",
                        "--concurrency",
                        "1",
                        "-n",
                        f"{queue}-{host.name}@%h",
                        "--loglevel",
                        "WARNING",
                    ],
                    cwd=host / "work",
                    env=host_env,
                    stdout=subprocess.DEVNULL,
                    stderr=(host / "worker.log").open("w"),
                    start_new_session=True,
                )  # fmt: skip
            )
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "dagster._daemon", "run", "-w", str(ROOT / "workspace.yaml")],
                cwd=work,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        )
        yield env, hosts, work
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        _delete_queues([queue, *(f"{queue}-{h.name}" for h in hosts)])


def _logs(hosts: list[Path]) -> str:
    return "".join((h / "worker.log").read_text() for h in hosts if (h / "worker.log").exists())


def _submit(env: dict[str, str], work: Path, repo: str, artifacts: Path) -> subprocess.Popen[str]:
    command = [*CASM, "run", "--submit", "--template", "repo-auditor", "--repo", repo, "--json",
               "--artifacts-dir", str(artifacts)]  # fmt: skip
    return subprocess.Popen(command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_audits_run_on_two_celery_workers_and_the_control_plane_explains_them(
    tmp_path: Path, demo_repo: Path, pg_database, brokers
) -> None:
    second_repo = tmp_path / "second-repo"
    subprocess.run(["git", "clone", "-q", str(demo_repo), str(second_repo)], check=True)
    with FakeGitHub(token=TOKEN) as gh:
        github_repo = "acme/widgets"
        gh.create_repo(github_repo, second_repo, default_branch=git(second_repo, "rev-parse", "--abbrev-ref", "HEAD"))
        credentials = {"GITHUB_TOKEN": TOKEN, "GITHUB_API_URL": gh.api_url, "CASM_GITHUB_WRITE_INTERVAL": "0"}
        with _cluster(tmp_path, pg_database, extra_env=credentials) as (env, hosts, work):
            # A local-path repo is pinned to the queue of the host that has the path: the
            # submitter's CASM_HOST_QUEUE (here the local repo "lives" on host1). The GitHub
            # repo is not pinned: any worker can fetch it.
            local_pin = {"CASM_HOST_QUEUE": f"{env['CASM_CELERY_QUEUE']}-{hosts[0].name}"}
            submitters = [
                _submit(env | local_pin, work, str(demo_repo), work / "artifacts-0"),
                _submit(env, work, github_repo, work / "artifacts-1"),
            ]
            outcomes = [s.communicate(timeout=420) for s in submitters]
        pulls = gh.pulls(github_repo)
        pushed = {p["number"]: git(gh.repo_path(github_repo), "rev-list", f"{p['base']}..{p['head']}").split()
                  for p in pulls}  # fmt: skip
        gh.assert_clean()
    control = tmp_path / "control"
    summaries = []
    for i, (submitter, (out, err)) in enumerate(zip(submitters, outcomes, strict=True)):
        assert submitter.returncode == 0, err + _logs(hosts)
        summary = last_json(out)
        summaries.append(summary)
        assert summary["status"] == "succeeded" and summary["branch"] and summary["patches"] >= 1, err
        run_id, dagster_run_id = summary["run_id"], summary["dagster_run_id"]
        # The run executed on one host, in that host's own state dir, and on no other.
        (host,) = [h for h in hosts if (h / "state" / "runs" / run_id / "state.json").is_file()]
        on_host = host / "state" / "runs" / run_id
        run = dagster_run(env, dagster_run_id)
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags["dagster-celery/queue"] == f"{env['CASM_CELERY_QUEUE']}-{host.name}"  # pinned once started
        assert run.tags["dagster-celery/task_id"]
        # The control plane has the run's folder only through the database, file for file.
        here = control / "state" / "runs" / run_id
        assert _tree(here) == _tree(on_host)
        report = Path(summary["report"])  # published here, in the submitter's artifacts dir
        assert report.is_file() and report.parent == work / f"artifacts-{i}"
        explained = run_casm(["explain", "--run-id", run_id], work, env)
        assert explained.returncode == 0, explained.stderr
        assert run_id in explained.stdout and "report" in explained.stdout
        assert "✓ validate" in err  # the journal's progress followed from the control plane
        assert f"report written; copied to {work / f'artifacts-{i}'}" in err  # not the worker's path
        assert str(host) not in err
    local, remote = summaries
    assert (hosts[0] / "state" / "runs" / local["run_id"]).is_dir()  # where its path is
    # The GitHub repo: fetched into the executing host's own mirror, the branch pushed from
    # there and the pull request opened; the token in no file of any host.
    (host,) = [h for h in hosts if (h / "state" / "runs" / remote["run_id"]).is_dir()]
    assert list((host / "state" / "github").glob("*.git")), "no mirror on the host that ran it"
    (pr,) = pulls
    assert remote["pull_request"].endswith(f"/pull/{pr['number']}")
    assert len(pushed[pr["number"]]) == remote["patches"]
    leaked = [p for p in tmp_path.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert not leaked and all(TOKEN not in out + err for out, err in outcomes)
    cost = run_casm(["cost", "--run-id", local["run_id"]], work, env)
    assert cost.returncode == 0 and local["run_id"] in cost.stdout, cost.stderr


def _running_stage(hosts: list[Path], stage: str, timeout: float) -> tuple[Path, int | None]:
    """The run folder (on whichever host took the run) whose ``stage`` is running, and the
    pid of the process running it, read from the host's own state dir."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for state_file in (p for h in hosts for p in (h / "state" / "runs").glob("*/state.json")):
            with contextlib.suppress(OSError, ValueError):
                if json.loads(state_file.read_text())["stages"].get(stage) == "running":
                    return state_file.parent, owner_pid(state_file)
        time.sleep(0.2)
    raise AssertionError(f"no run reached {stage} within {timeout} s")


def test_a_worker_killed_mid_audit_is_retried_on_its_own_host_to_one_branch(
    tmp_path: Path, demo_repo: Path, pg_database, brokers
) -> None:
    commit_slow_test(demo_repo)
    with _cluster(tmp_path, pg_database, poll_s=2) as (env, hosts, work):
        # Not pinned by the submitter: whichever host takes it pins it to itself when it starts.
        submitter = subprocess.Popen(
            [*CASM, "run", "--submit", "--template", "repo-auditor", "--repo", str(demo_repo), "--json"],
            cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        run_dir, pid = _running_stage(hosts, "analyze", timeout=300)
        assert pid, _logs(hosts)
        host, run_id = run_dir.parents[2], run_dir.name
        os.kill(pid, signal.SIGKILL)  # the worker's pool process dies mid-stage (an OOM kill)
        out, err = submitter.communicate(timeout=400)
    assert submitter.returncode == 0, err + _story(env, err)
    assert ": failure" in err and "Dagster retries it as run" in err
    summary = last_json(out)
    assert summary["status"] == "succeeded" and summary["branch"]
    retry = dagster_run(env, summary["dagster_run_id"])
    assert retry.tags["dagster-celery/queue"] == f"{env['CASM_CELERY_QUEUE']}-{host.name}"  # back to its host
    assert not any((h / "state" / "runs" / run_id).exists() for h in hosts if h != host)
    state, _ = assert_delivered_once(demo_repo, summary)  # one branch, one record per model call
    assert state["dagster_run_id"] == summary["dagster_run_id"] == retry.run_id and state["status"] == "succeeded"


def test_a_run_held_on_a_worker_is_approved_on_the_control_plane_and_continues_on_its_host(
    tmp_path: Path, pg_database, brokers
) -> None:
    repo = make_repo(tmp_path / "gated-repo", GATED_FILES)
    with _cluster(tmp_path, pg_database) as (env, hosts, work):
        host_queue = f"{env['CASM_CELERY_QUEUE']}-{hosts[0].name}"
        held = subprocess.run(
            [*CASM, "run", "--submit", "--template", "repo-auditor", "--repo", str(repo), "--json"],
            cwd=work, env=env | {"CASM_HOST_QUEUE": host_queue}, capture_output=True, text=True, timeout=420,
        )  # fmt: skip
        assert held.returncode == 3, held.stderr + _logs(hosts)  # held for approval
        run_id = last_json(held.stdout)["run_id"]
        # The control plane decides: its state dir had the run only through the database, and
        # the decision it appends travels back the same way.
        approved = run_casm(["approve", "--run-id", run_id, "--reason", "auth change reviewed"], work, env)
        assert approved.returncode == 0, approved.stderr
        continuation = _wait_for_continuation(env, run_id, timeout=240)
    assert continuation.status == dg.DagsterRunStatus.SUCCESS, _story(env, f"Dagster run {continuation.run_id}")
    assert continuation.tags["dagster-celery/queue"] == host_queue  # where the run was held
    assert not (hosts[1] / "state" / "runs" / run_id).exists()
    explained = run_casm(["explain", "--run-id", run_id], work, env)
    assert explained.returncode == 0, explained.stderr
    assert "approved by" in explained.stdout and "auth change reviewed" in explained.stdout
    state = json.loads((tmp_path / "control" / "state" / "runs" / run_id / "state.json").read_text())
    assert state["status"] == "succeeded" and state["branch"], _story(env, f"Dagster run {continuation.run_id}")
    branches = subprocess.run(["git", "-C", str(repo), "branch", "--list", "casm/*"], capture_output=True,
                              text=True, check=True).stdout.split()  # fmt: skip
    assert branches == [state["branch"]]


def _wait_for_continuation(env: dict[str, str], run_id: str, timeout: float) -> dg.DagsterRun:
    """The HITL sensor's continuation run of ``run_id``, once it has ended."""
    with instance_of(env) as instance:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = instance.get_runs(dg.RunsFilter(job_name="hitl_continuation_job", tags={"casm/run_id": run_id}))
            if runs and runs[0].is_finished:
                return runs[0]
            time.sleep(2)
    raise AssertionError(f"no finished continuation of run {run_id} within {timeout} s")
