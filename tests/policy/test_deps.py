"""Dependency changes come from parsing the manifests on both sides (real two-commit git
repos read through GitRange), not from the diff text."""

from __future__ import annotations

import json

import pytest
from policy_support import codes

from casm_dagster.policy import deps
from casm_dagster.policy.deps import compare, major_key
from casm_dagster.policy.sources import GitRange, PatchOnly

DEP_CODES = {"DEP_NEW", "DEP_MAJOR_BUMP", "DEP_CHANGE", "DEP_FILE_CHANGED"}


def package_json(dependencies: dict[str, str], dev: dict[str, str] | None = None, indent: int = 2) -> str:
    data = {"name": "web", "version": "1.0.0", "scripts": {"test": "jest"}, "dependencies": dependencies}
    if dev is not None:
        data["devDependencies"] = dev
    return json.dumps(data, indent=indent) + "\n"


@pytest.fixture
def run_range(two_commits, evaluate):
    """Evaluate the change ``before`` → ``after`` with both sides read from git."""

    def run(before: dict, after: dict):
        repo, diff = two_commits(before, after)
        return evaluate(diff, GitRange(repo, "HEAD~1", "HEAD"))

    return run


def dep_signals(result) -> list[tuple[str, str, str]]:
    return [(s.reason_code, s.file, s.message) for s in result.signals if s.component == "dependency_change"]


def dep_component(result):
    return next(c for c in result.components if c.name == "dependency_change")


def test_package_json_new_dependency(run_range):
    before = {"package.json": package_json({"express": "^4.18.2"})}
    after = {"package.json": package_json({"express": "^4.18.2", "left-pad": "^1.3.0"})}
    result = run_range(before, after)

    assert dep_signals(result) == [("DEP_NEW", "package.json", "new npm dependency left-pad (^1.3.0)")]
    assert result.status == "gate"
    assert "touches_dependency_files" in result.conditions
    assert dep_component(result).contribution == pytest.approx(0.20)  # full weight


def test_package_json_major_bump(run_range):
    before = {"package.json": package_json({"lodash": "^4.17.0"})}
    after = {"package.json": package_json({"lodash": "^5.0.0"})}
    result = run_range(before, after)

    assert dep_signals(result) == [
        ("DEP_MAJOR_BUMP", "package.json", "npm dependency lodash: major version bump ^4.17.0 → ^5.0.0")
    ]
    assert dep_component(result).contribution == pytest.approx(0.20)


def test_package_json_minor_bump_is_a_change_only(run_range):
    before = {"package.json": package_json({"lodash": "^4.17.0"})}
    after = {"package.json": package_json({"lodash": "^4.18.0"})}
    result = run_range(before, after)

    assert dep_signals(result) == [
        ("DEP_CHANGE", "package.json", "npm dependency lodash: version change ^4.17.0 → ^4.18.0")
    ]
    assert not codes(result) & {"DEP_NEW", "DEP_MAJOR_BUMP"}
    assert dep_component(result).contribution == pytest.approx(0.10)  # half weight
    assert result.status == "gate"


def test_package_json_removed_dependency_is_a_change(run_range):
    before = {"package.json": package_json({"lodash": "^4.17.0", "moment": "^2.29.0"})}
    after = {"package.json": package_json({"lodash": "^4.17.0"})}
    result = run_range(before, after)
    assert dep_signals(result) == [("DEP_CHANGE", "package.json", "npm dependency moment removed (was ^2.29.0)")]


def test_package_json_reformatted_without_version_change(run_range):
    deps_before = {"express": "^4.18.2", "lodash": "^4.17.21", "zod": "^3.22.0"}
    before = {"package.json": package_json(deps_before, dev={"jest": "^29.0.0"})}
    reordered = dict(reversed(list(deps_before.items())))
    after = {"package.json": package_json(reordered, dev={"jest": "^29.0.0"}, indent=4)}
    result = run_range(before, after)

    # the file is recorded as changed, but nothing about versions is claimed
    assert not codes(result) & {"DEP_NEW", "DEP_MAJOR_BUMP", "DEP_CHANGE"}
    assert dep_signals(result) == [
        ("DEP_FILE_CHANGED", "package.json", "dependency file changed (npm): no dependency entry changed")
    ]
    (signal,) = [s for s in result.signals if s.component == "dependency_change"]
    assert signal.severity == "low"
    assert dep_component(result).contribution == 0.0
    assert result.notes == []
    # touching a dependency file still gates
    assert result.status == "gate"
    assert result.conditions == ["touches_dependency_files"]


