"""kill -9 a real `casm run` at each stage (SQLite and PostgreSQL): the user's repo is never
touched, and after the next start there is no leftover temp dir or scratch clone, no run
left STARTED in Dagster or `running` in CASM, and no branch without a finished run (one made
just before the kill is deleted)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.instance.ref import InstanceRef
from helpers import CASM, RUFF_TOML, SMOKE_TEST, git, make_repo, postgres_home, run_casm

from casm_dagster.contracts.run import RunState
from casm_dagster.run import leftovers

APP = "import os\n\n\ndef total(items):\n    return sum(items)\n"
TEST = "from app import total\n\n\ndef test_total():\n    assert total([1, 2]) == 3\n"
STAGES = ("ingest", "analyze", "plan", "apply", "validate", "report", "telemetry")


def _kill_at(stage: str, args: list[str], cwd: Path, env: dict[str, str]) -> bool:
    """Start `casm run`, SIGKILL it when it announces ``stage``; False if it ended first."""
    proc = subprocess.Popen([*CASM, *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    killed = False
    deadline = time.monotonic() + 240
    for raw in proc.stderr:
        if f"… {stage}" in raw.decode(errors="replace"):
            os.kill(proc.pid, signal.SIGKILL)
            killed = True
            break
        assert time.monotonic() < deadline, f"no {stage} stage in time"
    proc.wait(timeout=60)
    proc.stderr.close()
    return killed


def _states(state_dir: Path) -> list[RunState]:
    return [RunState.model_validate_json(p.read_text()) for p in sorted(state_dir.glob("runs/*/state.json"))]


def _casm_dirs(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith("casm-"))


def _crash_every_stage(tmp_path: Path, env: dict[str, str], dagster_home: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"app.py": APP, "tests/test_app.py": TEST})
    head, user_branch = git(repo, "rev-parse", "HEAD"), git(repo, "branch", "--show-current")
    work, tmp, state_dir = tmp_path / "work", tmp_path / "tmp", tmp_path / "state"
    work.mkdir()
    tmp.mkdir()
    env = env | {"TMPDIR": str(tmp), "CASM_STATE_DIR": str(state_dir)}
    args = ["run", "--template", "repo-auditor", "--repo", str(repo)]

    killed = [stage for stage in STAGES if _kill_at(stage, args, work, env)]
    assert len(killed) >= 5, killed  # the kills landed mid-run
    assert git(repo, "rev-parse", "HEAD") == head and git(repo, "branch", "--show-current") == user_branch
    assert git(repo, "status", "--porcelain") == ""
    assert any(s.status == "running" for s in _states(state_dir))  # what the next start must close

    proc = run_casm(args + ["--json"], work, env)  # the next start
    assert proc.returncode == 0, proc.stderr
    assert "casm: note: marked run" in proc.stderr and "failed: the process running it is gone" in proc.stderr

    states = _states(state_dir)
    assert [s.status for s in states].count("succeeded") == 1
    assert {s.status for s in states} == {"succeeded", "failed"}
    for failed in (s for s in states if s.status == "failed"):
        assert "the process running it is gone" in (failed.error or "")
        assert "running" not in failed.stages.values()
    assert _casm_dirs(tmp) == []  # the killed runs' scratch clones and sandbox homes are gone
    finished = {s.branch for s in states if s.status == "succeeded"}
    branches = set(git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/casm/").split())
    assert branches <= finished  # every branch has a finished run behind it
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home))) as instance:
        runs = instance.get_runs(dg.RunsFilter(tags={"casm/launcher": "in-process"}))
        assert not [r for r in runs if r.status in (dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING)]
        failed = [r for r in runs if r.status == dg.DagsterRunStatus.FAILURE]
        assert len(failed) >= len(killed) - 1  # a kill at ingest can land before Dagster starts the run
    assert json.loads(proc.stdout.strip().splitlines()[-1])["status"] == "succeeded"


def test_kill_at_every_stage_on_sqlite(tmp_path: Path, casm_env: dict[str, str]) -> None:
    _crash_every_stage(tmp_path, casm_env, Path(casm_env["DAGSTER_HOME"]))


def test_kill_at_every_stage_on_postgres(tmp_path: Path, casm_env: dict[str, str], pg_database, monkeypatch) -> None:
    env = casm_env | postgres_home(tmp_path / "pg_home", pg_database)
    for key in (k for k in env if k.startswith("DAGSTER_PG_")):
        monkeypatch.setenv(key, env[key])  # the test reads the instance too
    _crash_every_stage(tmp_path, env, Path(env["DAGSTER_HOME"]))


pytestmark = pytest.mark.timeout(900)


GATED = {
    "ruff.toml": RUFF_TOML,
    "tests/test_smoke.py": SMOKE_TEST,
    "auth/login.py": "import os\n\n\ndef login(user):\n    return user\n",
    "app.py": "import sys\n\n\ndef main():\n    return 1\n",
}


def _audit_once(
    tmp_path: Path, repo: Path, casm_env: dict[str, str]
) -> tuple[Path, dict[str, str], subprocess.CompletedProcess[str]]:
    """One `casm run --json` of repo-auditor with its own work dir, state dir and temp dir."""
    work = tmp_path / "work"
    work.mkdir()
    env = casm_env | {"TMPDIR": str(tmp_path), "CASM_STATE_DIR": str(tmp_path / "state")}
    return work, env, run_casm(["run", "--template", "repo-auditor", "--repo", str(repo), "--json"], work, env)


def test_a_killed_continuation_records_that_it_failed(tmp_path: Path, casm_env: dict[str, str]) -> None:
    """`casm resume` killed after it consumed the approval: the next start fails the run and
    the approval says so (it said "in progress" forever); no branch appears."""
    repo = make_repo(tmp_path / "repo", GATED)
    work, env, held = _audit_once(tmp_path, repo, casm_env)
    assert held.returncode == 3, held.stderr
    run_id = json.loads(held.stdout.strip().splitlines()[-1])["run_id"]
    approved = run_casm(["approve", "--run-id", run_id, "--reason", "reviewed"], work, env)
    assert approved.returncode == 0, approved.stderr
    assert _kill_at("validate", ["resume", "--run-id", run_id], work, env)

    gc = run_casm(["gc"], work, env)
    assert gc.returncode == 0, gc.stderr
    assert f"marked run {run_id} failed" in gc.stdout
    again = run_casm(["resume", "--run-id", run_id], work, env)
    assert again.returncode == 2 and "failed: the process running it is gone" in again.stderr, again.stderr
    state = _states(tmp_path / "state")[0]
    assert state.status == "failed" and git(repo, "for-each-ref", "refs/heads/casm/") == ""


def test_a_branch_made_by_a_run_killed_before_it_finished_is_deleted(
    tmp_path: Path, casm_env: dict[str, str], demo_repo: Path
) -> None:
    """The kill lands between the telemetry stage creating the branch and the run finishing
    (a window the kill-at-every-stage test can only hit by luck): that run's state is made
    by a real run, then put back as the killed process left it. The next start fails the
    run and deletes its branch: a branch always has a finished run behind it."""
    repo = demo_repo
    work, env, done = _audit_once(tmp_path, repo, casm_env)
    assert done.returncode == 0, done.stderr
    branch = json.loads(done.stdout.strip().splitlines()[-1])["branch"]
    (state,) = _states(tmp_path / "state")
    assert branch and state.branch_commit == git(repo, "rev-parse", branch)
    dead = subprocess.Popen(["sleep", "0.2"])
    owner = leftovers.Owner(socket.gethostname(), dead.pid, leftovers._start_ticks(dead.pid) or 1)
    dead.wait()
    stages = state.stages | {"telemetry": "running"}
    killed = state.model_copy(update={"status": "running", "finished_at": None, "stages": stages, "owner": owner.tag})
    (tmp_path / "state" / "runs" / state.run_id / "state.json").write_text(killed.model_dump_json())

    dry = run_casm(["gc", "--dry-run"], work, env)
    assert dry.returncode == 0, dry.stderr
    assert f"would delete branch {branch} of that run in {repo}" in dry.stdout
    assert git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/casm/") == branch
    gc = run_casm(["gc"], work, env)
    assert gc.returncode == 0, gc.stderr
    assert f"deleted branch {branch} of that run in {repo}" in gc.stdout
    assert git(repo, "for-each-ref", "refs/heads/casm/") == ""
    assert _states(tmp_path / "state")[0].status == "failed"
