"""Scratch checkouts: every stage works in its own detached ``git worktree`` in a private
temp dir, removed afterwards, so the user's working tree and current branch are never
touched. The only thing left in the target repo is the delivered branch."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from casm_dagster.safety import gitops


@contextlib.contextmanager
def scratch_checkout(repo: Path, commit: str) -> Iterator[Path]:
    parent = Path(tempfile.mkdtemp(prefix="casm-wt-"))
    where = parent / "checkout"
    try:
        gitops.add_worktree(repo, where, commit)
        yield where
    finally:
        gitops.remove_worktree(repo, where)
        shutil.rmtree(parent, ignore_errors=True)