def test_malformed_package_json_on_head_does_not_crash(run_range):
    before = {"package.json": package_json({"lodash": "^4.17.0"})}
    after = {"package.json": '{\n  "name": "web",\n  "dependencies": {"lodash": "^5.0.0",}\n'}
    result = run_range(before, after)

    (code, file, message) = dep_signals(result)[0]
    assert (code, file) == ("DEP_FILE_CHANGED", "package.json")
    assert "could not parse: not valid JSON" in message
    assert len(result.notes) == 1 and result.notes[0].startswith("package.json: could not parse: not valid JSON")
    assert dep_component(result).contribution == pytest.approx(0.05)  # 0.25 × weight 0.20
    assert result.status == "gate"


def test_nested_manifest_is_found(run_range):
    before = {"services/api/package.json": package_json({"express": "^4.18.2"})}
    after = {"services/api/package.json": package_json({"express": "^5.0.0"})}
    result = run_range(before, after)
    assert [(c, f) for c, f, _ in dep_signals(result)] == [("DEP_MAJOR_BUMP", "services/api/package.json")]


def test_requirements_txt(run_range):
    before = {"requirements.txt": "# pinned\nrequests==2.31.0\nurllib3>=1.26,<3  # transitive\n"}
    after = {"requirements.txt": "# pinned\nrequests==3.0.0\nurllib3>=1.26,<3  # transitive\nrich==13.7.0\n"}
    result = run_range(before, after)

    assert sorted(dep_signals(result)) == [
        ("DEP_MAJOR_BUMP", "requirements.txt", "python dependency requests: major version bump ==2.31.0 → ==3.0.0"),
        ("DEP_NEW", "requirements.txt", "new python dependency rich (==13.7.0)"),
    ]


PYPROJECT_BEFORE = """\
[project]
name = "svc"
version = "0.1.0"
dependencies = [
    "httpx>=0.27",
    "pydantic>=2.5,<3",
]

[tool.poetry.dependencies]
python = "^3.11"
django = "^4.2"
"""


def test_pyproject_project_and_poetry_tables(run_range):
    after = PYPROJECT_BEFORE.replace('    "pydantic>=2.5,<3",\n', '    "pydantic>=2.5,<3",\n    "Typer[all]>=0.9",\n')
    after = after.replace('django = "^4.2"', 'django = "^5.0"').replace('python = "^3.11"', 'python = "^3.12"')
    result = run_range({"pyproject.toml": PYPROJECT_BEFORE}, {"pyproject.toml": after})

    assert sorted(dep_signals(result)) == [
        ("DEP_MAJOR_BUMP", "pyproject.toml", "python dependency django: major version bump ^4.2 → ^5.0"),
        ("DEP_NEW", "pyproject.toml", "new python dependency typer (>=0.9)"),
    ]  # the python version itself is not a dependency


def test_pipfile(run_range):
    before = (
        '[[source]]\nurl = "https://pypi.org/simple"\n\n[packages]\nflask = "==2.3.0"\n\n[dev-packages]\npytest = "*"\n'
    )
    after = before.replace('flask = "==2.3.0"', 'flask = "==3.0.0"\ngunicorn = {version = "==21.2.0"}')
    result = run_range({"Pipfile": before}, {"Pipfile": after})
    assert sorted((c, m) for c, _, m in dep_signals(result)) == [
        ("DEP_MAJOR_BUMP", "python dependency flask: major version bump ==2.3.0 → ==3.0.0"),
        ("DEP_NEW", "new python dependency gunicorn (==21.2.0)"),
    ]


GO_MOD_BEFORE = """\
module example.com/svc

go 1.22

require (
	github.com/google/uuid v1.5.0
	golang.org/x/net v0.17.0 // indirect
)

require github.com/stretchr/testify v1.8.4
"""


def test_go_mod_require_block(run_range):
    after = GO_MOD_BEFORE.replace(
        "github.com/google/uuid v1.5.0", "github.com/google/uuid v1.6.0\n\tgithub.com/pkg/errors v0.9.1"
    )
    after = after.replace("golang.org/x/net v0.17.0", "golang.org/x/net v0.20.0")
    after = after.replace("testify v1.8.4", "testify v2.0.0")
    result = run_range({"go.mod": GO_MOD_BEFORE}, {"go.mod": after})
    assert sorted((c, m) for c, _, m in dep_signals(result)) == [
        ("DEP_CHANGE", "go dependency github.com/google/uuid: version change v1.5.0 → v1.6.0"),
        ("DEP_MAJOR_BUMP", "go dependency github.com/stretchr/testify: major version bump v1.8.4 → v2.0.0"),
        ("DEP_MAJOR_BUMP", "go dependency golang.org/x/net: major version bump v0.17.0 → v0.20.0"),
        ("DEP_NEW", "new go dependency github.com/pkg/errors (v0.9.1)"),
    ]


