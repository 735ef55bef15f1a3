"""Heartbeat tick time for 1, 10 and 1,000 registered repos, in one run.

Each size gets a fresh Dagster instance (SQLite, as the embedded default) with that many
repos registered (partition + sentinel row). We time the real ``heartbeat_hourly``
schedule evaluation — the query, the window, one ``RunRequest`` per due repo — and report
seconds per tick (median of ``--repeat``) and the ratio to the 1-repo tick measured in
the same run (the baseline: a tick's fixed cost). ``per_repo_ms`` is the marginal cost.

    python benchmarks/heartbeat_tick.py [--sizes 1 10 1000] [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from casm_dagster.assets.partitions import repos_partitions
from casm_dagster.resources import CasmResource, GitHubResource
from casm_dagster.resources.instance import instance_db_url
from casm_dagster.sensors.sentinel import heartbeat_hourly
from casm_dagster.stores.db import engine_for, repos_table, sentinels_table
from casm_dagster.stores.repos import partition_key_for

# The window's last tick with nothing launched yet: every repo is due, the busiest a tick gets
# (it asks for at most rules.MAX_RUNS_PER_TICK; the rest follow at the next ticks).
AT = datetime(2026, 11, 23, 14, 55, tzinfo=UTC)


def _register(instance: dg.DagsterInstance, n: int) -> None:
    """n registered repos, written in bulk (registration is not what is measured)."""
    engine = engine_for(instance_db_url(instance))
    now = "2026-11-23T00:00:00.000Z"
    repos = [f"bench-org/repo-{i:04d}" for i in range(n)]
    keys = [partition_key_for("github", r) for r in repos]
    with engine.begin() as conn:
        conn.execute(
            sa.insert(repos_table),
            [
                {"partition_key": k, "kind": "github", "location": r, "added_at": now}
                for k, r in zip(keys, repos, strict=True)
            ],
        )
        conn.execute(
            sa.insert(sentinels_table),
            [
                {"partition_key": k, "repo": r, "schedule": "hourly", "template": "repo-auditor",
                 "pr_template": "pr-sentinel", "added_at": now, "updated_at": now}
                for k, r in zip(keys, repos, strict=True)
            ],
        )  # fmt: skip
    instance.add_dynamic_partitions(repos_partitions.name, keys)


def tick(instance: dg.DagsterInstance, state_dir: str) -> tuple[float, list[dg.RunRequest]]:
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=AT,
        resources={"casm": CasmResource(state_dir=state_dir), "github": GitHubResource()},
    ) as context:  # a context manager: its resources and scopes are closed after the tick
        start = time.perf_counter()
        requests = list(heartbeat_hourly(context))
        return time.perf_counter() - start, requests


def run(sizes: list[int], repeat: int) -> dict:
    results = []
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="casm-bench-") as home, dg.instance_for_test(temp_dir=home) as instance:
            _register(instance, n)
            timings = []
            for _ in range(repeat):
                seconds, requests = tick(instance, str(Path(home) / "state"))
                timings.append(seconds)
            keys = {r.run_key for r in requests}
            results.append(
                {
                    "repos": n,
                    "run_requests": len(requests),
                    "distinct_run_keys": len(keys),
                    "tick_seconds": statistics.median(timings),
                }
            )
    base = results[0]["tick_seconds"]
    for r in results:
        r["ratio_to_baseline"] = round(r["tick_seconds"] / base, 2)
        extra = r["repos"] - results[0]["repos"]
        r["per_repo_ms"] = round((r["tick_seconds"] - base) / extra * 1000, 3) if extra else None
    return {"baseline": f"{results[0]['repos']}-repo tick", "at": AT.isoformat(), "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 1000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = run(args.sizes, args.repeat)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"heartbeat_hourly tick (baseline: {report['baseline']})")
    for r in report["results"]:
        per = f"{r['per_repo_ms']} ms/repo" if r["per_repo_ms"] is not None else "baseline"
        print(
            f"  {r['repos']:>5} repos: {r['run_requests']:>5} run requests, {r['tick_seconds'] * 1000:8.1f} ms "
            f"(×{r['ratio_to_baseline']}, {per})"
        )


if __name__ == "__main__":
    main()
