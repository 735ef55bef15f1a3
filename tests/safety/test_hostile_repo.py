"""A hostile target repo: the audit completes; nothing outside the repo is read or written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import RUFF_TOML, git, last_json, make_repo, run_casm

pytestmark = pytest.mark.slow

SENTINEL = "OUTSIDE-SECRET-7f3a9c"
WEIRD_NAME = "we ird $(touch PWNED); `id` & name.py"


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Path, Path]:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(SENTINEL + "\n")
    (outside / "target_dir").mkdir()
    repo = make_repo(tmp_path / "hostile", {
        "ruff.toml": RUFF_TOML,
        "app.py": "import os\nx = 1  \n",
        WEIRD_NAME: "import sys\nprint( 'hi' )\n",
        "latin1.py": b"# caf\xe9\nx = 1\n",
        "blob.bin": b"\x00\x01\x02" * 100,
        "tests/test_app.py": "def test_ok():\n    assert True\n",
    })  # fmt: skip
    os.symlink(outside / "secret.txt", repo / "leak.py")
    os.symlink(outside / "target_dir", repo / "linked_dir")
    with open(repo / "huge.py", "wb") as handle:  # 50 MB
        handle.write(b"# " + b"a" * (50 * 1024 * 1024) + b"\n")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", "hostile content")
    return repo, outside


def test_hostile_repo_audit_completes_and_stays_inside(hostile, workdir, casm_env) -> None:
    repo, outside = hostile
    before = sorted(str(p.relative_to(outside)) for p in outside.rglob("*"))
    proc = run_casm(["run", "--template", "repo-auditor", "--repo", str(repo), "--json"], workdir, casm_env)
    assert proc.returncode == 0, proc.stderr
    out = last_json(proc.stdout)
    assert out["status"] == "succeeded"
    issues = json.loads((Path(out["artifacts_dir"]) / "issues.json").read_text())
    skipped = {s["path"]: s["reason"] for s in issues["skipped_files"]}
    assert skipped == {"leak.py": "symlink", "linked_dir": "symlink", "latin1.py": "not_utf8",
                       "blob.bin": "binary", "huge.py": "too_large"}  # fmt: skip
    # The weird filename was audited and fixed like any other file.
    weird = [f for f in issues["findings"] if f["file"] == WEIRD_NAME]
    assert {f["rule"] for f in weird} >= {"F401", "format"}
    assert git(repo, "show", f"{out['branch']}:{WEIRD_NAME}") == 'print("hi")'
    # Nothing escaped: no file created by metacharacters, the outside dir unchanged,
    # and the outside secret appears in no artifact.
    assert not list(Path("/").glob("PWNED")) and not list(workdir.rglob("PWNED")) and not list(repo.rglob("PWNED"))
    assert sorted(str(p.relative_to(outside)) for p in outside.rglob("*")) == before
    for artifact in Path(out["run_dir"]).rglob("*"):
        if artifact.is_file():
            assert SENTINEL not in artifact.read_text(errors="replace"), artifact
    assert "leak.py</code> — symlink" in Path(out["report"]).read_text()
