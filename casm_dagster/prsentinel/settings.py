"""Per-repo settings: ``.casm.yaml`` at the top of the repo's **default branch**.

(``setup`` is read by the environment builder from the audited tree; its steps are only
ever commands the template allowlists.)

Never read from the PR head: its author controls that file and could switch the review
off for their own change. A malformed file does not crash the review: the defaults apply
and the comment says what is wrong.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from casm_dagster.contracts.findings import Severity
from casm_dagster.contracts.yaml12 import parse_config
from casm_dagster.errors import ConfigError
from casm_dagster.policy.globs import GlobError, GlobSet

SETTINGS_FILE = ".casm.yaml"

# Generated and vendored files: reviewing them is noise (their source is elsewhere).
DEFAULT_IGNORE = (
    "vendor/**",
    "**/vendor/**",
    "third_party/**",
    "node_modules/**",
    "**/node_modules/**",
    "dist/**",
    "build/**",
    "**/*.min.js",
    "**/*.min.css",
    "**/*.map",
    "**/*_pb2.py",
    "**/*_pb2_grpc.py",
    "**/*.pb.go",
    "**/*.generated.*",
    "**/package-lock.json",
    "**/pnpm-lock.yaml",
    "**/yarn.lock",
    "**/poetry.lock",
    "**/Cargo.lock",
    "**/go.sum",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RepoHitl(_Strict):
    mode: Literal["github_label", "github_comment"] | None = None  # None: the template's


class RepoSettings(_Strict):
    version: Literal[1] = 1
    ignore: list[str] = []  # globs (on top of the generated/vendored defaults)
    review_generated: bool = False  # True: the default ignore list is not applied
    severity_threshold: Severity = "low"  # findings below it are not shown
    max_findings: int = Field(default=15, ge=1, le=100)  # per comment; the rest are counted
    token_budget: int = Field(default=60_000, ge=1_000, le=2_000_000)  # review input tokens per run
    hitl: RepoHitl = RepoHitl()
    # Extra environment setup steps (after the dependencies are installed), like Copilot's
    # setup steps: each runs only if the template allowlists it, as argv, in the sandbox.
    setup: list[Annotated[str, Field(min_length=1, max_length=1000)]] = Field(default=[], max_length=20)

    @field_validator("ignore")
    @classmethod
    def _globs(cls, value: list[str]) -> list[str]:
        try:
            GlobSet(value)
        except GlobError as exc:
            raise ValueError(str(exc)) from None
        return value


def parse_settings(raw: bytes | None) -> tuple[RepoSettings, str | None]:
    """The settings, and the problem with the file when it is malformed (defaults used)."""
    if raw is None:
        return RepoSettings(), None
    try:
        return parse_config(raw, RepoSettings, SETTINGS_FILE, "repo settings"), None
    except ConfigError as exc:
        return RepoSettings(), str(exc)
