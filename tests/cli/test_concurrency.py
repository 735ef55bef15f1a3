"""Runs at once: four `casm run`s on a fresh instance (SQLite and PostgreSQL) all succeed and
leave it usable; a second run on a repo that is being audited is refused clearly; runs
sharing the artifacts dir leave one run's complete set there, and each run's Dagster
report link stays its own."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import dagster as dg
from dagster._core.instance.ref import InstanceRef
from helpers import CASM, isolated_env, last_json, make_repo, postgres_home, run_casm

APP = "import os\n\n\ndef total(items):\n    return sum(items)\n"
TEST = "from app import total\n\n\ndef test_total():\n    assert total([1, 2]) == 3\n"


def _start(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([*CASM, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _four_at_once(tmp_path: Path, env: dict[str, str]) -> None:
    repos = [make_repo(tmp_path / f"repo{i}", {"a.py": f"x = {i}\n"}) for i in range(4)]
    work = tmp_path / "work"
    work.mkdir()
    procs = [_start(["run", "--template", "noop", "--repo", str(r), "--json"], work, env) for r in repos]
    outcomes = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    for code, _, stderr in outcomes:
        assert code == 0, stderr
    assert len({last_json(out)["run_id"] for _, out, _ in outcomes}) == 4
    again = run_casm(["run", "--template", "noop", "--repo", str(repos[0])], work, env)  # the instance still works
    assert again.returncode == 0, again.stderr


def test_four_runs_on_a_fresh_sqlite_instance(tmp_path: Path) -> None:
    env = isolated_env(tmp_path / "fresh_home")  # only dagster.yaml: no database yet
    _four_at_once(tmp_path, env | {"CASM_STATE_DIR": str(tmp_path / "state")})


def test_four_runs_on_a_fresh_postgres_instance(tmp_path: Path, pg_database) -> None:
    env = isolated_env(tmp_path / "unused") | postgres_home(tmp_path / "pg_home", pg_database)
    _four_at_once(tmp_path, env | {"CASM_STATE_DIR": str(tmp_path / "state")})


def test_a_second_run_on_a_repo_being_audited_is_refused(tmp_path: Path, casm_env: dict[str, str]) -> None:
    slow = TEST + "\n\ndef test_slow():\n    import time\n\n    time.sleep(12)\n"  # the first run stays in analyze
    repo = make_repo(tmp_path / "repo", {"app.py": APP, "tests/test_app.py": slow})
    work = tmp_path / "work"
    work.mkdir()
    env = casm_env | {"CASM_STATE_DIR": str(tmp_path / "state")}
    first = _start(["run", "--template", "repo-auditor", "--repo", str(repo), "--json"], work, env)
    assert first.stderr is not None
    for line in first.stderr:  # wait until the first run is inside Dagster
        if "… analyze" in line:
            break
    second = run_casm(["run", "--template", "repo-auditor", "--repo", str(repo)], work, env)
    rest = first.stderr.read()
    assert first.wait(timeout=300) == 0, rest
    assert second.returncode == 2, second.stderr
    assert second.stderr.strip().splitlines()[-1] == (
        f"casm: error: another casm run is auditing {repo} right now: wait for it to finish"
    )
    out = last_json(first.stdout.read())  # type: ignore[union-attr]
    assert len(list((tmp_path / "state" / "runs").iterdir())) == 1  # the refused run wrote no run dir
    assert out["status"] == "succeeded"


def test_runs_sharing_the_artifacts_dir_leave_one_complete_set(tmp_path: Path, casm_env: dict[str, str]) -> None:
    repos = [make_repo(tmp_path / f"repo{i}", {"app.py": APP, "tests/test_app.py": TEST}) for i in range(2)]
    work = tmp_path / "work"
    work.mkdir()
    env = casm_env | {"CASM_STATE_DIR": str(tmp_path / "state")}
    procs = [_start(["run", "--template", "repo-auditor", "--repo", str(r), "--json"], work, env) for r in repos]
    outs = []
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()  # type: ignore[union-attr]
        outs.append(last_json(proc.stdout.read()))  # type: ignore[union-attr]
    artifacts = work / ".casm" / "artifacts"
    published = json.loads((artifacts / "run.json").read_text())
    winner = next(o for o in outs if o["run_id"] == published["run_id"])
    run_dir = Path(winner["run_dir"])
    for name in ("report.md", "issues.json", "plan.json", "validation.json", "cost_report.md"):
        assert (artifacts / name).read_bytes() == (run_dir / name).read_bytes(), name
    # Dagster's report link of each run opens that run's own report, whoever published last.
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(env["DAGSTER_HOME"])) as instance:
        for out in outs:
            records = instance.fetch_materializations(dg.AssetKey("audit_report"), limit=10).records
            mine = [r for r in records if r.run_id == out["dagster_run_id"]]
            assert len(mine) == 1
            link = mine[0].asset_materialization.metadata["report"].value  # type: ignore[union-attr]
            assert link == str(Path(out["run_dir"]) / "report.md") and Path(link).is_file()
