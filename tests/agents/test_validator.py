"""casm_dagster.agents.validator: which allowlisted commands apply; benchmarks; regressions."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from casm_dagster.agents.validator import (
    applicable_benchmarks,
    applicable_checks,
    applies,
    is_benchmark,
    regression,
    regressions,
    run_checks,
    to_check_run,
    with_retry,
)
from casm_dagster.contracts.validation import CheckRun
from casm_dagster.safety.repo_scan import Inventory, scan
from casm_dagster.safety.sandbox import Sandbox


def _repo(where: Path, files: dict[str, str]) -> tuple[Path, Inventory]:
    where.mkdir(parents=True)
    for name, text in files.items():
        path = where / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", "-C", str(where)]
    subprocess.run([*git, "init", "--quiet"], check=True, capture_output=True)
    subprocess.run([*git, "add", "--all"], check=True, capture_output=True)
    subprocess.run([*git, "commit", "--quiet", "--allow-empty", "-m", "init"], check=True, capture_output=True)
    return where, scan(where)


def _package(scripts: dict[str, str]) -> str:
    return json.dumps({"name": "x", "version": "1.0.0", "scripts": scripts})


# --- applies -----------------------------------------------------------------------------------


def test_npm_test_needs_a_test_script(tmp_path: Path) -> None:
    with_test, inv1 = _repo(tmp_path / "a", {"package.json": _package({"test": "node t.js"})})
    lint_only, inv2 = _repo(tmp_path / "b", {"package.json": _package({"lint": "eslint ."})})
    none, inv3 = _repo(tmp_path / "c", {"index.js": "console.log(1)\n"})
    assert applies("npm test", with_test, inv1) is True
    assert applies("npm test", lint_only, inv2) is False
    assert applies("npm test", none, inv3) is False


def test_pnpm_lint_needs_a_lint_script_and_a_pnpm_lockfile(tmp_path: Path) -> None:
    lint, inv1 = _repo(tmp_path / "a", {"package.json": _package({"lint": "eslint ."}), "pnpm-lock.yaml": ""})
    test_only, inv2 = _repo(tmp_path / "b", {"package.json": _package({"test": "jest"}), "pnpm-lock.yaml": ""})
    assert applies("pnpm -s lint", lint, inv1) is True
    assert applies("pnpm -s lint", test_only, inv2) is False
    assert applies("pnpm -s test", test_only, inv2) is True
    # The repo's package manager is told by its lockfile: npm does not run in a pnpm repo.
    assert applies("npm run lint", lint, inv1) is False


def test_package_manager_follows_the_lockfile(tmp_path: Path) -> None:
    npm, inv1 = _repo(tmp_path / "a", {"package.json": _package({"lint": "eslint ."})})
    yarn, inv2 = _repo(tmp_path / "b", {"package.json": _package({"lint": "eslint ."}), "yarn.lock": ""})
    assert applies("npm run lint", npm, inv1) is True
    assert applies("pnpm -s lint", npm, inv1) is False
    assert applies("yarn lint", npm, inv1) is False
    assert applies("yarn lint", yarn, inv2) is True
    assert applies("npm run lint", yarn, inv2) is False


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        '["a", "list"]',
        '{"scripts": ["test"]}',
        '{"name": "no-scripts"}',
    ],
)
def test_unusable_package_json_means_no_scripts(tmp_path: Path, content: str) -> None:
    repo, inv = _repo(tmp_path / "r", {"package.json": content})
    assert applies("npm test", repo, inv) is False


def test_symlinked_package_json_is_not_trusted(tmp_path: Path) -> None:
    outside = tmp_path / "outside.json"
    outside.write_text(_package({"test": "x"}), encoding="utf-8")
    repo, _ = _repo(tmp_path / "r", {"a.txt": "a\n"})
    (repo / "package.json").symlink_to(outside)
    assert applies("npm test", repo, scan(repo)) is False


def test_bare_npm_without_script_does_not_apply(tmp_path: Path) -> None:
    repo, inv = _repo(tmp_path / "r", {"package.json": _package({"test": "x"})})
    assert applies("npm -s", repo, inv) is False


def test_pytest_needs_python_files(tmp_path: Path) -> None:
    py, inv1 = _repo(tmp_path / "py", {"src/mod.py": "x = 1\n"})
    js, inv2 = _repo(tmp_path / "js", {"index.js": "1\n", "package.json": _package({"test": "x"})})
    assert applies("python -m pytest -q", py, inv1) is True
    assert applies("python -m pytest -q", js, inv2) is False
    assert applies("pytest -q", js, inv2) is False
    assert applies("ruff check .", js, inv2) is False
    assert applies("python3 -m mypy .", py, inv1) is True


def test_command_naming_a_missing_file_does_not_apply(tmp_path: Path) -> None:
    with_file, inv1 = _repo(tmp_path / "a", {"benchmarks/run.py": "print(1)\n"})
    without, inv2 = _repo(tmp_path / "b", {"src/mod.py": "x = 1\n"})
    assert applies("python benchmarks/run.py", with_file, inv1) is True
    assert applies("python benchmarks/run.py", without, inv2) is False
    assert applies("python run.py", without, inv2) is False
    assert applies("bash scripts/check.sh", without, inv2) is False


def test_generic_command_without_paths_applies(tmp_path: Path) -> None:
    repo, inv = _repo(tmp_path / "r", {"README.md": "hi\n"})
    assert applies("make check", repo, inv) is True


# --- benchmarks --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("python benchmarks/run.py", True),
        ("npm run bench", True),
        ("pytest --benchmark-only", True),
        ("python -m pytest -q", False),
        ("npm test", False),
        ("pnpm -s lint", False),
    ],
)
def test_is_benchmark(command: str, expected: bool) -> None:
    assert is_benchmark(command) is expected


def test_applicable_checks_and_benchmarks_split_the_allowlist(tmp_path: Path) -> None:
    repo, inv = _repo(
        tmp_path / "r",
        {"package.json": _package({"test": "x", "bench": "y"}), "benchmarks/run.py": "print(1)\n", "m.py": "x=1\n"},
    )
    box = Sandbox(
        ["python -m pytest -q", "npm test", "npm run lint", "npm run bench", "python benchmarks/run.py",
         "python benchmarks/missing.py"],
        allow_network=False,
        timeout_s=5,
    )  # fmt: skip
    assert applicable_checks(box, repo, inv) == ["python -m pytest -q", "npm test"]
    assert applicable_benchmarks(box, repo, inv) == ["npm run bench", "python benchmarks/run.py"]


# --- running and comparing ---------------------------------------------------------------------


def _run(command: str, status: str, phase: str = "before") -> CheckRun:
    return CheckRun(command=command, phase=phase, status=status, exit_code=0 if status == "passed" else 1,
                    duration_s=0.5, output_tail="", network="enforced")  # fmt: skip


def test_regressions_are_checks_that_passed_before_and_not_after() -> None:
    before = [_run("npm test", "passed"), _run("pytest", "passed"), _run("lint", "failed"), _run("e2e", "passed")]
    after = [
        _run("npm test", "failed", "after"),
        _run("pytest", "passed", "after"),
        _run("lint", "failed", "after"),
        _run("e2e", "timed_out", "after"),
        _run("new", "failed", "after"),
    ]
    assert sorted(r.command for r in regressions(before, after)) == ["e2e", "npm test"]


def test_no_regressions_when_everything_still_passes() -> None:
    before = [_run("a", "passed"), _run("b", "failed")]
    after = [_run("a", "passed", "after"), _run("b", "passed", "after")]
    assert regressions(before, after) == []
    assert regressions([], after) == []


def test_run_checks_records_phase_and_status(tmp_path: Path) -> None:
    repo, _ = _repo(tmp_path / "r", {"ok.py": "print('ok')\n", "bad.py": "raise SystemExit(4)\n"})
    box = Sandbox(["python ok.py", "python bad.py"], allow_network=False, timeout_s=10)
    runs = run_checks(box, ["python ok.py", "python bad.py"], repo, "after")
    assert [(r.command, r.phase, r.status, r.exit_code, r.network) for r in runs] == [
        ("python ok.py", "after", "passed", 0, "enforced"),
        ("python bad.py", "after", "failed", 4, "enforced"),
    ]
    assert runs[0].output_tail == "ok\n"
    assert to_check_run(box.run("python ok.py", repo), "before").phase == "before"


def test_python_c_code_with_a_slash_is_not_a_missing_file(tmp_path: Path) -> None:
    # The argument is code, not a path: the "names a repo file" rule must not drop the command.
    repo, inv = _repo(tmp_path / "r", {"m.py": "x = 1\n"})
    assert applies("python -c 'print(1/2)'", repo, inv) is True


def _tests(phase: str, exit_code: int, **outcomes: str) -> CheckRun:
    status = "passed" if exit_code == 0 else "failed"
    return CheckRun(command="python -m pytest -q", phase=phase, status=status, exit_code=exit_code,
                    duration_s=1.0, output_tail="", network="enforced", tests=outcomes)  # fmt: skip


def test_a_failing_baseline_does_not_switch_validation_off() -> None:
    before = _tests("before", 1, a="passed", b="failed", c="passed")
    still_failing = _tests("after", 1, a="passed", b="failed", c="passed")
    assert regression(before, still_failing) is None
    broke_c = _tests("after", 1, a="passed", b="failed", c="failed")
    found = regression(before, broke_c)
    assert found is not None and found.tests == ("c",)
    assert found.why == "breaks 1 passing test of `python -m pytest -q`: c"
    fixed_b = _tests("after", 0, a="passed", b="passed", c="passed")
    assert regression(before, fixed_b) is None


def test_a_test_that_vanishes_or_is_skipped_is_broken_and_collection_errors_change_the_exit_class() -> None:
    before = _tests("before", 0, a="passed", b="passed")
    assert regression(before, _tests("after", 0, a="passed")).tests == ("b",)
    assert regression(before, _tests("after", 0, a="passed", b="skipped")).tests == ("b",)
    # 1 → 2 with the same failing tests reported: the suite now fails differently.
    failing = _tests("before", 1, a="passed", b="failed")
    errored = CheckRun(**{**_tests("after", 2).model_dump(), "tests": None})
    assert "reports no test results" in regression(failing, errored).why
    plain_before = _run("make check", "failed")
    plain_after = CheckRun(**{**_run("make check", "failed", "after").model_dump(), "exit_code": 2})
    assert regression(plain_before, plain_after).why == "changes how `make check` fails: exit 1 before, exit 2 after"


def test_a_test_that_passes_when_re_run_is_flaky_not_broken() -> None:
    before = [_tests("before", 0, a="passed", b="passed")]
    first = [_tests("after", 1, a="passed", b="failed")]
    again = [_tests("after", 0, a="passed", b="passed")]
    merged = with_retry(before, first, again)
    assert merged[0].flaky == ["b"] and regressions(before, merged) == []
    still = with_retry(before, first, [_tests("after", 1, a="passed", b="failed")])
    assert still[0].flaky == [] and [r.tests for r in regressions(before, still)] == [("b",)]


def test_pytest_checks_report_per_test_outcomes(tmp_path: Path) -> None:
    repo, _ = _repo(tmp_path / "r", {
        "test_m.py": "import pytest\n\n\ndef test_ok():\n    pass\n\n\ndef test_bad():\n    assert 0\n\n\n"
        "@pytest.mark.skip\ndef test_skip():\n    pass\n",
    })  # fmt: skip
    box = Sandbox(["python -m pytest -q"], allow_network=False, timeout_s=120)
    (run,) = run_checks(box, ["python -m pytest -q"], repo, "before")
    assert run.status == "failed" and run.exit_code == 1
    assert run.tests == {"test_m::test_ok": "passed", "test_m::test_bad": "failed", "test_m::test_skip": "skipped"}
    assert not (repo / "casm-junit.xml").exists()  # the report lives in the sandbox's private HOME
