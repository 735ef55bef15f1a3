"""Enumerate the files of a commit safely: what may be read, and what is skipped and why.

Only regular files tracked at the audited commit are read. Symlinks (which could point
outside the repository), submodules, binaries, non-UTF-8 text and oversized files are
listed as skipped, never opened.
"""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from casm_dagster.contracts.findings import SkippedFile
from casm_dagster.safety.gitops import git

MAX_FILE_BYTES = 1024 * 1024
_SNIFF_BYTES = 8192

LANGUAGE_BY_SUFFIX = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".jsx": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".ts": "typescript",
    ".tsx": "typescript",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".kt": "kotlin",
    ".rb": "ruby",
    ".php": "php",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".hpp": "cpp",
    ".cs": "csharp",
    ".swift": "swift",
    ".scala": "scala",
    ".sh": "shell",
    ".bash": "shell",
}


@dataclass(frozen=True)
class SourceFile:
    path: str  # repo-relative POSIX path
    language: str | None
    text: str

    @property
    def loc(self) -> int:
        return sum(1 for line in self.text.splitlines() if line.strip())


@dataclass(frozen=True)
class Inventory:
    files: list[SourceFile]
    skipped: list[SkippedFile]

    def by_language(self, language: str) -> list[SourceFile]:
        return [f for f in self.files if f.language == language]

    @property
    def languages(self) -> list[str]:
        return sorted({f.language for f in self.files if f.language})


def _tree_entries(worktree: Path) -> list[tuple[str, int, str]]:
    """(mode, size, path) for every entry of HEAD's tree, sorted by path."""
    raw = git(worktree, "ls-tree", "-r", "-z", "--long", "--full-tree", "HEAD").stdout
    entries = []
    for record in raw.split(b"\0"):
        if not record:
            continue
        meta, _, name = record.partition(b"\t")
        mode, _type, _obj, size = meta.split()
        try:
            path = name.decode("utf-8")
        except UnicodeDecodeError:
            # Artifacts are JSON (UTF-8): keep a readable, escaped name and never read it.
            path = "\0" + name.decode("utf-8", "backslashreplace")
        entries.append((mode.decode(), int(size) if size != b"-" else 0, path))
    return sorted(entries, key=lambda e: e[2])


def read_toml(path: Path) -> dict:
    """A repo's TOML file as data, or {} when it is missing, a symlink (it may point out of
    the repo) or unreadable: configuration is read, never trusted to exist or parse."""
    if not path.is_file() or path.is_symlink():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}


def _inside(root: Path, candidate: Path) -> bool:
    try:
        candidate.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def scan(worktree: Path) -> Inventory:
    files: list[SourceFile] = []
    skipped: list[SkippedFile] = []
    for mode, size, path in _tree_entries(worktree):
        if path.startswith("\0"):
            skipped.append(SkippedFile(path=path[1:], reason="unsafe_path"))
            continue
        if mode == "120000":
            skipped.append(SkippedFile(path=path, reason="symlink"))
            continue
        if mode == "160000":
            skipped.append(SkippedFile(path=path, reason="submodule"))
            continue
        if size > MAX_FILE_BYTES:
            skipped.append(SkippedFile(path=path, reason="too_large"))
            continue
        full = worktree / path
        # Belt and braces: a parent directory could itself be a symlink in the checkout.
        try:
            info = os.lstat(full)
        except OSError:
            skipped.append(SkippedFile(path=path, reason="unsafe_path"))
            continue
        if not stat.S_ISREG(info.st_mode) or not _inside(worktree, full):
            skipped.append(SkippedFile(path=path, reason="unsafe_path"))
            continue
        data = full.read_bytes()
        if b"\0" in data[:_SNIFF_BYTES]:
            skipped.append(SkippedFile(path=path, reason="binary"))
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            skipped.append(SkippedFile(path=path, reason="not_utf8"))
            continue
        language = LANGUAGE_BY_SUFFIX.get(PurePosixPath(path).suffix.lower())
        files.append(SourceFile(path=path, language=language, text=text))
    return Inventory(files=files, skipped=skipped)
