"""Findings: what the reviewer reports (serialized as ``issues.json``, SPEC §5)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

Severity = Literal["info", "low", "medium", "high"]
SEVERITY_ORDER: dict[str, int] = {"high": 0, "medium": 1, "low": 2, "info": 3}


class Finding(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str  # stable across runs: derived from analyser, rule, file and the line's content
    analyser: str
    rule: str
    file: str  # repo-relative, POSIX separators
    line: int  # 1-based; 0 when the finding is about the whole file or repo
    severity: Severity
    message: str
    auto_fixable: bool
    fix_group: str | None = None  # the patch group that fixes it, when auto-fixable


class AnalyserRun(BaseModel):
    """Which analyser ran (or why not): the report says so for every repo."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    status: Literal["ran", "skipped", "failed"]
    detail: str = ""
    files: int = 0
    findings: int = 0


class SkippedFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    reason: Literal["symlink", "binary", "not_utf8", "too_large", "submodule", "unsafe_path"]


class Review(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    findings: list[Finding]
    analysers: list[AnalyserRun]
    skipped_files: list[SkippedFile]
    languages: list[str]
    files_audited: int
    loc_audited: int
