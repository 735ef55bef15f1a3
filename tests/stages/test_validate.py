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
    '[tool.pytest.ini_options]\npythonpath = ["."]\n\n'
    '[tool.ruff.lint]\nselect = ["F", "I", "UP", "W"]\n'  # the repo's own rules: what CASM may fix
)


def test_patch_that_breaks_a_passing_test_is_rejected(tmp_path: Path, workdir: Path, casm_env) -> None:
    # Removing the "unused" import (F401) breaks a test that reaches it dynamically (the
    # public-name guard cannot see that use, so only the tests can catch it).
    repo = make_repo(tmp_path / "repo", {
        "pyproject.toml": PYPROJECT,
        "pkg/__init__.py": "",
        "pkg/a.py": "import os\n\n\ndef f():\n    return 1\n",
        "pkg/b.py": "x = 1   \n",
        "tests/test_a.py": "import importlib\n\n\ndef test_os():\n"
        '    assert getattr(importlib.import_module("pkg.a"), "o" + "s").sep\n',
    })  # fmt: skip
    proc = run_casm(["run", "--template", "repo-auditor", "--repo", str(repo), "--json"], workdir, casm_env)
    assert proc.returncode == 0, proc.stderr
    out = last_json(proc.stdout)
    validation = json.loads((Path(out["run_dir"]) / "validation.json").read_text())
    rejected = validation["rejected_groups"]
    assert list(rejected) == ["01-ruff-F401"]
    assert "breaks 1 passing test of `python -m pytest -q`: tests.test_a::test_os" in rejected["01-ruff-F401"]
    assert "02-ruff-W291" in validation["accepted_groups"]
    # The branch holds the accepted fix only, and its tests pass (the after-check).
    assert "import os" in git(repo, "show", f"{out['branch']}:pkg/a.py")
    assert git(repo, "show", f"{out['branch']}:pkg/b.py") == "x = 1"
    after = [c for c in validation["checks"] if c["phase"] == "after"]
    assert [c["status"] for c in after] == ["passed"]
    explain = run_casm(["explain", "--run-id", out["run_id"]], workdir, casm_env).stdout
    assert "patch_rejected: rejected 01-ruff-F401" in explain
    report = Path(out["report"]).read_text()
    assert "`01-ruff-F401`" in report and "rejected: breaks 1 passing test of `python -m pytest -q`" in report
    assert "accepted: validated by 1 passing test" in report


def test_benchmark_command_runs_before_and_after(tmp_path: Path, workdir: Path, casm_env) -> None:
    repo = make_repo(tmp_path / "repo", {
        "pyproject.toml": PYPROJECT,
        "pkg/__init__.py": "",
        "pkg/work.py": "import sys\n\n\ndef work(n):\n    return sum(i * i for i in range(n))\n",
        "bench_work.py": "from pkg.work import work\n\nwork(200_000)\n",
    })  # fmt: skip
    source = ROOT / "templates" / "repo-auditor" / "manifest.yaml"
    manifest = tmp_path / "bench-template.yaml"
    # No check applies, so only a template that opts in delivers (and benchmarks) the patch.
    text = source.read_text().replace('- "python -m pytest -q"', '- "python bench_work.py"')
    manifest.write_text(
        text.replace("validator: {enabled: true}", "validator: {enabled: true, deliver_unvalidated: true}")
    )
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
    assert "no allowlisted check applies" in validation["unvalidated_groups"]["01-ruff-F401"]
    assert "## Benchmarks" in Path(out["report"]).read_text()


