"""`.pre-commit-hooks.yaml` through the real pre-commit: installed in a repo the way every
hook is (a repo path and a rev in `.pre-commit-config.yaml`, `pre-commit install`), then
`git commit` runs it: a clean commit goes through, a planted token is stopped and its value
appears nowhere in the output. The hook's environment is CASM installed from that rev (uv,
from the project wheelhouse: no index)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import wheelhouse
from helpers import GIT_ID, ROOT, git, isolated_env, make_repo

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

TOKEN = "ghp_" + "Pl4ntedT0ken" * 3


def _env(tmp_path: Path) -> dict[str, str]:
    env = isolated_env(tmp_path / "dagster_home")
    env.update(
        PRE_COMMIT_HOME=str(tmp_path / "pre-commit-home"),
        UV_NO_INDEX="1",
        UV_FIND_LINKS=str(wheelhouse.ensure_project()),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
        CASM_POLICY_KEY_FILE=str(tmp_path / "policy.key"),
    )
    return env


def _commit(repo: Path, env: dict[str, str], message: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *GIT_ID, "commit", "-m", message], cwd=repo, env=env, capture_output=True, text=True, timeout=500
    )


def test_the_hook_passes_a_clean_commit_and_blocks_a_planted_token(tmp_path: Path) -> None:
    rev = git(ROOT, "rev-parse", "HEAD")
    assert "casm-policy" in git(ROOT, "show", f"{rev}:.pre-commit-hooks.yaml")  # the hook is in the committed tree
    config = f"repos:\n  - repo: {ROOT}\n    rev: {rev}\n    hooks:\n      - id: casm-policy\n"
    repo = make_repo(tmp_path / "repo", {"README.md": "# app\n", ".pre-commit-config.yaml": config})
    env = _env(tmp_path)
    installed = subprocess.run(
        [sys.executable, "-m", "pre_commit", "install", "--install-hooks"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr

    (repo / "docs.md").write_text("How to run it.\n")
    git(repo, "add", "docs.md")
    clean = _commit(repo, env, "docs")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "casm policy check...." in clean.stderr and "Passed" in clean.stderr  # git shows hooks on stderr

    head = git(repo, "rev-parse", "HEAD")
    (repo / "deploy.py").write_text(f'GITHUB_TOKEN = "{TOKEN}"\n')
    git(repo, "add", "deploy.py")
    blocked = _commit(repo, env, "deploy")
    assert blocked.returncode != 0
    output = blocked.stdout + blocked.stderr
    assert "Failed" in output and "exit code: 4" in output and "BLOCK" in output and "deploy.py:1" in output
    assert TOKEN not in output
    assert git(repo, "rev-parse", "HEAD") == head  # the commit did not happen
