"""Template manifest v0.1 (SPEC: template-manifest.v0.1.example.yaml), strictly validated.

Strict means: an unknown key, a mistyped value or a missing required section is an error
that names the key path, the file and the expected form. Nothing is coerced silently.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from casm_dagster.contracts.checks import regex_compiles
from casm_dagster.contracts.yaml12 import load_yaml, read_config_file, yaml_problem
from casm_dagster.errors import ConfigError, TemplateError

AgentName = Literal["reviewer", "fixer", "validator", "benchmarker", "docgen", "redteam", "cost_auditor"]
ModelProfile = Literal["cheap", "code_mid", "reasoning_low", "reasoning_high"]
RoutingStrategy = Literal["cost_aware_quality_floor", "quality_first", "budget_first", "latency_first"]
FallbackTrigger = Literal["timeout", "over_budget", "low_quality", "provider_error"]
FallbackAction = Literal["downgrade_model", "switch_provider", "reduce_scope", "stop"]
TelemetryStream = Literal["run_events", "cost_events", "policy_decisions", "routing_decisions"]
ArtifactKey = Literal["report_md", "cost_report_md", "issues_json"]

_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TemplateInfo(_Strict):
    id: Annotated[str, Field(pattern=_ID_PATTERN)]
    name: str
    description: str
    tags: list[str] = []


class Entrypoint(_Strict):
    workflow: str


class Sandbox(_Strict):
    allow_network: bool = False
    allow_commands: list[str] = []
    command_timeout_seconds: Annotated[int, Field(gt=0, le=86_400)] = 900

    @field_validator("allow_commands")
    @classmethod
    def _non_empty_commands(cls, commands: list[str]) -> list[str]:
        for command in commands:
            if not command.strip():
                raise ValueError("an allowlisted command must not be empty")
        return commands


class Runtime(_Strict):
    language: Literal["python", "node", "any"]
    minimum_node: str | None = None
    minimum_python: str | None = None
    sandbox: Sandbox = Sandbox()


_APPROVER = re.compile(r"^(USER|ORG):[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
DEFAULT_APPROVAL_COMMENT = r"^/casm approve\s+(?P<reason>\S.*)$"


def _check_approvers(approvers: list[str]) -> list[str]:
    for entry in approvers:
        if not _APPROVER.match(entry):
            raise ValueError(f"approver {entry!r} must be USER:<login> or ORG:<org>")
    return approvers


class HitlLocal(_Strict):
    approvers: list[str] = []  # USER:<name>; empty: anyone who can run casm on this instance

    _approvers = field_validator("approvers")(classmethod(lambda cls, v: _check_approvers(v)))


class HitlGithub(_Strict):
    required_label: str = "casm-approved"
    approvers: list[str] = []
    approval_comment_regex: str = DEFAULT_APPROVAL_COMMENT

    _approvers = field_validator("approvers")(classmethod(lambda cls, v: _check_approvers(v)))

    _regex = field_validator("approval_comment_regex")(classmethod(lambda cls, v: regex_compiles(v)))


class Hitl(_Strict):
    mode: Literal["local", "github_label", "github_comment"] = "local"
    expires_after_hours: Annotated[float, Field(gt=0, le=24 * 90)] = 72.0
    local: HitlLocal = HitlLocal()
    github: HitlGithub | None = None

    @model_validator(mode="after")
    def _github_needs_approvers(self) -> Hitl:
        if self.mode.startswith("github_") and not (self.github and self.github.approvers):
            raise ValueError(f"mode {self.mode} needs github.approvers (USER:<login> or ORG:<org> entries)")
        return self


class Policy(_Strict):
    ruleset: str = "default.devtools"
    hitl: Hitl = Hitl()


class Budget(_Strict):
    max_usd_per_run: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    max_usd_per_task_default: Annotated[float, Field(ge=0)] | None = None  # None: the run's budget


class QualityFloor(_Strict):
    min_confidence: Annotated[float, Field(ge=0, le=1)]


class Fallback(_Strict):
    on: FallbackTrigger
    action: FallbackAction


class Routing(_Strict):
    budget: Budget
    strategy: RoutingStrategy = "cost_aware_quality_floor"
    quality_floor: QualityFloor = QualityFloor(min_confidence=0.7)
    fallbacks: list[Fallback] = []
    latency_slo_ms: Annotated[int, Field(ge=0)] = 120_000
    max_parallel: Annotated[int, Field(ge=1, le=32)] = 4  # concurrent model tasks in a stage

    @field_validator("fallbacks")
    @classmethod
    def _one_action_per_trigger(cls, fallbacks: list[Fallback]) -> list[Fallback]:
        seen = [f.on for f in fallbacks]
        if dupes := sorted({on for on in seen if seen.count(on) > 1}):
            raise ValueError(f"one action per trigger; listed twice: {', '.join(dupes)}")
        return fallbacks


class Economics(_Strict):
    """Rates for the non-model costs and the price a run is sold at (for the margin)."""

    ci_minute_usd: Annotated[float, Field(ge=0)] = 0.008
    infra_second_usd: Annotated[float, Field(ge=0)] = 0.00005
    human_minute_usd: Annotated[float, Field(ge=0)] = 1.50
    price_per_run_usd: Annotated[float, Field(ge=0)] | None = None
    hitl_minutes_per_decision: Annotated[float, Field(ge=0)] = 10.0  # a reviewer's time per approve/deny


class Agent(_Strict):
    enabled: bool = True
    model_profile: ModelProfile | None = None
    # validator only: deliver patch groups no check could validate (default: never).
    deliver_unvalidated: bool = False


class GithubOutputs(_Strict):
    create_pr: bool = False
    pr_title: str = "CASM"
    pr_body_artifact: str | None = None
    comment_artifact: str | None = None


class Outputs(_Strict):
    artifacts: list[dict[ArtifactKey, str]] = []
    github: GithubOutputs = GithubOutputs()

    @field_validator("artifacts")
    @classmethod
    def _one_relative_path_each(cls, entries: list[dict[str, str]]) -> list[dict[str, str]]:
        for entry in entries:
            if len(entry) != 1:
                raise ValueError("each artifact entry maps exactly one key to a path")
            (path,) = entry.values()
            pure = PurePosixPath(path)
            if pure.is_absolute() or ".." in pure.parts:
                raise ValueError(f"artifact path {path!r} must be relative and stay inside")
        return entries


class Redaction(_Strict):
    secrets: bool = True
    code_snippets_max_chars: Annotated[int, Field(ge=0)] = 1200


class Telemetry(_Strict):
    emit: list[TelemetryStream] = []
    redaction: Redaction = Redaction()
    proof_mode: bool = False


class TemplateManifest(_Strict):
    version: Literal["0.1"]
    template: TemplateInfo
    entrypoint: Entrypoint
    runtime: Runtime
    policy: Policy
    routing: Routing
    agents: dict[AgentName, Agent]
    outputs: Outputs
    telemetry: Telemetry
    economics: Economics = Economics()

    @field_validator("agents")
    @classmethod
    def _validator_only_settings(cls, agents: dict[str, Agent]) -> dict[str, Agent]:
        for name, agent in agents.items():
            if agent.deliver_unvalidated and name != "validator":
                raise ValueError(f"agents.{name}.deliver_unvalidated: only the validator has this setting")
        return agents

    def deliver_unvalidated(self) -> bool:
        agent = self.agents.get("validator")  # type: ignore[call-overload]
        return bool(agent and agent.deliver_unvalidated)

    def agent_enabled(self, name: str) -> bool:
        agent = self.agents.get(name)  # type: ignore[call-overload]
        return bool(agent and agent.enabled)

    def artifact_names(self) -> dict[str, str]:
        """Artifact key → file name (the directory part is the artifacts dir's business)."""
        names: dict[str, str] = {}
        for entry in self.outputs.artifacts:
            for key, path in entry.items():
                names[key] = PurePosixPath(path).name
        return names


_EXPECTED = {
    "missing": "a value (this key is required)",
    "extra_forbidden": "no such key (unknown keys are not allowed)",
    "bool_type": "a boolean (true/false)",
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "literal_error": None,  # pydantic's own message lists the allowed values
}


def _describe(error: dict[str, Any]) -> str:
    path = ".".join(str(part) for part in error["loc"]) or "<root>"
    expected = _EXPECTED.get(error["type"])
    if expected is None:
        return f"{path}: {error['msg']}"
    got = "" if error["type"] in ("missing", "extra_forbidden") else f", got {error['input']!r}"
    return f"{path}: expected {expected}{got}"


def parse_manifest(data: Any, source: str) -> TemplateManifest:
    """Validate already-loaded YAML data; ``source`` names the file in error messages."""
    if not isinstance(data, dict):
        raise TemplateError(f"{source}: expected a mapping at the top level")
    try:
        return TemplateManifest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(err) for err in exc.errors())
        raise TemplateError(f"{source}: invalid template manifest: {problems}") from None


def load_manifest(path: Path) -> TemplateManifest:
    try:
        text = read_config_file(path, "template manifest").decode("utf-8")
    except ConfigError as exc:
        raise TemplateError(str(exc)) from None
    except UnicodeDecodeError as exc:
        raise TemplateError(f"{path}: cannot read template manifest: {exc}") from None
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        raise TemplateError(f"{path}: {yaml_problem(exc)}") from None
    return parse_manifest(data, str(path))