def _audit(repo: Path, tmp_path: Path):
    """ingest → … → validate as plain functions; the validation and the run's decisions."""
    from casm_dagster.run.journal import Journal, read_events
    from casm_dagster.run.spec import build_spec, resolve_local_repo
    from casm_dagster.run.templates import load_template
    from casm_dagster.stages.analyze import analyze
    from casm_dagster.stages.apply import apply
    from casm_dagster.stages.forecast import forecast
    from casm_dagster.stages.ingest import ingest
    from casm_dagster.stages.plan import plan
    from casm_dagster.stages.validate import validate
    from casm_dagster.stores.db import engine_for

    spec = build_spec(load_template("repo-auditor"), str(repo), resolve_local_repo(str(repo)), tmp_path / "state",
                      tmp_path / "artifacts")  # fmt: skip
    journal = Journal(spec)
    engine = engine_for(f"sqlite:///{tmp_path / 'casm.db'}")
    snap = ingest(spec, journal)
    forecast(snap, journal, engine)
    review = analyze(snap, journal, engine)
    planned = plan(snap, review, journal, engine)
    validation = validate(snap, planned, apply(snap, planned, journal), journal)
    decisions = {e.data.get("decision"): e.message for e in read_events(spec.run_dir) if e.type == "decision"}
    return review, validation, decisions


# A module with two style problems the repo's rules fix (F401 `os`, W291), and tests: one
# already failing at HEAD, one that the F401 fix breaks (it reaches `os` dynamically).
BASE_FILES = {
    "pyproject.toml": PYPROJECT,
    "pkg/__init__.py": "",
    "pkg/a.py": "import os\n\n\ndef f():\n    return 1\n",
    "pkg/b.py": "x = 1   \n",
    "tests/test_old.py": "def test_already_broken():\n    assert 1 == 2\n\n\ndef test_fine():\n    assert True\n",
}
BREAKS_OS = (
    'import importlib\n\n\ndef test_os():\n    assert getattr(importlib.import_module("pkg.a"), "o" + "s").sep\n'
)


def test_a_failing_baseline_still_rejects_a_group_that_breaks_a_passing_test(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {**BASE_FILES, "tests/test_os.py": BREAKS_OS})
    review, validation, decisions = _audit(repo, tmp_path)
    assert any(f.rule == "tests-failing" and "test_already_broken" in f.message for f in review.findings)
    assert list(validation.rejected_groups) == ["01-ruff-F401"]
    assert (
        "breaks 1 passing test of `python -m pytest -q`: tests.test_os::test_os"
        in validation.rejected_groups["01-ruff-F401"]
    )
    assert validation.accepted_groups == ["02-ruff-W291"]
    (after,) = validation.after()
    assert after.tests["tests.test_old::test_already_broken"] == "failed"  # pre-existing, recorded as such
    assert after.tests["tests.test_os::test_os"] == "passed"


def test_a_flaky_test_is_re_run_once_and_named(tmp_path: Path) -> None:
    # Passes at HEAD; on the patched tree it fails once, then passes (state kept in the
    # scratch tree: the only place a sandboxed test can write that outlives one run).
    flaky = (
        "from pathlib import Path\n\n\ndef test_flip():\n"
        "    patched = Path('pkg/b.py').read_text() == 'x = 1\\n'\n"
        "    flag = Path('.flip')\n"
        "    if patched and not flag.exists():\n"
        "        flag.write_text('x')\n"
        "        raise AssertionError('fails once after the patch')\n"
    )
    repo = make_repo(tmp_path / "repo", {**BASE_FILES, "tests/test_flip.py": flaky})
    _, validation, decisions = _audit(repo, tmp_path)
    assert validation.rejected_groups == {}
    assert validation.accepted_groups == ["01-ruff-F401", "02-ruff-W291"]
    (after,) = validation.after()
    assert after.flaky == ["tests.test_flip::test_flip"]
    assert "flaky" in decisions["flaky_tests"]


def test_nothing_is_delivered_when_no_test_can_pass_at_the_audited_commit(tmp_path: Path) -> None:
    # The environment lacks a dependency: every test errors at collection, before and after.
    files = {**BASE_FILES, "tests/test_old.py": "import not_installed_anywhere\n\n\ndef test_x():\n    pass\n"}
    repo = make_repo(tmp_path / "repo", files)
    review, validation, decisions = _audit(repo, tmp_path)
    assert not any(f.analyser == "validator" for f in review.findings)  # not a finding against the repo
    assert validation.accepted_groups == [] and validation.final_commit is None
    assert set(validation.unvalidated_groups) == {"01-ruff-F401", "02-ruff-W291"}
    assert "no check passes at the audited commit" in validation.unvalidated_groups["01-ruff-F401"]
    assert "nothing is delivered unvalidated" in decisions["not_validated"]
