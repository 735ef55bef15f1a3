"""The validator rejects a patch group that makes a passing check fail; the benchmarker
measures allowlisted benchmark commands before and after the patch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import ROOT, git, last_json, make_repo, run_casm

pytestmark = pytest.mark.slow

PYPROJECT = (
    '[project]\nname = "p"\nversion = "0"\nrequires-python = ">=3.11"\n\n'
    '[tool.pytest.ini_options]\npythonpath = ["."]\n'
)


def test_patch_that_breaks_a_passing_test_is_rejected(tmp_path: Path, workdir: Path, casm_env) -> None:
    # Removing the "unused" import (F401) breaks a test that imports it from the module.
    repo = make_repo(tmp_path / "repo", {
        "pyproject.toml": PYPROJECT,
        "pkg/__init__.py": "",
        "pkg/a.py": "import os\n\n\ndef f():\n    return 1\n",
        "pkg/b.py": "x = 1   \n",
        "tests/test_a.py": "from pkg.a import f, os\n\n\ndef test_os():\n    assert os.sep and f() == 1\n",
    })  # fmt: skip
    proc = run_casm(["run", "--template", "repo-auditor", "--repo", str(repo), "--json"], workdir, casm_env)
    assert proc.returncode == 0, proc.stderr
    out = last_json(proc.stdout)
    validation = json.loads((Path(out["run_dir"]) / "validation.json").read_text())
    rejected = validation["rejected_groups"]
    assert list(rejected) == ["01-ruff-F401"]
    assert "makes the passing check `python -m pytest -q` fail" in rejected["01-ruff-F401"]
    assert "02-ruff-W291" in validation["accepted_groups"]
    # The branch holds the accepted fix only, and its tests pass (the after-check).
    assert "import os" in git(repo, "show", f"{out['branch']}:pkg/a.py")
    assert git(repo, "show", f"{out['branch']}:pkg/b.py") == "x = 1"
    after = [c for c in validation["checks"] if c["phase"] == "after"]
    assert [c["status"] for c in after] == ["passed"]
    explain = run_casm(["explain", "--run-id", out["run_id"]], workdir, casm_env).stdout
    assert "patch_rejected: rejected 01-ruff-F401" in explain


def test_benchmark_command_runs_before_and_after(tmp_path: Path, workdir: Path, casm_env) -> None:
    repo = make_repo(tmp_path / "repo", {
        "pyproject.toml": PYPROJECT,
        "pkg/__init__.py": "",
        "pkg/work.py": "import sys\n\n\ndef work(n):\n    return sum(i * i for i in range(n))\n",
        "bench_work.py": "from pkg.work import work\n\nwork(200_000)\n",
    })  # fmt: skip
    source = ROOT / "templates" / "repo-auditor" / "manifest.yaml"
    manifest = tmp_path / "bench-template.yaml"
    manifest.write_text(source.read_text().replace('- "python -m pytest -q"', '- "python bench_work.py"'))
    proc = run_casm(["run", "--template", str(manifest), "--repo", str(repo), "--json"], workdir, casm_env)
    assert proc.returncode == 0, proc.stderr
    out = last_json(proc.stdout)
    validation = json.loads((Path(out["run_dir"]) / "validation.json").read_text())
    (bench,) = validation["benchmarks"]
    assert bench["command"] == "python bench_work.py" and bench["status"] == "measured" and bench["repeats"] == 5
    assert bench["before_median_s"] > 0 and bench["after_median_s"] > 0
    expected = round((bench["after_median_s"] - bench["before_median_s"]) / bench["before_median_s"] * 100, 2)
    assert abs(bench["change_pct"] - expected) < 0.05
    assert validation["checks"] == []  # a benchmark is not a check
    assert "## Benchmarks" in Path(out["report"]).read_text()
