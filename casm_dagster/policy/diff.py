"""Unified diffs (``git diff`` and plain ``diff -u``) parsed in one linear pass.

Only what the policy engine needs: per file the old/new path, status, modes, binary flag
and hunks with the line numbers of every added and removed line. ``apply_hunks`` rebuilds
a file's new text from its old text, so manifests can be parsed whole on both sides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Literal

from casm_dagster.errors import ConfigError

_HUNK = re.compile(rb"^@@ -(\d{1,9})(?:,(\d{1,9}))? \+(\d{1,9})(?:,(\d{1,9}))? @@")
_ESCAPES = {"a": "\a", "b": "\b", "t": "\t", "n": "\n", "v": "\v", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}

FileStatus = Literal["added", "deleted", "modified", "renamed"]


class DiffError(ConfigError):
    """The diff cannot be parsed or names a path outside the repository."""


@dataclass
class Line:
    kind: Literal["+", "-"]
    text: str
    number: int  # new-file line number for "+", old-file line number for "-"


@dataclass
class Hunk:
    old_start: int
    old_len: int
    new_start: int
    new_len: int
    raw: bytes = b""  # the hunk as it appears in the diff (hashed, never stored)
    body: list[tuple[str, str]] = field(default_factory=list)  # (" "|"+"|"-", text) in order
    old_no_newline: bool = False  # the old side's last line has no newline
    new_no_newline: bool = False

    def mark_no_newline(self) -> None:
        kind = self.body[-1][0] if self.body else " "
        if kind in ("-", " "):
            self.old_no_newline = True
        if kind in ("+", " "):
            self.new_no_newline = True

    @property
    def added(self) -> list[Line]:
        return self._lines("+")

    @property
    def removed(self) -> list[Line]:
        return self._lines("-")

    def _lines(self, want: str) -> list[Line]:
        out: list[Line] = []
        old, new = self.old_start, self.new_start
        for kind, text in self.body:
            text = text.removesuffix("\r")  # CRLF content or a CRLF-saved diff: scan the line itself
            if kind == "+":
                if want == "+":
                    out.append(Line("+", text, new))
                new += 1
            elif kind == "-":
                if want == "-":
                    out.append(Line("-", text, old))
                old += 1
            else:
                old += 1
                new += 1
        return out


@dataclass
class FileDiff:
    old_path: str | None
    new_path: str | None
    old_mode: str | None = None
    new_mode: str | None = None
    binary: bool = False
    hunks: list[Hunk] = field(default_factory=list)

    @property
    def path(self) -> str:
        return self.new_path or self.old_path or ""

    @property
    def status(self) -> FileStatus:
        if self.old_path is None:
            return "added"
        if self.new_path is None:
            return "deleted"
        if self.old_path != self.new_path:
            return "renamed"
        return "modified"

    def added_lines(self) -> list[Line]:
        return [line for hunk in self.hunks for line in hunk.added]

    def removed_lines(self) -> list[Line]:
        return [line for hunk in self.hunks for line in hunk.removed]


def _unquote(raw: str) -> str:
    """git's C-style quoted path (``"a/we ird \\"x\\".py"``, octal escapes for non-ASCII)."""
    if not (raw.startswith('"') and raw.endswith('"') and len(raw) >= 2):
        return raw
    body = raw[1:-1]
    out = bytearray()
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt in "01234567":
                value = int(body[i + 1 : i + 4], 8)
                if value > 255:
                    raise DiffError(f"malformed quoted path {raw!r}")
                out.append(value)
                i += 4
                continue
            out += _ESCAPES.get(nxt, nxt).encode()
            i += 2
            continue
        out += ch.encode()
        i += 1
    return out.decode("utf-8", "replace")


def _clean_path(raw: str, strip_prefix: bool) -> str | None:
    text = _unquote(raw.split("\t", 1)[0].rstrip() if not raw.startswith('"') else raw.rstrip())
    if text == "/dev/null":
        return None
    if strip_prefix and len(text) > 2 and text[1] == "/" and text[0] in "abciwo":
        text = text[2:]
    pure = PurePosixPath(text)
    if not text or pure.is_absolute() or ".." in pure.parts:
        raise DiffError(f"the diff names a path outside the repository: {text!r}")
    return str(pure)


def _split_git_header(rest: str) -> tuple[str, str] | None:
    """``diff --git a/x b/x``: split the two paths (quoted, or split at the middle ' b/')."""
    if rest.startswith('"'):
        match = re.match(r'^("(?:[^"\\]|\\.)*") (.*)$', rest)
        return (match.group(1), match.group(2)) if match else None
    if rest.endswith('"'):  # only the new path is quoted: a/plain.py "b/na\303\257ve.py"
        index = rest.rfind(' "')
        return (rest[:index], rest[index + 1 :]) if index != -1 else None
    half = len(rest) // 2
    if not rest:
        return None
    if rest[half] == " " and rest[:half].removeprefix("a/") == rest[half + 1 :].removeprefix("b/"):
        return rest[:half], rest[half + 1 :]
    index = rest.find(" b/")
    return (rest[:index], rest[index + 1 :]) if index != -1 else None


