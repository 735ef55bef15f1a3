"""Ruff and bandit, run as CASM's own tools on a repo checkout.

``--isolated`` keeps ruff from reading configuration files: a hostile repo could point
``extend`` at a file outside itself, and a checkout in a temp dir could pick up a stray
config from its parents. The repo's line length and target version are read (parsed,
never executed) from its pyproject/ruff.toml so the fixes match the repo's style.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

RUFF_RULES = "E,F,W,I,UP,B"
_PY_VERSION = re.compile(r"3\.(\d+)")


@dataclass(frozen=True)
class RuffSettings:
    line_length: int = 88
    target_version: str = "py38"  # conservative: never modernize past what the repo supports

    def args(self) -> list[str]:
        return [
            "--isolated",
            "--no-cache",
            f"--line-length={self.line_length}",
            f"--target-version={self.target_version}",
        ]


def _load_toml(path: Path) -> dict:
    if not path.is_file() or path.is_symlink():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}


def ruff_settings(worktree: Path) -> RuffSettings:
    pyproject = _load_toml(worktree / "pyproject.toml")
    ruff_cfg = _load_toml(worktree / "ruff.toml") or _load_toml(worktree / ".ruff.toml")
    ruff_cfg = ruff_cfg or pyproject.get("tool", {}).get("ruff", {})
    black_cfg = pyproject.get("tool", {}).get("black", {})
    line_length = ruff_cfg.get("line-length", black_cfg.get("line-length", 88))
    if not isinstance(line_length, int) or not 40 <= line_length <= 320:
        line_length = 88
    target = ruff_cfg.get("target-version")
    if not (isinstance(target, str) and re.fullmatch(r"py3\d{1,2}", target)):
        requires = pyproject.get("project", {}).get("requires-python", "")
        minors = [int(m) for m in _PY_VERSION.findall(requires if isinstance(requires, str) else "")]
        target = f"py3{min(minors)}" if minors and min(minors) >= 7 else "py38"
    return RuffSettings(line_length=line_length, target_version=target)


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
    proc = _tool(
        "ruff",
        "check",
        *settings.args(),
        f"--select={RUFF_RULES}",
        "--output-format=json",
        "--exit-zero",
        "--",
        *files,
        cwd=worktree,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"ruff check failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout or "[]")


def ruff_fix(worktree: Path, files: list[str], rule: str, settings: RuffSettings) -> None:
    """Apply ruff's *safe* fixes for one rule (unsafe fixes are never applied)."""
    _tool("ruff", "check", *settings.args(), f"--select={rule}", "--fix", "--exit-zero", "--", *files, cwd=worktree)


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
