"""The validator: decides which allowlisted commands apply to a repo and runs them.

A command applies when the repo has what it needs: ``npm``/``pnpm``/``yarn`` scripts need
that script in ``package.json`` and that package manager's lockfile (npm: no other one);
``pytest`` needs Python files; an argument that names a repo file (``benchmarks/run.py``)
needs that file. Commands whose argv mentions "bench"
are benchmarks: the benchmarker runs them, not the validator.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from casm_dagster.contracts.validation import CheckRun
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
    return [c for c in sandbox.allow_commands if not is_benchmark(c) and applies(c, worktree, inventory)]


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
    )


def run_checks(sandbox: Sandbox, commands: list[str], worktree: Path, phase: str) -> list[CheckRun]:
    return [to_check_run(sandbox.run(command, worktree), phase) for command in commands]


def regressions(before: list[CheckRun], after: list[CheckRun]) -> list[str]:
    """Commands that passed before the patch and do not pass after it."""
    passed_before = {c.command for c in before if c.status == "passed"}
    return sorted(c.command for c in after if c.command in passed_before and c.status != "passed")
