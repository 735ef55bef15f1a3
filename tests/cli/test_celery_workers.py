"""Whole audits on Celery worker "hosts" through dagster-celery's CeleryRunLauncher
(``infra/dagster/dagster.celery.yaml``), on PostgreSQL, RabbitMQ and Redis, with a real
dagster-daemon: each worker runs in its own mount namespace (bubblewrap) where the control
plane's directories and the other worker's are empty, with its own state dir and temp dir.
The audits' run folders reach the control plane only through the instance database, and
`casm explain`/`casm cost` there show them."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import dagster as dg
import pytest
from helpers import CASM, ROOT, isolated_env, last_json, postgres_home, run_casm

BROKER, BACKEND = "pyamqp://guest:guest@127.0.0.1:5672//", "redis://127.0.0.1:6379/15"


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


def _dagster_run(env: dict[str, str], dagster_run_id: str) -> dg.DagsterRun:
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        with dg.DagsterInstance.get() as instance:
            run = instance.get_run_by_id(dagster_run_id)
            assert run is not None
            return run
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _delete_queues(names: list[str]) -> None:
    from kombu import Connection

    with Connection(BROKER) as conn:
        channel = conn.channel()
        for name in names:
            with contextlib.suppress(Exception):
                channel.queue_delete(name)


def test_audits_run_on_two_celery_workers_and_the_control_plane_explains_them(
    tmp_path: Path, demo_repo: Path, pg_database, brokers
) -> None:
    queue = f"casm-test-{uuid.uuid4().hex[:8]}"  # this test's own queues: no other run's messages
    control = tmp_path / "control"
    home = control / "dagster_home"
    env = isolated_env(control / "unused") | postgres_home(home, pg_database)
    (home / "dagster.yaml").write_text((ROOT / "infra" / "dagster" / "dagster.celery.yaml").read_text())
    env |= {
        "CASM_STATE_DIR": str(control / "state"),
        "CASM_CELERY_BROKER": BROKER,
        "CASM_CELERY_BACKEND": BACKEND,
        "CASM_CELERY_QUEUE": queue,
    }
    second_repo = tmp_path / "second-repo"
    subprocess.run(["git", "clone", "-q", str(demo_repo), str(second_repo)], check=True)
    work = control / "work"
    work.mkdir(parents=True)
    hosts = [tmp_path / "host1", tmp_path / "host2"]
    processes: list[subprocess.Popen] = []
    queues = [queue]
    try:
        for number, host in enumerate(hosts, start=1):
            for sub in ("state", "tmp", "work", "dagster_home"):
                (host / sub).mkdir(parents=True)
            # A worker host's own DAGSTER_HOME, with the same instance config as the control plane's.
            shutil.copyfile(home / "dagster.yaml", host / "dagster_home" / "dagster.yaml")
            host_queue = f"{queue}-host{number}"
            queues.append(host_queue)
            host_env = env | {
                "DAGSTER_HOME": str(host / "dagster_home"),
                "CASM_STATE_DIR": str(host / "state"),
                "TMPDIR": str(host / "tmp"),
                "CASM_HOST_QUEUE": host_queue,
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
                        "casm_dagster.celery_worker",
                        "worker",
                        "-Q",
                        f"{queue},{host_queue}",
                        "--concurrency",
                        "1",
                        "-n",
                        f"host{number}@%h",
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
                [sys.executable, "-m", "dagster._daemon", "run", "-m", "casm_dagster.definitions"],
                cwd=work,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        )
        # A local-path repo is pinned to the queue of the host that has the path: the
        # submitter's CASM_HOST_QUEUE (here each repo "lives" on one worker host).
        submitters = [
            subprocess.Popen(
                [
                    *CASM,
                    "run",
                    "--submit",
                    "--template",
                    template,
                    "--repo",
                    str(repo),
                    "--json",
                    "--artifacts-dir",
                    str(work / f"artifacts-{number}"),
                ],
                cwd=work,
                env=env | {"CASM_HOST_QUEUE": f"{queue}-host{number}"},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            for number, (template, repo) in enumerate([("repo-auditor", demo_repo), ("noop", second_repo)], start=1)
        ]
        outcomes = [s.communicate(timeout=420) for s in submitters]
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        _delete_queues(queues)
    for submitter, (out, err), host in zip(submitters, outcomes, hosts, strict=True):
        assert submitter.returncode == 0, err + (host / "worker.log").read_text()
        summary = last_json(out)
        assert summary["status"] == "succeeded", err
        run_id, dagster_run_id = summary["run_id"], summary["dagster_run_id"]
        # The run executed on its host, in that host's own state dir, and on no other.
        on_host = host / "state" / "runs" / run_id
        assert (on_host / "state.json").is_file()
        assert not any((h / "state" / "runs" / run_id).exists() for h in hosts if h != host)
        run = _dagster_run(env, dagster_run_id)
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags["dagster-celery/queue"] == f"{queue}-{host.name}" and run.tags["dagster-celery/task_id"]
        # The control plane has the run's folder only through the database, file for file.
        here = control / "state" / "runs" / run_id
        assert _tree(here) == _tree(on_host)
        report = Path(summary["report"])  # published here, in the submitter's artifacts dir
        assert report.is_file() and report.parent == work / f"artifacts-{host.name[-1]}"
        explained = run_casm(["explain", "--run-id", run_id], work, env)
        assert explained.returncode == 0, explained.stderr
        assert run_id in explained.stdout and "report" in explained.stdout
    audit = last_json(outcomes[0][0])
    assert audit["branch"] and audit["patches"] >= 1  # validated and delivered on host1
    assert "✓ validate" in outcomes[0][1]  # the journal's progress followed from the control plane
    cost = run_casm(["cost", "--run-id", audit["run_id"]], work, env)
    assert cost.returncode == 0 and audit["run_id"] in cost.stdout, cost.stderr
