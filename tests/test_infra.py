"""The deployment files in infra/ as far as they can be checked here: every systemd unit's
command line is accepted by the command it runs, and the env file sets what every process
needs. (The layout itself runs in tests/cli/test_submit.py: code server, daemon, workspace.)"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNITS = sorted((ROOT / "infra" / "systemd").glob("casm-*.service"))


def _exec_start(unit: Path) -> list[str]:
    line = next(line for line in unit.read_text().splitlines() if line.startswith("ExecStart="))
    return shlex.split(line.removeprefix("ExecStart="))


@pytest.mark.parametrize("unit", UNITS, ids=[u.stem for u in UNITS])
def test_each_unit_command_line_is_accepted(unit: Path) -> None:
    argv = _exec_start(unit)
    assert argv[0].startswith("/srv/casm/venv/bin/")
    local = Path(sys.executable).parent / Path(argv[0]).name
    assert local.exists(), f"{unit.name} runs {argv[0]}, which the package does not install"
    proc = subprocess.run([str(local), *argv[1:], "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{unit.name}: {proc.stderr[-500:]}"
    text = unit.read_text()
    assert "EnvironmentFile=/etc/casm/casm.env" in text and "User=casm" in text


def test_the_env_file_sets_what_every_process_needs() -> None:
    names = {
        line.split("=", 1)[0]
        for line in (ROOT / "infra" / "systemd" / "casm.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert {"DAGSTER_HOME", "CASM_STATE_DIR", "CASM_WORKSPACE"} <= names
    assert {f"DAGSTER_PG_{k}" for k in ("HOST", "PORT", "USER", "PASSWORD", "DB")} <= names
    worker = ("CASM_CELERY_BROKER", "CASM_CELERY_BACKEND", "CASM_CELERY_QUEUE", "CASM_HOST_QUEUE")
    commented = (ROOT / "infra" / "systemd" / "casm.env.example").read_text()
    assert all(f"# {name}=" in commented for name in worker)  # documented, set on worker hosts


def test_the_celery_instance_config_is_what_the_daemon_reads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pg_database
) -> None:
    """The launcher is dagster-celery's, resumes are off (its resume task is broken) and
    retries are on; the per-repo limit survives beside the launcher."""
    import dagster as dg
    from dagster_celery.launcher import CeleryRunLauncher

    (tmp_path / "dagster.yaml").write_text((ROOT / "infra" / "dagster" / "dagster.celery.yaml").read_text())
    env = {"DAGSTER_HOME": str(tmp_path), "CASM_CELERY_BROKER": "pyamqp://guest@127.0.0.1:5672//",
           "CASM_CELERY_BACKEND": "redis://127.0.0.1:6379/15", "CASM_CELERY_QUEUE": "casm"}  # fmt: skip
    env |= {f"DAGSTER_PG_{k.upper()}": v for k, v in pg_database.items()}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    instance = dg.DagsterInstance.get()
    settings = instance.get_settings
    assert isinstance(instance.run_launcher, CeleryRunLauncher) and instance.run_launcher.default_queue == "casm"
    assert settings("run_monitoring")["max_resume_run_attempts"] == 0
    assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
    limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
    assert limits == [{"key": "casm/repo", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}]
    assert settings("schedules")["num_submit_workers"] == settings("sensors")["num_submit_workers"] == 4


def _snake(value):
    """The chart's camelCase values as the dagster.yaml keys it renders them to."""
    if isinstance(value, dict):
        return {re.sub(r"(?=[A-Z])", "_", k).lower(): _snake(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_snake(v) for v in value]
    return value


def test_the_helm_values_give_the_instance_settings_of_the_shipped_dagster_yaml(tmp_path: Path) -> None:
    """infra/helm/values.yaml as the official chart renders its instance sections (queued
    coordinator, `concurrency`, run monitoring and retries, the daemons' threads; checked against the chart's
    templates and values schema, which are not available offline), loaded by Dagster: the
    same per-repo limit, pools, retries and monitoring as the systemd deployment."""
    import yaml
    from dagster._core.instance.config import dagster_instance_config

    values = yaml.safe_load((ROOT / "infra" / "helm" / "values.yaml").read_text())
    daemon = values["dagsterDaemon"]
    concurrency = _snake({k: v for k, v in values["concurrency"].items() if k != "enabled"})
    # The chart copies the limits list verbatim (its keys are Dagster's own camelCase).
    concurrency["runs"]["tag_concurrency_limits"] = values["concurrency"]["runs"]["tagConcurrencyLimits"]
    rendered = {
        "run_coordinator": {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator"},
        "run_monitoring": _snake(daemon["runMonitoring"]),
        "run_retries": _snake(daemon["runRetries"]),
        "concurrency": concurrency,
        "schedules": _snake(daemon["schedules"]),
        "sensors": _snake(daemon["sensors"]),
    }
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(rendered))
    config, _ = dagster_instance_config(str(tmp_path))
    shipped = yaml.safe_load((ROOT / "infra" / "dagster" / "dagster.postgres.yaml").read_text())
    assert config["concurrency"] == shipped["concurrency"]
    assert config["run_retries"] == shipped["run_retries"]
    assert config["schedules"] == shipped["schedules"] and config["sensors"] == shipped["sensors"]
    assert {k: config["run_monitoring"][k] for k in shipped["run_monitoring"]} == shipped["run_monitoring"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    (code,) = values["dagster-user-deployments"]["deployments"]
    assert code["name"] == "casm" and code["dagsterApiGrpcArgs"][:2] == ["-m", "casm_dagster.definitions"]
    env = {e["name"]: e["value"] for e in code["env"]}
    assert env.keys() >= {"CASM_STATE_DIR", "CASM_POLICY_KEY_FILE"}
