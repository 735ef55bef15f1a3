"""`casm run --repo .` from inside the repo, with every default (state, Dagster home and
artifacts under ./.casm): the repo's working tree stays clean — the only addition is the
branch."""

from __future__ import annotations

from pathlib import Path

from helpers import git, isolated_env, last_json, make_repo, run_casm

APP = "import os\n\n\ndef total(items):\n    return sum(items)\n"
TEST = "from app import total\n\n\ndef test_total():\n    assert total([1, 2]) == 3\n"


def test_running_inside_the_repo_leaves_its_tree_clean(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"app.py": APP, "tests/test_app.py": TEST})
    env = isolated_env(tmp_path / "unused")
    del env["DAGSTER_HOME"]  # the default: ./.casm/dagster_home
    proc = run_casm(["run", "--template", "repo-auditor", "--repo", ".", "--json"], repo, env)
    assert proc.returncode == 0, proc.stderr
    out = last_json(proc.stdout)
    assert Path(out["run_dir"]).is_relative_to(repo / ".casm") and (repo / ".casm" / "artifacts" / "report.md").exists()
    assert git(repo, "status", "--porcelain", "--ignored=no") == ""
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert (repo / ".casm" / ".gitignore").read_text().splitlines()[-1] == "*"
