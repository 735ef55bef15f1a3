"""Diff heuristics: patterns on added lines, risky deletions, suppressions, file modes.

Patterns are compiled once per ruleset. A pattern's keywords are searched in a hunk's
text with ``str.find``; its regex runs only on the lines that hold one, so the cost stays
linear in the diff with a small constant (see benchmarks/policy_scan.py).
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

from casm_dagster.policy import pyexec
from casm_dagster.policy.diff import FileDiff, Hunk
from casm_dagster.policy.published_keys import published_source
from casm_dagster.policy.ruleset import Pattern, Ruleset

COMPONENTS = (
    "secret_like",
    "command_execution",
    "unsafe_deserialization",
    "permission_escalation",
    "suppression_comments",
)
LANGUAGES = ("python", "javascript", "shell", "yaml", "dockerfile", "other")

_EXTENSIONS = {
    ".py": "python",
    ".pyi": "python",
    ".pyw": "python",
    ".js": "javascript",
    ".jsx": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".ts": "javascript",
    ".tsx": "javascript",
    ".mts": "javascript",
    ".cts": "javascript",
    ".sh": "shell",
    ".bash": "shell",
    ".zsh": "shell",
    ".ksh": "shell",
    ".yml": "yaml",
    ".yaml": "yaml",
    ".dockerfile": "dockerfile",
}

# Placeholders are documentation, not credentials: "ghp_...", "xxxx", "<token>", "${VAR}",
# AWS's documented EXAMPLE keys, and values made of one or two repeated characters.
_PLACEHOLDER = re.compile(
    r"\.\.\.|…|x{4,}|X{4,}|\*{3,}|<[^>]*>|\$\{|\$\(|\{\{|%\(|EXAMPLE|example|dummy|DUMMY|placeholder|PLACEHOLDER"
    r"|changeme|CHANGEME|your[_-]|YOUR[_-]|redacted|REDACTED|fake|FAKE|sample|SAMPLE"
    r"|0123456789|123456789|abcdefghij|ABCDEFGHIJ|#{4,}|abc123|123abc|(?i:qwerty|random|(?:token|key|secret|string)here)"
)
_HEX = re.compile(r"[0-9a-fA-F]+")
_MASKED = re.compile(r"#{3}|\*{3}")  # not in any token's alphabet: the rest of the value is masked
_ALPHABETS = ("0123456789", "abcdefghijklmnopqrstuvwxyz")


def _ascending(text: str) -> bool:
    return any(text in alphabet for alphabet in _ALPHABETS)


_PLACEHOLDER_WORDS = {"password", "passwd", "pass", "secret", "token", "changeme", "user", "username", "pwd", "test"}
_TEST_PATH = re.compile(
    r"(?:^|/)(?:tests?|__tests__|spec)/|(?:^|/)test_[^/]*\.py$|_test\.(?:py|go)$|\.(?:test|spec)\.[cm]?[jt]sx?$"
)
_TEST_DEF = re.compile(
    r"^\s*(?:async\s+)?def\s+test\w*\s*\(|^\s*(?:it|test|describe)(?:\.\w+)?\s*\(|^\s*func\s+Test\w*\s*\("
)
_PEM_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")
_PEM_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")
_BASE64_LINE = re.compile(r"^[A-Za-z0-9+/]{40,76}={0,2}$")
_KEY_FILE = re.compile(r"(?:^|/)(?:id_(?:rsa|dsa|ecdsa|ed25519)|[^/]*\.(?:key|p8))$")  # not .pem: certificates
_WORKFLOW = re.compile(r"^\.github/workflows/[^/]+\.ya?ml$")
_PERMISSIONS_KEY = re.compile(r"^\s*permissions\s*:")


_SHEBANG = re.compile(r"^#!\s*(?:/usr/bin/env\s+(?:-S\s+)?)?(?:\S*/)?(\w+)")
_INTERPRETERS = {
    "sh": "shell", "bash": "shell", "zsh": "shell", "ksh": "shell", "dash": "shell",
    "python": "python", "python3": "python", "node": "javascript", "deno": "javascript", "bun": "javascript",
}  # fmt: skip


def language_of(path: str, first_line: str | None = None) -> str:
    """From the file name; an extensionless script by its shebang; Makefiles run shell."""
    name = PurePosixPath(path).name
    if name in ("Dockerfile", "Containerfile") or name.startswith(("Dockerfile.", "Containerfile.")):
        return "dockerfile"
    if name in ("Makefile", "makefile", "GNUmakefile") or name.endswith(".mk"):
        return "shell"
    language = _EXTENSIONS.get(PurePosixPath(name).suffix.lower(), "other")
    if language == "other" and first_line and (match := _SHEBANG.match(first_line)):
        return _INTERPRETERS.get(match.group(1).rstrip("0123456789.") or match.group(1), "other")
    return language


def _first_line(file: FileDiff) -> str | None:
    """Line 1 of the new file, when the diff shows it (a new file, or a hunk at the top)."""
    for hunk in file.hunks:
        if hunk.new_start <= 1:
            for kind, text in hunk.body:
                if kind != "-":
                    return text
    return None


def placeholder_reason(value: str) -> str | None:
    """Why a value shaped like a secret is a placeholder, or None when it may be real."""
    if published := published_source(value):
        return published
    if _PLACEHOLDER.search(value):
        return "placeholder text"
    if value.lower() in _PLACEHOLDER_WORDS:
        return "placeholder word"
    if len(set(value)) <= 2:  # "aaaa", "abab", "0000"
        return "repeated characters"
    # Long random tokens use most of their alphabet: 16 random base-36 characters are
    # almost never fewer than 8 distinct ones; a hex window draws from 16 symbols, so it
    # needs fewer than 6 (at 8, 1 real hex token in 90 was dismissed; at 6, about 1 in
    # 50,000). Short values (passwords) get no such pass: "rootroot" is weak, not a placeholder.
    window = value[-16:]
    if len(value) >= 16 and len(set(window)) < (6 if _HEX.fullmatch(window) else 8):
        return "too few distinct characters"
    lowered = value.lower()
    # Six characters in a row ("123456", "bcdefg"): about 1 in 40,000 random hex tokens.
    if any(_ascending(lowered[i : i + 6]) for i in range(len(lowered) - 5)):
        return "sequential characters"
    segments = [s for s in re.split(r"[-_.:]", lowered) if s]
    if any(len(s) >= 4 and _ascending(s) for s in segments):  # xoxb-12345-…, sk-…-abcd-…
        return "sequential characters"
    long_segments = [s for s in segments if len(s) >= 3]
    if len(long_segments) >= 3 and len(set(long_segments)) < len(long_segments) - 1:  # xoxp-1234-1234-1234-…
        return "repeated segments"
    return None


def is_placeholder(value: str) -> bool:
    return placeholder_reason(value) is not None


PLACEHOLDER_ID = "secret-placeholder"  # a secret-shaped value dismissed as a placeholder

# Both sides of a changed file, read on demand (None when they cannot be read).
Texts = Callable[[], tuple[str | None, str | None] | None]


@dataclass(frozen=True)
class Hit:
    component: str  # a COMPONENTS name, or "risky_deletions" / "structure"
    pattern_id: str
    file: str
    line: int
    hunk: Hunk | None
    note: str = ""  # a dismissed secret-shaped value: which format, and why it is not one


class _Compiled:
    def __init__(self, component: str, pattern: Pattern) -> None:
        self.component = component
        self.id = pattern.id
        self.regex = re.compile(pattern.regex)
        self.keywords = tuple(k.lower() for k in pattern.keywords)


class Scanner:
    def __init__(self, ruleset: Ruleset) -> None:
        heuristics = ruleset.model.diff_heuristics
        self._allow = [re.compile(r) for r in ruleset.model.secret_allowlist]
        self._added: dict[str, list[_Compiled]] = {lang: [] for lang in LANGUAGES}
        self._removed: dict[str, list[_Compiled]] = {lang: [] for lang in LANGUAGES}
        for component in COMPONENTS:
            for pattern in getattr(heuristics, component).patterns:
                for lang in _targets(pattern):
                    self._added[lang].append(_Compiled(component, pattern))
        for pattern in heuristics.risky_deletions.patterns:
            for lang in _targets(pattern):
                self._removed[lang].append(_Compiled("risky_deletions", pattern))
        # The AST check belongs to command_execution: a ruleset that gives that component
        # no Python pattern has opted out of it for Python too.
        self._python_exec = any(p.component == "command_execution" for p in self._added["python"])

    def scrub(self, text: str) -> str:
        for pattern in self._added["other"]:
            if pattern.component == "secret_like":
                text = pattern.regex.sub("[REDACTED]", text)
        return text

    def _dismissed(self, match: re.Match[str]) -> str | None:
        """Why a secret pattern's match is not a secret (a placeholder, the ruleset's
        allowlist), or None."""
        value = match.groupdict().get("secret") or match.group(0)
        if any(a.search(match.group(0)) for a in self._allow):
            return "in the ruleset's secret_allowlist"
        if _MASKED.match(match.string, match.end()):  # "xoxp-5723…-####": the rest is masked out
            return "masked (the value goes on as ### or ***)"
        return placeholder_reason(value)

    def scan_file(self, file: FileDiff, texts: Texts | None = None) -> list[Hit]:
        """Pattern hits; with ``texts`` (both sides of the file, or None when they cannot be
        read), Python's added command execution from the AST too."""
        lang = language_of(file.path, _first_line(file))
        hits: list[Hit] = []
        for hunk in file.hunks:
            hits += self._scan_lines(self._added[lang], file.path, hunk, "+")
        if lang == "python" and self._python_exec and texts is not None and file.new_path and not file.binary:
            hits += _exec_hits(file, texts, {h.line for h in hits if h.component == "command_execution"})
        hits += self._deletions(file, lang)
        hits += _private_key_bodies(file)
        hits += _structure(file)
        return hits

    def _scan_lines(self, patterns: list[_Compiled], path: str, hunk: Hunk, kind: str) -> list[Hit]:
        """Keywords are found with ``str.find`` over the hunk's text at once (C speed);
        only the lines holding one are matched against the pattern's regex."""
        lines = hunk.added if kind == "+" else hunk.removed
        if not patterns or not lines:
            return []
        # Lower each line on its own: lowering can change a string's length ("İ" → "i̇"),
        # and line offsets must be those of the lowered text the keywords are found in.
        lowered_lines = [line.text.lower() for line in lines]
        lowered = "\n".join(lowered_lines)
        starts: list[int] | None = None
        found: list[tuple[int, int, str]] = []  # (line index, pattern order, why dismissed or "")
        for order, pattern in enumerate(patterns):
            if not pattern.keywords:
                candidates: Iterable[int] = range(len(lines))
            else:
                positions = [p for k in pattern.keywords for p in _all_positions(lowered, k)]
                if not positions:
                    continue
                if starts is None:
                    starts = _line_starts(lowered_lines)
                candidates = sorted({bisect.bisect_right(starts, p) - 1 for p in positions})
            for index in candidates:
                dismissed = None
                for match in pattern.regex.finditer(lines[index].text):
                    why = self._dismissed(match) if pattern.component == "secret_like" else None
                    if why:
                        dismissed = dismissed or why
                        continue
                    found.append((index, order, ""))
                    break
                else:
                    if dismissed:  # recorded, not counted: the reason code says why
                        found.append((index, order, f"{pattern.id}: {dismissed}"))
        found.sort()
        return [
            Hit("", PLACEHOLDER_ID, path, lines[i].number, hunk, note)
            if note
            else Hit(patterns[o].component, patterns[o].id, path, lines[i].number, hunk)
            for i, o, note in found
        ]

    def _deletions(self, file: FileDiff, lang: str) -> list[Hit]:
        """A removed check counts only if the file does not re-add it (moved code is not removed)."""
        patterns = self._removed[lang]
        removed = [h for hunk in file.hunks for h in self._scan_lines(patterns, file.path, hunk, "-")]
        if not removed:
            return []
        re_added = Counter(
            h.pattern_id for hunk in file.hunks for h in self._scan_lines(patterns, file.path, hunk, "+")
        )
        kept: list[Hit] = []
        for hit in removed:
            if re_added[hit.pattern_id] > 0:
                re_added[hit.pattern_id] -= 1
            else:
                kept.append(hit)
        return kept


