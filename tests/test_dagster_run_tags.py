"""A run launched through Dagster itself (the UI, a schedule, the API: no `casm run`) gets
the tags CASM looks runs up by, and every run's `casm/status` tag says how it ended, since
Dagster shows SUCCESS for held, blocked and budget-stopped runs alike."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from helpers import make_repo, quiet_audit_template

from casm_dagster.assets.config import AuditConfig
from casm_dagster.cli.stores import register_local_repo
from casm_dagster.definitions import defs
from casm_dagster.jobs.run_config import audit_run_config, noop_run_config
from casm_dagster.resources import CasmResource


@pytest.fixture
def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.DagsterInstance]:
    monkeypatch.chdir(tmp_path)
    with dg.instance_for_test() as inst:
        yield inst


def _launch(instance: dg.DagsterInstance, tmp_path: Path, run_id: str, template: str = "", **options) -> dg.DagsterRun:
    repo = make_repo(tmp_path / f"repo-{run_id}", {"a.py": "x = 1\n"})
    record = register_local_repo(instance, repo)
    config = AuditConfig(
        template=template or str(quiet_audit_template(tmp_path)),
        run_id=run_id,
        repo=str(repo),
        artifacts_dir=str(tmp_path / "out"),
        **options,
    )
    casm = CasmResource(state_dir=str(tmp_path / "state"), progress=False)
    job, run_config = ("noop_job", noop_run_config) if template == "noop" else ("audit_job", audit_run_config)
    result = defs.resolve_job_def(job).execute_in_process(
        run_config=run_config(config, casm), instance=instance, partition_key=record.partition_key
    )  # no tags: as the UI launches it
    assert result.success
    return instance.get_run_by_id(result.run_id)  # type: ignore[return-value]


def test_a_run_launched_without_casm_tags_gets_them(instance: dg.DagsterInstance, tmp_path: Path) -> None:
    run = _launch(instance, tmp_path, "01UILAUNCHEDRUN0000000000A")
    assert run.tags["casm/run_id"] == "01UILAUNCHEDRUN0000000000A"
    assert run.tags["casm/template"] == "quiet-audit" and run.tags["casm/repo"].endswith(
        "repo-01UILAUNCHEDRUN0000000000A"
    )
    assert run.tags["casm/status"] == "succeeded"
    found = instance.get_runs(dg.RunsFilter(tags={"casm/run_id": "01UILAUNCHEDRUN0000000000A"}))
    assert [r.run_id for r in found] == [run.run_id]  # what `casm explain`/`approve` look it up by


def test_a_noop_run_launched_without_casm_tags_gets_them(instance: dg.DagsterInstance, tmp_path: Path) -> None:
    run = _launch(instance, tmp_path, "01UILAUNCHEDNOOP000000000A", template="noop")
    assert run.job_name == "noop_job" and run.tags["casm/run_id"] == "01UILAUNCHEDNOOP000000000A"
    assert run.tags["casm/template"] == "noop" and run.tags["casm/status"] == "succeeded"


def test_a_template_launched_in_another_workflows_job_fails_naming_its_job(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    record = register_local_repo(instance, repo)
    casm = CasmResource(state_dir=str(tmp_path / "state"), progress=False)
    result = defs.resolve_job_def("audit_job").execute_in_process(
        run_config=audit_run_config(AuditConfig(template="noop", repo=str(repo)), casm),
        instance=instance,
        partition_key=record.partition_key,
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "template noop (workflow noop_v1) runs as noop_job, not audit_job" in str(failure.step_failure_data.error)
    assert not instance.get_latest_materialization_event(dg.AssetKey("repo_snapshot"))
