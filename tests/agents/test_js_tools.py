"""casm_dagster.agents.js_tools: which JS/TS tools a repo declares, and their reporters'
output (samples as eslint 9.39, xo 0.54, biome 2.6 and prettier 3.10 print them) read
into findings. The tools themselves run end to end in test_js_repo.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import make_repo

from casm_dagster.agents import js_tools
from casm_dagster.agents.reviewer import analyse_js
from casm_dagster.agents.validator import applicable_checks
from casm_dagster.contracts.environment import Environment
from casm_dagster.safety import junit
from casm_dagster.safety.repo_scan import scan
from casm_dagster.safety.sandbox import Sandbox


def _tree(where: Path, package: dict, files: dict[str, str] | None = None) -> Path:
    return make_repo(where, {"package.json": json.dumps(package), **(files or {})})


def _names(tree: Path) -> list[str]:
    return [t.name for t in js_tools.declared(tree)]


def test_a_tool_counts_only_when_the_repo_declares_it(tmp_path: Path) -> None:
    # xo needs no config; eslint and prettier need theirs; biome its biome.json.
    deps = {"devDependencies": {"xo": "^0.54", "eslint": "^9", "prettier": "^3", "@biomejs/biome": "^2"}}
    assert _names(_tree(tmp_path / "bare", deps)) == ["xo"]
    configured = _tree(tmp_path / "cfg", deps, {"eslint.config.js": "export default [];\n", "biome.json": "{}"})
    assert _names(configured) == ["xo", "eslint", "biome"]
    keyed = _tree(tmp_path / "key", {**deps, "prettier": {"semi": False}, "eslintConfig": {}})
    assert _names(keyed) == ["xo", "eslint", "prettier"]
    # A config without the package: the tool is not in the repo's environment.
    assert _names(_tree(tmp_path / "nodep", {}, {"eslint.config.js": "", ".prettierrc": "{}"})) == []
    assert js_tools.declared(tmp_path) == []  # no package.json at all


def test_a_symlinked_config_or_a_broken_manifest_declares_nothing(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "r", {"devDependencies": {"eslint": "^9"}})
    (tree / "eslint.config.js").symlink_to("/etc/passwd")
    assert _names(tree) == []
    (tree / "package.json").write_text("{not json", encoding="utf-8")
    assert js_tools.manifest(tree) == {} and _names(tree) == []


ESLINT_OUT = [
    {"filePath": "TREE/src/math.ts", "messages": [
        {"ruleId": "prefer-const", "severity": 2, "message": "'total' is never reassigned. Use 'const' instead.",
         "line": 2, "column": 7, "fix": {"range": [55, 70], "text": "const total = a + b;"}},
        {"ruleId": "@typescript-eslint/no-unused-vars", "severity": 1, "message": "'x' is defined but never used.",
         "line": 4, "column": 7},
    ]},
    {"filePath": "TREE/src/broken.ts", "messages": [
        {"ruleId": None, "fatal": True, "severity": 2, "message": "Parsing error: ';' expected.", "line": 3},
    ]},
    {"filePath": "/elsewhere/outside.js", "messages": [{"ruleId": "semi", "severity": 2, "message": "x", "line": 1}]},
]  # fmt: skip


def test_eslint_json_becomes_problems_with_their_fixability(tmp_path: Path) -> None:
    out = json.dumps(ESLINT_OUT).replace("TREE", str(tmp_path))
    problems = js_tools.parse_eslint(tmp_path, out)
    assert [(p.rule, p.file, p.line, p.level, p.fixable) for p in problems] == [
        ("prefer-const", "src/math.ts", 2, "error", True),
        ("@typescript-eslint/no-unused-vars", "src/math.ts", 4, "warning", False),
        ("parse-error", "src/broken.ts", 3, "fatal", False),
    ]  # the file outside the tree is never reported


def test_a_reporter_that_prints_no_json_is_a_failed_analyser(tmp_path: Path) -> None:
    with pytest.raises(js_tools.ToolFailed, match="not JSON"):
        js_tools.parse_eslint(tmp_path, "Oops! Something went wrong!")
    with pytest.raises(js_tools.ToolFailed, match="no list"):
        js_tools.parse_eslint(tmp_path, "{}")


def test_biome_json_2x_and_1x_shapes(tmp_path: Path) -> None:
    two = {"diagnostics": [
        {"severity": "warning", "message": "This let declares a variable that is only assigned once.",
         "category": "lint/style/useConst", "location": {"path": "src/x.ts", "start": {"line": 4, "column": 1}},
         "advices": [{"text": "Safe fix: Use const instead."}]},
        {"severity": "error", "message": "This variable unused is unused.",
         "category": "lint/correctness/noUnusedVariables",
         "location": {"path": "src/x.ts", "start": {"line": 4, "column": 5}}, "advices": []},
    ]}  # fmt: skip
    one = {"diagnostics": [{"severity": "error", "message": "m", "category": "lint/a/b",
                            "location": {"path": {"file": "src/y.js"}, "span": [0, 3]}}]}  # fmt: skip
    assert [(p.rule, p.file, p.line, p.level, p.fixable) for p in js_tools.parse_biome(tmp_path, json.dumps(two))] == [
        ("lint/style/useConst", "src/x.ts", 4, "warning", True),
        ("lint/correctness/noUnusedVariables", "src/x.ts", 4, "error", False),
    ]
    assert [(p.file, p.line) for p in js_tools.parse_biome(tmp_path, json.dumps(one))] == [("src/y.js", 0)]


def test_prettier_counts_only_the_js_and_ts_sources(tmp_path: Path) -> None:
    out = "src/format.ts\nREADME.md\npackage.json\n../outside.js\n"
    problems = js_tools.parse_prettier(tmp_path, out, {"src/format.ts", "src/ok.ts"})
    assert [(p.rule, p.file, p.level, p.fixable) for p in problems] == [("format", "src/format.ts", "format", True)]


def test_the_tools_commands_are_not_checks(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "r", {"scripts": {"test": "node --test"}, "devDependencies": {"xo": "1"}})
    box = Sandbox(["npm test", *sorted(js_tools.COMMANDS)], False, 60)
    assert applicable_checks(box, tree, scan(tree)) == ["npm test"]


def test_why_a_declared_tool_did_not_run(tmp_path: Path) -> None:
    deps = {"devDependencies": {"xo": "1", "eslint": "9"}}
    tree = _tree(tmp_path / "r", deps, {"eslint.config.js": "export default [];\n", "index.js": "export {};\n"})
    env = Environment(kind="node", status="ready", detail="", path=str(tmp_path / "env"))
    no_env = Sandbox(sorted(js_tools.COMMANDS), False, 60)
    raw, runs = analyse_js(no_env, tree, scan(tree))
    assert raw == [] and {r.name: (r.status, r.detail) for r in runs} == {
        "xo": ("skipped", "the repo's environment is not ready, so its own copy of the tool is not there"),
        "eslint": ("skipped", "the repo's environment is not ready, so its own copy of the tool is not there"),
    }
    not_allowed = Sandbox(["npm test"], False, 60, env)
    _, runs = analyse_js(not_allowed, tree, scan(tree))
    assert [r.detail for r in runs] == [
        "`xo --reporter=json` is not allowlisted by the template",
        "`eslint --format=json .` is not allowlisted by the template",
    ]
    bare = _tree(tmp_path / "bare", {}, {"index.js": "export {};\n"})
    _, runs = analyse_js(no_env, bare, scan(bare))
    assert [(r.name, r.status) for r in runs] == [("js-lint", "skipped")]
    python_only = make_repo(tmp_path / "py", {"m.py": "x = 1\n"})
    assert analyse_js(no_env, python_only, scan(python_only)) == ([], [])


NODE_JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites>
\t<testcase name="add is exported" time="0.001652" classname="test"/>
\t<testcase name="fails" time="0.001153" classname="test" failure="1 == 2">
\t\t<failure type="testCodeFailure" message="1 == 2">AssertionError</failure>
\t</testcase>
\t<!-- tests 2 -->
</testsuites>
"""


def test_node_test_runner_reports_per_test_through_node_options(tmp_path: Path) -> None:
    report = tmp_path / junit.REPORT_NAME
    options = junit.node_options(report)
    assert "--test-reporter=spec --test-reporter-destination=stdout" in options  # the usual output stays
    assert options.endswith(f"--test-reporter=junit --test-reporter-destination={report}")
    assert junit.is_node(["/usr/bin/npm", "test"]) and not junit.is_node(["xo"])
    report.write_text(NODE_JUNIT, encoding="utf-8")
    assert junit.read(report) == {"test::add is exported": "passed", "test::fails": "failed"}