def _exec_hits(file: FileDiff, texts: Texts, regex_lines: set[int]) -> list[Hit]:
    """Calls the AST check finds on lines no command_execution pattern already flagged."""
    added = {line.number for line in file.added_lines()}
    if not added:
        return []
    calls: list[pyexec.ExecCall] | None
    old, new = texts() or (None, None)
    calls = pyexec.added_calls(old, new, added) if new is not None else None
    if calls is None:  # no whole file, or it does not parse: the hunks on their own
        calls = pyexec.added_calls_in_fragments([_fragment(h) for h in file.hunks])
    hits = []
    for call in calls:
        if call.line not in regex_lines:
            regex_lines.add(call.line)
            hunk = next((h for h in file.hunks if h.new_start <= call.line < h.new_start + max(h.new_len, 1)), None)
            hits.append(Hit("command_execution", call.pattern_id, file.path, call.line, hunk))
    return hits


def _fragment(hunk: Hunk) -> tuple[str, str, int, list[tuple[int, str]]]:
    old = "\n".join(text for kind, text in hunk.body if kind != "+")
    new = "\n".join(text for kind, text in hunk.body if kind != "-")
    return old, new, hunk.new_start, [(line.number, line.text) for line in hunk.added]


def _all_positions(text: str, needle: str) -> Iterator[int]:
    at = text.find(needle)
    while at != -1:
        yield at
        at = text.find(needle, at + 1)


