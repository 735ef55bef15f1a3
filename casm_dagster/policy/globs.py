"""Path patterns: one glob semantics for every ruleset entry.

A pattern always matches the *whole* repo-relative POSIX path (never a substring):
``*`` matches within one path segment, ``?`` one character, ``[abc]`` a class, and a
segment that is exactly ``**`` matches zero or more whole segments. Matching is
case-sensitive. Patterns may not start with ``/`` (paths are already relative to the
repo root) and may not contain ``..``; such patterns are rejected when the ruleset loads.
"""

from __future__ import annotations

import re
from collections.abc import Iterable


class GlobError(ValueError):
    pass


def _segment_regex(segment: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(segment):
        ch = segment[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = segment.find("]", i + 1)
            if end == -1:
                raise GlobError("unclosed '[' in character class")
            body = segment[i + 1 : end]
            if not body:
                raise GlobError("empty character class '[]'")
            if "/" in body:
                raise GlobError("a character class cannot match '/' (classes stay within one segment)")
            negated = body[0] == "!"
            body = body[1:] if negated else body
            # A negated class must not match '/' either: every wildcard stays in its segment.
            out.append(("[^/" if negated else "[") + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def glob_to_regex(pattern: str) -> str:
    if not pattern or not pattern.strip():
        raise GlobError("empty pattern")
    if pattern.startswith("/"):
        raise GlobError(
            "patterns are relative to the repo root and must not start with '/' "
            "(write '**/auth/**' for any directory named auth, 'auth/**' for the top-level one)"
        )
    if pattern.endswith("/"):
        raise GlobError("a trailing '/' is ambiguous: write 'dir/**' for everything under a directory")
    segments = pattern.split("/")
    if ".." in segments or "." in segments:
        raise GlobError("'.' and '..' segments are not allowed")
    parts: list[str] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            parts.append(".*" if last else "(?:[^/]+/)*")
        elif "**" in segment:
            raise GlobError("'**' must be a whole path segment (e.g. '**/*.sh', not 'a**b')")
        else:
            parts.append(_segment_regex(segment) + ("" if last else "/"))
    return "^" + "".join(parts) + "$"


def compile_glob(pattern: str) -> re.Pattern[str]:
    """The glob as a compiled regex, or a GlobError saying why it is not one (a reversed
    range like ``[z-a]`` translates fine and fails only when compiled)."""
    try:
        return re.compile(glob_to_regex(pattern))
    except re.error as exc:
        raise GlobError(f"invalid pattern: {exc.msg}") from None


class GlobSet:
    """Several patterns compiled once into one regex per pattern (first match reported)."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = list(patterns)
        self._compiled = [(p, compile_glob(p)) for p in self.patterns]

    def match(self, path: str) -> str | None:
        for pattern, regex in self._compiled:
            if regex.match(path):
                return pattern
        return None
