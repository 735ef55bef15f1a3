"""The Dagster code location: one Definitions object, stage assets with lineage, partitions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg

from casm_dagster.definitions import defs

ROOT = Path(__file__).resolve().parents[1]
STAGES = [
    "repo_snapshot",
    "cost_forecast",
    "review_findings",
    "patch_plan",
    "policy_decision",
    "applied_patches",
    "validation_result",
    "audit_report",
    "run_cost",
]


def test_definitions_validate_with_the_dagster_cli() -> None:
    proc = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
                          cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_stage_assets_form_a_lineage_over_repo_partitions() -> None:
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert set(STAGES) <= keys
    for upstream, downstream in zip(STAGES, STAGES[1:], strict=False):
        parents = {k.to_user_string() for k in graph.get(dg.AssetKey(downstream)).parent_keys}
        assert upstream in parents, downstream
    for name in STAGES:
        node = graph.get(dg.AssetKey(name))
        assert isinstance(node.partitions_def, dg.DynamicPartitionsDefinition)
        assert node.partitions_def.name == "repos"
        assert node.description, f"{name} needs a docstring (the UI shows it)"


def test_audit_job_selects_every_stage() -> None:
    job = defs.resolve_job_def("audit_job")
    assert {n.name for n in job.graph.nodes} == set(STAGES)


def test_hitl_sensor_drives_the_continuation_job() -> None:
    sensor = defs.resolve_sensor_def("hitl_approval_sensor")
    assert sensor.job_name == "hitl_continuation_job"
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert defs.resolve_job_def("hitl_continuation_job").executor_def is dg.in_process_executor


def test_bundled_instance_config_parses() -> None:
    from dagster._core.instance.config import dagster_instance_config

    config, _ = dagster_instance_config(str(ROOT))
    assert config["concurrency"]["runs"]["tag_concurrency_limits"][0]["key"] == "casm/repo"


def test_scarce_stages_run_in_pools_that_both_instance_configs_limit(tmp_path: Path) -> None:
    from dagster._core.instance.config import dagster_instance_config

    pools = {
        key: defs.resolve_assets_def(key).op.pool for key in ("review_findings", "patch_plan", "validation_result")
    }
    assert pools == {"review_findings": "casm_models", "patch_plan": "casm_models", "validation_result": "casm_sandbox"}
    job = defs.resolve_job_def("hitl_continuation_job")
    assert [node.definition.pool for node in job.graph.nodes] == ["casm_sandbox"]
    for source in (ROOT / "dagster.yaml", ROOT / "infra/dagster/dagster.postgres.yaml"):
        home = tmp_path / source.stem
        home.mkdir()
        (home / "dagster.yaml").write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
        config, _ = dagster_instance_config(str(home))
        assert config["concurrency"]["pools"]["default_limit"] >= 1, source
    # The SQLite default, as a running instance applies it.
    with dg.DagsterInstance.from_config(str(tmp_path / "dagster")) as instance:
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 2


def test_definitions_load_without_pandas_or_matplotlib() -> None:
    """Every audit run (and the daemon's code server) loads the definitions; the economics
    assets' pandas and matplotlib (~1.2 s of imports) must wait until an economics asset runs."""
    probe = "import sys, casm_dagster.definitions; print(sorted({'pandas', 'matplotlib'} & set(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]", proc.stdout
