"""SARIF 2.1.0 for code scanning (GitHub's, or any SARIF viewer): the reviewer's findings
and the policy engine's signals as results of one run of the tool "CASM".

Code scanning matches a result across uploads by its rule id, its file and its partial
fingerprints, so each of those is stable: a finding's rule is ``<analyser>/<rule>`` and its
fingerprint the finding id (analyser, rule, file and the line's content, hashed); a policy
signal's rule is ``policy/<signal type>[/<pattern id>]`` and its fingerprint counts the
signals of that rule in that file, not their lines (a line added above must not turn an
alert into a new one). Nothing secret or quoted from the code is in the file: messages go
through the redactor, and the policy document already holds no snippet or value.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from casm_dagster import __version__
from casm_dagster.contracts.findings import Finding, Review
from casm_dagster.contracts.run import RunSpec
from casm_dagster.run.files import POLICY_FILE, REVIEW_FILE, SPEC_FILE, load
from casm_dagster.run.journal import write_text_atomic
from casm_dagster.safety.redact import redact

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
LEVELS = {"high": "error", "medium": "warning", "low": "note", "info": "note"}
# GitHub ranks security alerts by this rule property (0.0-10.0).
SECURITY_SEVERITY = {"high": "8.0", "medium": "5.5", "low": "3.0", "info": "1.0"}
SECURITY_ANALYSERS = frozenset({"bandit", "semgrep"})
SECURITY_SIGNALS = frozenset({"secret_like", "command_execution", "permission_escalation", "path_sensitivity"})
FINGERPRINT_KEY = "casmResultHash/v1"
SRCROOT = "%SRCROOT%"


class _Rules:
    """The run's rules, in first-seen order (a result refers to its rule by index)."""

    def __init__(self) -> None:
        self.rules: list[dict[str, Any]] = []
        self._index: dict[str, int] = {}

    def index(self, rule_id: str, text: str, severity: str, tags: list[str], security: bool) -> int:
        if rule_id not in self._index:
            properties: dict[str, Any] = {"tags": tags}
            if security:
                properties["security-severity"] = SECURITY_SEVERITY[severity]
            self._index[rule_id] = len(self.rules)
            self.rules.append(
                {
                    "id": rule_id,
                    "shortDescription": {"text": text},
                    "defaultConfiguration": {"level": LEVELS[severity]},
                    "properties": properties,
                }
            )
        return self._index[rule_id]


def _location(path: str, line: int | None, end: int | None = None) -> dict[str, Any]:
    physical: dict[str, Any] = {"artifactLocation": {"uri": quote(path), "uriBaseId": SRCROOT}}
    if line:
        physical["region"] = {"startLine": line, "endLine": max(end or line, line)}
    return {"physicalLocation": physical}


def _safe_path(path: str) -> bool:
    """Repo-relative POSIX paths only: nothing absolute, nothing above the root."""
    parts = PurePosixPath(path).parts
    return bool(parts) and not PurePosixPath(path).is_absolute() and ".." not in parts


def _finding_results(findings: Iterable[Finding], rules: _Rules) -> tuple[list[dict[str, Any]], int]:
    results, omitted = [], 0
    for f in findings:
        if not f.file or not _safe_path(f.file):
            omitted += 1  # about the whole repo (its tests, its environment): not a code alert
            continue
        rule_id = f"{f.analyser}/{f.rule}"
        security = f.analyser in SECURITY_ANALYSERS
        index = rules.index(rule_id, f"{f.analyser}: {f.rule}", f.severity, ["casm", f.analyser], security)
        results.append(
            {
                "ruleId": rule_id,
                "ruleIndex": index,
                "level": LEVELS[f.severity],
                "message": {"text": redact(f.message) or rule_id},
                "locations": [_location(f.file, f.line or None)],
                "partialFingerprints": {FINGERPRINT_KEY: f.id},
            }
        )
    return results, omitted


def _signal_results(document: dict[str, Any], rules: _Rules) -> list[dict[str, Any]]:
    results = []
    seen: dict[tuple[str, str], int] = {}
    signals = sorted(document.get("signals", []), key=lambda s: (s["file"], s.get("line_start") or 0))
    for s in signals:
        if s["severity"] == "info" or not _safe_path(s["file"]):  # info adds no risk: not an alert
            continue
        pattern = (s.get("evidence") or {}).get("pattern_id")
        rule_id = f"policy/{s['type']}" + (f"/{pattern}" if pattern else "")
        text = f"CASM policy: {s['type'].replace('_', ' ')}" + (f" ({pattern})" if pattern else "")
        tags = ["casm", "policy", *(["security"] if s["type"] in SECURITY_SIGNALS else [])]
        index = rules.index(rule_id, text, s["severity"], tags, s["type"] in SECURITY_SIGNALS)
        nth = seen.get((rule_id, s["file"]), 0)
        seen[(rule_id, s["file"])] = nth + 1
        fingerprint = hashlib.sha256(f"{rule_id}\0{s['file']}\0{nth}".encode()).hexdigest()[:32]
        results.append(
            {
                "ruleId": rule_id,
                "ruleIndex": index,
                "level": LEVELS[s["severity"]],
                "message": {"text": redact(s["message"]) or rule_id},
                "locations": [_location(s["file"], s.get("line_start"), s.get("line_end"))],
                "partialFingerprints": {FINGERPRINT_KEY: fingerprint},
            }
        )
    return results


def sarif_log(
    findings: Sequence[Finding],
    policy_document: dict[str, Any] | None,
    automation_id: str,
    revision: str | None = None,
    repository_uri: str | None = None,
) -> dict[str, Any]:
    """One SARIF log with one run. ``automation_id`` names the analysis (``casm/<template>/``:
    code scanning keeps one set of alerts per category); ``revision``/``repository_uri``:
    the commit analysed, and where it lives (GitHub mode)."""
    rules = _Rules()
    results, omitted = _finding_results(findings, rules)
    if policy_document is not None:
        results += _signal_results(policy_document, rules)
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "CASM",
                "semanticVersion": __version__,
                "rules": rules.rules,
            }
        },
        "automationDetails": {"id": automation_id},
        "columnKind": "unicodeCodePoints",
        "results": results,
        "properties": {"repoLevelFindingsOmitted": omitted},
    }
    if policy_document is not None:
        summary = policy_document["summary"]
        run["properties"]["policy"] = {"status": summary["status"], "risk": policy_document["risk"]["score"]}
    if revision and repository_uri:
        run["versionControlProvenance"] = [{"repositoryUri": repository_uri, "revisionId": revision}]
    return {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [run]}


def sarif_for_run(run_dir: Path, head_commit: str | None) -> dict[str, Any] | None:
    """The SARIF of a finished run from its run dir; None when its analyze stage never
    completed (a failed or budget-stopped run): an empty upload would close every open
    alert in code scanning as if it were fixed."""
    if not (run_dir / REVIEW_FILE).exists():
        return None
    spec = load(run_dir, SPEC_FILE, RunSpec)
    review = load(run_dir, REVIEW_FILE, Review)
    policy_path = run_dir / POLICY_FILE
    document = json.loads(policy_path.read_text(encoding="utf-8")) if policy_path.exists() else None
    repository = spec.github.clone_url.removesuffix(".git") if spec.github else None
    return sarif_log(review.findings, document, f"casm/{spec.template_id}/", head_commit, repository)


def write_sarif(path: Path, log: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(log, indent=2, sort_keys=True) + "\n")
