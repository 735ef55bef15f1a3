"""The validator: decides which allowlisted commands apply to a repo and runs them.

A command applies when the repo has what it needs: ``npm``/``pnpm``/``yarn`` scripts need
that script in ``package.json`` and that package manager's lockfile (npm: no other one);
``pytest`` needs Python files; an argument that names a repo file (``benchmarks/run.py``)
needs that file. Commands whose argv mentions "bench"
are benchmarks: the benchmarker runs them, not the validator; the JS tools' own commands
(``js_tools.COMMANDS``) are the reviewer's and fixer's.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from casm_dagster.agents import js_tools
from casm_dagster.contracts.validation import CheckRun
from casm_dagster.environments import build
from casm_dagster.safety.repo_scan import Inventory
from casm_dagster.safety.sandbox import CommandResult, Sandbox

_JS_RUNNERS = {"npm", "pnpm", "yarn"}
_PYTHON_TOOLS = {"pytest", "ruff", "mypy", "flake8", "pylint", "black"}


def is_benchmark(command: str) -> bool:
    return any("bench" in token.lower() for token in shlex.split(command))


def _package_scripts(worktree: Path) -> dict[str, str] | None:
    manifest = worktree / "package.json"
    if not manifest.is_file() or manifest.is_symlink():
        return None
    try:
        scripts = json.loads(manifest.read_text(encoding="utf-8")).get("scripts", {})
    except (ValueError, UnicodeDecodeError, AttributeError):
        return {}
    return scripts if isinstance(scripts, dict) else {}


def _package_manager(worktree: Path) -> str:
    """The repo's own package manager, told by its lockfile (npm when there is none)."""
    if (worktree / "pnpm-lock.yaml").is_file():
        return "pnpm"
    if (worktree / "yarn.lock").is_file():
        return "yarn"
    return "npm"


def _js_script(argv: list[str]) -> str | None:
    words = [a for a in argv[1:] if not a.startswith("-")]
    if not words:
        return None
    if words[0] in ("run", "run-script") and len(words) > 1:
        return words[1]
    return words[0]


def applies(command: str, worktree: Path, inventory: Inventory) -> bool:
    argv = shlex.split(command)
    program = Path(argv[0]).name
    if program in _JS_RUNNERS:
        if _package_manager(worktree) != program:
            return False
        scripts = _package_scripts(worktree)
        script = _js_script(argv)
        return scripts is not None and script is not None and script in scripts
    python_files = bool(inventory.by_language("python"))
    if program in _PYTHON_TOOLS or (program.startswith("python") and "-m" in argv):
        if not python_files:
            return False
    for index, arg in enumerate(argv[1:], start=1):
        if argv[index - 1] in ("-c", "-e", "--eval"):  # inline code, not a file name
            continue
        looks_like_path = "/" in arg or Path(arg).suffix in (".py", ".js", ".ts", ".sh")
        if looks_like_path and not arg.startswith("-") and not (worktree / arg).exists():
            return False
    return True


def applicable_checks(sandbox: Sandbox, worktree: Path, inventory: Inventory) -> list[str]:
    """The allowlisted commands that check this repo: not benchmarks, and not the JS tools'
    reporter/fixer commands (the reviewer and fixer run those)."""
    return [
        c
        for c in sandbox.allow_commands
        if not is_benchmark(c) and c not in js_tools.COMMANDS and applies(c, worktree, inventory)
    ]


def applicable_benchmarks(sandbox: Sandbox, worktree: Path, inventory: Inventory) -> list[str]:
    return [c for c in sandbox.allow_commands if is_benchmark(c) and applies(c, worktree, inventory)]


def to_check_run(result: CommandResult, phase: str) -> CheckRun:
    return CheckRun(
        command=result.command,
        phase=phase,  # type: ignore[arg-type]
        status=result.status,
        exit_code=result.exit_code,
        duration_s=result.duration_s,
        output_tail=result.output_tail,
        network=result.network,
        network_detail=result.network_detail,
        tests=result.tests,
    )


def run_checks(sandbox: Sandbox, commands: list[str], worktree: Path, phase: str) -> list[CheckRun]:
    if not commands:
        return []
    with build.checking(sandbox, worktree):
        return [to_check_run(sandbox.run(command, worktree), phase) for command in commands]


@dataclass(frozen=True)
class Regression:
    command: str
    why: str
    tests: tuple[str, ...] = ()  # the tests that passed before and do not after


def _broken_tests(before: CheckRun, after: CheckRun) -> list[str]:
    assert before.tests is not None and after.tests is not None
    return sorted(t for t, o in before.tests.items() if o == "passed" and after.tests.get(t) != "passed")


def _exit(run: CheckRun) -> str:
    return f"exit {run.exit_code}" if run.exit_code is not None else run.status


def regression(before: CheckRun, after: CheckRun) -> Regression | None:
    """How ``after`` is worse than ``before`` (same command), or None.

    Per test when both runs reported tests: a test that passed and now fails, errors, is
    skipped or is gone is broken — whatever the exit codes say, so a failing baseline never
    switches validation off. Otherwise, and in addition, the exit class: a command that
    passed and now does not, or that now fails differently (collection error instead of
    failing tests: pytest's exit 2 instead of 1)."""
    command = f"`{after.command}`"
    if before.tests is not None and after.tests is not None:
        broken = _broken_tests(before, after)
        if broken:
            shown = ", ".join(broken[:3]) + (f" and {len(broken) - 3} more" if len(broken) > 3 else "")
            noun = "test" if len(broken) == 1 else "tests"
            return Regression(
                after.command, f"breaks {len(broken)} passing {noun} of {command}: {shown}", tuple(broken)
            )
    if after.status == "passed":
        return None
    if before.status == "passed":
        return Regression(after.command, f"makes the passing check {command} fail ({_exit(after)})")
    if before.tests is not None and after.tests is None:
        return Regression(after.command, f"{command} reports no test results after the patch ({_exit(after)})")
    if after.exit_code != before.exit_code or after.status != before.status:
        return Regression(after.command, f"changes how {command} fails: {_exit(before)} before, {_exit(after)} after")
    return None


def regressions(before: list[CheckRun], after: list[CheckRun]) -> list[Regression]:
    """Every check ``after`` is worse at than the baseline ``before``."""
    baseline = {c.command: c for c in before}
    found = [regression(baseline[a.command], a) for a in after if a.command in baseline]
    return [r for r in found if r is not None]


def with_retry(before: list[CheckRun], after: list[CheckRun], again: list[CheckRun]) -> list[CheckRun]:
    """``after`` with the re-run of its regressed checks: a test broken in the first run
    that passes in the re-run is flaky (recorded, not held against the patch); what the
    re-run still breaks stays broken."""
    baseline = {c.command: c for c in before}
    rerun = {c.command: c for c in again}
    out = []
    for first in after:
        second = rerun.get(first.command)
        if second is None:
            out.append(first)
            continue
        base = baseline[first.command]
        flaky: list[str] = []
        if base.tests is not None and first.tests is not None and second.tests is not None:
            flaky = sorted(set(_broken_tests(base, first)) - set(_broken_tests(base, second)))
        elif regression(base, first) is not None and regression(base, second) is None:
            flaky = [first.command]  # the whole check failed once and passed again
        out.append(second.model_copy(update={"flaky": flaky}))
    return out
