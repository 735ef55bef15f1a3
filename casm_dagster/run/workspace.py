"""Scratch checkouts: every stage works in its own private clone of the repo in a temp
dir, removed afterwards, so the user's working tree and current branch are never touched.
The clone does not point back at the user's repo (no remote, no shared git dir, its own
git dir kept outside the tree the target's code can write); commits made in it are copied
into the user's object store on the way out. The only ref CASM writes in the target repo
is the delivered branch."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from casm_dagster.run import leftovers
from casm_dagster.safety import gitops


@contextlib.contextmanager
def scratch_checkout(repo: Path, commit: str) -> Iterator[Path]:
    parent = Path(tempfile.mkdtemp(prefix=leftovers.owned_prefix("casm-wt-")))
    where = parent / "checkout"
    try:
        gitops.clone_scratch(repo, where, parent / "git", commit)
        yield where
        gitops.return_commits(repo, where, commit)
    finally:
        gitops.forget_scratch(where)
        shutil.rmtree(parent, ignore_errors=True)
