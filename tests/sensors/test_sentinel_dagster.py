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
        at = datetime(2026, 11, 23, 9, 55, tzinfo=UTC)  # the window's last tick: every repo's slot has come
        (request,) = _tick(heartbeat_hourly, instance, tmp_path, at)
        assert request.partition_key == hourly and request.run_key == f"hb:{hourly}:2026-11-23T09"
        assert request.tags["casm/repo"] == "acme/a"  # the tag the instance's concurrency limit keys on
        assert dg.validate_run_config(defs.resolve_job_def("audit_job"), request.run_config)
        # Evaluated again in the same window: the same run key (Dagster launches it once).
        assert [r.run_key for r in _tick(heartbeat_hourly, instance, tmp_path, at)] == [request.run_key]
        (daily,) = _tick(heartbeat_daily, instance, tmp_path, datetime(2026, 11, 23, 23, 0, tzinfo=UTC))
        assert daily.run_key.endswith(":2026-11-23") and daily.tags["casm/repo"] == "acme/b"
        assert SentinelStore(engine_for(instance_db_url(instance))).remove(hourly)
        assert _tick(heartbeat_hourly, instance, tmp_path, at) == []


@dg.op
def _nothing() -> None:
    pass


@dg.job
def _stand_in() -> None:
    _nothing()


def test_heartbeat_skips_repos_launched_this_window_or_still_auditing(tmp_path: Path) -> None:
    """A repo whose audit is still queued or running is left for a later tick (not stacked
    behind it in the queue); one already launched this window is not asked for again."""
    at = datetime(2026, 11, 23, 9, 55, tzinfo=UTC)
    with dg.instance_for_test() as instance:
        keys = [_register(instance, f"acme/r{i}", "hourly") for i in range(3)]

        def run(key: str, status: dg.DagsterRunStatus, trigger: str) -> None:
            tags = {"casm/partition": key, "casm/trigger": trigger}
            instance.create_run_for_job(_stand_in, status=status, tags=tags)

        run(keys[0], dg.DagsterRunStatus.SUCCESS, "heartbeat:hourly:2026-11-23T09")  # done this window
        run(keys[1], dg.DagsterRunStatus.STARTED, "heartbeat:hourly:2026-11-23T08")  # last hour's, still going
        assert [r.partition_key for r in _tick(heartbeat_hourly, instance, tmp_path, at)] == [keys[2]]
        run(keys[2], dg.DagsterRunStatus.NOT_STARTED, "heartbeat:hourly:2026-11-23T09")
        assert _tick(heartbeat_hourly, instance, tmp_path, at) == []
        # Next hour: r0 is free, r1 and r2 still hold their repos.
        nxt = datetime(2026, 11, 23, 10, 55, tzinfo=UTC)
        assert [r.partition_key for r in _tick(heartbeat_hourly, instance, tmp_path, nxt)] == [keys[0]]


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


def test_dagster_reads_the_per_repo_limit_and_retries_from_the_shipped_configs(tmp_path: Path) -> None:
    """As Dagster loads them, not as YAML: a `run_coordinator:` or `run_queue:` block beside
    `concurrency:` would make Dagster drop the per-repo limit without a word; a misspelt
    daemon setting would fall back to one run submitted at a time."""
    import yaml

    for config in (ROOT / "dagster.yaml", ROOT / "infra" / "dagster" / "dagster.postgres.yaml"):
        settings = yaml.safe_load(config.read_text())
        settings.pop("storage", None)  # needs the server; the rest is what counts here
        home = tmp_path / config.parent.name
        home.mkdir()
        (home / "dagster.yaml").write_text(yaml.safe_dump(settings))
        with dg.DagsterInstance.from_config(str(home)) as instance:
            queue = instance.get_concurrency_config().run_queue_config
            limits = [(t["key"], t.get("value"), t["limit"]) for t in queue.tag_concurrency_limits]
            assert ("casm/repo", {"applyLimitPerUniqueValue": True}, 1) in limits, config
            if "postgres" in config.name:
                assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
                assert not instance.run_retries_retry_on_asset_or_op_failure
                # A tick's runs are submitted by a thread pool, not one at a time.
                for daemon in (instance.get_scheduler_settings(), instance.get_sensor_settings()):
                    assert daemon["use_threads"] and daemon["num_submit_workers"] == 4


def test_a_local_repo_registered_on_a_worker_host_is_audited_on_that_host(
    tmp_path: Path, demo_repo: Path, monkeypatch
) -> None:
    """Only the host that registered a local path has it: the heartbeat's run goes to that
    host's worker queue (the tag dagster-celery's launcher routes by); a GitHub repo's does not."""
    from casm_dagster.cli.sentinel import register

    monkeypatch.setenv("CASM_HOST_QUEUE", "casm-host-a")
    at = datetime(2026, 11, 23, 9, 55, tzinfo=UTC)
    with dg.instance_for_test() as instance:
        local, _ = register(instance, str(demo_repo), "hourly", "repo-auditor", None)
        assert local.host_queue == "casm-host-a"
        github = _register(instance, "acme/remote", "hourly")
        requests = {r.partition_key: r for r in _tick(heartbeat_hourly, instance, tmp_path, at)}
        assert requests[local.partition_key].tags["dagster-celery/queue"] == "casm-host-a"
        assert "dagster-celery/queue" not in requests[github].tags
