"""Audits per hour through the production layout: PostgreSQL, a code server, dagster-daemon
with the queued coordinator (4 concurrent runs, one per repo) and the default run launcher.

For each setting, a fresh database gets N registered repos (small local git repos) and N
runs submitted at once, as a heartbeat tick submits them (one per repo, tagged as the
schedule tags them); the daemon then drains the queue. Reported per setting: audits/min
(N over first enqueue → last success), enqueue→start and start→success P50/P95, and the
ratio of audits/min to the first setting (the baseline, measured in the same run).

Settings: PostgreSQL direct, and through PgBouncer (session pooling, infra/pgbouncer; needs
the ``pgbouncer`` binary). Run as root, PgBouncer runs as the ``postgres`` user. Then whole
audits on 1, 2 and 3 Celery workers (infra/dagster/dagster.celery.yaml; RabbitMQ and Redis
on this machine), each worker a separate process with its own state dir, two audits at a
time each, through PgBouncer when it is there. Per setting, the run's time is split into
launch (dequeue → the run worker's process running), stages (the steps' own time) and the
rest (definitions load, storage and event writes around the steps), P50 over the runs.

    python benchmarks/heartbeat_throughput.py [--repos 24] [--template noop] [--workers 1,2,3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
BROKER, BACKEND = "pyamqp://guest:guest@127.0.0.1:5672//", "redis://127.0.0.1:6379/14"
RUNS_PER_WORKER = 2  # each Celery worker runs two audits at a time (--concurrency)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"nothing listens on port {port} after {timeout} s")


def _psql(sql: str) -> None:
    subprocess.run(["psql", "-h", PG["host"], "-U", PG["user"], "-d", "postgres", "-qc", sql], check=True)


def _pgbouncer(folder: Path) -> tuple[subprocess.Popen, int]:
    """infra/pgbouncer/pgbouncer.ini with this machine's trust auth and a free port."""
    port = _free_port()
    text = (ROOT / "infra" / "pgbouncer" / "pgbouncer.ini").read_text()
    text = text.replace("casm = host=127.0.0.1 port=5432 dbname=casm", f"* = host={PG['host']} port={PG['port']}")
    text = text.replace("listen_port = 6432", f"listen_port = {port}").replace("scram-sha-256", "trust")
    text = text.replace("/etc/pgbouncer/userlist.txt", str(folder / "userlist.txt")) + "unix_socket_dir =\n"
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    (folder / "userlist.txt").write_text('"postgres" ""\n')
    (folder / "pgbouncer.ini").write_text(text)
    as_user = ["-u", "postgres"] if os.geteuid() == 0 else []
    proc = subprocess.Popen(["pgbouncer", *as_user, str(folder / "pgbouncer.ini")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    _wait_port(port)
    return proc, port


def _repos(where: Path, n: int) -> list[Path]:
    repos = []
    for i in range(n):
        repo = where / f"repo-{i:03d}"
        repo.mkdir(parents=True)
        (repo / "app.py").write_text(f"VALUE = {i}\n")
        git = ["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-qm", "init"], check=True)
        repos.append(repo)
    return repos


def _submit_all(repos: list[Path], template_id: str, workspace: Path, state: Path, own_paths: bool) -> float:
    """Create and submit one run per repo in this process (as the daemon's schedule does for a
    tick's run requests); returns the seconds it took."""
    from dagster._cli.job import _create_run  # what `dagster job launch` does, without a process per run
    from dagster._cli.workspace.cli_target import (
        WorkspaceOpts,
        get_code_location_from_workspace,
        get_remote_job_from_remote_repo,
        get_remote_repository_from_code_location,
        get_workspace_from_cli_opts,
    )
    from dagster.version import __version__

    from casm_dagster.cli.launch import prepare
    from casm_dagster.cli.submit import config_dict
    from casm_dagster.resources.instance import open_dagster_instance
    from casm_dagster.run.templates import load_template

    template = load_template(template_id)
    started = time.monotonic()
    # As `casm sentinel` does when repos are registered: CASM's tables and the pools' rows
    # exist before the first runs (concurrent first claims of a pool race on its row).
    with (
        open_dagster_instance() as instance,
        get_workspace_from_cli_opts(
            instance, version=__version__, workspace_opts=WorkspaceOpts(workspace=(str(workspace),))
        ) as workspace_context,
    ):
        location = get_code_location_from_workspace(workspace_context, "casm")
        remote_repo = get_remote_repository_from_code_location(location, None)
        job = get_remote_job_from_remote_repo(remote_repo, template.job)
        for repo in repos:
            launch = prepare(instance, template, template_id, str(repo), repo, state, state / "artifacts" / repo.name,
                             0, False, None, None, own_paths=own_paths)  # fmt: skip
            tags = {**launch.tags, "dagster/partition": launch.partition_key, "casm/trigger": "heartbeat:bench"}
            config = config_dict(launch.run_config)
            run = _create_run(instance=instance, code_location=location, remote_repo=remote_repo, remote_job=job,
                              run_config=config, tags=tags, op_selection=None, run_id=None)  # fmt: skip
            instance.submit_run(run.run_id, workspace_context)
    return time.monotonic() - started


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _split(instance, records) -> dict[str, float]:
    """P50 seconds per run: launch (dequeued → the run worker running), stages (the steps'
    own time) and the rest of the run (definitions load, storage, event writes)."""
    import dagster as dg

    ENDS = (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE)  # noqa: N806
    launch, stages, rest = [], [], []
    for record in records:
        run_id = record.dagster_run.run_id
        at = {}
        steps = 0.0
        begun: dict[str, float] = {}
        for event in instance.all_logs(run_id):
            kind = event.dagster_event_type
            if kind in (dg.DagsterEventType.RUN_STARTING, dg.DagsterEventType.RUN_START):
                at.setdefault(kind, event.timestamp)
            elif kind == dg.DagsterEventType.STEP_START:
                begun[event.step_key] = event.timestamp
            elif kind in ENDS and event.step_key in begun:
                steps += event.timestamp - begun.pop(event.step_key)
        if dg.DagsterEventType.RUN_STARTING in at and dg.DagsterEventType.RUN_START in at:
            launch.append(at[dg.DagsterEventType.RUN_START] - at[dg.DagsterEventType.RUN_STARTING])
        stages.append(steps)
        rest.append(max(0.0, record.end_time - record.start_time - steps))
    return {"launch_p50_s": _p50(launch), "stages_p50_s": _p50(stages), "rest_p50_s": _p50(rest)}


def _p50(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def _celery_workers(folder: Path, env: dict[str, str], n: int) -> list[subprocess.Popen]:
    """``n`` worker processes, each with its own state dir, DAGSTER_HOME and temp dir."""
    workers = []
    for i in range(1, n + 1):
        host = folder / f"worker{i}"
        for sub in ("state", "tmp", "dagster_home"):
            (host / sub).mkdir(parents=True)
        shutil.copyfile(Path(env["DAGSTER_HOME"]) / "dagster.yaml", host / "dagster_home" / "dagster.yaml")
        own = env | {"DAGSTER_HOME": str(host / "dagster_home"), "CASM_STATE_DIR": str(host / "state"),
                     "TMPDIR": str(host / "tmp")}  # fmt: skip
        queue = env["CASM_CELERY_QUEUE"]
        command = [sys.executable, "-m", "celery", "-A", "casm_dagster.jobs.celery_worker", "worker", "-Q", queue,
                   "--concurrency", str(RUNS_PER_WORKER), "-n", f"{queue}-w{i}@%h",  # node names are broker-wide
                   "--loglevel", "ERROR"]  # fmt: skip
        workers.append(subprocess.Popen(command, cwd=host, env=own, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True))  # fmt: skip
    return workers


def _delete_queue(broker: str, name: str) -> None:
    from kombu import Connection

    with Connection(broker) as conn:
        conn.channel().queue_delete(name)


def measure(name: str, n: int, template_id: str, work: Path, pooled: bool, workers: int = 0) -> dict:
    """``workers`` 0: the default run launcher (run workers are the code server's children);
    otherwise that many Celery workers."""
    db = f"casm_bench_{uuid.uuid4().hex[:8]}"
    _psql(f'CREATE DATABASE "{db}"')
    folder = work / name
    home, state = folder / "dagster_home", folder / "state"
    home.mkdir(parents=True)
    source = "dagster.celery.yaml" if workers else "dagster.postgres.yaml"
    config = (ROOT / "infra" / "dagster" / source).read_text()
    limit = workers * RUNS_PER_WORKER if workers else 4
    (home / "dagster.yaml").write_text(config.replace("max_concurrent_runs: 8", f"max_concurrent_runs: {limit}"))
    bouncer, port = _pgbouncer(folder / "pgbouncer") if pooled else (None, PG["port"])
    code_port = _free_port()
    workspace = folder / "workspace.yaml"
    workspace.write_text((ROOT / "infra" / "dagster" / "workspace.yaml").read_text().replace("4266", str(code_port)))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "CASM_"))}
    env |= {"DAGSTER_HOME": str(home), "CASM_STATE_DIR": str(state), "DAGSTER_PG_HOST": PG["host"],
            "DAGSTER_PG_PORT": str(port), "DAGSTER_PG_USER": PG["user"], "DAGSTER_PG_PASSWORD": "",
            "DAGSTER_PG_DB": db}  # fmt: skip
    if workers:
        env |= {"CASM_CELERY_BROKER": BROKER, "CASM_CELERY_BACKEND": BACKEND, "CASM_CELERY_QUEUE": f"bench-{db}"}
    processes = []
    saved = dict(os.environ)
    try:
        code = [sys.executable, "-m", "dagster", "code-server", "start", "-m", "casm_dagster.definitions",
                "--location-name", "casm", "-h", "127.0.0.1", "-p", str(code_port)]  # fmt: skip
        processes.append(subprocess.Popen(code, cwd=folder, env=env, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, start_new_session=True))  # fmt: skip
        _wait_port(code_port, timeout=120)
        os.environ.clear()
        os.environ.update(env)
        repos = _repos(folder / "repos", n)
        processes += _celery_workers(folder, env, workers)
        submit_s = _submit_all(repos, template_id, workspace, state, own_paths=not workers)
        daemon = [sys.executable, "-m", "dagster._daemon", "run", "-w", str(workspace)]
        processes.append(subprocess.Popen(daemon, cwd=folder, env=env, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, start_new_session=True))  # fmt: skip
        import dagster as dg

        with dg.DagsterInstance.get() as instance:
            deadline = time.monotonic() + 60 * 30
            while time.monotonic() < deadline:
                # A retried run's retry carries its tags: done when every run has ended and
                # none is about to be retried.
                records = instance.get_run_records(dg.RunsFilter(tags={"casm/trigger": "heartbeat:bench"}))
                ended = all(r.dagster_run.is_finished for r in records)
                pending = any(r.dagster_run.tags.get("dagster/will_retry") == "true"
                              and "dagster/auto_retry_run_id" not in r.dagster_run.tags for r in records)  # fmt: skip
                if len(records) >= n and ended and not pending:
                    break
                time.sleep(2)
            else:
                raise SystemExit(f"{name}: the queue did not drain in 30 minutes")
            split = _split(instance, [r for r in records if "dagster/auto_retry_run_id" not in r.dagster_run.tags])
    finally:
        os.environ.clear()
        os.environ.update(saved)
        for proc in reversed(processes):
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
        if bouncer is not None:
            bouncer.terminate()
            bouncer.wait(timeout=30)
        _psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        if workers:
            _delete_queue(BROKER, env["CASM_CELERY_QUEUE"])
    retried = [r for r in records if "dagster/auto_retry_run_id" in r.dagster_run.tags]
    records = [r for r in records if r not in retried]  # each audit's last attempt
    failed = [r.dagster_run.run_id for r in records if r.dagster_run.status != dg.DagsterRunStatus.SUCCESS]
    if failed or len(records) != n:
        raise SystemExit(f"{name}: {len(failed)} of {len(records)} audits did not succeed, e.g. {failed[:1]}")
    queued = [r.start_time - r.create_timestamp.timestamp() for r in records]
    ran = [r.end_time - r.start_time for r in records]
    first, last = min(r.create_timestamp.timestamp() for r in records), max(r.end_time for r in records)
    return {
        "setting": name,
        "runs": n,
        "concurrent_runs": limit,
        "submit_s": round(submit_s, 2),
        "retried": len(retried),
        "audits_per_min": round(n / (last - first) * 60, 1),
        "enqueue_to_start_p50_s": round(statistics.median(queued), 1),
        "enqueue_to_start_p95_s": round(_pct(queued, 0.95), 1),
        "start_to_success_p50_s": round(statistics.median(ran), 1),
        "start_to_success_p95_s": round(_pct(ran, 0.95), 1),
        **split,
    }


