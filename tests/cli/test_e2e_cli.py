"""End to end: `casm run` in a subprocess on a fresh copy of the demo repo, through Dagster."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.instance.ref import InstanceRef
from helpers import git, isolated_env, last_json, run_casm, validate_sarif

pytestmark = pytest.mark.slow

JSON_KEYS = {"run_id", "status", "repo", "branch", "report", "artifacts_dir", "findings", "patches", "checks"}


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> dict:
    """One audit shared by the read-only tests of this module (each run costs seconds)."""
    from casm_dagster.cli.demo import make_demo_repo

    base = tmp_path_factory.mktemp("e2e")
    workdir = base / "work"
    workdir.mkdir()
    env = isolated_env(base / "dagster_home")
    repo = make_demo_repo(parent=base)
    sarif = base / "casm.sarif"
    args = ["run", "--template", "repo-auditor", "--repo", str(repo), "--json", "--sarif", str(sarif)]
    proc = run_casm(args, workdir, env)
    assert proc.returncode == 0, proc.stderr
    return {"out": last_json(proc.stdout), "proc": proc, "repo": repo, "workdir": workdir, "env": env, "sarif": sarif}


@pytest.fixture
def audited(shared) -> tuple[dict, subprocess.CompletedProcess]:
    return shared["out"], shared["proc"]


@pytest.fixture
def demo_repo(shared) -> Path:  # the audited one
    return shared["repo"]


@pytest.fixture
def workdir(shared) -> Path:
    return shared["workdir"]


@pytest.fixture
def casm_env(shared) -> dict[str, str]:
    return shared["env"]


def test_run_delivers_a_branch_whose_patches_keep_tests_green(audited, demo_repo: Path, tmp_path: Path) -> None:
    out, proc = audited
    assert JSON_KEYS <= out.keys()
    assert out["status"] == "succeeded"
    assert out["repo"] == str(demo_repo.resolve())
    branch = out["branch"]
    assert branch == f"casm/repo-auditor/{out['run_id']}"
    # One commit per accepted patch group, on top of the audited commit.
    commits = git(demo_repo, "rev-list", f"main..{branch}").splitlines()
    assert len(commits) == out["patches"] >= 5
    # The user's working tree and branch are untouched.
    assert git(demo_repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert git(demo_repo, "status", "--porcelain") == ""
    assert git(demo_repo, "worktree", "list").count("\n") == 0  # scratch checkouts were removed
    # The tests still pass on the branch, and the fixable lint is gone there.
    checkout = tmp_path / "branch-checkout"
    git(demo_repo, "worktree", "add", "--quiet", str(checkout), branch)
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=checkout,
                           capture_output=True, text=True)  # fmt: skip
    assert tests.returncode == 0, tests.stdout
    lint = subprocess.run([sys.executable, "-m", "ruff", "check", "--isolated", "--select", "F401,F541,I001,W291,W293",
                           "--output-format", "json", "."], cwd=checkout, capture_output=True, text=True)  # fmt: skip
    assert json.loads(lint.stdout) == []


def test_patch_files_apply_to_the_audited_commit(audited, demo_repo: Path, tmp_path: Path) -> None:
    out, _ = audited
    patches = sorted((Path(out["artifacts_dir"]) / "patches").glob("*.patch"))
    assert len(patches) == out["patches"]
    checkout = tmp_path / "base-checkout"
    git(demo_repo, "worktree", "add", "--quiet", "--detach", str(checkout), "main")
    for patch in patches:
        git(checkout, "apply", "--index", str(patch))
    tree_from_patches = git(checkout, "write-tree")
    assert tree_from_patches == git(demo_repo, "rev-parse", f"{out['branch']}^{{tree}}")


def test_report_lists_real_findings(audited) -> None:
    out, _ = audited
    report = Path(out["report"]).read_text()
    issues = json.loads((Path(out["artifacts_dir"]) / "issues.json").read_text())
    assert len(issues["findings"]) == out["findings"]
    rules = {(f["analyser"], f["rule"]) for f in issues["findings"]}
    # Fixable lint, a formatter finding, a security finding, a non-fixable lint, a TODO.
    assert {("ruff", "F401"), ("ruff-format", "format"), ("bandit", "B324:hashlib"), ("ruff", "E722"),
            ("todo-scan", "TODO")} <= rules  # fmt: skip
    not_fixable = [f for f in issues["findings"] if not f["auto_fixable"]]
    assert not_fixable and all(f["fix_group"] is None for f in not_fixable)
    assert "bandit:B324:hashlib" in report and "<code>src/inventory\\_kit/pricing.py:32</code>" in report
    assert "| `python -m pytest -q` | passed" in report
    assert "## Cost" in report and "0.00" in report
    assert (Path(out["artifacts_dir"]) / "cost_report.md").exists()
    # Every artifact is also kept with the run.
    run_dir = Path(out["run_dir"])
    for name in ("report.md", "cost_report.md", "issues.json", "plan.json", "validation.json", "state.json",
                 "events.jsonl"):  # fmt: skip
        assert (run_dir / name).is_file(), name
    state = json.loads((run_dir / "state.json").read_text())
    assert state["status"] == "succeeded" and set(state["stages"].values()) == {"completed"}
    assert state["effective_config"]["template"]["template"]["id"] == "repo-auditor"


def test_explain_is_byte_identical_on_repeat(audited, workdir: Path, casm_env: dict[str, str]) -> None:
    out, _ = audited
    first = run_casm(["explain", "--run-id", out["run_id"]], workdir, casm_env)
    second = run_casm(["explain", "--run-id", out["run_id"]], workdir, casm_env)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    assert "validate  completed" in first.stdout
    assert f"branch_created: branch {out['branch']}" in first.stdout
    assert "outcome: succeeded" in first.stdout


def test_run_is_a_tagged_dagster_run_in_the_instance(audited, casm_env: dict[str, str], monkeypatch) -> None:
    out, _ = audited
    monkeypatch.setenv("DAGSTER_HOME", casm_env["DAGSTER_HOME"])
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"casm/run_id": out["run_id"]}))
        assert len(runs) == 1
        run = runs[0]
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert run.job_name == "audit_job"
        assert run.tags["casm/template"] == "repo-auditor"
        partition = run.tags["dagster/partition"]
        assert partition in instance.get_dynamic_partitions("repos")
        materialized = instance.get_materialized_partitions(dg.AssetKey("audit_report"))
        assert partition in materialized


def test_run_writes_the_findings_as_valid_sarif(shared) -> None:
    out, proc = shared["out"], shared["proc"]
    assert f"sarif:     {shared['sarif']}" in proc.stdout
    log = json.loads(shared["sarif"].read_text())
    validate_sarif(log)
    (run,) = log["runs"]
    assert run["automationDetails"]["id"] == "casm/repo-auditor/"
    issues = json.loads((Path(out["artifacts_dir"]) / "issues.json").read_text())
    located = {i["id"] for i in issues["findings"] if i["file"]}
    fingerprints = {r["partialFingerprints"]["casmResultHash/v1"] for r in run["results"]}
    assert located and located <= fingerprints  # every finding with a file, keyed by its stable id
    analysers = {f"{i['analyser']}/{i['rule']}" for i in issues["findings"]}
    assert analysers & {r["ruleId"] for r in run["results"]}
    assert str(shared["repo"]) not in shared["sarif"].read_text()  # repo-relative paths only


def test_noop_runs_ingest_and_report_and_leaves_the_last_audits_assets_alone(shared, tmp_path: Path) -> None:
    """noop runs as its own op job: ingest and report only, no branch, and no audit asset
    materialized, so the repo's assets (and the audit_report link) stay those of the
    shared audit. Its own state and artifacts dirs keep the shared audit's files intact."""
    env = shared["env"] | {"CASM_STATE_DIR": str(tmp_path / "state")}
    args = ["run", "--template", "noop", "--repo", str(shared["repo"]), "--json", "--artifacts-dir", "out"]
    proc = run_casm(args, tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    out = last_json(proc.stdout)
    assert out["status"] == "succeeded" and out["branch"] is None and out["findings"] == 0
    state = json.loads((Path(out["run_dir"]) / "state.json").read_text())
    assert state["stages"] == {"ingest": "completed", "forecast": "skipped", "analyze": "skipped", "plan": "skipped",
                               "policy": "skipped", "apply": "skipped", "validate": "skipped", "report": "completed",
                               "telemetry": "skipped"}  # fmt: skip
    assert git(shared["repo"], "branch", "--list", "casm/*") == git(
        shared["repo"], "branch", "--list", shared["out"]["branch"]
    )
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(env["DAGSTER_HOME"])) as instance:
        run = instance.get_run_by_id(out["dagster_run_id"])
        assert run is not None and run.job_name == "noop_job" and run.tags["casm/status"] == "succeeded"
        assert run.tags["casm/run_id"] == out["run_id"] and run.tags["casm/template"] == "noop"
        assert not instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
        for key in ("repo_snapshot", "audit_report", "run_cost"):
            latest = instance.get_latest_materialization_event(dg.AssetKey(key))
            assert latest is not None and latest.run_id == shared["out"]["dagster_run_id"], key


def test_demo_command_prints_where_everything_is(tmp_path: Path) -> None:
    workdir, casm_env = tmp_path, isolated_env(tmp_path / "dh")
    proc = run_casm(["demo", "--artifacts-dir", "out"], workdir, casm_env)
    assert proc.returncode == 0, proc.stderr
    assert "succeeded" in proc.stdout
    for label in ("repo:", "branch:    casm/repo-auditor/", "report:", "artifacts:"):
        assert label in proc.stdout
    assert (workdir / "out" / "report.md").is_file()
    # Progress was shown on stderr while it worked.
    assert "✓ analyze" in proc.stderr and "✓ validate" in proc.stderr