def _line_starts(lines: list[str]) -> list[int]:
    starts, offset = [], 0
    for line in lines:
        starts.append(offset)
        offset += len(line) + 1
    return starts


def _targets(pattern: Pattern) -> list[str]:
    return list(LANGUAGES) if "any" in pattern.languages else list(pattern.languages)


def _private_key_bodies(file: FileDiff) -> list[Hit]:
    """Key material added inside a private key whose header is only context (a rotated key
    keeps its BEGIN/END lines), or base64 lines added to a key file."""
    if any(kind == "+" and _PEM_BEGIN.search(text) for hunk in file.hunks for kind, text in hunk.body):
        return []  # an added header is already a secret_like hit; one signal per key
    key_file = bool(_KEY_FILE.search(file.path))
    hits: list[Hit] = []
    for hunk in file.hunks:
        inside = False
        number = hunk.new_start
        for kind, text in hunk.body:
            if kind == "-":
                continue
            if _PEM_BEGIN.search(text):
                inside = True
            elif _PEM_END.search(text):
                inside = False
            elif kind == "+" and (inside or (key_file and _BASE64_LINE.match(text.strip()))):
                hits.append(Hit("secret_like", "private-key-material", file.path, number, hunk))
                break  # one signal per hunk: the key, not each of its lines
            number += 1
    return hits


