"""What a run is (its spec) and where it stands (its persisted state)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

RunStatus = Literal["running", "succeeded", "failed", "awaiting_approval", "blocked", "denied", "expired", "stopped"]
StageStatus = Literal["pending", "running", "completed", "skipped", "failed"]


class RunSpec(BaseModel):
    """Everything a run needs, fixed before the first stage starts (and recorded)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str
    template_id: str
    manifest_path: str
    workflow: str
    stages: list[str]
    repo: str  # what the user named: a path or owner/name
    repo_path: str  # absolute path of the local git repository
    partition_key: str
    state_dir: str  # holds runs/<run_id>/
    artifacts_dir: str
    seed: int
    effective_config: dict[str, Any]  # the manifest merged with overrides, as used

    @property
    def run_dir(self) -> Path:
        return Path(self.state_dir) / "runs" / self.run_id


class RunState(BaseModel):
    """``state.json``: rewritten atomically after every event."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    status: RunStatus
    template_id: str
    repo: str
    partition_key: str
    started_at: str
    finished_at: str | None = None
    stages: dict[str, StageStatus]
    head_commit: str | None = None
    branch: str | None = None
    dagster_run_id: str | None = None
    policy_status: str | None = None  # pass | warn | gate | block
    hitl_request_id: str | None = None
    counts: dict[str, int] = {}
    error: str | None = None
    effective_config: dict[str, Any]


class Snapshot(BaseModel):
    """The ingest stage's output: the run spec plus the commit being audited."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spec: RunSpec
    head_commit: str
    head_ref: str
    dirty: bool


class Applied(BaseModel):
    """The apply stage's output: one commit per patch group on top of the audited commit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_commit: str
    commits: dict[str, str]  # group id → commit
    tip: str
    failed_groups: dict[str, str] = {}  # group id → why it did not apply


class Delivery(BaseModel):
    """The report stage's output: where everything ended up."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Literal["delivered", "no_changes", "not_applicable"]
    branch: str | None
    report: str
    artifacts_dir: str
    run_dir: str
    findings: int
    patches: int
    checks: int
    pull_request: str | None = None  # GitHub mode: the PR's URL
