"""Ruff and bandit, run as CASM's own tools on a repo checkout, under the repo's own rules.

A repo with a ruff configuration (``ruff.toml``, ``.ruff.toml``, ``[tool.ruff]`` in
``pyproject.toml``) is linted with exactly that file (``--config``): its ``select``,
``ignore``, ``per-file-ignores``, ``exclude`` (``--force-exclude`` honours it for files we
name), isort and quote settings. The file is checked first: an ``extend`` chain must stay
inside the repo and no file in it may be a symlink (a hostile repo could otherwise make
ruff read files outside it). It is formatted only when it declares ruff's formatter.

A repo without one (flake8/isort/yapf repos, or none at all) is linted ``--isolated`` for
bugs only, and gets only fixes that change no style and no public name.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from casm_dagster.safety.repo_scan import read_toml

# Without the repo's own configuration: report bugs, not style (the maintainers' style
# tools are not ours to second-guess), and fix only what changes no style and no name.
BUG_RULES = "E9,F,B"
NO_STYLE_FIXES = frozenset({"F541", "F632", "B009", "B010", "B033"})
CONFIG_FILES = ("ruff.toml", ".ruff.toml", "pyproject.toml")
_PY_VERSION = re.compile(r"3\.(\d+)")
_MAX_EXTEND_DEPTH = 8


@dataclass(frozen=True)
class RuffSettings:
    config: str | None = None  # the repo's own config file (repo-relative); None: isolated
    formats: bool = False  # the repo declares ruff's formatter
    line_length: int = 88  # isolated mode only
    target_version: str = "py38"  # isolated mode: never modernize past what the repo supports
    note: str = ""  # why the repo's configuration is not used, when it exists

    def args(self) -> list[str]:
        if self.config:
            return ["--no-cache", "--force-exclude", f"--config={self.config}"]
        return [
            "--isolated",
            "--no-cache",
            "--force-exclude",
            f"--line-length={self.line_length}",
            f"--target-version={self.target_version}",
        ]

    def fixable(self, rule: str) -> bool:
        """May CASM apply ruff's safe fix for ``rule`` on its own?"""
        return bool(self.config) or rule in NO_STYLE_FIXES


def _ruff_table(path: Path) -> dict | None:
    data = read_toml(path)
    if path.name == "pyproject.toml":
        data = data.get("tool", {}).get("ruff")
        return data if isinstance(data, dict) else None
    return data if path.is_file() else None


def _extend_problem(worktree: Path, config: Path) -> str:
    """Why the config's ``extend`` chain cannot be used ("" when it can)."""
    root = worktree.resolve()
    current = config
    for _ in range(_MAX_EXTEND_DEPTH):
        table = _ruff_table(current) or {}
        extend = table.get("extend")
        if extend is None:
            return ""
        if not isinstance(extend, str):
            return f"{current.relative_to(worktree)}: extend is not a path"
        target = (current.parent / Path(extend).expanduser()).absolute()
        if target.is_symlink() or not target.resolve().is_relative_to(root):
            return f"{current.relative_to(worktree)}: extend points outside the repo ({extend})"
        if not target.is_file():
            return f"{current.relative_to(worktree)}: extend names a missing file ({extend})"
        current = target
    return "the extend chain is too long"


def _precommit_hooks(worktree: Path) -> set[str]:
    path = worktree / ".pre-commit-config.yaml"
    if not path.is_file() or path.is_symlink():
        return set()
    text = path.read_text(encoding="utf-8", errors="replace")
    return set(re.findall(r"^\s*-?\s*id:\s*['\"]?([\w.-]+)", text, re.M))


def _declares_format(worktree: Path, table: dict) -> bool:
    """The repo formats with ruff: a ``[format]`` table, or the ruff-format pre-commit hook."""
    return isinstance(table.get("format"), dict) or "ruff-format" in _precommit_hooks(worktree)


def ruff_settings(worktree: Path) -> RuffSettings:
    for name in CONFIG_FILES:
        path = worktree / name
        if path.is_symlink():
            return _isolated(worktree, note=f"{name} is a symlink: the repo's ruff configuration is not used")
        table = _ruff_table(path)
        if table is None:
            continue
        problem = _extend_problem(worktree, path)
        if problem:
            return _isolated(worktree, note=f"{problem}: the repo's ruff configuration is not used")
        return RuffSettings(config=name, formats=_declares_format(worktree, table))
    return _isolated(worktree)


def _isolated(worktree: Path, note: str = "") -> RuffSettings:
    pyproject = read_toml(worktree / "pyproject.toml")
    black_cfg = pyproject.get("tool", {}).get("black", {})
    line_length = black_cfg.get("line-length", 88) if isinstance(black_cfg, dict) else 88
    if not isinstance(line_length, int) or not 40 <= line_length <= 320:
        line_length = 88
    requires = pyproject.get("project", {}).get("requires-python", "")
    minors = [int(m) for m in _PY_VERSION.findall(requires if isinstance(requires, str) else "")]
    target = f"py3{min(minors)}" if minors and min(minors) >= 7 else "py38"
    return RuffSettings(line_length=line_length, target_version=target, note=note)


def _tool(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=600,
    )


def ruff_check(worktree: Path, files: list[str], settings: RuffSettings) -> list[dict]:
    select = [] if settings.config else [f"--select={BUG_RULES}"]
    proc = _tool(
        "ruff", "check", *settings.args(), *select, "--output-format=json", "--exit-zero", "--", *files, cwd=worktree
    )
    if proc.returncode != 0:
        raise RuntimeError(f"ruff check failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout or "[]")


def ruff_fix(worktree: Path, files: list[str], rules: list[str] | None, settings: RuffSettings) -> None:
    """Apply ruff's *safe* fixes (unsafe fixes are never applied): for ``rules``, or (None)
    for every rule the repo selects — never ``--select`` over the repo's own ``ignore``."""
    if rules is None:
        rules = [] if settings.config else sorted(NO_STYLE_FIXES)
    fixable = [f"--fixable={','.join(rules)}"] if rules else []
    select = [] if settings.config else [f"--select={BUG_RULES}"]
    _tool(
        "ruff",
        "check",
        *settings.args(),
        *select,
        *fixable,
        "--fix",
        "--no-unsafe-fixes",  # whatever the repo's config says: CASM applies safe fixes only
        "--exit-zero",
        "--",
        *files,
        cwd=worktree,
    )


def ruff_format_check(worktree: Path, files: list[str], settings: RuffSettings) -> list[str]:
    """Files ruff format would rewrite (repo-relative as given)."""
    proc = _tool("ruff", "format", *settings.args(), "--check", "--output-format=json", "--", *files, cwd=worktree)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"ruff format failed: {proc.stderr.strip()[-500:]}")
    try:
        items = json.loads(proc.stdout or "[]")
    except ValueError:
        raise RuntimeError("ruff format --check gave no JSON (ruff too old?)") from None
    return sorted({item["filename"] for item in items})


def ruff_format(worktree: Path, files: list[str], settings: RuffSettings) -> None:
    _tool("ruff", "format", *settings.args(), "--", *files, cwd=worktree)


def bandit(worktree: Path, files: list[str]) -> list[dict]:
    proc = _tool("bandit", "-q", "-f", "json", "--", *files, cwd=worktree)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"bandit failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout or "{}").get("results", [])
