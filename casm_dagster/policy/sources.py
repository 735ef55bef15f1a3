"""Where the policy engine gets both sides of a changed file (for dependency parsing).

``GitRange`` reads blobs from the repository's object store (never the working tree, so
nothing outside the repo can be reached). ``PatchOnly`` rebuilds what it can from the
diff itself, optionally on top of a base commit of a repository.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from casm_dagster.errors import RepoError
from casm_dagster.policy.diff import DiffError, FileDiff, apply_hunks
from casm_dagster.safety import gitops

MAX_BLOB_BYTES = 20 * 1024 * 1024


class Unavailable(Exception):
    """Why one side of a file cannot be read (recorded as a note, never fatal)."""


class FileSource(Protocol):
    def texts(self, file: FileDiff) -> tuple[str | None, str | None]: ...


def _blob(repo: Path, rev: str, path: str) -> str | None:
    """The file at ``rev`` (``":"`` is the index), or None when it does not exist there."""
    spec = f":{path}" if rev == ":" else f"{rev}:{path}"
    probe = gitops.git(repo, "cat-file", "-s", spec, check=False)
    if probe.returncode != 0:
        return None
    if int(probe.stdout.strip() or 0) > MAX_BLOB_BYTES:
        raise Unavailable(f"{path} is larger than {MAX_BLOB_BYTES} bytes at {rev}")
    data = gitops.git(repo, "cat-file", "blob", spec).stdout
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise Unavailable(f"{path} is not UTF-8 at {rev}") from None


class GitRange:
    """Both sides from git: ``base`` and ``head`` revisions (``head=":"`` means the index)."""

    def __init__(self, repo: Path, base: str, head: str) -> None:
        self.repo, self.base, self.head = repo, base, head

    def texts(self, file: FileDiff) -> tuple[str | None, str | None]:
        old = _blob(self.repo, self.base, file.old_path) if file.old_path else None
        new = _blob(self.repo, self.head, file.new_path) if file.new_path else None
        return old, new


class PatchOnly:
    """Old side from ``repo@base`` when given, else only what the diff itself holds."""

    def __init__(self, repo: Path | None = None, base: str | None = None) -> None:
        self.repo, self.base = repo, base

    def texts(self, file: FileDiff) -> tuple[str | None, str | None]:
        if file.old_path is None:
            return None, "\n".join(line.text for line in file.added_lines()) + "\n"
        if self.repo is None or self.base is None:
            if file.new_path is None:
                return "\n".join(line.text for line in file.removed_lines()) + "\n", None
            raise Unavailable("no base version to rebuild the file from (pass --repo)")
        try:
            old = _blob(self.repo, self.base, file.old_path)
        except RepoError as exc:
            raise Unavailable(str(exc)) from None
        if old is None:
            raise Unavailable(f"{file.old_path} does not exist at {self.base}")
        if file.new_path is None:
            return old, None
        try:
            return old, apply_hunks(old, file.hunks)
        except DiffError as exc:
            raise Unavailable(f"{exc} ({self.base})") from None
