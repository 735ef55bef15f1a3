"""casm_dagster.agents.reviewer: stable finding ids, stable order, severities, TODO scan."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest

from casm_dagster.agents.python_tools import ruff_settings
from casm_dagster.agents.reviewer import (
    RawFinding,
    analyse_ruff,
    analyse_todos,
    check_failures,
    check_notes,
    finalize,
    ruff_severity,
    severity_counts,
)
from casm_dagster.contracts.validation import CheckRun
from casm_dagster.safety.redact import REDACTED
from casm_dagster.safety.repo_scan import LANGUAGE_BY_SUFFIX, Inventory, SourceFile, scan

APP = """import os


def total(items):
    # TODO: handle empty lists
    return sum(items)


def label():
    return "todo list for today"  # prose, not a marker
"""


def _inventory(files: dict[str, str]) -> Inventory:
    return Inventory(
        files=[SourceFile(path, LANGUAGE_BY_SUFFIX.get(Path(path).suffix), text) for path, text in files.items()],
        skipped=[],
    )


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo), *args],
                   capture_output=True, check=True)  # fmt: skip


def _raw_for(inventory: Inventory) -> list[RawFinding]:
    """The TODO scan plus a hand-made lint finding on the `return sum(items)` line."""
    app = next(f for f in inventory.files if f.path == "src/app.py")
    line = app.text.splitlines().index("    return sum(items)") + 1
    lint = RawFinding("ruff", "B999", "src/app.py", line, "medium", "made-up finding", False)
    whole_file = RawFinding("ruff-format", "format", "src/app.py", 0, "info", "not formatted", True, "ruff-format")
    return [lint, whole_file, *analyse_todos(inventory)]


# --- finalize: ids and order -----------------------------------------------------------------


def test_same_input_twice_gives_same_ids() -> None:
    inventory = _inventory({"src/app.py": APP})
    first = finalize(_raw_for(inventory), inventory)
    second = finalize(_raw_for(inventory), inventory)
    assert first == second
    assert [f.id for f in first] == [f.id for f in second]
    assert len({f.id for f in first}) == len(first) == 3
    assert all(f.id.startswith("F-") and len(f.id) == 14 for f in first)
    assert all(int(f.id[2:], 16) >= 0 for f in first)  # hex digest


def test_inserting_a_blank_line_above_keeps_ids() -> None:
    before_inv = _inventory({"src/app.py": APP})
    after_inv = _inventory({"src/app.py": "\n" + APP})
    before = finalize(_raw_for(before_inv), before_inv)
    after = finalize(_raw_for(after_inv), after_inv)
    by_rule_before = {f.rule: f for f in before}
    by_rule_after = {f.rule: f for f in after}
    assert by_rule_after["TODO"].line == by_rule_before["TODO"].line + 1 == 6
    assert by_rule_after["B999"].line == by_rule_before["B999"].line + 1 == 7
    assert by_rule_after["TODO"].id == by_rule_before["TODO"].id
    assert by_rule_after["B999"].id == by_rule_before["B999"].id
    assert by_rule_after["format"].id == by_rule_before["format"].id


def test_changing_the_line_content_changes_the_id() -> None:
    before_inv = _inventory({"src/app.py": APP})
    after_inv = _inventory({"src/app.py": APP.replace("handle empty lists", "handle None")})
    before = {f.rule: f.id for f in finalize(_raw_for(before_inv), before_inv)}
    after = {f.rule: f.id for f in finalize(_raw_for(after_inv), after_inv)}
    assert after["TODO"] != before["TODO"]
    assert after["B999"] == before["B999"]


def test_id_depends_on_file_analyser_and_rule() -> None:
    text = "x = 1\n"
    inventory = _inventory({"a.py": text, "b.py": text})
    raw = [
        RawFinding("ruff", "F401", "a.py", 1, "medium", "m", False),
        RawFinding("ruff", "F401", "b.py", 1, "medium", "m", False),
        RawFinding("ruff", "F811", "a.py", 1, "medium", "m", False),
        RawFinding("bandit", "F401", "a.py", 1, "medium", "m", False),
    ]
    assert len({f.id for f in finalize(raw, inventory)}) == 4


def test_identical_lines_get_distinct_ids_by_occurrence() -> None:
    text = "# TODO: same\nx = 1\n# TODO: same\n"
    inventory = _inventory({"a.py": text})
    findings = finalize(analyse_todos(inventory), inventory)
    assert [f.line for f in findings] == [1, 3]
    assert findings[0].id != findings[1].id
    # Still stable under a line shift above both.
    shifted_inv = _inventory({"a.py": "\n\n" + text})
    shifted = finalize(analyse_todos(shifted_inv), shifted_inv)
    assert [f.line for f in shifted] == [3, 5]
    assert [f.id for f in shifted] == [f.id for f in findings]


def test_order_is_stable_and_independent_of_input_order() -> None:
    inventory = _inventory({"src/app.py": APP, "b.js": "// FIXME: b\n", "a.py": "# HACK here\n"})
    raw = _raw_for(inventory)
    expected = finalize(raw, inventory)
    assert [(f.file, f.line) for f in expected] == [
        ("a.py", 1),
        ("b.js", 1),
        ("src/app.py", 0),
        ("src/app.py", 5),
        ("src/app.py", 6),
    ]
    rng = random.Random(1234)
    for _ in range(5):
        shuffled = raw[:]
        rng.shuffle(shuffled)
        assert finalize(shuffled, inventory) == expected


def test_message_is_redacted_and_truncated() -> None:
    inventory = _inventory({"a.py": "x = 1\n"})
    token = "ghp_" + "k" * 36
    raw = [
        RawFinding("bandit", "B105:hardcoded_password_string", "a.py", 1, "low", f"token {token} found", False),
        RawFinding("ruff", "E501", "a.py", 1, "low", "y" * 500, False),
    ]
    by_rule = {f.rule: f for f in finalize(raw, inventory)}
    assert by_rule["B105:hardcoded_password_string"].message == f"token {REDACTED} found"
    assert by_rule["E501"].message == "y" * 200


def test_finding_fields_are_carried_over() -> None:
    inventory = _inventory({"a.py": "import os\n"})
    raw = [RawFinding("ruff", "F401", "a.py", 1, "medium", "`os` imported but unused", True, "ruff-F401")]
    (finding,) = finalize(raw, inventory)
    assert finding.model_dump(exclude={"id"}) == {
        "analyser": "ruff",
        "rule": "F401",
        "file": "a.py",
        "line": 1,
        "severity": "medium",
        "message": "`os` imported but unused",
        "auto_fixable": True,
        "fix_group": "ruff-F401",
    }


def test_ruff_findings_keep_ids_across_a_line_shift_in_a_real_repo(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "--quiet")
    (repo / "mod.py").write_text("import os\nimport sys\n\n\ndef f():\n    return sys.argv\n", encoding="utf-8")
    (repo / "ruff.toml").write_text('[lint]\nselect = ["F"]\n', encoding="utf-8")
    _git(repo, "add", ".")
    _git(repo, "commit", "--quiet", "-m", "one")
    inv1 = scan(repo)
    first = [f for f in finalize(analyse_ruff(repo, ["mod.py"], ruff_settings(repo)), inv1) if f.rule == "F401"]
    (repo / "mod.py").write_text("\n" + (repo / "mod.py").read_text(), encoding="utf-8")
    _git(repo, "commit", "--quiet", "-am", "two")
    inv2 = scan(repo)
    second = [f for f in finalize(analyse_ruff(repo, ["mod.py"], ruff_settings(repo)), inv2) if f.rule == "F401"]
    assert [(f.file, f.line, f.severity, f.auto_fixable) for f in first] == [("mod.py", 1, "medium", True)]
    assert [f.line for f in second] == [2]
    assert second[0].id == first[0].id


# --- severities ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "severity"),
    [
        ("F821", "high"),
        ("F822", "high"),
        ("F823", "high"),
        ("E999", "high"),
        ("E902", "high"),
        ("syntax-error", "high"),
        ("F401", "medium"),
        ("F841", "medium"),
        ("B006", "medium"),
        ("E722", "medium"),
        ("E501", "low"),
        ("E711", "low"),
        ("W291", "low"),
        ("I001", "info"),
        ("UP006", "info"),
        ("S101", "info"),
    ],
)
def test_ruff_severity(code: str, severity: str) -> None:
    assert ruff_severity(code) == severity


def test_severity_counts_lists_every_level_in_order() -> None:
    inventory = _inventory({"a.py": "# TODO: x\n# FIXME: y\n# XXX z\n"})
    findings = finalize(analyse_todos(inventory), inventory)
    counts = severity_counts(findings)
    assert list(counts) == ["high", "medium", "low", "info"]
    assert counts == {"high": 0, "medium": 0, "low": 2, "info": 1}


# --- TODO scan -------------------------------------------------------------------------------


def test_todo_scan_finds_comment_markers_only() -> None:
    inventory = _inventory(
        {
            "src/app.py": APP,
            "web/main.js": "const a = 1; // FIXME handle errors\nconst s = 'todo: not a marker';\n",
            "notes.py": (
                'msg = "TODO later, in a string"\ntext = "todo: write docs"\n# todo lowercase is not a marker\n'
            ),
        }
    )
    found = [(f.file, f.line, f.rule, f.severity, f.message) for f in analyse_todos(inventory)]
    assert found == [
        ("src/app.py", 5, "TODO", "info", "TODO: handle empty lists"),
        ("web/main.js", 1, "FIXME", "low", "FIXME: handle errors"),
    ]


def test_todo_scan_other_comment_styles_and_markers() -> None:
    inventory = _inventory(
        {
            "a.c": "/* XXX: overflow */\n * HACK around it\n",
            "Makefile": "build:\n\t# TODO: parallel\n",
            "conf.yaml": "key: 1  # FIXME: wrong\n",
            "README.md": "# TODO: not scanned, no language\n",
            "q.sql": "-- TODO: not scanned either (no language, not a config suffix)\n",
        }
    )
    found = sorted((f.file, f.line, f.rule, f.severity) for f in analyse_todos(inventory))
    assert found == [
        ("Makefile", 2, "TODO", "info"),
        ("a.c", 1, "XXX", "low"),
        ("a.c", 2, "HACK", "low"),
        ("conf.yaml", 1, "FIXME", "low"),
    ]


def test_todo_raw_finding_shape() -> None:
    (raw,) = analyse_todos(_inventory({"x.py": "pass  # TODO: tidy up  \n"}))
    assert raw == RawFinding("todo-scan", "TODO", "x.py", 1, "info", "TODO: tidy up", False)


# --- failing checks --------------------------------------------------------------------------


def _check(command: str, status: str, exit_code: int | None, tests: dict | None = None) -> CheckRun:
    return CheckRun(command=command, phase="before", status=status, exit_code=exit_code, duration_s=0.1,
                    output_tail="", network="enforced", tests=tests)  # fmt: skip


def test_failing_tests_beside_passing_ones_are_a_finding_a_check_that_cannot_run_is_not() -> None:
    baseline = [
        _check("npm test", "failed", 1),  # no per-test report: repo or environment? not said
        _check("python -m pytest -q", "failed", 1, {"t::a": "passed", "t::b": "failed", "t::c": "error"}),
        _check("npm run lint", "timed_out", None),
        _check("pnpm -s lint", "unavailable", None),
        _check("python -m pytest", "failed", 2, {"t::x": "error"}),  # collection error everywhere
    ]
    raw = check_failures(baseline)
    assert [(r.analyser, r.rule, r.severity) for r in raw] == [("validator", "tests-failing", "medium")]
    assert raw[0].message == "2 of 3 tests fail at the audited commit (`python -m pytest -q`): t::b, t::c"
    notes = check_notes(baseline)
    assert "`npm test` failed, exit 1 at the audited commit, no test passed" in notes
    assert "`python -m pytest` failed, exit 2" in notes and "pytest -q`" not in notes
