"""``casm demo``: a fresh git repository made from the bundled ``examples/demo-repo``."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from casm_dagster.errors import ConfigError
from casm_dagster.run.templates import bundled_dir
from casm_dagster.safety import gitops

_IGNORE = shutil.ignore_patterns("__pycache__", ".pytest_cache", ".benchmarks", "*.pyc", ".git")


def demo_source() -> Path:
    source = bundled_dir("examples") / "demo-repo"
    if not source.is_dir():
        raise ConfigError(f"the bundled demo repo is missing: {source}")
    return source


def make_demo_repo(parent: Path | None = None) -> Path:
    """Copy the demo into a new temp dir and commit it (the user's files are never used)."""
    where = Path(tempfile.mkdtemp(prefix="casm-demo-", dir=parent)) / "demo-repo"
    shutil.copytree(demo_source(), where, ignore=_IGNORE, symlinks=True)
    gitops.git(where, "init", "--quiet", "--initial-branch=main")
    gitops.git(where, "add", "--all")
    gitops.commit_staged(where, "Initial commit of the CASM demo repo")
    return where
