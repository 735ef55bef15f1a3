"""The repo's own rules: ruff runs with the repo's configuration (or, without one, for bugs
only), formats only when the repo declares ruff's formatter, refuses a configuration that
reaches outside the repo, and never deletes a public name on its own."""

from __future__ import annotations

import os
from pathlib import Path

from helpers import git, make_repo

from casm_dagster.agents import fixer
from casm_dagster.agents.python_tools import ruff_settings, ruff_version
from casm_dagster.agents.reviewer import review
from casm_dagster.safety.repo_scan import scan

OURS = ruff_version() or (0, 0)


def _hooks(rev: str, top: str = "", format_hook: str = "") -> str:
    """A .pre-commit-config.yaml running ruff-pre-commit at ``rev``."""
    return (f"{top}repos:\n- repo: https://github.com/astral-sh/ruff-pre-commit\n  rev: {rev}\n  hooks:\n"
            f"    - id: ruff-check\n      args: [--fix]\n    - id: ruff-format\n{format_hook}")  # fmt: skip


def _review(repo: Path):
    findings, runs = review(repo, scan(repo), [])
    return findings, {r.name: r for r in runs}


def _plan(repo: Path, tmp_path: Path):
    findings, _ = _review(repo)
    return fixer.plan_fixes(repo, findings, git(repo, "rev-parse", "HEAD"), tmp_path / "patches"), findings


REQUESTS_LIKE = {
    "pyproject.toml": (
        '[project]\nname = "reqs"\nversion = "0"\n\n'
        "[tool.ruff]\nline-length = 100\n\n"
        '[tool.ruff.lint]\nselect = ["F", "I", "UP", "E", "W"]\nignore = ["UP006"]\n\n'
        '[tool.ruff.lint.per-file-ignores]\n"src/reqs/compat.py" = ["F401"]\n'
    ),
    "src/reqs/__init__.py": "from reqs.api import get\n",
    "src/reqs/compat.py": "from urllib.parse import urlparse, quote\n",
    "src/reqs/api.py": (
        "import os\nfrom typing import Dict\n\n\ndef get(url) -> Dict[str, str]:\n    return {'u': url}\n"
    ),
}


