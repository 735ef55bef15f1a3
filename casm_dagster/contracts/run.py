"""What a run is (its spec) and where it stands (its persisted state)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from casm_dagster.contracts.manifest import TemplateManifest

RunStatus = Literal["running", "succeeded", "failed", "awaiting_approval", "blocked", "denied", "expired", "stopped"]
StageStatus = Literal["pending", "running", "completed", "skipped", "failed"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PricesPin(_Record):
    path: str
    version: str
    sha256: str


class CatalogPin(_Record):
    path: str
    version: str


class ModelSettings(_Record):
    """How the run calls models (``llm.session.model_settings``): fixed at the start, so
    the forecast, every stage and a replay route alike."""

    available_providers: list[str]  # empty: offline
    offline_reason: str
    strategy: str
    budget_usd: str  # exact decimal
    max_usd_per_task: str
    quality_floor: float
    latency_slo_ms: int
    fallbacks: dict[str, str]
    prices: PricesPin
    catalog: CatalogPin
    proof_mode: bool
    replay_of: str | None = None
    replay_dir: str | None = None
    max_parallel: int
    routing_policy: dict[str, Any] | None = None  # the diurnal optimization's view, as recorded

    @property
    def offline(self) -> bool:
        return not self.available_providers


class RulesetPin(_Record):
    ref: str
    sha256: str
    overridden: bool


class GitHubCheckout(_Record):
    """GitHub mode: the repo as fetched into the local mirror (``github.checkout``)."""

    repo: str  # owner/name
    api_url: str
    html_url: str
    clone_url: str
    default_branch: str
    default_commit: str
    mirror: str
    head_commit: str
    head_ref: str
    pr: int | None = None
    pr_url: str | None = None
    pr_author: str | None = None
    base_ref: str | None = None
    base_commit: str | None = None


class RunSettings(_Record):
    """The run's own options, beside the template."""

    artifacts_dir: str
    seed: int
    audited: str  # what was audited, in words
    model_provider: str
    head: str | None = None  # the pinned commit (--head, or the fetched one in GitHub mode)
    base: str | None = None
    ruleset: RulesetPin | None = None  # --ruleset/--ruleset-hash
    models: ModelSettings
    github: GitHubCheckout | None = None


class EffectiveConfig(_Record):
    """The template merged with the run's overrides, as used (and recorded in spec.json)."""

    template: TemplateManifest
    artifact_names: dict[str, str]
    run: RunSettings


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
    effective_config: EffectiveConfig

    @property
    def run_dir(self) -> Path:
        return Path(self.state_dir) / "runs" / self.run_id

    @property
    def manifest(self) -> TemplateManifest:
        return self.effective_config.template

    @property
    def models(self) -> ModelSettings:
        return self.effective_config.run.models

    @property
    def github(self) -> GitHubCheckout | None:
        return self.effective_config.run.github


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
    # The validated commit ``branch`` will point at; the ref is created only when the run's
    # report and telemetry are on disk (a branch always has a finished run behind it).
    branch_commit: str | None = None
    dagster_run_id: str | None = None
    # host:pid-start of the process that last started a stage (see run/leftovers.py): a
    # run still "running" whose owner is gone was killed, and the next start says so.
    owner: str | None = None
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

    @property
    def own_report(self) -> str:
        """The run dir's copy of the report: the artifacts dir is shared, and the next run
        overwrites ``report`` there; this one stays the run's own (Dagster links to it)."""
        return str(Path(self.run_dir) / Path(self.report).name)
