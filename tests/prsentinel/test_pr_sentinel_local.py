"""pr-sentinel on a local range (no GitHub): the comment is written to pr_comment.md, a
malformed .casm.yaml is reported in it (not a crash), and bad flag combinations are clear."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import git, last_json, make_repo, run_casm

pytestmark = pytest.mark.slow


def test_local_range_writes_the_comment_and_reports_bad_settings(tmp_path: Path, casm_env: dict, workdir: Path) -> None:
    repo = make_repo(tmp_path / "r", {"lib.py": "def f():\n    return 1\n", ".casm.yaml": "max_findings: lots\n"})
    git(repo, "checkout", "-q", "-b", "feature")
    (repo / "lib.py").write_text("import os\n\ndef f():\n    return 1\n")
    (repo / "vendor").mkdir()
    (repo / "vendor" / "dep.py").write_text("import sys\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "change")
    proc = run_casm(
        ["run", "--template", "pr-sentinel", "--repo", str(repo), "--base", "main", "--head", "feature", "--json"],
        workdir,
        casm_env,
    )
    assert proc.returncode == 0, proc.stderr
    out = last_json(proc.stdout)
    comment = (Path(out["artifacts_dir"]) / "pr_comment.md").read_text()
    assert comment.startswith("<!-- casm:pr-sentinel {")
    assert "<code>lib.py:1</code>" in comment and "F401" in comment
    assert "<code>vendor/dep.py</code> — generated or vendored" in comment
    assert ".casm.yaml is malformed, defaults used" in comment and "max_findings" in comment
    assert (Path(out["artifacts_dir"]) / "cost_report.md").exists()
    assert out["branch"] is None  # nothing is ever applied
    assert git(repo, "branch", "--list", "casm/*") == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--template", "pr-sentinel", "--repo", "{repo}"], "pass --base REV"),
        (["--template", "repo-auditor", "--repo", "{repo}", "--pr", "3"], "a pull request needs a GitHub repo"),
        (["--template", "pr-sentinel", "--repo", "acme/app", "--pr", "3"], "set GITHUB_TOKEN"),
    ],
)
def test_bad_combinations_are_clear(tmp_path: Path, casm_env: dict, workdir: Path, args, message) -> None:
    repo = make_repo(tmp_path / "r", {"a.py": "x = 1\n"})
    proc = run_casm(["run", *[a.replace("{repo}", str(repo)) for a in args]], workdir, casm_env)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_sentinel_cli_errors(casm_env: dict, workdir: Path) -> None:
    proc = run_casm(["sentinel", "--repo", "acme/app"], workdir, casm_env)
    assert proc.returncode == 2 and "--schedule hourly|daily" in proc.stderr
    proc = run_casm(["sentinel", "remove", "--repo", "acme/app"], workdir, casm_env)
    assert proc.returncode == 2 and "is not registered" in proc.stderr
    proc = run_casm(["sentinel", "--repo", "acme/app", "--schedule", "hourly", "--template", "noop"], workdir, casm_env)
    assert proc.returncode == 2 and "noop runs as noop_job; the heartbeat runs audits" in proc.stderr, proc.stderr
    proc = run_casm(["sentinel", "list"], workdir, casm_env)
    assert proc.returncode == 0 and "no repos registered" in proc.stdout
    proc = run_casm(["webhook", "--event", "push", "--payload", "x.json"], workdir, casm_env)
    assert proc.returncode == 2
