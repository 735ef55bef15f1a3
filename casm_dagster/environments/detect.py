"""How a repo builds its own test environment, read (never executed) from its files.

Python: ``uv.lock`` (``uv sync --frozen``), PEP 735 ``[dependency-groups]``, test extras in
``[project.optional-dependencies]`` or ``setup.cfg``, ``requirements*.txt``, ``tox.ini`` (or
``[tool.tox] legacy_tox_ini``) ``[testenv]`` deps/extras/groups, ``noxfile.py``
``session.install`` literals; Poetry and PDM test groups (``[tool.poetry.group.<test>]``,
``[tool.poetry.dev-dependencies]``, ``[tool.pdm.dev-dependencies]``), pinned to the versions
in ``poetry.lock``/``pdm.lock`` (the lock becomes a constraints file). Node: the lockfile
names the package manager (``npm ci``, ``pnpm install --frozen-lockfile``, ``yarn install
--frozen-lockfile``).
"""

from __future__ import annotations

import ast
import configparser
import hashlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from casm_dagster.safety.repo_scan import read_toml

RECIPE_VERSION = "2"  # bump when the way environments are built changes (new cache keys)
TEST_NAMES = ("test", "tests", "testing", "dev")
# What a test environment may depend on; every one found feeds the cache key.
KEY_FILES = (
    "pyproject.toml",
    "uv.lock",
    "poetry.lock",
    "pdm.lock",
    "setup.cfg",
    "setup.py",
    "tox.ini",
    "noxfile.py",
    "package.json",
    "package-lock.json",
    "pnpm-lock.yaml",
    "yarn.lock",
    ".casm.yaml",  # its setup steps
)
NODE_LOCKS = {"package-lock.json": "npm", "pnpm-lock.yaml": "pnpm", "yarn.lock": "yarn"}
_REQUIREMENT_FILES = re.compile(r"^(?:requirements[-_]?(?:dev|test|tests|testing)?|(?:dev|test)[-_]requirements)\.txt$")
_REQUIREMENT_DIRS = ("requirements", "requirements.d")


@dataclass
class PythonRecipe:
    """What to install for a Python repo's tests."""

    lock: bool = False  # uv.lock: uv sync --frozen
    groups: list[str] = field(default_factory=list)
    extras: list[str] = field(default_factory=list)
    requirements: list[str] = field(default_factory=list)  # repo-relative files
    packages: list[str] = field(default_factory=list)  # from tox/nox deps, Poetry/PDM test groups
    pins: list[str] = field(default_factory=list)  # name==version from poetry.lock / pdm.lock (constraints)
    installable: bool = False  # the repo is a package (pyproject with a build, setup.py, setup.cfg)
    notes: list[str] = field(default_factory=list)  # what was detected and what was skipped

    def describe(self) -> str:
        parts = ["uv.lock" if self.lock else ""]
        parts += [f"groups {', '.join(self.groups)}" if self.groups else ""]
        parts += [f"extras {', '.join(self.extras)}" if self.extras else ""]
        parts += [f"requirements {', '.join(self.requirements)}" if self.requirements else ""]
        parts += [f"{len(self.packages)} tox/nox/Poetry/PDM test deps" if self.packages else ""]
        pinned = f"{len(self.pins)} version{'s' if len(self.pins) != 1 else ''} pinned by the lock"
        parts += [pinned if self.pins else ""]
        return "; ".join(p for p in [*parts, *self.notes] if p) or "no declared test dependencies"


