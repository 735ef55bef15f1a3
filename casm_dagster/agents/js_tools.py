"""The linters and formatter a JS/TS repo declares for itself — xo, eslint, biome, prettier —
run from its own environment with their JSON reporters (findings) and their own fixers
(patch groups).

A tool is used only when the repo declares it: the package in ``package.json``'s
(dev)dependencies, and (eslint, biome, prettier) its configuration. Nothing is installed:
the tool is the one the repo's lockfile install put in ``node_modules/.bin``. Its config is
the repo's own code (``eslint.config.js`` runs), so each tool runs as a target-repo command:
sandboxed, and only if the template allowlists its exact command (``COMMANDS``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from casm_dagster.safety.sandbox import CommandResult, Sandbox

Tool = Literal["xo", "eslint", "biome", "prettier"]


@dataclass(frozen=True)
class ToolSpec:
    name: Tool
    package: str
    configs: tuple[str, ...]  # config files; () when the tool needs none (xo)
    package_key: str  # its config key in package.json ("" when it has none)
    check: str  # the exact command: JSON (prettier: one path per line) on stdout
    fix: str  # the exact command that applies its own safe fixes
    formatter: bool = False


_ESLINT_CONFIGS = tuple(f"eslint.config.{ext}" for ext in ("js", "mjs", "cjs", "ts", "mts", "cts")) + tuple(
    f".eslintrc{ext}" for ext in ("", ".js", ".cjs", ".json", ".yaml", ".yml")
)
_PRETTIER_CONFIGS = tuple(
    f".prettierrc{ext}" for ext in ("", ".json", ".json5", ".yaml", ".yml", ".toml", ".js", ".cjs", ".mjs")
) + tuple(f"prettier.config.{ext}" for ext in ("js", "cjs", "mjs", "ts"))

TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec("xo", "xo", (), "xo", "xo --reporter=json", "xo --fix"),
    ToolSpec("eslint", "eslint", _ESLINT_CONFIGS, "eslintConfig", "eslint --format=json .", "eslint --fix ."),
    ToolSpec(
        "biome",
        "@biomejs/biome",
        ("biome.json", "biome.jsonc"),
        "",
        "biome lint --reporter=json .",
        "biome lint --write .",
    ),
    ToolSpec(
        "prettier",
        "prettier",
        _PRETTIER_CONFIGS,
        "prettier",
        "prettier --list-different .",
        "prettier --write .",
        formatter=True,
    ),
)
COMMANDS = frozenset(c for t in TOOLS for c in (t.check, t.fix))
JS_LANGUAGES = ("javascript", "typescript")
_MAX_MANIFEST_BYTES = 1_000_000


def manifest(tree: Path) -> dict:
    path = tree / "package.json"
    if not path.is_file() or path.is_symlink() or path.stat().st_size > _MAX_MANIFEST_BYTES:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def declared(tree: Path) -> list[ToolSpec]:
    """The tools the repo declares: the package among its dependencies and, for the tools
    that need one, a config file or ``package.json`` key (eslint has no default config;
    prettier and biome without one are not how the maintainers format)."""
    data = manifest(tree)
    deps: set[str] = set()
    for key in ("devDependencies", "dependencies"):
        table = data.get(key)
        deps |= set(table) if isinstance(table, dict) else set()
    found = []
    for tool in TOOLS:
        if tool.package not in deps:
            continue
        configured = any((tree / c).is_file() and not (tree / c).is_symlink() for c in tool.configs)
        configured = configured or bool(tool.package_key and tool.package_key in data)
        if configured or not tool.configs:
            found.append(tool)
    return found


class ToolFailed(RuntimeError):
    pass


def run_check(box: Sandbox, tool: ToolSpec, tree: Path) -> tuple[CommandResult, str]:
    """The tool's check in the sandbox: its result and its whole standard output."""
    result, stdout = box.run_capture(tool.check, tree)
    if result.status == "unavailable":
        raise ToolFailed(f"{tool.name} is not in the repo's environment")
    if result.status == "timed_out":
        raise ToolFailed(f"`{tool.check}` timed out")
    if result.exit_code not in (0, 1):
        raise ToolFailed(f"`{tool.check}` exit {result.exit_code}: {result.output_tail.strip()[-300:]}")
    return result, stdout


@dataclass(frozen=True)
class Problem:
    """One finding from a JS tool, before the reviewer gives it an id."""

    rule: str
    file: str  # repo-relative
    line: int
    level: Literal["fatal", "error", "warning", "info", "format"]
    message: str
    fixable: bool


