"""Score a diff against a ruleset: signals → components → score → status → decision packet.

score = min(1, Σ weight × intensity) over the components below; intensities are in [0, 1]:

- ``path_sensitivity``: 1 if any changed path is high-sensitivity, 0.5 if only medium;
- ``dependency_change``: 1 for a new dependency or a major bump, 0.5 for other version
  changes or removals, 0.25 when a dependency file changed but could not be compared;
- each pattern component (``secret_like``, ``command_execution``, ``unsafe_deserialization``,
  ``permission_escalation``, ``suppression_comments``, ``risky_deletions``): 1 − 0.5ⁿ for n hits;
- ``semantic``: a model's score through the router when one is configured, otherwise the
  offline heuristic in ``offline_semantic``.

Block if a ``block_if`` condition holds, else gate if a ``require_hitl_if`` condition
holds, else warn if score ≥ warn or any signal is medium or high, else pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Literal

from casm_dagster.policy import deps
from casm_dagster.policy.diff import FileDiff, Hunk
from casm_dagster.policy.heuristics import PLACEHOLDER_ID, Hit, Scanner
from casm_dagster.policy.keyed_hash import KeyedHasher
from casm_dagster.policy.ruleset import Ruleset
from casm_dagster.policy.sources import FileSource, Unavailable
from casm_dagster.run.ids import new_ulid
from casm_dagster.safety.redact import redact

Status = Literal["pass", "warn", "gate", "block"]
Severity = Literal["info", "low", "medium", "high"]
SignalType = Literal[
    "path_sensitivity",
    "diff_pattern",
    "dependency_change",
    "command_execution",
    "permission_escalation",
    "secret_like",
    "test_regression",
    "lint_regression",
    "other",
]
MAX_DEP_SIGNALS_PER_FILE = 25

# Stable reason codes (documented in docs/policy.md). Never rename one: users filter on them.
REASONS = {
    "PATH_SENSITIVE_HIGH": "a high-sensitivity path is touched",
    "PATH_SENSITIVE_MEDIUM": "a medium-sensitivity path is touched",
    "DEP_NEW": "a new dependency is added",
    "DEP_MAJOR_BUMP": "a dependency moves to a new major version",
    "DEP_CHANGE": "a dependency version changes or a dependency is removed",
    "DEP_FILE_CHANGED": "a dependency file changed and could not be compared",
    "SECRET_LIKE": "an added line holds a secret-like value",
    "SECRET_PLACEHOLDER": "an added value shaped like a secret reads as a placeholder (not counted)",
    "COMMAND_EXEC": "an added line executes commands or evaluates code",
    "UNSAFE_DESERIALIZATION": "an added line deserializes data unsafely",
    "PERMISSION_ESCALATION": "an added line or mode change escalates permissions",
    "SUPPRESSION_ADDED": "an added comment suppresses a linter or scanner",
    "AUTH_CHECK_REMOVED": "an authentication or permission check is removed",
    "WORKFLOW_PERMISSIONS_REMOVED": "a workflow loses its permissions block",
    "TEST_REMOVED": "a test is removed",
    "SYMLINK_ADDED": "a symbolic link is added",
    "BINARY_UNSCANNED": "a binary file changed and was not scanned",
    "RISK_SCORE_WARN": "the risk score reaches the warn threshold",
    "RISK_SCORE_GATE": "the risk score reaches the gate threshold",
    "RISK_SCORE_BLOCK": "the risk score reaches the block threshold",
    "NO_CHANGES": "the diff is empty",
}

# pattern component → (reason code, signal type, severity)
_PATTERN_KINDS: dict[str, tuple[str, SignalType, Severity]] = {
    "secret_like": ("SECRET_LIKE", "secret_like", "high"),
    "command_execution": ("COMMAND_EXEC", "command_execution", "high"),
    "unsafe_deserialization": ("UNSAFE_DESERIALIZATION", "diff_pattern", "high"),
    "permission_escalation": ("PERMISSION_ESCALATION", "permission_escalation", "high"),
    "suppression_comments": ("SUPPRESSION_ADDED", "diff_pattern", "medium"),
    "risky_deletions": ("AUTH_CHECK_REMOVED", "diff_pattern", "high"),
}
_STRUCTURE_KINDS: dict[str, tuple[str, SignalType, Severity, str]] = {
    "test-file-deleted": ("TEST_REMOVED", "test_regression", "medium", "risky_deletions"),
    "test-removed": ("TEST_REMOVED", "test_regression", "medium", "risky_deletions"),
    "workflow-permissions-removed": (
        "WORKFLOW_PERMISSIONS_REMOVED",
        "permission_escalation",
        "high",
        "risky_deletions",
    ),
    "git-mode-executable": ("PERMISSION_ESCALATION", "permission_escalation", "low", "permission_escalation"),
    "symlink-added": ("SYMLINK_ADDED", "other", "medium", ""),
    "binary-unscanned": ("BINARY_UNSCANNED", "other", "medium", ""),
    PLACEHOLDER_ID: ("SECRET_PLACEHOLDER", "other", "info", ""),
}
_MESSAGES = {
    "secret_like": "added line matches secret pattern {id}",
    "command_execution": "added line executes commands ({id})",
    "unsafe_deserialization": "added line deserializes unsafely ({id})",
    "permission_escalation": "added line escalates permissions ({id})",
    "suppression_comments": "added comment suppresses a check ({id})",
    "risky_deletions": "removed line held a check ({id})",
}
_STRUCTURE_MESSAGES = {
    "test-file-deleted": "test file deleted",
    "test-removed": "test definition removed",
    "workflow-permissions-removed": "workflow no longer declares permissions: it falls back to the token's defaults",
    "git-mode-executable": "file mode changed to executable (100644 → 100755)",
    "symlink-added": "symbolic link added (its target is not followed)",
    "binary-unscanned": "binary file changed; its content was not scanned",
    PLACEHOLDER_ID: "value shaped like a secret reads as a placeholder ({note}); not counted",
}
_GATING_CODES = {
    "PATH_SENSITIVE_HIGH",
    "DEP_NEW",
    "DEP_MAJOR_BUMP",
    "DEP_CHANGE",
    "DEP_FILE_CHANGED",
    "SECRET_LIKE",
    "COMMAND_EXEC",
    "UNSAFE_DESERIALIZATION",
    "PERMISSION_ESCALATION",
    "AUTH_CHECK_REMOVED",
    "WORKFLOW_PERMISSIONS_REMOVED",
}
_SEVERITY_RANK = {"info": 0, "low": 1, "medium": 2, "high": 3}
_DOC_FILE = re.compile(r"\.(?:md|rst|txt|adoc)$|(?:^|/)docs?/")


@dataclass(frozen=True)
class Evidence:
    kind: Literal["pattern", "path", "metadata", "diff_hunk"]
    pattern_id: str | None = None
    diff_hunk_sha256: str | None = None


@dataclass(frozen=True)
class Signal:
    signal_id: str
    type: SignalType
    severity: Severity
    file: str
    message: str
    reason_code: str
    component: str
    evidence: Evidence
    line_start: int | None = None
    line_end: int | None = None


@dataclass(frozen=True)
class Component:
    name: str
    weight: float
    contribution: float
    evidence_count: int


@dataclass(frozen=True)
class ScopeReduction:
    allow_files: list[str]
    deny_files: list[str]
    notes: str


@dataclass(frozen=True)
class SemanticScore:
    """The semantic component's intensity in [0, 1] and where it came from."""

    score: float
    source: str  # "offline-heuristic" or "model:<provider>/<model>"
    detail: str = ""