def _structure(file: FileDiff) -> list[Hit]:
    """Signals from the shape of the change rather than from patterns."""
    hits: list[Hit] = []
    path = file.path
    if _TEST_PATH.search(path):
        if file.status == "deleted":
            hits.append(Hit("risky_deletions", "test-file-deleted", path, 1, file.hunks[0] if file.hunks else None))
        else:
            removed = [(line, h) for h in file.hunks for line in h.removed if _TEST_DEF.match(line.text)]
            added = sum(1 for h in file.hunks for line in h.added if _TEST_DEF.match(line.text))
            for line, hunk in removed[added:] if added < len(removed) else []:
                hits.append(Hit("risky_deletions", "test-removed", path, line.number, hunk))
    if _WORKFLOW.match(path) and file.status != "deleted":
        removed = [(line, h) for h in file.hunks for line in h.removed if _PERMISSIONS_KEY.match(line.text)]
        added = any(_PERMISSIONS_KEY.match(line.text) for h in file.hunks for line in h.added)
        if removed and not added:
            line, hunk = removed[0]
            hits.append(Hit("risky_deletions", "workflow-permissions-removed", path, line.number, hunk))
    if file.old_mode == "100644" and file.new_mode == "100755":
        hits.append(Hit("permission_escalation", "git-mode-executable", path, 1, None))
    if file.new_mode == "120000" and file.old_mode != "120000":
        hits.append(Hit("structure", "symlink-added", path, 1, file.hunks[0] if file.hunks else None))
    if file.binary:
        hits.append(Hit("structure", "binary-unscanned", path, 1, None))
    return hits
