"""The house rules of the package, checked: no import cycle, a package top level that holds
only the code location and the errors, a domain that does not know Dagster, and the public
names (assets, checks, jobs, schedules, sensors, CLI commands and flags, run tags, run files)
unchanged against the committed list."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import click
from helpers import ROOT

from casm_dagster.cli.main import main
from casm_dagster.definitions import defs

PACKAGE = ROOT / "casm_dagster"
# The Dagster wiring; everything else is plain Python that tests without Dagster.
WIRING = {"assets", "ops", "sensors", "resources", "jobs", "cli", "definitions"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: Path) -> set[str]:
    """Every casm_dagster module ``path`` imports, at module level or inside a function
    (a deferred import is still a dependency), except under ``if TYPE_CHECKING``."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking_only(node):
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("casm_dagster"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("casm_dagster"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {m for m in found if m in MODULES}


GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the modules along it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_the_import_graph_has_no_cycle() -> None:
    assert _cycle(GRAPH) is None, " → ".join(_cycle(GRAPH) or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    # The real graph does see deferred imports (the CLI loads its commands inside functions).
    assert "casm_dagster.definitions" in GRAPH["casm_dagster.cli.launch"]


def test_the_package_top_level_holds_only_the_code_location_and_the_errors() -> None:
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert loose == ["__init__.py", "definitions.py", "errors.py"]


def test_the_domain_does_not_import_dagster() -> None:
    offenders = []
    for name, path in MODULES.items():
        if name.split(".")[1:2] and name.split(".")[1] in WIRING:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                if any(m == "dagster" or m.startswith(("dagster.", "dagster_")) for m in modules):
                    offenders.append(name)
    assert offenders == []


def _public_names() -> dict:
    repo = defs.get_repository_def()
    names: dict = {
        "assets": sorted(k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()),
        "asset_checks": sorted(k.to_user_string() for k in repo.asset_graph.asset_check_keys),
        "jobs": sorted(j.name for j in repo.get_all_jobs() if not j.name.startswith("__")),
        "schedules": sorted(s.name for s in repo.schedule_defs),
        "sensors": sorted(s.name for s in repo.sensor_defs),
    }
    commands: dict[str, list[str]] = {}

    def walk(cmd: click.Command, path: list[str]) -> None:
        if isinstance(cmd, click.Group):
            ctx = click.Context(cmd)
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name), [*path, name])  # type: ignore[arg-type]
        opts = [o for p in cmd.params for o in [*getattr(p, "opts", []), *getattr(p, "secondary_opts", [])]]
        commands[" ".join(path) or "casm"] = sorted(opts)

    walk(main, [])
    names["cli"] = dict(sorted(commands.items()))
    tags, files = set(), set()
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            # A run tag is a literal "casm/<word>"; a run file is a module constant *_FILE.
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("casm/"):
                if node.value.count("/") == 1 and not any(c in node.value for c in " {"):
                    tags.add(node.value)
            if (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id.endswith("_FILE")
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                files.add(node.value.value)
    names["tags"] = sorted(tags)
    names["run_files"] = sorted(files)
    return names


def test_public_names_are_unchanged() -> None:
    """Renaming any of these breaks users' schedules, dashboards, scripts or held runs: a
    change here must be deliberate (update tests/data/public_names.json in the same commit)."""
    expected = json.loads((ROOT / "tests/data/public_names.json").read_text(encoding="utf-8"))
    assert _public_names() == expected