def _regular(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def cache_key(tree: Path, interpreter: str = sys.executable) -> str:
    """Content address of the environment: the manifests and lockfiles, the requirement
    files, the interpreter's version, and this recipe's version."""
    digest = hashlib.sha256(f"recipe {RECIPE_VERSION}\npython {sys.version}\n{interpreter}\n".encode())
    names = [n for n in KEY_FILES if _regular(tree / n)] + _requirement_files(tree)
    for name in sorted(names):
        digest.update(f"\n{name}\n".encode())
        digest.update((tree / name).read_bytes())
    return digest.hexdigest()[:24]


def _requirement_files(tree: Path) -> list[str]:
    found = [p.name for p in tree.glob("*.txt") if _REQUIREMENT_FILES.match(p.name) and _regular(p)]
    for folder in _REQUIREMENT_DIRS:
        base = tree / folder
        if base.is_dir() and not base.is_symlink():
            found += [f"{folder}/{p.name}" for p in base.glob("*.txt") if _regular(p) and _test_named(p.stem)]
    return sorted(found)


def _test_named(name: str) -> bool:
    return any(word in re.split(r"[-_.]", name.lower()) for word in TEST_NAMES)


def _tox_config(tree: Path, pyproject: dict) -> configparser.ConfigParser | None:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        if _regular(tree / "tox.ini"):
            parser.read_string((tree / "tox.ini").read_text(encoding="utf-8", errors="replace"))
            return parser
        legacy = pyproject.get("tool", {}).get("tox", {}).get("legacy_tox_ini")
        if isinstance(legacy, str):
            parser.read_string(legacy)
            return parser
    except configparser.Error:
        return None
    return None


def _tox_lines(parser: configparser.ConfigParser, section: str, key: str, depth: int = 0) -> list[str]:
    if depth > 4 or not parser.has_option(section, key):
        return []
    lines = []
    for raw in parser.get(section, key).splitlines():
        line = raw.split("#", 1)[0].strip()
        ref = re.fullmatch(r"\{\[([^\]]+)\](\w+)\}", line)
        if ref:
            lines += _tox_lines(parser, ref.group(1), ref.group(2), depth + 1)
        elif line and not re.match(r"^[\w,!-]+\s*:\s", line):  # factor-conditional lines are skipped
            lines.append(line)
    return lines


def _tox(tree: Path, pyproject: dict, recipe: PythonRecipe) -> None:
    parser = _tox_config(tree, pyproject)
    if parser is None or not parser.has_section("testenv"):
        return
    for line in _tox_lines(parser, "testenv", "deps"):
        if line.startswith("-r"):
            name = line[2:].strip().removeprefix("=").strip()
            if _inside(tree, name) and name not in recipe.requirements:
                recipe.requirements.append(name)
        elif line.startswith("-") or "{" in line:
            continue
        elif re.match(r"^(git\+|hg\+|svn\+|bzr\+|https?://|file:)", line) or " @ " in line:
            recipe.notes.append(f"tox dep {line!r} skipped (only package registries are reachable)")
        else:
            recipe.packages.append(line)
    for line in _tox_lines(parser, "testenv", "extras"):
        recipe.extras += [e.strip() for e in line.split(",") if e.strip() and e.strip() not in recipe.extras]
    for line in _tox_lines(parser, "testenv", "dependency_groups"):
        recipe.groups += [g.strip() for g in line.split(",") if g.strip() and g.strip() not in recipe.groups]
    recipe.notes.append("tox [testenv]")


def _nox(tree: Path, recipe: PythonRecipe) -> None:
    path = tree / "noxfile.py"
    if not _regular(path):
        return
    try:
        module = ast.parse(path.read_bytes())
    except (SyntaxError, ValueError):
        return
    for node in ast.walk(module):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "install":
            for arg in node.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and not arg.value.startswith("-"):
                    if arg.value not in (".", "-e", "-e.") and arg.value not in recipe.packages:
                        recipe.packages.append(arg.value)
    recipe.notes.append("noxfile.py session.install")


def _inside(tree: Path, name: str) -> bool:
    target = (tree / name).resolve()
    return target.is_relative_to(tree.resolve()) and _regular(tree / name)


def python_recipe(tree: Path) -> PythonRecipe | None:
    """None when the repo is not a Python project (no manifest, no requirements, no .py)."""
    pyproject = read_toml(tree / "pyproject.toml")
    recipe = PythonRecipe()
    recipe.installable = (
        _regular(tree / "setup.py")
        or _regular(tree / "setup.cfg")
        or bool(pyproject.get("project") and (pyproject.get("build-system") or _regular(tree / "setup.py")))
    )
    groups = pyproject.get("dependency-groups")
    if isinstance(groups, dict):
        recipe.groups += [g for g in groups if g in TEST_NAMES]
    extras = pyproject.get("project", {}).get("optional-dependencies")
    if isinstance(extras, dict):
        recipe.extras += [e for e in extras if e in TEST_NAMES]
    setup_cfg = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        if _regular(tree / "setup.cfg"):
            setup_cfg.read_string((tree / "setup.cfg").read_text(encoding="utf-8", errors="replace"))
            if setup_cfg.has_section("options.extras_require"):
                recipe.extras += [e for e in setup_cfg.options("options.extras_require") if e in TEST_NAMES]
    except configparser.Error:
        recipe.notes.append("setup.cfg could not be read")
    recipe.requirements += _requirement_files(tree)
    _tox(tree, pyproject, recipe)
    _nox(tree, recipe)
    recipe.lock = _regular(tree / "uv.lock") and bool(pyproject)
    _poetry_pdm_groups(pyproject, recipe)
    for lock in ("poetry.lock", "pdm.lock"):
        if _regular(tree / lock) and not recipe.lock:
            recipe.pins += _lock_pins(tree / lock)
    recipe.extras = list(dict.fromkeys(recipe.extras))
    recipe.groups = list(dict.fromkeys(recipe.groups))
    if not (pyproject or recipe.installable or recipe.requirements or recipe.packages):
        return None
    return recipe


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_VERSION = re.compile(r"^[A-Za-z0-9.+!_-]+$")


def _poetry_pdm_groups(pyproject: dict, recipe: PythonRecipe) -> None:
    """Test dependencies declared the Poetry or PDM way (names; the lock pins versions)."""
    poetry = pyproject.get("tool", {}).get("poetry", {})
    tables = []
    if isinstance(poetry, dict):
        groups = poetry.get("group", {})
        tables += [g.get("dependencies") for n, g in groups.items() if n in TEST_NAMES and isinstance(g, dict)] if (
            isinstance(groups, dict)) else []  # fmt: skip
        tables.append(poetry.get("dev-dependencies"))
    for table in tables:
        if isinstance(table, dict):
            recipe.packages += [n for n in table if isinstance(n, str) and n != "python" and _NAME.match(n)]
    pdm = pyproject.get("tool", {}).get("pdm", {}).get("dev-dependencies", {})
    for name, reqs in pdm.items() if isinstance(pdm, dict) else []:
        if name in TEST_NAMES and isinstance(reqs, list):
            recipe.packages += [r for r in reqs if isinstance(r, str) and not r.startswith(("-", "."))]
    recipe.packages = list(dict.fromkeys(recipe.packages))


def _lock_pins(lock: Path) -> list[str]:
    """``name==version`` for every registry package in a Poetry or PDM lock; packages from
    git, a URL or a local path are left to the resolver."""
    data = read_toml(lock)
    pins = []
    for package in data.get("package", []) if isinstance(data.get("package"), list) else []:
        if not isinstance(package, dict):
            continue
        name, version, source = package.get("name"), package.get("version"), package.get("source")
        local = isinstance(source, dict) and source.get("type") in ("git", "url", "file", "directory")
        local = local or any(k in package for k in ("git", "url", "path"))
        if isinstance(name, str) and isinstance(version, str) and _NAME.match(name) and _VERSION.match(version):
            if not local:
                pins.append(f"{name}=={version}")
    return sorted(set(pins))


def node_manager(tree: Path) -> tuple[str, str | None] | None:
    """The repo's own package manager and its lockfile, told by the lockfile (npm and no
    lockfile for a repo that declares ``package-lock=false``, as chalk does); None without a
    ``package.json``. Only what ``package.json`` declares is ever installed."""
    if not _regular(tree / "package.json"):
        return None
    for lock, manager in NODE_LOCKS.items():
        if _regular(tree / lock):
            return manager, lock
    return "npm", None


def setup_steps(tree: Path) -> tuple[list[str], str]:
    """The extra setup steps the repo's ``.casm.yaml`` asks for, and what is wrong with the
    file ("" when nothing is)."""
    from casm_dagster.prsentinel.settings import SETTINGS_FILE, parse_settings

    path = tree / SETTINGS_FILE
    if not _regular(path):
        return [], ""
    settings, problem = parse_settings(path.read_bytes())
    return list(settings.setup), (f"{SETTINGS_FILE} is malformed: {problem}" if problem else "")
