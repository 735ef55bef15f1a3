"""How fast the daemon's scheduler turns one heartbeat tick into queued runs: one at a time
(``schedules: num_submit_workers`` unset, Dagster's default) against the shipped setting
(infra/dagster/dagster.postgres.yaml), in one run.

Each setting gets a fresh PostgreSQL database with N registered repos (the per-tick cap by
default: the busiest tick there is) and one code server, as in production. Dagster's own
scheduler loop (``launch_scheduled_runs``, what ``dagster-daemon`` runs) evaluates
``heartbeat_hourly`` at the window's last tick, when every repo is due, and creates and
queues one run per repo; nothing is launched (creation is what is measured). Reported per
setting: seconds for the tick, runs created per second, and the ratio to the first setting
(the baseline, measured in the same run). The same again through PgBouncer (when the
machine has it) and through a proxy that delays each packet (``--db-latency-ms``, default
1 ms each way: a database on another host; benchmarks/latency_proxy.py).

    python benchmarks/tick_submission.py [--repos 150] [--submit-workers 0,4] [--db-latency-ms 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heartbeat_throughput import PG, ROOT, _free_port, _pgbouncer, _psql, _wait_port  # noqa: E402
from heartbeat_tick import _register  # noqa: E402


def shipped_submit_workers() -> int:
    settings = yaml.safe_load((ROOT / "infra" / "dagster" / "dagster.postgres.yaml").read_text())
    return int(settings["schedules"]["num_submit_workers"])


def _last_tick_of_the_hour(now: datetime) -> datetime:
    """hh:55 of this hour: every repo's slot in the window has come by then."""
    return now.replace(minute=55, second=0, microsecond=0)


def _tick(workspace: Path, submit_workers: int) -> float:
    """One scheduler iteration that starts the schedule, one that fires its hh:55 tick, as the
    daemon runs them with the shipped `schedules: use_threads` (a tick in a worker thread,
    its runs submitted from that thread or from the submit pool); returns the seconds the
    tick took (evaluation, run creation, queueing)."""
    import dagster as dg
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget
    from dagster._scheduler.scheduler import launch_scheduled_runs

    logger = logging.getLogger("tick_submission")
    tick_at = _last_tick_of_the_hour(datetime.now(UTC))
    with (
        dg.DagsterInstance.get() as instance,
        WorkspaceProcessContext(instance, WorkspaceFileTarget(paths=[str(workspace)])) as context,
        ThreadPoolExecutor(max_workers=4) as ticks,
        ThreadPoolExecutor(max_workers=submit_workers) if submit_workers else nullcontext() as pool,
    ):
        timings = {}
        for end in (tick_at - timedelta(seconds=30), tick_at + timedelta(seconds=1)):
            futures: dict = {}
            started = time.perf_counter()
            list(launch_scheduled_runs(context, logger, end_datetime_utc=end, iteration_times={},
                                       threadpool_executor=ticks, submit_threadpool_executor=pool,
                                       scheduler_run_futures=futures))  # fmt: skip
            for future in futures.values():
                future.result()
            timings[end] = time.perf_counter() - started
        return timings[end]  # the second iteration's: the tick


def measure(name: str, n: int, submit_workers: int, workspace: Path, work: Path, port: int) -> dict:
    import dagster as dg

    db = f"casm_tick_{uuid.uuid4().hex[:8]}"
    _psql(f'CREATE DATABASE "{db}"')
    home = work / name / "dagster_home"
    home.mkdir(parents=True)
    # The shipped config with this setting's database written in: the code server resolves
    # the instance the scheduler hands it with its own environment, shared by every setting.
    settings = yaml.safe_load((ROOT / "infra" / "dagster" / "dagster.postgres.yaml").read_text())
    settings["storage"]["postgres"]["postgres_db"].update(
        hostname=PG["host"], port=port, username=PG["user"], password="", db_name=db
    )
    (home / "dagster.yaml").write_text(yaml.safe_dump(settings))
    saved = dict(os.environ)
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with dg.DagsterInstance.get() as instance:
            _register(instance, n)
        seconds = _tick(workspace, submit_workers)
        with dg.DagsterInstance.get() as instance:
            runs = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED]))
            keys = {r.tags.get("dagster/run_key") for r in runs}
    finally:
        os.environ.clear()
        os.environ.update(saved)
        _psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    if len(runs) != n:
        raise SystemExit(f"{name}: the tick queued {len(runs)} of {n} runs (the scheduler's log says why)")
    return {"setting": name, "repos": n, "submit_workers": submit_workers, "runs_queued": len(runs),
            "distinct_run_keys": len(keys), "tick_s": round(seconds, 2),
            "runs_per_s": round(len(runs) / seconds, 1)}  # fmt: skip