def _reachable(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=24)
    parser.add_argument("--template", default="noop")
    parser.add_argument("--workers", default="1,2,3", help="Celery worker counts to measure ('' for none)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    pooled = bool(shutil.which("pgbouncer"))
    settings: list[tuple[str, bool, int]] = [("postgres-direct", False, 0)]
    if pooled:
        settings.append(("pgbouncer-session", True, 0))
    counts = [int(w) for w in args.workers.split(",") if w.strip()]
    if counts and not (_reachable(5672) and _reachable(6379)):
        raise SystemExit("the Celery settings need RabbitMQ on 127.0.0.1:5672 and Redis on 6379 (or --workers '')")
    settings += [(f"celery-{w}-worker{'s' if w > 1 else ''}", pooled, w) for w in counts]
    with tempfile.TemporaryDirectory(prefix="casm-throughput-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # PgBouncer runs as postgres and reads its config here
        results = [measure(name, args.repos, args.template, work, p, w) for name, p, w in settings]
    base = results[0]["audits_per_min"]
    for r in results:
        r["ratio_to_baseline"] = round(r["audits_per_min"] / base, 2)
    report = {"template": args.template, "baseline": settings[0][0], "results": results}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.template} audits through dagster-daemon (baseline: {report['baseline']})")
    for r in results:
        print(
            f"  {r['setting']:<18} {r['runs']} runs, {r['concurrent_runs']} at once: {r['audits_per_min']:5.1f} "
            f"audits/min (×{r['ratio_to_baseline']}), "
            f"enqueue→start P50 {r['enqueue_to_start_p50_s']} s / P95 {r['enqueue_to_start_p95_s']} s, "
            f"start→success P50 {r['start_to_success_p50_s']} s / P95 {r['start_to_success_p95_s']} s; "
            f"per run P50: launch {r['launch_p50_s']} s, stages {r['stages_p50_s']} s, rest {r['rest_p50_s']} s; "
            f"submit {r['submit_s']} s"
        )


if __name__ == "__main__":
    main()