@dataclass
class PolicyResult:
    status: Status
    score: float
    ruleset: Ruleset
    components: list[Component]
    signals: list[Signal]
    reason_codes: list[str]
    conditions: list[str]  # the gating/blocking conditions that held
    files: list[str]
    scope: ScopeReduction | None
    semantic: SemanticScore
    human_summary: str
    notes: list[str] = field(default_factory=list)


def offline_semantic(files: list[FileDiff]) -> SemanticScore:
    """How much behaviour a change can affect, from its shape alone (no model).

    Half from size (changed lines / 400, capped at 1), half from the share of changed
    files that are code rather than tests or docs.
    """
    if not files:
        return SemanticScore(0.0, "offline-heuristic", "empty diff")
    changed = sum(len(h.body) - sum(1 for k, _ in h.body if k == " ") for f in files for h in f.hunks)
    code = [f for f in files if not _DOC_FILE.search(f.path) and "test" not in PurePosixPath(f.path).name.lower()]
    size = min(1.0, changed / 400)
    share = len(code) / len(files)
    score = round(0.5 * size + 0.5 * share, 4)
    return SemanticScore(score, "offline-heuristic", f"{changed} changed lines, {len(code)}/{len(files)} code files")


class PolicyEngine:
    """One ruleset, compiled once; ``evaluate`` is safe to call for many diffs."""

    def __init__(self, ruleset: Ruleset, hasher: KeyedHasher) -> None:
        self.ruleset = ruleset
        self.hasher = hasher
        self.scanner = Scanner(ruleset)
        self._high = ruleset.high_paths()
        self._medium = ruleset.medium_paths()
        self._dep_files = ruleset.dependency_files()

    def _scrub(self, text: str) -> str:
        """Messages never carry a value: known token shapes, URL credentials and anything
        this ruleset's own secret patterns match are replaced."""
        return self.scanner.scrub(redact(text))

    def _hash(self, hunk: Hunk | None) -> str | None:
        return self.hasher.hexdigest(hunk.raw) if hunk is not None else None

    def evaluate(
        self, files: list[FileDiff], source: FileSource, semantic: SemanticScore | None = None
    ) -> PolicyResult:
        model = self.ruleset.model
        signals: list[Signal] = []
        notes: list[str] = []
        intensity: dict[str, float] = {}
        touched_high = touched_deps = False
        path_level = 0.0
        dep_level = 0.0
        counts: dict[str, int] = {}
        for file in files:
            for path in dict.fromkeys(p for p in (file.old_path, file.new_path) if p):
                if pattern := self._high.match(path):
                    touched_high, path_level = True, 1.0
                    signals.append(self._path_signal(file.path, "high", pattern))
                    break
                if pattern := self._medium.match(path):
                    path_level = max(path_level, 0.5)
                    signals.append(self._path_signal(file.path, "medium", pattern))
                    break
            if any(self._dep_files.match(p) for p in (file.old_path, file.new_path) if p):
                touched_deps = True
                dep_signals, level, note = self._dependencies(file, source)
                signals += dep_signals
                dep_level = max(dep_level, level)
                if note:
                    notes.append(self._scrub(note))
            for hit in self.scanner.scan_file(file, lambda f=file: _texts(f, source)):
                signal, component = self._hit_signal(hit)
                signals.append(signal)
                if component:
                    counts[component] = counts.get(component, 0) + 1
        semantic = semantic or offline_semantic(files)
        intensity["path_sensitivity"] = path_level
        intensity["dependency_change"] = dep_level
        heuristics = model.diff_heuristics
        weights = {
            "path_sensitivity": model.path_sensitivity.weight,
            "dependency_change": model.dependencies.weight,
        }
        for name in (
            "secret_like",
            "command_execution",
            "unsafe_deserialization",
            "permission_escalation",
            "suppression_comments",
            "risky_deletions",
        ):
            weights[name] = getattr(heuristics, name).weight
            intensity[name] = 1 - 0.5 ** counts.get(name, 0)
        weights["semantic"] = model.semantic.weight
        intensity["semantic"] = max(0.0, min(1.0, semantic.score))
        evidence = {
            "path_sensitivity": sum(s.component == "path_sensitivity" for s in signals),
            "dependency_change": sum(s.component == "dependency_change" for s in signals),
            "semantic": 1 if intensity["semantic"] > 0 else 0,
            **counts,
        }
        components = [
            Component(name, weights[name], round(weights[name] * intensity[name], 4), evidence.get(name, 0))
            for name in weights
        ]
        score = round(min(1.0, sum(c.contribution for c in components)), 4)
        codes = {s.reason_code for s in signals}
        thresholds = model.risk_thresholds
        facts = {
            "risk_score_at_least_gate": score >= thresholds.gate,
            "risk_score_at_least_block": score >= thresholds.block,
            "touches_high_sensitivity_path": touched_high,
            "touches_dependency_files": touched_deps,
            "command_execution": "COMMAND_EXEC" in codes,
            "permission_escalation": bool(codes & {"PERMISSION_ESCALATION", "WORKFLOW_PERMISSIONS_REMOVED"}),
            "unsafe_deserialization": "UNSAFE_DESERIALIZATION" in codes,
            "risky_deletion": bool(codes & {"AUTH_CHECK_REMOVED", "WORKFLOW_PERMISSIONS_REMOVED"}),
            "secret_like_detected": "SECRET_LIKE" in codes,
        }
        blocking = [c for c in model.gating.block_if if facts[c]]
        gating = [c for c in model.gating.require_hitl_if if facts[c]]
        worst = max((_SEVERITY_RANK[s.severity] for s in signals), default=0)
        status: Status
        if blocking:
            status = "block"
        elif gating:
            status = "gate"
        elif score >= thresholds.warn or worst >= _SEVERITY_RANK["medium"]:
            status = "warn"
        else:
            status = "pass"
        if score >= thresholds.block:
            codes.add("RISK_SCORE_BLOCK")
        elif score >= thresholds.gate:
            codes.add("RISK_SCORE_GATE")
        elif score >= thresholds.warn:
            codes.add("RISK_SCORE_WARN")
        if not files:
            codes.add("NO_CHANGES")
        reason_codes = sorted(codes)
        changed = sorted({f.path for f in files})
        scope = _scope(status, signals, changed) if status in ("gate", "block") else None
        summary = _summary(status, score, thresholds.gate, reason_codes, len(changed), scope)
        return PolicyResult(
            status=status,
            score=score,
            ruleset=self.ruleset,
            components=components,
            signals=signals,
            reason_codes=reason_codes,
            conditions=[*blocking, *gating],
            files=changed,
            scope=scope,
            semantic=semantic,
            human_summary=summary,
            notes=notes,
        )

    def _path_signal(self, path: str, level: str, pattern: str) -> Signal:
        return Signal(
            signal_id=new_ulid(),
            type="path_sensitivity",
            severity="high" if level == "high" else "medium",
            file=path,
            message=f"path matches {level}-sensitivity pattern {pattern!r}",
            reason_code=f"PATH_SENSITIVE_{level.upper()}",
            component="path_sensitivity",
            evidence=Evidence(kind="path"),
        )

    def _hit_signal(self, hit: Hit) -> tuple[Signal, str]:
        if hit.pattern_id in _STRUCTURE_KINDS:
            code, type_, severity, component = _STRUCTURE_KINDS[hit.pattern_id]
            message = _STRUCTURE_MESSAGES[hit.pattern_id].format(note=hit.note)
        else:
            code, type_, severity = _PATTERN_KINDS[hit.component]
            component = hit.component
            message = _MESSAGES[hit.component].format(id=hit.pattern_id)
        digest = self._hash(hit.hunk)
        signal = Signal(
            signal_id=new_ulid(),
            type=type_,
            severity=severity,
            file=hit.file,
            message=message,
            reason_code=code,
            component=component or "structure",
            evidence=Evidence(
                kind="pattern" if hit.pattern_id not in _STRUCTURE_KINDS else ("diff_hunk" if digest else "metadata"),
                pattern_id=hit.pattern_id,
                diff_hunk_sha256=digest,
            ),
            line_start=hit.line,
            line_end=hit.line,
        )
        return signal, component

    def _dependencies(self, file: FileDiff, source: FileSource) -> tuple[list[Signal], float, str | None]:
        try:
            old, new = source.texts(file)
        except Unavailable as exc:
            report = deps.DepReport(file.path, deps.parser_for(file.path)[0], [], note=str(exc))
        else:
            report = deps.compare(file.path, old, new)
        hunk = self._hash(file.hunks[0]) if file.hunks else None
        if not report.changes:
            why = report.note or "no dependency entry changed"
            level = 0.25 if report.note else 0.0
            signal = Signal(
                signal_id=new_ulid(),
                type="dependency_change",
                severity="medium" if report.note else "low",
                file=file.path,
                message=self._scrub(f"dependency file changed ({report.ecosystem}): {why}"),
                reason_code="DEP_FILE_CHANGED",
                component="dependency_change",
                evidence=Evidence(kind="metadata", diff_hunk_sha256=hunk),
            )
            return [signal], level, (f"{file.path}: {report.note}" if report.note else None)
        signals: list[Signal] = []
        level = 0.0
        for change in report.changes:
            code, severity, weight = {
                "new": ("DEP_NEW", "medium", 1.0),
                "major": ("DEP_MAJOR_BUMP", "medium", 1.0),
                "changed": ("DEP_CHANGE", "low", 0.5),
                "removed": ("DEP_CHANGE", "low", 0.5),
            }[change.kind]
            level = max(level, weight)
            if len(signals) < MAX_DEP_SIGNALS_PER_FILE:
                signals.append(
                    Signal(
                        signal_id=new_ulid(),
                        type="dependency_change",
                        severity=severity,  # type: ignore[arg-type]
                        file=file.path,
                        message=self._scrub(_dep_message(change)),
                        reason_code=code,
                        component="dependency_change",
                        evidence=Evidence(kind="metadata", diff_hunk_sha256=hunk),
                    )
                )
        extra = len(report.changes) - len(signals)
        note = f"{file.path}: {extra} more dependency changes not listed as signals" if extra > 0 else None
        return signals, level, note