def test_cargo_toml(run_range):
    before = (
        '[package]\nname = "svc"\nversion = "0.1.0"\n\n'
        '[dependencies]\nserde = "1.0"\ntokio = { version = "1.35", features = ["full"] }\n'
    )
    after = before.replace('serde = "1.0"', 'serde = "2.0"\nanyhow = "1"')
    after = after.replace('version = "1.35"', 'version = "1.36"')
    after += "\n[target.'cfg(unix)'.dependencies]\nnix = \"0.27\"\n"
    result = run_range({"Cargo.toml": before}, {"Cargo.toml": after})
    assert sorted((c, m) for c, _, m in dep_signals(result)) == [
        ("DEP_CHANGE", "cargo dependency tokio: version change 1.35 → 1.36"),
        ("DEP_MAJOR_BUMP", "cargo dependency serde: major version bump 1.0 → 2.0"),
        ("DEP_NEW", "new cargo dependency anyhow (1)"),
        ("DEP_NEW", "new cargo dependency nix (0.27)"),
    ]


def toml_lock(packages: dict[str, str], extra: str = "") -> str:
    return "".join(f'[[package]]\nname = "{n}"\nversion = "{v}"\n{extra}\n' for n, v in packages.items())


@pytest.mark.parametrize(
    ("lockfile", "ecosystem"), [("poetry.lock", "python"), ("uv.lock", "python"), ("Cargo.lock", "cargo")]
)
def test_toml_lockfiles(run_range, lockfile, ecosystem):
    before = toml_lock({"alpha": "1.2.0", "beta": "0.3.1", "gamma": "0.3.1"})
    after = toml_lock({"alpha": "2.0.0", "beta": "0.4.0", "gamma": "0.3.2", "delta": "1.0.0"})
    result = run_range({lockfile: before}, {lockfile: after})
    assert sorted((c, m) for c, _, m in dep_signals(result)) == [
        ("DEP_CHANGE", f"{ecosystem} dependency gamma: version change 0.3.1 → 0.3.2"),
        ("DEP_MAJOR_BUMP", f"{ecosystem} dependency alpha: major version bump 1.2.0 → 2.0.0"),
        ("DEP_MAJOR_BUMP", f"{ecosystem} dependency beta: major version bump 0.3.1 → 0.4.0"),
        ("DEP_NEW", f"new {ecosystem} dependency delta (1.0.0)"),
    ]


def test_zero_x_semver_in_package_json(run_range):
    before = {"package.json": package_json({"a": "^0.3.0", "b": "0.3.1"})}
    after = {"package.json": package_json({"a": "^0.4.0", "b": "0.3.2"})}
    result = run_range(before, after)
    assert sorted((c, m) for c, _, m in dep_signals(result)) == [
        ("DEP_CHANGE", "npm dependency b: version change 0.3.1 → 0.3.2"),
        ("DEP_MAJOR_BUMP", "npm dependency a: major version bump ^0.3.0 → ^0.4.0"),
    ]


def test_unversioned_lockfile_is_recorded_without_details(run_range):
    before = {"yarn.lock": '# yarn lockfile v1\n\nlodash@^4.17.0:\n  version "4.17.20"\n'}
    after = {"yarn.lock": '# yarn lockfile v1\n\nlodash@^4.17.0:\n  version "4.17.21"\n'}
    result = run_range(before, after)
    (code, _, message) = dep_signals(result)[0]
    assert code == "DEP_FILE_CHANGED" and "lockfile format not versioned" in message
    assert result.status == "gate"


def test_patch_only_needs_a_base_for_a_modified_manifest(two_commits, evaluate):
    before = {"package.json": package_json({"express": "^4.18.2"})}
    after = {"package.json": package_json({"express": "^4.18.2", "left-pad": "^1.3.0"})}
    repo, diff = two_commits(before, after)

    without_base = evaluate(diff, PatchOnly())
    assert [c for c, _, _ in dep_signals(without_base)] == ["DEP_FILE_CHANGED"]
    assert "no base version" in without_base.notes[0]

    with_base = evaluate(diff, PatchOnly(repo, "HEAD~1"))
    from_git = evaluate(diff, GitRange(repo, "HEAD~1", "HEAD"))
    assert (
        dep_signals(with_base)
        == dep_signals(from_git)
        == [("DEP_NEW", "package.json", "new npm dependency left-pad (^1.3.0)")]
    )


