"""Bad input: one clear line on stderr, exit code 2, nothing half-written."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import ROOT, git, make_repo, run_casm


def _assert_refused(proc, *needles: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("casm: error: ")
    for needle in needles:
        assert needle in lines[0]
    assert "Traceback" not in proc.stderr


def _assert_nothing_written(workdir: Path) -> None:
    assert not (workdir / ".casm").exists()


@pytest.fixture
def python_repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"pkg/mod.py": "import os\n", "tests/test_mod.py": "def test_x():\n    pass\n"})


def test_missing_path(workdir, casm_env, tmp_path) -> None:
    missing = tmp_path / "nope"
    proc = run_casm(["run", "--template", "repo-auditor", "--repo", str(missing)], workdir, casm_env)
    _assert_refused(proc, "does not exist", str(missing))
    _assert_nothing_written(workdir)


def test_not_a_git_repo(workdir, casm_env, tmp_path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    proc = run_casm(["run", "--template", "repo-auditor", "--repo", str(plain)], workdir, casm_env)
    _assert_refused(proc, "not a git repository", str(plain))
    _assert_nothing_written(workdir)


def test_repo_without_commits(workdir, casm_env, tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "--quiet")
    proc = run_casm(["run", "--template", "repo-auditor", "--repo", str(empty)], workdir, casm_env)
    _assert_refused(proc, "no commits")
    _assert_nothing_written(workdir)


def test_unknown_template(workdir, casm_env, python_repo) -> None:
    proc = run_casm(["run", "--template", "nope", "--repo", str(python_repo)], workdir, casm_env)
    _assert_refused(proc, "unknown template 'nope'", "repo-auditor")
    _assert_nothing_written(workdir)


def test_malformed_manifest(workdir, casm_env, python_repo, tmp_path) -> None:
    source = ROOT / "templates" / "repo-auditor" / "manifest.yaml"
    broken = tmp_path / "manifest.yaml"
    broken.write_text(source.read_text().replace("allow_network: false", "allow_netwrok: false"))
    proc = run_casm(["run", "--template", str(broken), "--repo", str(python_repo)], workdir, casm_env)
    _assert_refused(proc, str(broken), "runtime.sandbox.allow_netwrok", "unknown keys are not allowed")
    _assert_nothing_written(workdir)


def test_manifest_that_is_not_yaml(workdir, casm_env, python_repo, tmp_path) -> None:
    broken = tmp_path / "manifest.yaml"
    broken.write_text("version: '0.1'\ntemplate: [unclosed\n")
    proc = run_casm(["run", "--template", str(broken), "--repo", str(python_repo)], workdir, casm_env)
    _assert_refused(proc, "not valid YAML", "line")


def test_subdirectory_of_a_repo_is_refused(workdir, casm_env, python_repo) -> None:
    proc = run_casm(["run", "--template", "repo-auditor", "--repo", str(python_repo / "pkg")], workdir, casm_env)
    _assert_refused(proc, "pass the repository root")


def test_explain_unknown_run(workdir, casm_env) -> None:
    proc = run_casm(["explain", "--run-id", "01ARZ3NDEKTSV4RRFFQ69G5FAV"], workdir, casm_env)
    _assert_refused(proc, "no run 01ARZ3NDEKTSV4RRFFQ69G5FAV")
    proc = run_casm(["explain", "--run-id", "../../etc"], workdir, casm_env)
    _assert_refused(proc, "not a CASM run id")


def test_relative_dagster_home_is_refused(workdir, casm_env, python_repo) -> None:
    env = {**casm_env, "DAGSTER_HOME": "relative/home"}
    proc = run_casm(["repos", "add", str(python_repo)], workdir, env)
    _assert_refused(proc, "DAGSTER_HOME must be an absolute path")


@pytest.mark.slow
def test_dirty_repo_audits_head_and_says_so(workdir, casm_env, python_repo) -> None:
    (python_repo / "pkg" / "mod.py").write_text("import os\nimport sys\n")  # uncommitted
    proc = run_casm(["run", "--template", "repo-auditor", "--repo", str(python_repo), "--json"], workdir, casm_env)
    assert proc.returncode == 0, proc.stderr
    assert "uncommitted changes; auditing HEAD" in proc.stderr
    report = (workdir / ".casm" / "artifacts" / "report.md").read_text()
    assert "the audit covers HEAD only" in report
    # The user's uncommitted edit is still there, untouched.
    assert (python_repo / "pkg" / "mod.py").read_text() == "import os\nimport sys\n"
    issues = (workdir / ".casm" / "artifacts" / "issues.json").read_text()
    assert '"`sys` imported but unused"' not in issues  # HEAD has no `import sys`
    assert "`os` imported but unused" in issues


def test_every_command_has_help(workdir, casm_env) -> None:
    commands = (["--help"], ["run", "--help"], ["demo", "--help"], ["explain", "--help"],
                ["templates", "list", "--help"], ["repos", "add", "--help"], ["repos", "list", "--help"])  # fmt: skip
    for args in commands:
        proc = run_casm(args, workdir, casm_env)
        assert proc.returncode == 0 and "Usage:" in proc.stdout, args
    assert "--artifacts-dir" in run_casm(["run", "--help"], workdir, casm_env).stdout


def test_templates_list_and_repos_roundtrip(workdir, casm_env, python_repo) -> None:
    listing = run_casm(["templates", "list"], workdir, casm_env)
    assert "repo-auditor" in listing.stdout and "noop" in listing.stdout
    added = run_casm(["repos", "add", str(python_repo)], workdir, casm_env)
    assert added.returncode == 0, added.stderr
    key = added.stdout.split("\t")[0]
    assert key.startswith("local__repo__") and "/" not in key
    listed = run_casm(["repos", "list"], workdir, casm_env)
    assert f"{key}\tlocal\t{python_repo.resolve()}" in listed.stdout
