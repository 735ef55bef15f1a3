"""The tick-submission benchmark end to end on PostgreSQL: Dagster's scheduler loop fires one
heartbeat tick and queues one run per due repo, one at a time and through a submit pool
(its timings are reported, not asserted)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("tick_submission", ROOT / "benchmarks" / "tick_submission.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # it imports its sibling benchmarks from their folder
    return module


def test_a_tick_queues_one_run_per_due_repo_with_and_without_a_submit_pool(pg_database, monkeypatch) -> None:
    module = _module()
    assert module.shipped_submit_workers() == 4
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    report = module.run(6, [0, 3], pooled=False)
    assert [r["submit_workers"] for r in report["results"]] == [0, 3]
    for r in report["results"]:
        assert r["runs_queued"] == r["distinct_run_keys"] == 6
        assert r["runs_per_s"] > 0 and r["ratio_to_baseline"] > 0