def test_new_manifest_file_lists_every_dependency_as_new(two_commits, evaluate):
    repo, diff = two_commits({"README.md": "x\n"}, {"requirements.txt": "flask==3.0.0\nrequests>=2\n"})
    for source in (PatchOnly(), GitRange(repo, "HEAD~1", "HEAD")):
        result = evaluate(diff, source)
        assert sorted(c for c, _, _ in dep_signals(result)) == ["DEP_NEW", "DEP_NEW"]


# ---------------------------------------------------------------- compare / major_key directly


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        ("^4.17.0", (4,)),
        ("~1.2.3", (1,)),
        ("==2.31.0", (2,)),
        (">=1.26,<3", (1,)),
        ("v1.8.4", (1,)),
        ("0.3", (0, 3)),
        ("^0.3.1", (0, 3)),
        ("0", (0, 0)),
        ("10", (10,)),
        ("*", None),
        ("", None),
        ("latest", None),
    ],
)
def test_major_key(spec, key):
    assert major_key(spec) == key


def test_major_key_orders_zero_x_versions():
    assert major_key("0.4.0") > major_key("0.3.9")
    assert major_key("0.3.2") == major_key("0.3.1")
    assert major_key("1.0.0") > major_key("0.99.0")


def test_compare_kinds():
    old = package_json({"keep": "^1.0.0", "major": "^1.0.0", "minor": "^1.0.0", "gone": "^1.0.0", "zero": "0.3.0"})
    new = package_json({"keep": "^1.0.0", "major": "^2.0.0", "minor": "^1.1.0", "added": "^3.0.0", "zero": "0.4.0"})
    report = compare("package.json", old, new)
    assert (report.file, report.ecosystem, report.note) == ("package.json", "npm", None)
    assert [(c.name, c.kind, c.old, c.new) for c in report.changes] == [
        ("added", "new", None, "^3.0.0"),
        ("gone", "removed", "^1.0.0", None),
        ("major", "major", "^1.0.0", "^2.0.0"),
        ("minor", "changed", "^1.0.0", "^1.1.0"),
        ("zero", "major", "0.3.0", "0.4.0"),
    ]


def test_compare_downgrade_and_unversioned_are_changes_not_majors():
    report = compare("requirements.txt", "a==2.0\nb==1.0\nc\n", "a==1.0\nb\nc==5.0\n")
    assert [(c.name, c.kind) for c in report.changes] == [("a", "changed"), ("b", "changed"), ("c", "changed")]


def test_compare_new_and_deleted_files():
    assert [c.kind for c in compare("Cargo.toml", None, '[dependencies]\nserde = "1"\n').changes] == ["new"]
    assert [c.kind for c in compare("go.mod", "module m\nrequire x.org/y v1.0.0\n", None).changes] == ["removed"]


def test_compare_python_names_are_canonical():
    report = compare("requirements.txt", "Django==4.2\nzope.interface==6.0\n", "django==4.2.1\nzope-interface==6.0\n")
    assert [(c.name, c.kind) for c in report.changes] == [("django", "changed")]


def test_compare_malformed_and_unknown_files():
    broken = compare("package.json", '{"dependencies": {}}', "{not json")
    assert broken.changes == [] and broken.note.startswith("could not parse: not valid JSON")
    broken_toml = compare("pyproject.toml", "[project]\n", "[project\n")
    assert broken_toml.changes == [] and broken_toml.note.startswith("could not parse: not valid TOML")
    lock = compare("pnpm-lock.yaml", "a", "b")
    assert (lock.ecosystem, lock.changes) == ("npm", []) and "not versioned" in lock.note
    assert deps.parser_for("src/app.py") == ("unknown", None)
    assert deps.parser_for("requirements/dev.txt")[1] is deps.parse_requirements
    assert deps.parser_for("requirements-dev.txt")[1] is deps.parse_requirements


def test_patch_only_rebuilds_a_manifest_holding_a_unicode_line_separator(two_commits, evaluate):
    """U+2028 is legal inside a JSON string and is not a line break for git; rebuilding the
    head side from base + hunks must not treat it as one."""
    data = {"name": "web", "description": "first line\u2028second line", "dependencies": {"express": "^4.18.2"}}
    before = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    data["dependencies"]["left-pad"] = "^1.3.0"
    after = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    repo, diff = two_commits({"package.json": before}, {"package.json": after})

    from_git = evaluate(diff, GitRange(repo, "HEAD~1", "HEAD"))
    assert [c for c, _, _ in dep_signals(from_git)] == ["DEP_NEW"]
    rebuilt = evaluate(diff, PatchOnly(repo, "HEAD~1"))
    assert rebuilt.notes == []
    assert dep_signals(rebuilt) == dep_signals(from_git)
