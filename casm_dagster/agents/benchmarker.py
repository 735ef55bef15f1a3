"""The benchmarker: an allowlisted benchmark command, repeated before and after the patch.

Wall time of the whole command, median of N runs each side, reported as % change
(negative = faster after the patch). A failing run makes the comparison void.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from casm_dagster.contracts.validation import BenchmarkResult
from casm_dagster.environments import build
from casm_dagster.safety.sandbox import Sandbox

DEFAULT_REPEATS = 5


def _median(sandbox: Sandbox, command: str, worktree: Path, repeats: int) -> tuple[float | None, str]:
    times = []
    with build.checking(sandbox, worktree):
        for _ in range(repeats):
            result = sandbox.run(command, worktree)
            if result.status != "passed":
                return None, f"{result.status} (exit {result.exit_code})"
            times.append(result.duration_s)
    return statistics.median(times), ""


def compare(
    sandbox: Sandbox,
    command: str,
    before_tree: Path,
    after_tree: Path,
    repeats: int = DEFAULT_REPEATS,
) -> BenchmarkResult:
    before, why_before = _median(sandbox, command, before_tree, repeats)
    after, why_after = _median(sandbox, command, after_tree, repeats)
    if before is None or after is None:
        detail = f"before: {why_before or 'ok'}; after: {why_after or 'ok'}"
        return BenchmarkResult(
            command=command,
            repeats=repeats,
            before_median_s=before,
            after_median_s=after,
            change_pct=None,
            status="failed",
            detail=detail,
        )
    change = round((after - before) / before * 100, 2) if before > 0 else 0.0
    return BenchmarkResult(
        command=command,
        repeats=repeats,
        before_median_s=round(before, 4),
        after_median_s=round(after, 4),
        change_pct=change,
        status="measured",
    )