def test_the_repos_own_ignores_are_not_findings(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", REQUESTS_LIKE)
    findings, runs = _review(repo)
    rules = {(f.file, f.rule) for f in findings if f.analyser == "ruff"}
    assert ("src/reqs/api.py", "F401") in rules  # selected and not ignored
    assert ("src/reqs/compat.py", "F401") not in rules  # per-file-ignores
    assert ("src/reqs/compat.py", "I001") in rules  # what it does not ignore there still counts
    assert not any(r == "UP006" for _, r in rules)  # ignored on purpose
    assert "the repo's own configuration (pyproject.toml)" in runs["ruff"].detail
    # No [tool.ruff.format] and no ruff-format hook: the repo's style is left alone.
    assert runs["ruff-format"].status == "skipped"
    plan, _ = _plan(repo, tmp_path)
    touched = {f for g in plan.groups for f in g.files}
    assert touched == {"src/reqs/api.py", "src/reqs/compat.py"}
    assert "quote, urlparse" in (repo / "src/reqs/compat.py").read_text()  # sorted, both names kept
    assert "from typing import Dict" in (repo / "src/reqs/api.py").read_text()  # UP006/UP035 untouched
    assert "'u'" in (repo / "src/reqs/api.py").read_text()  # no formatter: quotes stay


def test_a_config_whose_extend_leaves_the_repo_is_not_used(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.toml"
    outside.write_text('[lint]\nselect = ["ALL"]\n', encoding="utf-8")
    repo = make_repo(tmp_path / "repo", {"ruff.toml": f'extend = "{outside}"\n', "a.py": "import os\n"})
    settings = ruff_settings(repo)
    assert settings.config is None and "extend points outside the repo" in settings.note
    _, runs = _review(repo)
    assert "extend points outside the repo" in runs["ruff"].detail
    relative = make_repo(tmp_path / "rel", {"ruff.toml": 'extend = "../elsewhere.toml"\n', "a.py": "x = 1\n"})
    assert ruff_settings(relative).config is None
    inside = make_repo(tmp_path / "in", {"ruff.toml": 'extend = "base.toml"\n', "base.toml": "", "a.py": "x = 1\n"})
    assert ruff_settings(inside).config == "ruff.toml"


def test_a_symlinked_config_is_not_used(tmp_path: Path) -> None:
    (tmp_path / "evil.toml").write_text('[lint]\nselect = ["ALL"]\n', encoding="utf-8")
    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    os.symlink(tmp_path / "evil.toml", repo / "ruff.toml")
    settings = ruff_settings(repo)
    assert settings.config is None and "symlink" in settings.note


def test_without_a_config_only_bugs_are_reported_and_only_styleless_fixes_made(tmp_path: Path) -> None:
    # tqdm-like: flake8/isort/yapf, no ruff configuration.
    repo = make_repo(tmp_path / "repo", {
        "setup.cfg": "[flake8]\nmax-line-length = 99\n",
        "mod.py": 'import sys, os\ndef f(x):\n    print(f"plain")\n    return getattr(x, "name")\n',
    })  # fmt: skip
    findings, runs = _review(repo)
    rules = {f.rule for f in findings if f.analyser == "ruff"}
    assert {"F401", "F541", "B009"} <= rules
    assert not rules & {"E401", "I001", "E302", "W292", "UP"}  # style is the maintainers' business
    fixable = {f.rule for f in findings if f.auto_fixable}
    assert fixable == {"F541", "B009"}  # F401 could delete a name; only style-free fixes
    assert "bugs only" in runs["ruff"].detail
    assert runs["ruff-format"].status == "skipped"
    plan, _ = _plan(repo, tmp_path)
    text = git(repo, "show", "HEAD:mod.py")
    assert text.startswith("import sys, os\ndef f(x):\n")  # untouched layout and imports
    assert 'print("plain")' in text and "return x.name" in text
    assert {r for g in plan.groups for r in g.rules} <= {"F541", "B009", "follow-up"}


def test_the_formatter_runs_only_when_the_repo_declares_it(tmp_path: Path) -> None:
    files = {"a.py": "x = {'a':1}\n"}
    declared = make_repo(tmp_path / "declared", {**files, "ruff.toml": '[format]\nquote-style = "double"\n'})
    hooked = make_repo(tmp_path / "hooked", {
        **files,
        "ruff.toml": "line-length = 100\n",
        ".pre-commit-config.yaml": _hooks(f"v{OURS[0]}.{OURS[1]}.0"),
    })  # fmt: skip
    undeclared = make_repo(tmp_path / "undeclared", {**files, "ruff.toml": "line-length = 100\n"})
    assert ruff_settings(declared).formats and ruff_settings(hooked).formats
    assert not ruff_settings(undeclared).formats
    findings, _ = _review(declared)
    assert any(f.analyser == "ruff-format" for f in findings)
    findings, _ = _review(undeclared)
    assert not any(f.analyser == "ruff-format" for f in findings)


def test_an_unused_import_that_is_public_api_is_kept(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {
        "ruff.toml": '[lint]\nselect = ["F"]\n',
        "pkg/__init__.py": "from pkg.core import run\n",
        "pkg/core.py": "def run():\n    return 1\n",
        "pkg/compat.py": "from json import loads, dumps\nimport os\n",  # loads is re-exported
        "pkg/user.py": "from pkg.compat import loads\n\n\ndef use():\n    return loads('1')\n",
        "pkg/listed.py": "import sys\n\n__all__ = ['sys']\n",
    })  # fmt: skip
    findings, _ = _review(repo)
    f401 = {(f.file, f.message.split("`")[1]): f for f in findings if f.rule == "F401"}
    assert not f401[("pkg/__init__.py", "pkg.core.run")].auto_fixable  # ruff itself calls it unsafe
    assert not f401[("pkg/compat.py", "json.loads")].auto_fixable
    assert "imported from this module by pkg/user.py" in f401[("pkg/compat.py", "json.loads")].message
    # dumps shares the re-export's statement: the statement is kept whole.
    assert not f401[("pkg/compat.py", "json.dumps")].auto_fixable
    assert f401[("pkg/compat.py", "os")].auto_fixable
    plan, _ = _plan(repo, tmp_path)
    # ruff's F401 fix would take loads with os: the fixer undoes compat.py and says so.
    assert git(repo, "show", "HEAD:pkg/compat.py") == "from json import loads, dumps\nimport os"
    assert any(n.startswith("ruff-F401: left pkg/compat.py unchanged") and "loads" in n for n in plan.notes)
    assert git(repo, "show", "HEAD:pkg/__init__.py") == "from pkg.core import run"


def test_the_fixer_undoes_a_group_that_deletes_an_imported_name(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {
        "ruff.toml": '[lint]\nselect = ["F"]\n',
        "pkg/__init__.py": "",
        "pkg/compat.py": "import os\nfrom json import loads\n",
        "app.py": "from pkg.compat import loads\n\nprint(loads('1'))\n",
    })  # fmt: skip
    # ruff fixes F401 per file: removing `os` would also remove `loads` on a naive pass;
    # the guard must leave compat.py's public names in place.
    plan, _ = _plan(repo, tmp_path)
    assert git(repo, "show", "HEAD:pkg/compat.py") == "import os\nfrom json import loads"
    assert all("pkg/compat.py" not in g.files for g in plan.groups)
    assert any("left pkg/compat.py unchanged" in n and "loads" in n for n in plan.notes)


def test_a_module_with_all_keeps_its_unused_imports(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {
        "ruff.toml": '[lint]\nselect = ["F"]\n',
        "listed.py": "import sys\nimport os\nx: int = 1\n__all__ = ['sys']\n__all__ += ['x']\n",
        "plain.py": "import os\nY = 2\n",
    })  # fmt: skip
    findings, _ = _review(repo)
    f401 = {f.file: f for f in findings if f.rule == "F401"}
    assert not f401["listed.py"].auto_fixable and "__all__" in f401["listed.py"].message
    assert f401["plain.py"].auto_fixable


def test_a_formatter_pinned_to_another_ruff_version_is_not_run(tmp_path: Path) -> None:
    """Another minor version formats differently: the maintainers' hook would undo it."""
    other = f"v{OURS[0]}.{OURS[1] + 1}.0"
    repo = make_repo(tmp_path / "pinned", {"a.py": "x = {'a':1}\n", "ruff.toml": "[format]\n",
                                           ".pre-commit-config.yaml": _hooks(other)})  # fmt: skip
    settings = ruff_settings(repo)
    assert not settings.formats and other in settings.note
    findings, runs = _review(repo)
    assert not any(f.analyser == "ruff-format" for f in findings)
    assert other in runs["ruff"].detail


def test_ruff_runs_only_on_the_files_the_repos_pre_commit_hooks_cover(tmp_path: Path) -> None:
    """requests' shape: a top-level ``exclude`` for docs/ and a ruff-format hook that skips
    one test file whose byte layout its tests depend on."""
    unformatted = "x = {'a':1}\n"
    precommit = _hooks(f"v{OURS[0]}.{OURS[1]}.3", top="exclude: 'docs/|ext/'\n\n",
                       format_hook="      exclude: tests/test_lowlevel.py\n")  # fmt: skip
    repo = make_repo(tmp_path / "repo", {
        "ruff.toml": "[lint]\nselect = ['F']\n", ".pre-commit-config.yaml": precommit,
        "tests/test_lowlevel.py": unformatted, "docs/conf.py": "import os\n" + unformatted,
        "src/a.py": unformatted, "src/b.py": "import os\n",
    })  # fmt: skip
    findings, runs = _review(repo)
    assert {(f.analyser, f.file) for f in findings if f.analyser.startswith("ruff")} == {
        ("ruff-format", "src/a.py"),
        ("ruff", "src/b.py"),
    }
    assert "pre-commit hooks" in runs["ruff"].detail
    plan, _ = _plan(repo, tmp_path)
    changed = {path for group in plan.groups for path in group.files}
    assert changed == {"src/a.py", "src/b.py"}


def test_a_pre_commit_config_with_yaml_anchors_is_not_read(tmp_path: Path) -> None:
    bomb = "a: &a [x, x]\nb: &b [*a, *a]\nrepos: [*b]\n"
    repo = make_repo(tmp_path / "repo", {"ruff.toml": "[format]\n", ".pre-commit-config.yaml": bomb, "a.py": "x=1\n"})
    settings = ruff_settings(repo)
    assert settings.formats and settings.lint_scope is None