def run(n: int, workers: list[int], pooled: bool = True, latency_ms: float = 0) -> dict:
    from casm_dagster.continuous.rules import MAX_RUNS_PER_TICK

    if n > MAX_RUNS_PER_TICK:
        raise SystemExit(f"--repos {n}: a tick asks for at most {MAX_RUNS_PER_TICK} runs")
    results = []
    with tempfile.TemporaryDirectory(prefix="casm-tick-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # PgBouncer runs as postgres and reads its config here
        code_port = _free_port()
        workspace = work / "workspace.yaml"
        shipped = (ROOT / "infra" / "dagster" / "workspace.yaml").read_text()
        workspace.write_text(shipped.replace("4266", str(code_port)))
        # The code server evaluates the schedule against the instance the daemon names in
        # each request: one server serves every setting's database.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "CASM_"))}
        env |= {"CASM_STATE_DIR": str(work / "state")}
        code = [sys.executable, "-m", "dagster", "code-server", "start", "-m", "casm_dagster.definitions",
                "--location-name", "casm", "-h", "127.0.0.1", "-p", str(code_port)]  # fmt: skip
        server = subprocess.Popen(code, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)  # fmt: skip
        bouncer, helpers = None, [server]
        try:
            _wait_port(code_port, timeout=120)
            routes = [("postgres-direct", PG["port"])]
            if pooled and shutil.which("pgbouncer"):
                bouncer, port = _pgbouncer(work / "pgbouncer")
                routes.append(("pgbouncer-session", port))
            if latency_ms:
                port = _free_port()
                proxy = [sys.executable, str(ROOT / "benchmarks" / "latency_proxy.py"), str(port), PG["host"],
                         str(PG["port"]), str(latency_ms)]  # fmt: skip
                helpers.append(subprocess.Popen(proxy, start_new_session=True))
                _wait_port(port)
                routes.append((f"postgres +{latency_ms:g} ms each way", port))
            for route, port in routes:
                for w in workers:
                    label = f"{route}, {'one at a time' if not w else f'{w} submit workers'}"
                    results.append(measure(label, n, w, workspace, work / uuid.uuid4().hex[:6], port))
        finally:
            for process in helpers:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:  # a code server with streams still open
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
            if bouncer is not None:
                bouncer.terminate()
                bouncer.wait(timeout=30)
    base = results[0]["runs_per_s"]
    for r in results:
        r["ratio_to_baseline"] = round(r["runs_per_s"] / base, 2)
    return {"baseline": results[0]["setting"], "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=150)
    parser.add_argument("--submit-workers", default=f"0,{shipped_submit_workers()}",
                        help="settings to compare; 0 is one at a time (default: 0 and the shipped one)")  # fmt: skip
    parser.add_argument("--db-latency-ms", type=float, default=1.0,
                        help="also measure through a proxy adding this delay each way (0: skip)")  # fmt: skip
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    workers = [int(w) for w in args.submit_workers.split(",")]
    report = run(args.repos, workers, latency_ms=args.db_latency_ms)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"heartbeat tick → queued runs (baseline: {report['baseline']})")
    for r in report["results"]:
        print(f"  {r['setting']:<44} {r['runs_queued']} runs in {r['tick_s']:6.2f} s: "
              f"{r['runs_per_s']:5.1f} runs/s (×{r['ratio_to_baseline']})")  # fmt: skip


if __name__ == "__main__":
    main()
