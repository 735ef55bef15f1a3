"""safety.junit: per-test outcomes from a report the target's own code writes, read defensively."""

from __future__ import annotations

import os
from pathlib import Path

from casm_dagster.safety import junit

REPORT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="4">
<testcase classname="tests.test_a" name="test_ok" time="0.1"/>
<testcase classname="tests.test_a" name="test_bad"><failure message="boom">x</failure></testcase>
<testcase classname="tests.test_a" name="test_skip"><skipped message="no"/></testcase>
<testcase classname="" name="tests.test_b"><error message="collection failure">ImportError</error></testcase>
</testsuite></testsuites>
"""


def test_outcomes_per_test(tmp_path: Path) -> None:
    path = tmp_path / "r.xml"
    path.write_text(REPORT, encoding="utf-8")
    assert junit.read(path) == {
        "tests.test_a::test_ok": "passed",
        "tests.test_a::test_bad": "failed",
        "tests.test_a::test_skip": "skipped",
        "tests.test_b": "error",
    }


def test_an_unreadable_report_means_no_outcomes_never_all_passed(tmp_path: Path) -> None:
    assert junit.read(tmp_path / "missing.xml") is None
    broken = tmp_path / "broken.xml"
    broken.write_text("<testsuites><testcase name='a'>", encoding="utf-8")
    assert junit.read(broken) is None
    entity = tmp_path / "entity.xml"
    entity.write_text('<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x><testcase name="&e;"/></x>')
    assert junit.read(entity) is None  # expat refuses the external entity
    link = tmp_path / "link.xml"
    os.symlink(tmp_path / "broken.xml", link)
    assert junit.read(link) is None


def test_pytest_commands_are_recognised() -> None:
    assert junit.is_pytest(["python", "-m", "pytest", "-q"])
    assert junit.is_pytest(["/usr/bin/python3", "-m", "pytest"])
    assert junit.is_pytest(["pytest"])
    assert not junit.is_pytest(["python", "-m", "unittest"])
    assert not junit.is_pytest(["npm", "test"])


def test_a_test_id_holding_the_checkout_path_is_the_same_in_every_checkout(tmp_path: Path) -> None:
    # requests parametrizes a test with its own __file__: the scratch path is in the id.
    ids = []
    for tree in (tmp_path / "casm-wt-1" / "checkout", tmp_path / "casm-wt-2" / "checkout"):
        path = tmp_path / f"{tree.parent.name}.xml"
        path.write_text(
            f'<testsuite><testcase classname="tests.test_utils" name="test_unzipped[{tree}/tests/x.py]"/></testsuite>',
            encoding="utf-8",
        )
        ids.append(junit.read(path, tree))
    assert ids[0] == ids[1] == {"tests.test_utils::test_unzipped[<tree>/tests/x.py]": "passed"}
