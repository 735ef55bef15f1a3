"""The heartbeat schedules and the PR sensor as Dagster sees them: the run requests they
emit are valid for their jobs, target registered partitions, and carry the concurrency tag."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
from helpers import ROOT

from casm_dagster.assets.partitions import repos_partitions
from casm_dagster.continuous.rules import PrReview
from casm_dagster.definitions import defs
from casm_dagster.resources import CasmResource, GitHubResource
from casm_dagster.resources.instance import instance_db_url
from casm_dagster.sensors.sentinel import heartbeat_daily, heartbeat_hourly, review_request
from casm_dagster.stores.db import engine_for
from casm_dagster.stores.repos import RepoRegistry
from casm_dagster.stores.sentinels import SentinelStore


def _register(instance: dg.DagsterInstance, repo: str, schedule: str, template: str = "repo-auditor") -> str:
    engine = engine_for(instance_db_url(instance))
    record = RepoRegistry(engine).add("github", repo)
    SentinelStore(engine).register(record.partition_key, repo, schedule, template, "pr-sentinel")
    instance.add_dynamic_partitions(repos_partitions.name, [record.partition_key])
    return record.partition_key


def _tick(schedule, instance: dg.DagsterInstance, tmp_path: Path, at: datetime) -> list[dg.RunRequest]:
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=at,
        resources={"casm": CasmResource(state_dir=str(tmp_path)), "github": GitHubResource()},
    ) as context:
        return list(schedule(context))


def test_heartbeat_requests_are_valid_audit_runs_once_per_window(tmp_path: Path) -> None:
    with dg.instance_for_test() as instance:
        hourly = _register(instance, "acme/a", "hourly")
        _register(instance, "acme/b", "daily")
        _register(instance, "acme/c", "hourly", template="")  # watches PRs only
        at = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
        (request,) = _tick(heartbeat_hourly, instance, tmp_path, at)
        assert request.partition_key == hourly and request.run_key == f"hb:{hourly}:2026-11-23T09"
        assert request.tags["casm/repo"] == "acme/a"  # the tag the instance's concurrency limit keys on
        assert dg.validate_run_config(defs.resolve_job_def("audit_job"), request.run_config)
        # Evaluated again in the same window: the same run key (Dagster launches it once).
        assert [r.run_key for r in _tick(heartbeat_hourly, instance, tmp_path, at)] == [request.run_key]
        (daily,) = _tick(heartbeat_daily, instance, tmp_path, at)
        assert daily.run_key.endswith(":2026-11-23") and daily.tags["casm/repo"] == "acme/b"
        assert SentinelStore(engine_for(instance_db_url(instance))).remove(hourly)
        assert _tick(heartbeat_hourly, instance, tmp_path, at) == []


def test_pr_review_requests_are_valid_pr_sentinel_runs() -> None:
    request = review_request(PrReview("acme__a", "acme/a", "pr-sentinel", 7, "c" * 40), "poll")
    assert dg.validate_run_config(defs.resolve_job_def("pr_sentinel_job"), request.run_config)
    assert request.tags["casm/pr"] == "7" and request.tags["casm/repo"] == "acme/a"


def test_the_instance_runs_one_audit_per_repo_at_a_time() -> None:
    import yaml

    root = ROOT
    for config in (root / "dagster.yaml", root / "infra" / "dagster" / "dagster.postgres.yaml"):
        limits = yaml.safe_load(config.read_text())["concurrency"]["runs"]["tag_concurrency_limits"]
        assert {"key": "casm/repo", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in limits
