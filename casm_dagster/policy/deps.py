"""Dependency changes, found by parsing the manifests on both sides of a diff.

Each parser turns one file's text into ``{package: version spec}``; comparing the two
sides gives new dependencies, major version bumps (for 0.x versions the minor number is
the breaking one, as semver says), other version changes and removals. Files we know are
dependency files but cannot version (``yarn.lock``, ``pnpm-lock.yaml``, ``go.sum``,
``Gemfile.lock``) report a change without details.
"""

from __future__ import annotations

import configparser
import json
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Literal

ChangeKind = Literal["new", "major", "changed", "removed"]
Parsed = dict[str, str]
MAX_MANIFEST_BYTES = 20 * 1024 * 1024


class ManifestError(ValueError):
    pass


@dataclass(frozen=True)
class DepChange:
    file: str
    ecosystem: str
    name: str
    kind: ChangeKind
    old: str | None
    new: str | None


@dataclass(frozen=True)
class DepReport:
    file: str
    ecosystem: str
    changes: list[DepChange]
    note: str | None = None  # why versions could not be compared, when they could not


_PEP508_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")
_VERSION = re.compile(r"(\d{1,9})(?:\.(\d{1,9}))?")


def _canonical_py(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pep508(requirement: str) -> tuple[str, str] | None:
    text = requirement.split(";", 1)[0].strip()
    match = _PEP508_NAME.match(text)
    if not match:
        return None
    return _canonical_py(match.group(1)), match.group(3).strip()


# Parse errors are reported by position only: a parser's message may quote the offending
# line, and that line may hold a credential.
def _toml(text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        where = re.search(r"\(at line \d+, column \d+\)|\(at end of document\)", str(exc))
        raise ManifestError(f"not valid TOML {where.group(0) if where else ''}".rstrip()) from None
    except ValueError:  # e.g. an integer beyond Python's digit limit
        raise ManifestError("not valid TOML (a value is out of range)") from None


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"not valid JSON (line {exc.lineno}, column {exc.colno})") from None
    except ValueError:
        raise ManifestError("not valid JSON (a value is out of range)") from None


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _spec_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for key in ("version", "tag", "rev", "branch", "git", "path", "url"):
            if isinstance(value.get(key), str):
                return value[key] if key == "version" else f"{key}:{value[key]}"
    return ""


def parse_package_json(text: str) -> Parsed:
    data = _mapping(_json(text))
    out: Parsed = {}
    for section in ("optionalDependencies", "peerDependencies", "devDependencies", "dependencies"):
        for name, spec in _mapping(data.get(section)).items():
            out[name] = spec if isinstance(spec, str) else ""
    return out


def parse_package_lock(text: str) -> Parsed:
    data = _mapping(_json(text))
    out: Parsed = {}
    for key, entry in _mapping(data.get("packages")).items():
        if key and "node_modules/" in key and isinstance(entry, dict):
            out[key.rsplit("node_modules/", 1)[1]] = str(entry.get("version", ""))
    if not out:
        for name, entry in _mapping(data.get("dependencies")).items():
            out[name] = str(_mapping(entry).get("version", ""))
    return out


def _pep508_list(items: Any, out: Parsed) -> None:
    for item in items if isinstance(items, list) else []:
        if isinstance(item, str) and (parsed := _pep508(item)):
            out[parsed[0]] = parsed[1]


def _poetry_table(table: Any, out: Parsed) -> None:
    for name, spec in _mapping(table).items():
        if name.lower() != "python":
            out[_canonical_py(name)] = _spec_of(spec)


def parse_pyproject(text: str) -> Parsed:
    data = _toml(text)
    out: Parsed = {}
    project = _mapping(data.get("project"))
    _pep508_list(_mapping(data.get("build-system")).get("requires"), out)
    _pep508_list(project.get("dependencies"), out)
    for items in _mapping(project.get("optional-dependencies")).values():
        _pep508_list(items, out)
    for items in _mapping(data.get("dependency-groups")).values():
        _pep508_list(items, out)
    poetry = _mapping(_mapping(data.get("tool")).get("poetry"))
    _poetry_table(poetry.get("dependencies"), out)
    _poetry_table(poetry.get("dev-dependencies"), out)
    for group in _mapping(poetry.get("group")).values():
        _poetry_table(_mapping(group).get("dependencies"), out)
    return out


def parse_requirements(text: str) -> Parsed:
    out: Parsed = {}
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-", "git+", "http:", "https:", "file:", ".", "/")):
            continue
        if parsed := _pep508(line):
            out[parsed[0]] = parsed[1]
    return out


def parse_setup_cfg(text: str) -> Parsed:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        line = getattr(exc, "lineno", None)
        raise ManifestError(f"not a valid setup.cfg{f' (line {line})' if line else ''}") from None
    out: Parsed = {}
    if parser.has_option("options", "install_requires"):
        out.update(parse_requirements(parser.get("options", "install_requires")))
    if parser.has_section("options.extras_require"):
        for _, value in parser.items("options.extras_require"):
            out.update(parse_requirements(value))
    return out


def parse_pipfile(text: str) -> Parsed:
    data = _toml(text)
    out: Parsed = {}
    _poetry_table(data.get("packages"), out)
    _poetry_table(data.get("dev-packages"), out)
    return out


def parse_pipfile_lock(text: str) -> Parsed:
    data = _mapping(_json(text))
    out: Parsed = {}
    for section in ("develop", "default"):
        for name, entry in _mapping(data.get(section)).items():
            out[_canonical_py(name)] = str(_mapping(entry).get("version", ""))
    return out


def parse_toml_lock(text: str) -> Parsed:
    """poetry.lock, uv.lock, Cargo.lock: ``[[package]]`` tables with name and version."""
    out: Parsed = {}
    packages = _toml(text).get("package", [])
    for package in packages if isinstance(packages, list) else []:
        if isinstance(package, dict) and isinstance(package.get("name"), str):
            out[package["name"]] = str(package.get("version", ""))
    return out


def parse_cargo_toml(text: str) -> Parsed:
    data = _toml(text)
    out: Parsed = {}
    tables = [data, _mapping(data.get("workspace")), *(_mapping(t) for t in _mapping(data.get("target")).values())]
    for table in tables:
        for section in ("dependencies", "dev-dependencies", "build-dependencies"):
            for name, spec in _mapping(table.get(section)).items():
                out[name] = _spec_of(spec)
    return out


_GO_REQUIRE = re.compile(r"^\s*(?:require\s+)?([A-Za-z0-9._~/-]+\.[A-Za-z0-9._~/-]+)\s+(v[0-9][^\s]*)")


def parse_go_mod(text: str) -> Parsed:
    out: Parsed = {}
    in_block = False
    for raw in text.splitlines():
        line = raw.split("//", 1)[0].rstrip()
        stripped = line.strip()
        if stripped.startswith("require ("):
            in_block = True
            continue
        if in_block and stripped == ")":
            in_block = False
            continue
        if (in_block or stripped.startswith("require ")) and (match := _GO_REQUIRE.match(line)):
            out[match.group(1)] = match.group(2)
    return out


_GEM = re.compile(r"""^\s*gem\s+['"]([^'"]+)['"](?:\s*,\s*['"]([^'"]+)['"])?""")


def parse_gemfile(text: str) -> Parsed:
    return {m.group(1): m.group(2) or "" for line in text.splitlines() if (m := _GEM.match(line))}


_PARSERS: list[tuple[re.Pattern[str], str, Callable[[str], Parsed] | None]] = [
    (re.compile(r"^package\.json$"), "npm", parse_package_json),
    (re.compile(r"^(?:package-lock|npm-shrinkwrap)\.json$"), "npm", parse_package_lock),
    (re.compile(r"^(?:pnpm-lock\.yaml|yarn\.lock)$"), "npm", None),
    (re.compile(r"^pyproject\.toml$"), "python", parse_pyproject),
    (re.compile(r"^(?:requirements|constraints).*\.(?:txt|in)$"), "python", parse_requirements),
    (re.compile(r"^setup\.cfg$"), "python", parse_setup_cfg),
    (re.compile(r"^Pipfile$"), "python", parse_pipfile),
    (re.compile(r"^Pipfile\.lock$"), "python", parse_pipfile_lock),
    (re.compile(r"^(?:poetry|uv)\.lock$"), "python", parse_toml_lock),
    (re.compile(r"^go\.mod$"), "go", parse_go_mod),
    (re.compile(r"^go\.sum$"), "go", None),
    (re.compile(r"^Cargo\.toml$"), "cargo", parse_cargo_toml),
    (re.compile(r"^Cargo\.lock$"), "cargo", parse_toml_lock),
    (re.compile(r"^Gemfile$"), "ruby", parse_gemfile),
    (re.compile(r"^Gemfile\.lock$"), "ruby", None),
]


def parser_for(path: str) -> tuple[str, Callable[[str], Parsed] | None]:
    name = PurePosixPath(path).name
    if PurePosixPath(path).parent.name == "requirements" and name.endswith(".txt"):
        return "python", parse_requirements
    for pattern, ecosystem, parser in _PARSERS:
        if pattern.match(name):
            return ecosystem, parser
    return "unknown", None


def major_key(spec: str) -> tuple[int, ...] | None:
    """The breaking part of a version spec: (major,) or (0, minor) for 0.x; None if unversioned."""
    match = _VERSION.search(spec)
    if not match:
        return None
    major = int(match.group(1))
    if major == 0:
        return (0, int(match.group(2) or 0))
    return (major,)


def compare(file: str, old_text: str | None, new_text: str | None) -> DepReport:
    ecosystem, parser = parser_for(file)
    if parser is None:
        return DepReport(file, ecosystem, [], note="lockfile format not versioned by CASM; change recorded only")
    for side, text in (("base", old_text), ("head", new_text)):
        if text is not None and len(text) > MAX_MANIFEST_BYTES:
            return DepReport(file, ecosystem, [], note=f"{side} version larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        before = parser(old_text) if old_text is not None else {}
        after = parser(new_text) if new_text is not None else {}
    except (ManifestError, RecursionError) as exc:
        return DepReport(file, ecosystem, [], note=f"could not parse: {exc}")
    except (ValueError, TypeError, AttributeError):  # a well-formed file of an unexpected shape
        return DepReport(file, ecosystem, [], note="could not parse: unexpected structure")
    changes: list[DepChange] = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if old is None:
            kind: ChangeKind = "new"
        elif new is None:
            kind = "removed"
        else:
            old_key, new_key = major_key(old), major_key(new)
            kind = "major" if old_key and new_key and new_key > old_key else "changed"
        changes.append(DepChange(file, ecosystem, name, kind, old, new))
    return DepReport(file, ecosystem, changes)