def parse_diff(data: bytes) -> list[FileDiff]:
    """Parse a unified diff. Raises ``DiffError`` for text that is not a diff at all."""
    files: list[FileDiff] = []
    current: FileDiff | None = None
    hunk: Hunk | None = None
    remaining_old = remaining_new = 0
    raw_lines = data.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    hunk_chunks: list[bytes] = []

    def close_hunk() -> None:
        nonlocal hunk
        if hunk is not None:
            hunk.raw = b"\n".join(hunk_chunks)
            hunk_chunks.clear()
        hunk = None

    for number, raw in enumerate(raw_lines, start=1):
        if hunk is not None and (remaining_old > 0 or remaining_new > 0):
            tag = raw[:1]
            text = raw[1:].decode("utf-8", "replace")
            if tag == b"+":
                hunk.body.append(("+", text))
                remaining_new -= 1
            elif tag == b"-":
                hunk.body.append(("-", text))
                remaining_old -= 1
            elif tag == b" " or raw == b"":
                hunk.body.append((" ", text))
                remaining_old -= 1
                remaining_new -= 1
            elif tag == b"\\":
                hunk.mark_no_newline()
            else:
                raise DiffError(f"diff line {number}: hunk ends early (expected more lines)")
            hunk_chunks.append(raw)
            continue
        if raw.startswith(b"\\") and hunk is not None:
            hunk.mark_no_newline()  # "\ No newline at end of file" after the hunk's last line
            hunk_chunks.append(raw)
            continue
        close_hunk()
        line = raw.decode("utf-8", "replace").rstrip("\r")
        if line.startswith("diff --git "):
            pair = _split_git_header(line[len("diff --git ") :])
            if pair is None:
                raise DiffError(f"diff line {number}: cannot read the paths of {line!r}")
            current = FileDiff(old_path=_clean_path(pair[0], True), new_path=_clean_path(pair[1], True))
            files.append(current)
        elif line.startswith("--- ") and current is not None and not current.hunks:
            current.old_path = _clean_path(line[4:], True)
        elif line.startswith("--- "):
            current = FileDiff(old_path=_clean_path(line[4:], True), new_path=None)
            files.append(current)
        elif line.startswith("+++ ") and current is not None and not current.hunks:
            current.new_path = _clean_path(line[4:], True)
        elif line.startswith("new file mode ") and current is not None:
            current.old_path, current.new_mode = None, line.rsplit(" ", 1)[-1]
        elif line.startswith("deleted file mode ") and current is not None:
            current.new_path, current.old_mode = None, line.rsplit(" ", 1)[-1]
        elif line.startswith("old mode ") and current is not None:
            current.old_mode = line.rsplit(" ", 1)[-1]
        elif line.startswith("new mode ") and current is not None:
            current.new_mode = line.rsplit(" ", 1)[-1]
        elif line.startswith(("rename from ", "copy from ")) and current is not None:
            current.old_path = _clean_path(line.split(" ", 2)[2], False)
        elif line.startswith(("rename to ", "copy to ")) and current is not None:
            current.new_path = _clean_path(line.split(" ", 2)[2], False)
        elif line.startswith(("Binary files ", "GIT binary patch")) and current is not None:
            current.binary = True
        elif line == "-- ":
            current = None  # git format-patch's signature separator: what follows is not a diff
        elif current is not None and line[:1] in ("+", "-", " ") and line.strip():
            raise DiffError(f"diff line {number}: a change line outside any hunk (hunk line counts are wrong)")
        elif line.startswith("@@"):
            match = _HUNK.match(raw)
            if match is None or current is None:
                raise DiffError(f"diff line {number}: malformed hunk header {line[:80]!r}")
            old_len = int(match.group(2)) if match.group(2) is not None else 1
            new_len = int(match.group(4)) if match.group(4) is not None else 1
            hunk = Hunk(int(match.group(1)), old_len, int(match.group(3)), new_len)
            hunk_chunks.append(raw)
            current.hunks.append(hunk)
            remaining_old, remaining_new = old_len, new_len
    if hunk is not None and (remaining_old > 0 or remaining_new > 0):
        raise DiffError("the diff ends in the middle of a hunk (truncated?)")
    close_hunk()
    if not files and data.strip():
        raise DiffError("not a unified diff: no 'diff --git' or '---'/'+++' file headers found")
    return files


def apply_hunks(old_text: str, hunks: list[Hunk]) -> str:
    """The new text of a file from its old text and hunks; raises ``DiffError`` on mismatch.

    Lines are split at ``\n`` only, as git does; line endings (CRLF too) and the final
    newline, or its absence ("\\ No newline at end of file"), come out as the diff says.
    """
    old_lines = old_text.split("\n")
    final_newline = old_text.endswith("\n") or old_text == ""
    if final_newline:
        old_lines.pop()
    out: list[str] = []
    cursor = 0  # index into old_lines
    for hunk in hunks:
        start = hunk.old_start if hunk.old_len == 0 else max(hunk.old_start - 1, 0)
        if start < cursor or start > len(old_lines):
            raise DiffError("the diff does not apply to the base version of the file")
        out.extend(old_lines[cursor:start])
        cursor = start
        for kind, text in hunk.body:
            if kind == "+":
                out.append(text)
                continue
            # A diff saved with CRLF endings still applies to an LF file (and the reverse).
            if cursor >= len(old_lines) or old_lines[cursor].removesuffix("\r") != text.removesuffix("\r"):
                raise DiffError("the diff does not apply to the base version of the file")
            if kind == " ":
                out.append(old_lines[cursor])
            cursor += 1
        if hunk.new_no_newline:
            final_newline = False
        elif hunk.old_no_newline:
            final_newline = True  # the diff added the missing final newline
    out.extend(old_lines[cursor:])
    return "\n".join(out) + ("\n" if final_newline and out else "")
