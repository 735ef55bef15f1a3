"""The checks on the model agents' answers (SPEC §5): the reviewer's findings (JSON), the
fixer's and docgen's patches (a unified diff for one file) and redteam-lite's verdict on the
planned patch (JSON → the policy's semantic score). The prompts are in ``agents.prompts``.

A parser raises ``InvalidOutput`` for an answer of the wrong shape: the router re-asks
once, then drops the task and counts a failure."""

from __future__ import annotations

import ast
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from casm_dagster.agents.prompts import NO_CHANGE
from casm_dagster.contracts.findings import Finding
from casm_dagster.llm.router import InvalidOutput
from casm_dagster.safety.redact import redact

_SEVERITIES = ("info", "low", "medium", "high")
_CATEGORIES = ("bug", "security", "smell", "performance", "docs")
MAX_FINDINGS_PER_FILE = 20
MESSAGE_MAX_CHARS = 200


def _json_object(answer: str) -> dict[str, Any]:
    text = answer.strip()
    fenced = re.match(r"^```(?:json)?\s*\n(.*)\n```$", text, re.S)
    if fenced:
        text = fenced.group(1)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidOutput(f"not JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(data, dict):
        raise InvalidOutput("expected a JSON object")
    return data


def finding_id(path: str, line_text: str, category: str, message: str) -> str:
    digest = hashlib.sha256(f"model\0{category}\0{path}\0{line_text.strip()}\0{message}".encode()).hexdigest()
    return f"model-{digest[:16]}"


def parse_review(answer: str, path: str, text: str) -> list[Finding]:
    data = _json_object(answer)
    items = data.get("findings")
    if not isinstance(items, list) or set(data) - {"findings"}:
        raise InvalidOutput('expected exactly {"findings": [...]}')
    lines = text.splitlines()
    out: list[Finding] = []
    for n, item in enumerate(items[:MAX_FINDINGS_PER_FILE]):
        if not isinstance(item, dict) or set(item) != {"line", "severity", "category", "message"}:
            raise InvalidOutput(f"findings[{n}] must have exactly line, severity, category, message")
        line, severity, category, message = item["line"], item["severity"], item["category"], item["message"]
        if not isinstance(line, int) or isinstance(line, bool) or not 0 <= line <= len(lines):
            raise InvalidOutput(f"findings[{n}].line must be a line number of {path} (1..{len(lines)})")
        if severity not in _SEVERITIES:
            raise InvalidOutput(f"findings[{n}].severity must be one of {', '.join(_SEVERITIES)}")
        if category not in _CATEGORIES:
            raise InvalidOutput(f"findings[{n}].category must be one of {', '.join(_CATEGORIES)}")
        if not isinstance(message, str) or not message.strip():
            raise InvalidOutput(f"findings[{n}].message must be a non-empty string")
        message = redact(" ".join(message.split()))[:MESSAGE_MAX_CHARS]
        line_text = lines[line - 1] if line else ""
        out.append(
            Finding(
                id=finding_id(path, line_text, category, message),
                analyser="model",
                rule=f"model-{category}",
                file=path,
                line=line,
                severity=severity,
                message=message,
                auto_fixable=False,
            )
        )
    return out


def parse_file_diff(answer: str, path: str, additions_only: bool = False) -> bytes | None:
    """A unified diff that touches exactly ``path`` (None for NO_CHANGE). Whether it applies
    is the caller's check (``git apply --check`` on the tree it was made for)."""
    text = answer.strip()
    if text == NO_CHANGE:
        return None
    fenced = re.match(r"^```(?:diff|patch)?\s*\n(.*?)\n?```$", text, re.S)
    if fenced:
        text = fenced.group(1)
    lines = text.splitlines()
    headers = [line for line in lines if line.startswith(("--- ", "+++ "))]
    if len(headers) != 2 or not lines or not any(line.startswith("@@") for line in lines):
        raise InvalidOutput(f"expected a unified diff of {path} (one ---/+++ pair and @@ hunks) or {NO_CHANGE}")
    expected = {f"--- a/{path}", f"+++ b/{path}"}
    got = {h.split("\t")[0].rstrip() for h in headers}
    if got != expected:
        raise InvalidOutput(f"the diff must touch only {path} (headers --- a/{path} and +++ b/{path})")
    if PurePosixPath(path).is_absolute() or ".." in PurePosixPath(path).parts:
        raise InvalidOutput("unsafe path")
    if additions_only and any(line.startswith("-") and not line.startswith("---") for line in lines):
        raise InvalidOutput("documentation may only add lines")
    body = [line for line in lines if not line.startswith(("diff --git", "index "))]
    start = next(i for i, line in enumerate(body) if line.startswith("--- "))
    return ("\n".join(body[start:]) + "\n").encode("utf-8")


def _without_docstrings(tree: ast.AST) -> str:
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                if isinstance(first.value.value, str):
                    node.body = node.body[1:]
    return ast.dump(tree, annotate_fields=False)


def check_docs_only(old: str, new: str) -> None:
    """Docgen may change docstrings and comments only: with every docstring removed, the
    code before and after the patch must be the same syntax tree (comments are not in it)."""
    try:
        before, after = ast.parse(old), ast.parse(new)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise InvalidOutput(f"the documented file does not parse: {type(exc).__name__}") from None
    if _without_docstrings(before) != _without_docstrings(after):
        raise InvalidOutput("documentation may only add docstrings and comments; this patch changes code")


@dataclass(frozen=True)
class Verdict:
    verdict: str
    score: float
    concerns: list[dict[str, str]]


def parse_redteam(answer: str) -> Verdict:
    data = _json_object(answer)
    verdict, score, concerns = data.get("verdict"), data.get("score"), data.get("concerns", [])
    if verdict not in ("ok", "concern"):
        raise InvalidOutput('verdict must be "ok" or "concern"')
    if not isinstance(score, int | float) or isinstance(score, bool) or not 0 <= score <= 1:
        raise InvalidOutput("score must be a number in [0, 1]")
    if not isinstance(concerns, list) or not all(
        isinstance(c, dict) and isinstance(c.get("file"), str) and isinstance(c.get("reason"), str) for c in concerns
    ):
        raise InvalidOutput('concerns must be a list of {"file", "reason"}')
    return Verdict(
        verdict,
        float(score),
        [{"file": c["file"], "reason": redact(c["reason"])[:MESSAGE_MAX_CHARS]} for c in concerns],
    )
