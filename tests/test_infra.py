"""The deployment files in infra/ as far as they can be checked here: every systemd unit's
command line is accepted by the command it runs, and the env file sets what every process
needs. (The layout itself runs in tests/cli/test_submit.py: code server, daemon, workspace.)"""

from __future__ import annotations

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
