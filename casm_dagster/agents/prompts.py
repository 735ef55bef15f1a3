"""Every prompt CASM sends to a model (SPEC §5): the reviewer, the fixer, docgen and
redteam-lite. Each prompt names its output shape (``agents.answers`` checks it) and the
answer the offline provider gives. File contents are redacted before they are sent (a
provider is not a place for a repo's secrets either)."""

from __future__ import annotations

from casm_dagster.contracts.findings import Finding
from casm_dagster.llm.providers import Prompt
from casm_dagster.safety.redact import redact

MAX_FILE_CHARS = 24_000  # larger files are not sent whole (recorded as not model-reviewed)
NO_CHANGE = "NO_CHANGE"

REVIEW_SYSTEM = (
    "You are CASM's code reviewer. Report real defects only: bugs, security problems, "
    "code smells that hurt maintenance, performance problems, missing documentation of public APIs. "
    'Answer with one JSON object and nothing else: {"findings": [{"line": <1-based line>, '
    '"severity": "info|low|medium|high", "category": "bug|security|smell|performance|docs", '
    '"message": "<one sentence, at most 200 characters>"}]}. No findings: {"findings": []}.'
)
FIX_SYSTEM = (
    "You are CASM's fixer. Propose the smallest safe change that fixes the listed findings in ONE file. "
    "Answer with a unified diff of that file only (--- a/PATH, +++ b/PATH, @@ hunks with exact context), "
    f"and nothing else; answer {NO_CHANGE} when no safe fix exists. Never touch other files, never change "
    "dependencies, CI workflows or tests' expectations."
)
DOCGEN_SYSTEM = (
    "You are CASM's documentation writer. Add docstrings to the listed public functions and classes of ONE "
    "Python file, describing what they do, their parameters and return values. Only add lines; change no code. "
    f"Answer with a unified diff of that file only, and nothing else; answer {NO_CHANGE} if nothing should be added."
)
REDTEAM_SYSTEM = (
    "You are CASM's red-team reviewer. Read a planned patch and judge whether it could introduce a security "
    "regression (weakened auth or validation, injection, unsafe deserialization, secrets, widened permissions, "
    'removed checks). Answer with one JSON object and nothing else: {"verdict": "ok|concern", "score": <0..1, '
    'how risky the patch is>, "concerns": [{"file": "<path>", "reason": "<one sentence>"}]}.'
)


def _numbered(text: str) -> str:
    return "\n".join(f"{n:>5} {line}" for n, line in enumerate(text.splitlines(), start=1))


def review_prompt(path: str, text: str, language: str | None) -> Prompt:
    body = redact(text[:MAX_FILE_CHARS])
    return Prompt(
        REVIEW_SYSTEM,
        f"File: {path} ({language or 'text'})\n\n{_numbered(body)}",
        max_output_tokens=1200,
        json_output=True,
        offline_answer='{"findings": []}',
    )


def fix_prompt(path: str, text: str, findings: list[Finding]) -> Prompt:
    listed = "\n".join(f"- line {f.line}: [{f.severity}] {f.rule}: {f.message}" for f in findings)
    return Prompt(
        FIX_SYSTEM,
        f"File: {path}\nFindings:\n{listed}\n\nCurrent content:\n{redact(text[:MAX_FILE_CHARS])}",
        max_output_tokens=2000,
        offline_answer=NO_CHANGE,
    )


def docgen_prompt(path: str, text: str, names: list[str]) -> Prompt:
    return Prompt(
        DOCGEN_SYSTEM,
        f"File: {path}\nUndocumented public APIs: {', '.join(names)}\n\nCurrent content:\n"
        f"{redact(text[:MAX_FILE_CHARS])}",
        max_output_tokens=1000,
        offline_answer=NO_CHANGE,
    )


def redteam_prompt(diff_text: str) -> Prompt:
    return Prompt(
        REDTEAM_SYSTEM,
        f"Planned patch:\n{redact(diff_text[: MAX_FILE_CHARS * 2])}",
        max_output_tokens=600,
        json_output=True,
        offline_answer='{"verdict": "ok", "score": 0.0, "concerns": []}',
    )
