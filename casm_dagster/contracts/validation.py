"""Validation: allowlisted checks run before and after the patch set; benchmarks."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

CheckStatus = Literal["passed", "failed", "timed_out", "unavailable", "error"]
Isolation = Literal["enforced", "not_enforced", "not_requested"]


class CheckRun(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    command: str  # the allowlisted command, exactly as written in the manifest
    phase: Literal["before", "after"]
    status: CheckStatus
    exit_code: int | None
    duration_s: float
    output_tail: str  # redacted, truncated
    network: Isolation
    network_detail: str = ""
    tests: dict[str, str] | None = None  # test id -> passed|failed|error|skipped (pytest's JUnit report)
    flaky: list[str] = []  # tests that failed, then passed when re-run once


class BenchmarkResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    command: str
    repeats: int
    before_median_s: float | None
    after_median_s: float | None
    change_pct: float | None  # negative = faster after the patch
    status: Literal["measured", "failed", "skipped"]
    detail: str = ""


class Validation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    checks: list[CheckRun]
    accepted_groups: list[str]
    rejected_groups: dict[str, str]  # group id → why (the check or tests it broke)
    unvalidated_groups: dict[str, str] = {}  # group id → why no check could validate it
    benchmarks: list[BenchmarkResult] = []
    final_commit: str | None = None  # the tip holding the accepted groups

    def before(self) -> list[CheckRun]:
        return [c for c in self.checks if c.phase == "before"]

    def after(self) -> list[CheckRun]:
        return [c for c in self.checks if c.phase == "after"]
