"""Ruff and bandit, run as CASM's own tools on a repo checkout, under the repo's own rules.

A repo with a ruff configuration (``ruff.toml``, ``.ruff.toml``, ``[tool.ruff]`` in
``pyproject.toml``) is linted with exactly that file (``--config``): its ``select``,
``ignore``, ``per-file-ignores``, ``exclude`` (``--force-exclude`` honours it for files we
name), isort and quote settings. The file is checked first: an ``extend`` chain must stay
inside the repo and no file in it may be a symlink (a hostile repo could otherwise make
ruff read files outside it). It is formatted only when it declares ruff's formatter.

Where the repo runs ruff through pre-commit, CASM runs it on the files those hooks run on
(the config's top-level ``files``/``exclude`` and each hook's own), and formats only when
the pinned ruff has CASM's ruff's minor version: another version's formatter gives other
output, and the maintainers' hook would undo it.

A repo without one (flake8/isort/yapf repos, or none at all) is linted ``--isolated`` for
bugs only, and gets only fixes that change no style and no public name.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

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
    note: str = ""  # why the repo's configuration (or its formatter) is not used
    lint_scope: FileScope | None = None  # the repo's pre-commit ruff hook's files, when it has one
    format_scope: FileScope | None = None

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

    def lint_files(self, files: list[str]) -> list[str]:
        return self.lint_scope.keep(files) if self.lint_scope else files

    def format_files(self, files: list[str]) -> list[str]:
        return self.format_scope.keep(files) if self.format_scope else files

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


@dataclass(frozen=True)
class FileScope:
    """The files a pre-commit hook runs on: pre-commit's ``files``/``exclude`` regexes
    (``re.search``), the config's top-level ones and the hook's own."""

    patterns: tuple[tuple[str, str], ...]  # (files, exclude) pairs; a path must pass each

    def keep(self, files: list[str]) -> list[str]:
        try:
            compiled = [(re.compile(f), re.compile(e)) for f, e in self.patterns]
        except re.error:
            return []  # an unreadable scope: touch nothing rather than guess
        return [p for p in files if all(f.search(p) and not e.search(p) for f, e in compiled)]


_MAX_PRECOMMIT_BYTES = 256_000
_YAML_ALIAS = re.compile(r"(^|[\s\[{,:-])[&*][\w-]", re.M)
LINT_HOOKS = ("ruff", "ruff-check")
FORMAT_HOOKS = ("ruff-format",)


def _precommit(worktree: Path) -> dict:
    """The repo's ``.pre-commit-config.yaml`` as data ({} when absent or unusable: too big,
    not a mapping, or using YAML anchors, which a hostile file can turn into a bomb)."""
    path = worktree / ".pre-commit-config.yaml"
    if not path.is_file() or path.is_symlink() or path.stat().st_size > _MAX_PRECOMMIT_BYTES:
        return {}
    text = path.read_text(encoding="utf-8", errors="replace")
    if _YAML_ALIAS.search(text):
        return {}
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _ruff_hooks(config: dict) -> dict[str, tuple[dict, str]]:
    """The ruff hooks by id, with the rev their repo is pinned to."""
    found: dict[str, tuple[dict, str]] = {}
    repos = config.get("repos")
    for repo in repos if isinstance(repos, list) else []:
        if not isinstance(repo, dict) or not isinstance(repo.get("hooks"), list):
            continue
        for hook in repo["hooks"]:
            if isinstance(hook, dict) and hook.get("id") in (*LINT_HOOKS, *FORMAT_HOOKS):
                found[str(hook["id"])] = (hook, str(repo.get("rev", "")))
    return found


def _scope(config: dict, hook: dict) -> FileScope:
    def regex(table: dict, key: str, default: str) -> str:
        value = table.get(key, default)
        return value if isinstance(value, str) else default

    top = (regex(config, "files", ""), regex(config, "exclude", "^$"))
    own = (regex(hook, "files", ""), regex(hook, "exclude", "^$"))
    return FileScope((top, own))


@functools.cache
def ruff_version() -> tuple[int, int] | None:
    out = _tool("ruff", "--version", cwd=Path.cwd()).stdout
    match = re.search(r"(\d+)\.(\d+)\.", out)
    return (int(match[1]), int(match[2])) if match else None


def _declares_format(table: dict, hooks: dict[str, tuple[dict, str]]) -> tuple[bool, str]:
    """Does the repo format with ruff — a ``[format]`` table, or the ruff-format hook — and
    may CASM's ruff do it for them (not when the hook pins another minor version)?"""
    if "ruff-format" in hooks:
        rev = hooks["ruff-format"][1]
        match = re.match(r"v?(\d+)\.(\d+)", rev)
        ours = ruff_version()
        if match and ours and (int(match[1]), int(match[2])) != ours:
            return False, f"not formatted: the repo pins ruff {rev} and CASM has {ours[0]}.{ours[1]}"
        return True, ""
    return isinstance(table.get("format"), dict), ""


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
        precommit = _precommit(worktree)
        hooks = _ruff_hooks(precommit)
        formats, why = _declares_format(table, hooks)
        lint = next((h for i, (h, _) in hooks.items() if i in LINT_HOOKS), None)
        return RuffSettings(
            config=name,
            formats=formats,
            note=why,
            lint_scope=_scope(precommit, lint) if lint is not None else None,
            format_scope=_scope(precommit, hooks["ruff-format"][0]) if "ruff-format" in hooks else None,
        )
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
    files = settings.lint_files(files)
    if not files:
        return []
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
    files = settings.lint_files(files)
    if not files:
        return
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
    files = settings.format_files(files)
    if not files:
        return []
    proc = _tool("ruff", "format", *settings.args(), "--check", "--output-format=json", "--", *files, cwd=worktree)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"ruff format failed: {proc.stderr.strip()[-500:]}")
    try:
        items = json.loads(proc.stdout or "[]")
    except ValueError:
        raise RuntimeError("ruff format --check gave no JSON (ruff too old?)") from None
    return sorted({item["filename"] for item in items})


def ruff_format(worktree: Path, files: list[str], settings: RuffSettings) -> None:
    files = settings.format_files(files)
    if not files:
        return
    _tool("ruff", "format", *settings.args(), "--", *files, cwd=worktree)


def bandit(worktree: Path, files: list[str]) -> list[dict]:
    proc = _tool("bandit", "-q", "-f", "json", "--", *files, cwd=worktree)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"bandit failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout or "{}").get("results", [])
