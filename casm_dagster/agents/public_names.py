"""Never delete public API without saying so.

An "unused" import is often a re-export: a package's ``__init__.py``, a module with
``__all__``, a ``compat`` module whose names other code imports. Removing it deletes a
name from the module's namespace and breaks its users (``from requests.compat import
urlparse``). Such F401 findings stay findings, but they are not auto-fixed, and the message
says why.
"""

from __future__ import annotations

import ast
import re
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from casm_dagster.agents.reviewer import RawFinding

UNUSED_IMPORT = "F401"
_SOURCE_ROOTS = ("src", "lib")


def module_name(path: str) -> str:
    """``src/pkg/compat.py`` → ``pkg.compat``; ``pkg/__init__.py`` → ``pkg``."""
    parts = list(PurePosixPath(path).with_suffix("").parts)
    if parts and parts[-1] == "__init__":
        parts.pop()
    if len(parts) > 1 and parts[0] in _SOURCE_ROOTS:
        parts.pop(0)
    return ".".join(parts)


def _bound_names(tree: ast.Module, line: int) -> list[str]:
    """The names an import statement covering ``line`` binds in the module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom) and node.lineno <= line <= (node.end_lineno or node.lineno):
            names = []
            for alias in node.names:
                if alias.asname:
                    names.append(alias.asname)
                elif isinstance(node, ast.Import):
                    names.append(alias.name.split(".")[0])
                else:
                    names.append(alias.name)
            return names
    return []


def _has_all(tree: ast.Module) -> bool:
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            return True
    return False


def _importers(worktree: Path, files: list[str], path: str, names: list[str]) -> list[str]:
    """Files of the repo that import one of ``names`` from the module at ``path``."""
    module = module_name(path)
    if not module or not names:
        return []
    leaf = module.rsplit(".", 1)[-1]
    name_alt = "|".join(re.escape(n) for n in names)
    patterns = [
        re.compile(rf"from\s+{re.escape(module)}\s+import\s+[^\n]*\b(?:{name_alt})\b"),
        re.compile(rf"from\s+\.+{re.escape(leaf)}\s+import\s+[^\n]*\b(?:{name_alt})\b"),
        re.compile(rf"\b{re.escape(module)}\.(?:{name_alt})\b"),
    ]
    found = []
    for other in files:
        if other == path:
            continue
        try:
            text = (worktree / other).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if any(p.search(text) for p in patterns):
            found.append(other)
    return found


def guard(worktree: Path, files: list[str], findings: list[RawFinding]) -> list[RawFinding]:
    """Unused-import fixes that would delete a public name become findings without a fix."""
    trees: dict[str, ast.Module | None] = {}
    out = []
    for finding in findings:
        if finding.rule != UNUSED_IMPORT or not finding.auto_fixable:
            out.append(finding)
            continue
        if finding.file not in trees:
            try:
                trees[finding.file] = ast.parse((worktree / finding.file).read_bytes())
            except (SyntaxError, ValueError, OSError):
                trees[finding.file] = None
        tree = trees[finding.file]
        why = ""
        if PurePosixPath(finding.file).name == "__init__.py":
            why = "a package's __init__ re-exports what it imports"
        elif tree is not None and _has_all(tree):
            why = "the module declares __all__"
        elif tree is not None:
            users = _importers(worktree, files, finding.file, _bound_names(tree, finding.line))
            if users:
                more = f" and {len(users) - 1} more" if len(users) > 1 else ""
                why = f"imported from this module by {users[0]}{more}"
        if why:
            message = f"{finding.message} — not auto-fixed: removing it would delete a public name ({why})"
            out.append(replace(finding, message=message, auto_fixable=False, fix_group=None))
        else:
            out.append(finding)
    return out


def _top_level_names(source: bytes) -> set[str] | None:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            names.update(_bound_names(ast.Module(body=[node], type_ignores=[]), node.lineno))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def removed_public_names(
    worktree: Path, files: list[str], path: str, before: bytes, after: bytes
) -> tuple[list[str], str]:
    """Names a change to ``path`` removes from its module's namespace that are public, and
    why; ``([], "")`` when it removes none."""
    old, new = _top_level_names(before), _top_level_names(after)
    if old is None or new is None:
        return [], ""
    removed = sorted(old - new)
    if not removed:
        return [], ""
    if PurePosixPath(path).name == "__init__.py":
        return removed, "a package's __init__ re-exports what it imports"
    if "__all__" in old:
        return removed, "the module declares __all__"
    users = _importers(worktree, files, path, removed)
    if users:
        used = [n for n in removed if _importers(worktree, files, path, [n])]
        return used, f"imported from this module by {users[0]}" + (
            f" and {len(users) - 1} more" if len(users) > 1 else ""
        )
    return [], ""
