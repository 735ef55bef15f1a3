"""The heartbeat benchmark end to end: at the busiest tick, one run request per due repo up to
the per-tick cap, for 1, 10 and 1,000 registered repos (its timings are reported, not asserted)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("heartbeat_tick", ROOT / "benchmarks" / "heartbeat_tick.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_run_request_per_due_repo_up_to_the_cap_at_every_size() -> None:
    from casm_dagster.continuous.rules import MAX_RUNS_PER_TICK

    report = _module().run([1, 10, 1000], repeat=1)
    assert [r["repos"] for r in report["results"]] == [1, 10, 1000]
    for r in report["results"]:
        assert r["run_requests"] == min(r["repos"], MAX_RUNS_PER_TICK) == r["distinct_run_keys"]
        assert r["tick_seconds"] > 0 and r["ratio_to_baseline"] > 0