def _texts(file: FileDiff, source: FileSource) -> tuple[str | None, str | None] | None:
    try:
        return source.texts(file)
    except Unavailable:
        return None


def _dep_message(change: deps.DepChange) -> str:
    name = change.name[:120]
    if change.kind == "new":
        return f"new {change.ecosystem} dependency {name} ({change.new or 'any version'})"
    if change.kind == "removed":
        return f"{change.ecosystem} dependency {name} removed (was {change.old or 'any version'})"
    verb = "major version bump" if change.kind == "major" else "version change"
    return f"{change.ecosystem} dependency {name}: {verb} {change.old or '?'} → {change.new or '?'}"


def _scope(status: Status, signals: list[Signal], changed: list[str]) -> ScopeReduction:
    """The smallest safe change: keep the files no gating signal points at."""
    deny = sorted({s.file for s in signals if s.reason_code in _GATING_CODES})
    allow = [f for f in changed if f not in deny]
    codes = {s.reason_code for s in signals}
    notes: list[str] = []
    if not allow:
        notes.append("only comment")
    workflows = [f for f in deny if f.startswith(".github/workflows/")]
    if workflows:
        notes.append("do not modify the workflow")
    other_paths = sorted(
        {s.file for s in signals if s.reason_code == "PATH_SENSITIVE_HIGH" and s.file not in workflows}
    )
    if other_paths:
        notes.append(f"do not modify sensitive paths ({', '.join(other_paths[:5])})")
    if codes & {"DEP_NEW", "DEP_MAJOR_BUMP", "DEP_CHANGE", "DEP_FILE_CHANGED"}:
        notes.append("do not change dependency versions")
    if codes & {"COMMAND_EXEC", "UNSAFE_DESERIALIZATION", "PERMISSION_ESCALATION"}:
        notes.append("do not add command execution, unsafe deserialization or permission changes")
    if codes & {"AUTH_CHECK_REMOVED", "WORKFLOW_PERMISSIONS_REMOVED"}:
        notes.append("keep the removed authorization checks and workflow permissions")
    if "SECRET_LIKE" in codes:
        secret_files = sorted({s.file for s in signals if s.reason_code == "SECRET_LIKE"})
        notes.append(f"remove the secret-like values from {', '.join(secret_files[:5])} and rotate those credentials")
    if not notes:
        notes.append("review the whole change: the score alone reached the threshold, no single file stands out")
    return ScopeReduction(allow_files=allow, deny_files=deny, notes="; ".join(notes))


def _summary(
    status: Status, score: float, gate: float, codes: list[str], n_files: int, scope: ScopeReduction | None
) -> str:
    head = {
        "pass": "pass",
        "warn": "warn: proceeds, reported",
        "gate": "gate: held for human approval",
        "block": "block: stopped, nothing applied",
    }[status]
    shown = ", ".join(codes) if codes else "no signals"
    text = f"{head} — risk {score:.2f} (gate at {gate:.2f}), {n_files} files; reasons: {shown}"
    if scope:
        text += f". Suggested scope: {scope.notes}"
    return text
