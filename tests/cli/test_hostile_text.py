"""Text the audited repo (or a model) controls reaches the report — the PR body in GitHub
mode — as inert markdown: no HTML, no links, no @mentions, no escaping its table cell."""

from __future__ import annotations

import re
from pathlib import Path

from helpers import make_repo, run_casm

HOSTILE = "<img src=x onerror=alert(1)> @octocat [click](javascript:alert(1)) | broken `cell"


def test_a_hostile_todo_is_inert_in_the_report(tmp_path: Path, casm_env: dict[str, str]) -> None:
    repo = make_repo(tmp_path / "repo", {"app.py": f"x = 1  # TODO: {HOSTILE}\n"})
    work = tmp_path / "work"
    work.mkdir()
    proc = run_casm(["run", "--template", "repo-auditor", "--repo", str(repo),
                     "--artifacts-dir", str(tmp_path / "artifacts")], work, casm_env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = (tmp_path / "artifacts" / "report.md").read_text()
    row = next(line for line in report.splitlines() if "octocat" in line)
    assert "<img" not in row and "&lt;img" in row
    assert re.search(r"(?<!\\)@octocat", row) is None and "\\@octocat" in row
    assert "](javascript" not in row and "\\]\\(javascript" in row
    assert row.count(" | ") == 4  # five cells: the hostile '|' did not add a column
