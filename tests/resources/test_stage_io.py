"""Stage outputs are per run: a run never reads another run's values, a stage whose input
its run did not produce fails naming it, and `casm gc` prunes finished runs' outputs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from helpers import isolated_env, make_repo, quiet_audit_template, run_casm

from casm_dagster.assets.config import AuditConfig
from casm_dagster.cli.stores import register_local_repo
from casm_dagster.definitions import defs
from casm_dagster.jobs.run_config import audit_run_config
from casm_dagster.resources import CasmResource


@pytest.fixture
def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.DagsterInstance]:
    monkeypatch.chdir(tmp_path)
    with dg.instance_for_test() as inst:
        yield inst


def _audit(instance: dg.DagsterInstance, tmp_path: Path, repo: Path, run_id: str) -> dg.ExecuteInProcessResult:
    record = register_local_repo(instance, repo)
    config = AuditConfig(
        template=str(quiet_audit_template(tmp_path)), run_id=run_id, repo=str(repo), artifacts_dir=str(tmp_path / "out")
    )
    casm = CasmResource(state_dir=str(tmp_path / "state"), progress=False)
    return defs.resolve_job_def("audit_job").execute_in_process(
        run_config=audit_run_config(config, casm), instance=instance, partition_key=record.partition_key
    )


def test_each_run_keeps_its_own_outputs(instance: dg.DagsterInstance, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    first = _audit(instance, tmp_path, repo, "01STAGEIOFIRST000000000000")
    second = _audit(instance, tmp_path, repo, "01STAGEIOSECOND00000000000")
    root = Path(instance.storage_directory()) / "casm_runs"
    assert {p.name for p in root.iterdir()} == {first.run_id, second.run_id}
    snapshot = first.output_for_node("repo_snapshot")
    assert snapshot.spec.run_id == "01STAGEIOFIRST000000000000"  # not overwritten by the second run
    assert second.output_for_node("repo_snapshot").spec.run_id == "01STAGEIOSECOND00000000000"


def test_a_stage_without_its_runs_input_fails_naming_it(instance: dg.DagsterInstance, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    full = _audit(instance, tmp_path, repo, "01STAGEIOFULL0000000000000")
    assert full.success
    partition = register_local_repo(instance, repo).partition_key
    # Materializing one downstream stage alone (as from the UI) must not pick up the last run's values.
    only_report = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection={dg.AssetKey("audit_report")})
    result = only_report.execute_in_process(instance=instance, partition_key=partition, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "is missing" in str(failure.step_failure_data.error) and "a stage reads only its own run's outputs" in str(
        failure.step_failure_data.error
    )


def test_gc_prunes_the_outputs_of_finished_runs(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    env = isolated_env(tmp_path / "home") | {"CASM_STATE_DIR": str(tmp_path / "state")}
    template = str(quiet_audit_template(tmp_path))
    assert run_casm(["run", "--template", template, "--repo", str(repo)], tmp_path, env).returncode == 0
    outputs = tmp_path / "home" / "storage" / "casm_runs"
    assert len(list(outputs.iterdir())) == 1
    kept = run_casm(["gc"], tmp_path, env)  # 14 days by default: too recent
    assert kept.returncode == 0 and len(list(outputs.iterdir())) == 1
    pruned = run_casm(["gc", "--older-than-days", "0"], tmp_path, env)
    assert pruned.returncode == 0 and "removed the stage outputs of 1 finished runs" in pruned.stdout
    assert list(outputs.iterdir()) == []
