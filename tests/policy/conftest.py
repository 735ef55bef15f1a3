"""Fixtures for the policy-engine tests: the bundled ruleset, an engine with a fixed key
and real two-commit git repositories (no mocks)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for ``import policy_support``

from helpers import git, make_repo  # noqa: E402
from policy_support import KEY, SCHEMA_PATH, git_bytes  # noqa: E402

from casm_dagster.policy.diff import parse_diff  # noqa: E402
from casm_dagster.policy.document import RunContext, policy_document  # noqa: E402
from casm_dagster.policy.engine import PolicyEngine, PolicyResult  # noqa: E402
from casm_dagster.policy.keyed_hash import KeyedHasher  # noqa: E402
from casm_dagster.policy.ruleset import Ruleset, load_ruleset  # noqa: E402
from casm_dagster.policy.sources import FileSource, PatchOnly  # noqa: E402


@pytest.fixture(scope="session")
def ruleset() -> Ruleset:
    return load_ruleset("default.devtools")


@pytest.fixture(scope="session")
def engine(ruleset: Ruleset) -> PolicyEngine:
    return PolicyEngine(ruleset, KeyedHasher(KEY))


@pytest.fixture(scope="session")
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


@pytest.fixture
def evaluate(engine: PolicyEngine) -> Callable[..., PolicyResult]:
    def run(diff: bytes, source: FileSource | None = None) -> PolicyResult:
        return engine.evaluate(parse_diff(diff), source or PatchOnly())

    return run


@pytest.fixture
def ctx() -> RunContext:
    return RunContext("01TESTRUN", "policy-check", "local", "/repo", "2026-01-01T00:00:00Z", "base", "head")


@pytest.fixture
def document(ctx: RunContext) -> Callable[[PolicyResult], dict]:
    return lambda result: policy_document(result, ctx)


@pytest.fixture
def two_commits(tmp_path: Path) -> Callable[..., tuple[Path, bytes]]:
    """``(before, after)`` → a repo whose HEAD~1 holds ``before`` and HEAD holds ``after``
    (a ``None`` value deletes the file), and ``git diff HEAD~1 HEAD`` as bytes. An empty
    ``after`` makes an empty commit, for tests that go on with git commands of their own."""
    counter = iter(range(1000))

    def build(before: dict[str, str | bytes], after: dict[str, str | bytes | None]) -> tuple[Path, bytes]:
        repo = make_repo(tmp_path / f"repo{next(counter)}", before)
        for name, content in after.items():
            path = repo / name
            if content is None:
                git(repo, "rm", "--quiet", name)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8", newline="")
        git(repo, "add", "--all")
        git(repo, "commit", "--quiet", "--allow-empty", "-m", "change")
        return repo, git_bytes(repo, "diff", "HEAD~1", "HEAD")

    return build
