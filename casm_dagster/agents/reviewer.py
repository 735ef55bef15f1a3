"""The reviewer: findings from real analysers, each with a stable id.

Python repos get ruff (lint), ruff-format, bandit (security); JS/TS repos get the linters
and formatter they declare (xo, eslint, biome, prettier: ``js_tools``), run from their own
environment; every repo gets the language-agnostic TODO/FIXME scan and its failing
allowlisted checks. The report lists which analysers ran and why the others did not.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from casm_dagster.agents import js_tools, public_names, python_tools
from casm_dagster.contracts.findings import SEVERITY_ORDER, AnalyserRun, Finding, Severity
from casm_dagster.contracts.validation import CheckRun
from casm_dagster.environments import build
from casm_dagster.safety.redact import redact
from casm_dagster.safety.repo_scan import Inventory
from casm_dagster.safety.sandbox import Sandbox

_TODO = re.compile(r"(?:#|//|/\*|<!--|--|^\s*\*)\s*(TODO|FIXME|XXX|HACK)\b[:(\s]?(.*)")
_TODO_SEVERITY: dict[str, Severity] = {"TODO": "info", "XXX": "low", "HACK": "low", "FIXME": "low"}
_TODO_EXTRA_NAMES = {"Dockerfile", "Makefile"}
_TODO_EXTRA_SUFFIXES = {".yml", ".yaml", ".toml", ".cfg", ".ini"}
MESSAGE_MAX_CHARS = 200


@dataclass(frozen=True)
class RawFinding:
    analyser: str
    rule: str
    file: str
    line: int
    severity: Severity
    message: str
    auto_fixable: bool
    fix_group: str | None = None


def ruff_severity(code: str) -> Severity:
    if code in ("F821", "F822", "F823") or code.startswith("E9") or code == "syntax-error":
        return "high"
    if code.startswith(("F", "B")) or code == "E722":
        return "medium"
    if code.startswith(("E", "W")):
        return "low"
    return "info"


def _rel(worktree: Path, filename: str) -> str:
    path = Path(filename)
    return (path.relative_to(worktree) if path.is_absolute() else path).as_posix()


def analyse_ruff(worktree: Path, files: list[str], settings: python_tools.RuffSettings) -> list[RawFinding]:
    found = []
    for item in python_tools.ruff_check(worktree, files, settings):
        code = item.get("code") or "syntax-error"
        fix = item.get("fix") or {}
        safe = fix.get("applicability") == "safe" and settings.fixable(code)
        found.append(
            RawFinding(
                analyser="ruff",
                rule=code,
                file=_rel(worktree, item["filename"]),
                line=int(item["location"]["row"]),
                severity=ruff_severity(code),
                message=item["message"],
                auto_fixable=safe,
                fix_group=f"ruff-{code}" if safe else None,
            )
        )
    return public_names.guard(worktree, files, found)


def analyse_format(worktree: Path, files: list[str], settings: python_tools.RuffSettings) -> list[RawFinding]:
    return [
        RawFinding(
            "ruff-format",
            "format",
            _rel(worktree, path),
            0,
            "info",
            "file is not formatted (ruff format would rewrite it)",
            True,
            "ruff-format",
        )
        for path in python_tools.ruff_format_check(worktree, files, settings)
    ]


# A JS tool's own levels, as CASM severities: a file it cannot parse is high; its errors are
# what the maintainers' CI rejects (low, like ruff's style rules); warnings and formatting
# are information.
_JS_SEVERITY: dict[str, Severity] = {
    "fatal": "high",
    "error": "low",
    "warning": "info",
    "info": "info",
    "format": "info",
}


def analyse_js(box: Sandbox, tree: Path, inventory: Inventory) -> tuple[list[RawFinding], list[AnalyserRun]]:
    """The JS/TS tools the repo declares, each run from its environment (``box``'s) if the
    template allowlists its command; one ``AnalyserRun`` each, saying why it did not run."""
    sources = {f.path for lang in js_tools.JS_LANGUAGES for f in inventory.by_language(lang)}
    tools = js_tools.declared(tree)
    if not tools:
        if not sources:
            return [], []
        why = "the repo declares no JS/TS linter or formatter (xo, eslint, biome, prettier)"
        return [], [AnalyserRun(name="js-lint", status="skipped", detail=why)]
    raw: list[RawFinding] = []
    runs: list[AnalyserRun] = []
    for tool in tools:
        missing = [c for c in (tool.check, tool.fix) if c not in box.allow_commands]
        if box.environment is None:
            why = "the repo's environment is not ready, so its own copy of the tool is not there"
            runs.append(AnalyserRun(name=tool.name, status="skipped", detail=why))
            continue
        if tool.check in missing:
            why = f"`{tool.check}` is not allowlisted by the template"
            runs.append(AnalyserRun(name=tool.name, status="skipped", detail=why))
            continue
        try:
            with build.checking(box, tree):
                problems = js_tools.check(box, tool, tree, sources)
        except (js_tools.ToolFailed, OSError) as exc:
            runs.append(AnalyserRun(name=tool.name, status="failed", detail=redact(str(exc))[:300]))
            continue
        group = js_tools.group_name(tool.name) if not missing else None
        found = [
            RawFinding(
                analyser=tool.name,
                rule=p.rule,
                file=p.file,
                line=p.line,
                severity=_JS_SEVERITY[p.level],
                message=p.message,
                auto_fixable=p.fixable and group is not None,
                fix_group=group if p.fixable else None,
            )
            for p in problems
        ]
        raw.extend(found)
        detail = "the repo's own configuration, from its environment" + (
            f"; `{tool.fix}` is not allowlisted: no fixes" if missing else ""
        )
        runs.append(AnalyserRun(name=tool.name, status="ran", detail=detail, files=len(sources), findings=len(found)))
    return raw, runs


def _is_test_file(path: str) -> bool:
    pure = PurePosixPath(path)
    return "tests" in pure.parts or "test" in pure.parts or pure.name.startswith("test_")


def analyse_bandit(worktree: Path, files: list[str], settings: python_tools.RuffSettings) -> list[RawFinding]:
    found = []
    for item in python_tools.bandit(worktree, files):
        # `assert` is how pytest tests work; B101 there is noise, elsewhere a real finding.
        if item["test_id"] == "B101" and _is_test_file(_rel(worktree, item["filename"])):
            continue
        severity = str(item.get("issue_severity", "LOW")).lower()
        found.append(
            RawFinding(
                analyser="bandit",
                rule=f"{item['test_id']}:{item['test_name']}",
                file=_rel(worktree, item["filename"]),
                line=int(item["line_number"]),
                severity=severity if severity in ("low", "medium", "high") else "low",  # type: ignore[arg-type]
                message=item["issue_text"],
                auto_fixable=False,
            )
        )
    return found


def _todo_candidate(path: str, language: str | None) -> bool:
    pure = PurePosixPath(path)
    return bool(language) or pure.name in _TODO_EXTRA_NAMES or pure.suffix in _TODO_EXTRA_SUFFIXES


def analyse_todos(inventory: Inventory) -> list[RawFinding]:
    found = []
    for source in inventory.files:
        if not _todo_candidate(source.path, source.language):
            continue
        for number, line in enumerate(source.text.splitlines(), start=1):
            match = _TODO.search(line)
            if match:
                marker, text = match.group(1), match.group(2).strip()
                found.append(
                    RawFinding(
                        "todo-scan",
                        marker,
                        source.path,
                        number,
                        _TODO_SEVERITY[marker],
                        f"{marker}: {text}".strip(),
                        False,
                    )
                )
    return found


def check_failures(baseline: list[CheckRun]) -> list[RawFinding]:
    """Tests that already fail at the audited commit while others pass: a finding in its own
    right. A check that cannot run at all there (no test passes, or no per-test report) is
    not held against the repo: that is as likely the environment as the code
    (``check_notes`` says which)."""
    found = []
    for run in baseline:
        tests = run.tests or {}
        failing = sorted(t for t, o in tests.items() if o in ("failed", "error"))
        if failing and any(o == "passed" for o in tests.values()):
            shown = ", ".join(failing[:3]) + (f" and {len(failing) - 3} more" if len(failing) > 3 else "")
            message = f"{len(failing)} of {len(tests)} tests fail at the audited commit (`{run.command}`): {shown}"
            found.append(RawFinding("validator", "tests-failing", "", 0, "medium", message, False))
    return found


def check_notes(baseline: list[CheckRun]) -> str:
    """The baseline checks that could not vouch for anything, for the report."""
    notes = []
    for run in baseline:
        tests = run.tests or {}
        if run.status == "passed" or any(o == "passed" for o in tests.values()):
            continue
        code = f", exit {run.exit_code}" if run.exit_code is not None else ""
        notes.append(f"`{run.command}` {run.status}{code} at the audited commit, no test passed")
    return "; ".join(notes)


def finalize(raw: list[RawFinding], inventory: Inventory) -> list[Finding]:
    """Stable ids (content-based, so line shifts elsewhere do not change them) and order."""
    texts = {f.path: f.text.splitlines() for f in inventory.files}
    seen: Counter[tuple[str, str, str, str]] = Counter()
    findings = []
    ordered = sorted(raw, key=lambda f: (f.file, f.line, f.analyser, f.rule, f.message))
    for item in ordered:
        lines = texts.get(item.file, [])
        content = lines[item.line - 1].strip() if 0 < item.line <= len(lines) else ""
        key = (item.analyser, item.rule, item.file, content)
        seen[key] += 1
        digest = hashlib.sha256("\x1f".join([*key, str(seen[key])]).encode()).hexdigest()
        message = redact(item.message)[:MESSAGE_MAX_CHARS]
        findings.append(
            Finding(
                id=f"F-{digest[:12]}",
                analyser=item.analyser,
                rule=item.rule,
                file=item.file,
                line=item.line,
                severity=item.severity,
                message=message,
                auto_fixable=item.auto_fixable,
                fix_group=item.fix_group,
            )
        )
    return findings


Analyser = Callable[[Path, list[str], python_tools.RuffSettings], list[RawFinding]]
PYTHON_ANALYSERS: list[tuple[str, Analyser]] = [
    ("ruff", analyse_ruff),
    ("ruff-format", analyse_format),
    ("bandit", analyse_bandit),
]


def review(worktree: Path, inventory: Inventory, baseline: list[CheckRun]) -> tuple[list[Finding], list[AnalyserRun]]:
    return conclude(*static_findings(worktree, inventory), baseline, inventory)


def static_findings(worktree: Path, inventory: Inventory) -> tuple[list[RawFinding], list[AnalyserRun]]:
    """The analysers that read the code (not the checks): safe to run while the baseline
    checks run in the same tree."""
    raw: list[RawFinding] = []
    runs: list[AnalyserRun] = []
    python_files = [f.path for f in inventory.by_language("python")]
    settings = python_tools.ruff_settings(worktree)
    for name, analyser in PYTHON_ANALYSERS:
        if not python_files:
            runs.append(AnalyserRun(name=name, status="skipped", detail="no Python files"))
            continue
        if name == "ruff-format" and not settings.formats:
            why = "the repo does not declare ruff's formatter: its style is left as it is"
            runs.append(AnalyserRun(name=name, status="skipped", detail=why))
            continue
        try:
            found = analyser(worktree, python_files, settings)
        except (RuntimeError, ValueError, OSError) as exc:
            runs.append(AnalyserRun(name=name, status="failed", detail=redact(str(exc))[:300]))
            continue
        raw.extend(found)
        detail = _ruff_mode(settings) if name == "ruff" else ""
        runs.append(AnalyserRun(name=name, status="ran", detail=detail, files=len(python_files), findings=len(found)))
    todos = analyse_todos(inventory)
    raw.extend(todos)
    runs.append(AnalyserRun(name="todo-scan", status="ran", files=len(inventory.files), findings=len(todos)))
    return raw, runs


def conclude(
    raw: list[RawFinding], runs: list[AnalyserRun], baseline: list[CheckRun], inventory: Inventory
) -> tuple[list[Finding], list[AnalyserRun]]:
    """The static findings plus what the baseline checks say, with stable ids and order."""
    raw, runs = list(raw), list(runs)
    failures = check_failures(baseline)
    raw.extend(failures)
    runs.append(
        AnalyserRun(
            name="checks",
            status="ran" if baseline else "skipped",
            detail=check_notes(baseline) if baseline else "no allowlisted check applies to this repo",
            files=0,
            findings=len(failures),
        )
    )
    findings = finalize(raw, inventory)
    return findings, runs


def _ruff_mode(settings: python_tools.RuffSettings) -> str:
    if settings.config:
        hooks = " on the files its pre-commit hooks cover" if settings.lint_scope or settings.format_scope else ""
        note = f"; {settings.note}" if settings.note else ""
        return f"the repo's own configuration ({settings.config}){hooks}{note}"
    why = settings.note or "no ruff configuration in the repo"
    return f"{why}: bugs only ({python_tools.BUG_RULES}), fixes that change no style"


def severity_counts(findings: list[Finding]) -> dict[str, int]:
    counts = Counter(f.severity for f in findings)
    return {sev: counts.get(sev, 0) for sev in sorted(SEVERITY_ORDER, key=SEVERITY_ORDER.get)}
