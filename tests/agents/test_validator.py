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
    regressions,
    run_checks,
    to_check_run,
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
    assert regressions(before, after) == ["e2e", "npm test"]


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
