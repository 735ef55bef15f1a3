"""Helpers the tests share (importable: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dagster as dg

ROOT = Path(__file__).resolve().parents[1]  # the project checkout
CASM = [str(Path(sys.executable).parent / "casm")]  # the installed console script
# A repo that declares ruff's linter and formatter: what CASM may then fix and format.
RUFF_TOML = '[lint]\nselect = ["E", "F", "W", "I", "UP", "B"]\n\n[format]\nquote-style = "double"\n'
SMOKE_TEST = "def test_smoke():\n    assert True\n"  # a check that can vouch for a patch
LOGIN_PY = "import os\n\n\ndef login(user):\n    return user\n"
APP_PY = "import sys\n\n\ndef main():\n    return 1\n"
# A repo the bundled policy holds for approval (an auth path changes); ruff.toml lets CASM
# fix and format, the smoke test lets validation vouch.
GATED_FILES = {"auth/login.py": LOGIN_PY, "app.py": APP_PY, "ruff.toml": RUFF_TOML, "tests/test_smoke.py": SMOKE_TEST}
GIT_ID = ["-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"]


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", *GIT_ID, "-C", str(repo), *args], capture_output=True, text=True, check=True)
    return proc.stdout.strip()


def make_repo(where: Path, files: dict[str, str | bytes]) -> Path:
    """A git repo with one commit holding ``files``."""
    where.mkdir(parents=True, exist_ok=True)
    git(where, "init", "--quiet", "--initial-branch=main")
    for name, content in files.items():
        path = where / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    git(where, "add", "--all")
    git(where, "commit", "--quiet", "-m", "initial")
    return where


def commit_slow_test(repo: Path, seconds: int = 10) -> None:
    """A test that sleeps, committed: the analyze stage's baseline checks then take a while
    (long enough to kill a run worker mid-stage)."""
    (repo / "tests" / "test_slow.py").write_text(f"import time\n\n\ndef test_slow():\n    time.sleep({seconds})\n")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", "slow")


def run_casm(args: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CASM, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def isolated_env(home: Path) -> dict[str, str]:
    """The caller's environment with its own DAGSTER_HOME (SQLite, the bundled dagster.yaml)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    # No real provider key ever reaches a test run: model tests point at the local fake server.
    providers = ("OPENAI_", "ANTHROPIC_", "MOONSHOT_", "HF_", "GITHUB_")  # and no real GitHub token
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "CASM_", *providers))}
    env["DAGSTER_HOME"] = str(home)
    env["CASM_POLICY_KEY_FILE"] = str(home / "policy.key")  # never the user's own key
    return env


def postgres_home(home: Path, db: dict[str, str]) -> dict[str, str]:
    """A DAGSTER_HOME on PostgreSQL (the production dagster.yaml) for the ``pg_database``
    fixture's database; returns the environment variables that select it."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text((ROOT / "infra" / "dagster" / "dagster.postgres.yaml").read_text())
    variables = {"HOST": "host", "PORT": "port", "USER": "user", "PASSWORD": "password", "DB": "db"}
    return {"DAGSTER_HOME": str(home), **{f"DAGSTER_PG_{k}": db[v] for k, v in variables.items()}}


def host_address() -> str:
    """This machine's own IPv4 address (not loopback): what a sandbox with a user-mode
    network reaches where the host's loopback is cut off."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the route
            address = probe.getsockname()[0]
        except OSError:
            address = ""
    if not address or address.startswith("127."):
        import pytest

        pytest.fail("this machine has no non-loopback IPv4 address (the setup-network tests need one)")
    return address


def quiet_audit_template(where: Path) -> Path:
    """A template of the audit workflow (``audit_job``, the nine stage assets) with every
    agent off and no command allowed: a fast real audit for tests of the Dagster wiring."""
    text = (ROOT / "templates" / "noop" / "manifest.yaml").read_text(encoding="utf-8")
    text = text.replace("id: noop", "id: quiet-audit").replace("workflow: noop_v1", "workflow: repo_auditor_v1")
    text = text.replace("max_usd_per_run: 0", "max_usd_per_run: 1")  # its forecast counts the run's infra time
    where.mkdir(parents=True, exist_ok=True)
    path = where / "quiet-audit.yaml"
    path.write_text(text, encoding="utf-8")
    return path


SARIF_SCHEMA = ROOT / "casm_dagster" / "schemas" / "sarif-2.1.0-rtm.5.json"


def validate_sarif(log: dict) -> None:
    import jsonschema

    schema = json.loads(SARIF_SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft4Validator.check_schema(schema)
    jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker()).validate(log)
    (run,) = log["runs"]
    rules = run["tool"]["driver"]["rules"]
    for result in run["results"]:  # what code scanning needs beyond the schema
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["locations"] and result["partialFingerprints"]
        uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        assert not uri.startswith("/") and ".." not in uri.split("/")


@contextlib.contextmanager
def instance_of(env: dict[str, str]) -> Iterator[dg.DagsterInstance]:
    """The Dagster instance a subprocess's environment names (its DAGSTER_HOME, DAGSTER_PG_*)."""
    import dagster as dg

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        with dg.DagsterInstance.get() as instance:
            yield instance
    finally:
        os.environ.clear()
        os.environ.update(saved)


def dagster_run(env: dict[str, str], dagster_run_id: str) -> dg.DagsterRun:
    with instance_of(env) as instance:
        run = instance.get_run_by_id(dagster_run_id)
    assert run is not None, f"no Dagster run {dagster_run_id}"
    return run


def owner_pid(state_file: Path) -> int | None:
    """The pid of the process running the run's current stage (state.json's ``owner``:
    host:pid-start), i.e. the run worker."""
    try:
        owner = json.loads(state_file.read_text())["owner"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return int(owner.rsplit(":", 1)[1].split("-")[0]) if owner else None


def assert_delivered_once(repo: Path, summary: dict) -> tuple[dict, list[str]]:
    """A retried run's outcome: exactly one delivered ``casm/*`` branch and one record per
    model call in its journal; returns the run's state and its call ids."""
    branches = subprocess.run(
        ["git", "-C", str(repo), "branch", "--list", "casm/*"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert branches == [summary["branch"]]
    run_dir = Path(summary["run_dir"])
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    calls = [e["data"]["call_id"] for e in events if e["type"] == "model_call"]
    assert calls and len(calls) == len(set(calls))
    return json.loads((run_dir / "state.json").read_text()), calls