def _relative(tree: Path, path: str) -> str | None:
    """Repo-relative POSIX path, or None for a path outside the tree (never reported)."""
    raw = Path(path)
    if raw.is_absolute():
        for base in (tree, tree.resolve()):  # the sandbox binds the tree at its real path
            if raw.is_relative_to(base):
                return raw.relative_to(base).as_posix()
        return None
    if ".." in raw.parts:
        return None
    return raw.as_posix()


def parse_eslint(tree: Path, stdout: str) -> list[Problem]:
    """eslint's (and xo's) ``json`` formatter: one entry per file, its messages."""
    try:
        files = json.loads(stdout or "[]")
    except ValueError:
        raise ToolFailed("the JSON reporter printed something that is not JSON") from None
    if not isinstance(files, list):
        raise ToolFailed("the JSON reporter printed no list of files")
    problems = []
    for entry in files:
        rel = _relative(tree, str(entry.get("filePath", ""))) if isinstance(entry, dict) else None
        if rel is None:
            continue
        for msg in entry.get("messages") or []:
            fatal = bool(msg.get("fatal"))
            level = "fatal" if fatal else "error" if msg.get("severity") == 2 else "warning"
            problems.append(
                Problem(
                    rule=str(msg.get("ruleId") or "parse-error"),
                    file=rel,
                    line=int(msg.get("line") or 0),
                    level=level,
                    message=str(msg.get("message", "")),
                    fixable=bool(msg.get("fix")) and not fatal,
                )
            )
    return problems


def parse_biome(tree: Path, stdout: str) -> list[Problem]:
    """biome's (experimental) ``json`` reporter: ``diagnostics`` with a category, a
    location path (a string, or ``{"file": ...}`` in 1.x) and, in 2.x, a start line."""
    try:
        data = json.loads(stdout or "{}")
    except ValueError:
        raise ToolFailed("the JSON reporter printed something that is not JSON") from None
    problems = []
    for diag in data.get("diagnostics") or [] if isinstance(data, dict) else []:
        location = diag.get("location") or {}
        path = location.get("path")
        path = path.get("file") if isinstance(path, dict) else path
        rel = _relative(tree, path) if isinstance(path, str) and path else None
        if rel is None:
            continue
        start = location.get("start") if isinstance(location.get("start"), dict) else {}
        severity = str(diag.get("severity", "error"))
        advices = diag.get("advices") or []
        safe = any(isinstance(a, dict) and str(a.get("text", "")).startswith("Safe fix") for a in advices)
        problems.append(
            Problem(
                rule=str(diag.get("category") or "biome"),
                file=rel,
                line=int(start.get("line") or 0),
                level="fatal" if severity == "fatal" else "error" if severity == "error" else "warning",
                message=str(diag.get("message", "")),
                fixable=safe,
            )
        )
    return problems


def parse_prettier(tree: Path, stdout: str, sources: set[str]) -> list[Problem]:
    """``prettier --list-different``: the files it would rewrite — only the repo's JS/TS
    sources count (its markdown and JSON are not what CASM audits)."""
    problems = []
    for line in stdout.splitlines():
        rel = _relative(tree, line.strip()) if line.strip() else None
        if rel is not None and rel in sources:
            why = "file is not formatted (prettier would rewrite it)"
            problems.append(Problem("format", rel, 0, "format", why, True))
    return problems


def check(box: Sandbox, tool: ToolSpec, tree: Path, sources: set[str]) -> list[Problem]:
    """The tool's problems in ``sources`` (the audited files) only: not in a skipped symlink,
    nor in a file the tests running beside it write into the tree."""
    _, stdout = run_check(box, tool, tree)
    if tool.name == "prettier":
        return parse_prettier(tree, stdout, sources)
    problems = parse_biome(tree, stdout) if tool.name == "biome" else parse_eslint(tree, stdout)
    return [p for p in problems if p.file in sources]


def fix(box: Sandbox, tool: ToolSpec, tree: Path) -> None:
    """The tool's own fixer over the tree (exit 1 is "problems remain": not an error)."""
    result, _ = box.run_capture(tool.fix, tree)
    if result.status in ("unavailable", "timed_out") or result.exit_code not in (0, 1):
        raise ToolFailed(f"`{tool.fix}` {result.status}: {result.output_tail.strip()[-300:]}")


def group_name(tool: Tool) -> str:
    return f"{tool}-format" if tool == "prettier" else f"{tool}-fix"


def tool_of_group(group: str) -> ToolSpec | None:
    return next((t for t in TOOLS if group_name(t.name) == group), None)
