"""Per-test outcomes from a JUnit XML report: pytest's, or Node's built-in test runner's.

The validator asks pytest for a report (``--junitxml`` in the sandbox's private HOME), and
Node's test runner too (``NODE_OPTIONS`` reporters: they reach ``node --test`` however deep
in the repo's ``npm test`` script it runs), so a verdict is per test, not per exit code:
a patch that makes one passing test fail is caught
even when the suite already failed before it. The file is written by the target's code, so
it is read defensively: size-capped, parsed with expat (no external entities), and anything
unreadable means "no per-test outcomes", never "all passed".
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Literal

Outcome = Literal["passed", "failed", "error", "skipped"]
MAX_REPORT_BYTES = 64 * 1024 * 1024
REPORT_NAME = "casm-junit.xml"


def is_pytest(argv: list[str]) -> bool:
    program = Path(argv[0]).name
    if program in ("pytest", "py.test"):
        return True
    return program.startswith("python") and argv[1:3] == ["-m", "pytest"]


NODE_RUNNERS = ("node", "npm", "pnpm", "yarn", "npx")


def is_node(argv: list[str]) -> bool:
    return Path(argv[0]).name in NODE_RUNNERS


def node_options(path: Path, inherited: str = "") -> str:
    """``NODE_OPTIONS`` that keep the runner's usual output and add a JUnit report; other
    runners (ava, jest, vitest) ignore them, and their checks keep exit-code verdicts."""
    usual = "--test-reporter=spec --test-reporter-destination=stdout"
    ours = f"{usual} --test-reporter=junit --test-reporter-destination={path}"
    return f"{inherited} {ours}".strip()


def report_args(path: Path) -> list[str]:
    """Appended last, so they win over the repo's own ``addopts``."""
    return [f"--junitxml={path}", "-o", "junit_family=xunit1"]


TREE = "<tree>"


def read(path: Path, tree: Path | None = None) -> dict[str, Outcome] | None:
    """Test id → outcome; None when there is no readable report. ``tree``: the checkout the
    tests ran in; its path inside an id (a test parametrized with ``__file__``) becomes
    ``<tree>``, so the same test has the same id in every scratch checkout."""
    try:
        if not path.is_file() or path.is_symlink() or path.stat().st_size > MAX_REPORT_BYTES:
            return None
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    outcomes: dict[str, Outcome] = {}
    for case in root.iter("testcase"):
        classname, name = case.get("classname") or "", case.get("name") or ""
        test_id = f"{classname}::{name}" if classname else name
        if tree is not None:
            for prefix in {str(tree), str(tree.resolve())}:
                test_id = test_id.replace(prefix, TREE)
        tags = {child.tag for child in case}
        outcome: Outcome = "passed"
        for tag, meaning in (("skipped", "skipped"), ("failure", "failed"), ("error", "error")):
            if tag in tags:
                outcome = meaning  # type: ignore[assignment]
        # A parametrized id can repeat across files in odd layouts; the worst outcome wins.
        if outcomes.get(test_id) in ("failed", "error") and outcome in ("passed", "skipped"):
            continue
        outcomes[test_id] = outcome
    return outcomes
