"""Rulesets: load (bundled id or file path), validate strictly, hash, compile once.

The format (version "0.2") is the spec's ruleset with its defects fixed: every path entry
is a glob with one semantics (``globs``), patterns carry ids and the languages they apply
to, dependency files cover every ecosystem the engine parses, and gating conditions are
named, not free text. A version "0.1" file (the spec draft) is refused with a message
that says what to change.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from casm_dagster.contracts.checks import regex_compiles
from casm_dagster.contracts.yaml12 import load_yaml, read_config_file, yaml_problem
from casm_dagster.errors import ConfigError
from casm_dagster.policy.globs import GlobError, GlobSet, compile_glob

Language = Literal["python", "javascript", "shell", "yaml", "dockerfile", "any"]
GateCondition = Literal[
    "risk_score_at_least_gate",
    "touches_high_sensitivity_path",
    "touches_dependency_files",
    "command_execution",
    "permission_escalation",
    "unsafe_deserialization",
    "risky_deletion",
]
BlockCondition = Literal["risk_score_at_least_block", "secret_like_detected"]
Weight = Annotated[float, Field(ge=0, le=1)]
RulesetSource = Literal["bundled", "template", "override"]

MAX_REPORTED = 8  # errors listed in one message; a wholly wrong file would print pages
BUNDLED_RULESETS = {"default.devtools": "default.devtools.yaml"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Thresholds(_Strict):
    warn: Weight
    gate: Weight
    block: Weight

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if not self.warn <= self.gate <= self.block:
            raise ValueError(f"thresholds must satisfy warn <= gate <= block, got {self.warn}/{self.gate}/{self.block}")
        return self


def _check_globs(patterns: list[str]) -> list[str]:
    for index, pattern in enumerate(patterns):
        try:
            compile_glob(pattern)
        except GlobError as exc:
            raise ValueError(f"entry {index} {pattern!r}: {exc}") from None
    return patterns


class PathSensitivity(_Strict):
    weight: Weight
    high: list[str]
    medium: list[str] = []

    _globs = field_validator("high", "medium")(classmethod(lambda cls, v: _check_globs(v)))


class Pattern(_Strict):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
    regex: str
    languages: list[Language] = ["any"]
    # Literal, case-insensitive strings one of which a line must contain before the regex
    # runs on it (the fast path); empty: the regex runs on every line.
    keywords: list[Annotated[str, Field(min_length=1)]] = []

    _regex = field_validator("regex")(classmethod(lambda cls, v: regex_compiles(v)))


class Heuristic(_Strict):
    weight: Weight
    patterns: list[Pattern] = []

    @field_validator("patterns")
    @classmethod
    def _unique_ids(cls, patterns: list[Pattern]) -> list[Pattern]:
        seen: set[str] = set()
        for p in patterns:
            if p.id in seen:
                raise ValueError(f"duplicate pattern id {p.id!r}")
            seen.add(p.id)
        return patterns


class Dependencies(_Strict):
    weight: Weight
    files: list[str]

    _globs = field_validator("files")(classmethod(lambda cls, v: _check_globs(v)))


class DiffHeuristics(_Strict):
    secret_like: Heuristic
    command_execution: Heuristic
    unsafe_deserialization: Heuristic
    permission_escalation: Heuristic
    suppression_comments: Heuristic
    risky_deletions: Heuristic  # patterns run on *removed* lines; tests/workflow checks are built in


class Semantic(_Strict):
    weight: Weight


class Gating(_Strict):
    require_hitl_if: list[GateCondition]
    block_if: list[BlockCondition]


class RulesetModel(_Strict):
    version: Literal["0.2"]
    ruleset: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")]
    description: str = ""
    risk_thresholds: Thresholds
    path_sensitivity: PathSensitivity
    dependencies: Dependencies
    diff_heuristics: DiffHeuristics
    semantic: Semantic
    # Regexes: a secret-like match that also matches one of them is not a secret.
    secret_allowlist: list[Annotated[str, AfterValidator(regex_compiles)]] = []
    gating: Gating


@dataclass(frozen=True)
class Ruleset:
    """A validated ruleset with its identity (id, sha256 of the file, where it came from)."""

    model: RulesetModel
    sha256: str
    source: RulesetSource
    path: Path

    @property
    def id(self) -> str:
        return self.model.ruleset

    def high_paths(self) -> GlobSet:
        return GlobSet(self.model.path_sensitivity.high)

    def medium_paths(self) -> GlobSet:
        return GlobSet(self.model.path_sensitivity.medium)

    def dependency_files(self) -> GlobSet:
        return GlobSet(self.model.dependencies.files)


def bundled_rules_dir() -> Path:
    from casm_dagster.run.templates import bundled_dir

    return bundled_dir("rules")


def _describe(error: dict[str, Any]) -> str:
    path = ".".join(str(part) for part in error["loc"]) or "<root>"
    if error["type"] == "missing":
        return f"{path}: required key is missing"
    if error["type"] == "extra_forbidden":
        return f"{path}: unknown key"
    message = error["msg"].removeprefix("Value error, ")
    return f"{path}: {message}"


_V01_HINT = (
    "this is a version 0.1 ruleset (the spec draft), whose path entries mix substrings ('/auth/') "
    "and globs; CASM reads version \"0.2\": path entries are whole-path globs ('**/auth/**'), patterns "
    "are {id, regex, languages} items and gating conditions are names — see docs/policy.md"
)


def parse_ruleset(text: str, where: str, source: RulesetSource, path: Path) -> Ruleset:
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: {yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level")
    if data.get("version") == "0.1":
        raise ConfigError(f"{where}: {_V01_HINT}")
    try:
        model = RulesetModel.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        problems = "; ".join(_describe(err) for err in errors[:MAX_REPORTED])
        more = f" (and {len(errors) - MAX_REPORTED} more)" if len(errors) > MAX_REPORTED else ""
        raise ConfigError(f"{where}: invalid ruleset: {problems}{more}") from None
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return Ruleset(model=model, sha256=digest, source=source, path=path)


def load_ruleset(ref: str, source: RulesetSource | None = None, base_dir: Path | None = None) -> Ruleset:
    """A bundled ruleset id (``default.devtools``) or a path to a ruleset file.

    ``source`` is recorded in policy_decisions.json: ``bundled`` for ids, else what the
    caller says (``template`` when the manifest names a file, ``override`` from the CLI).
    A relative path is resolved against ``base_dir`` (the manifest's folder) when given.
    """
    if ref in BUNDLED_RULESETS:
        path = bundled_rules_dir() / BUNDLED_RULESETS[ref]
        kind: RulesetSource = "bundled"
    else:
        candidate = Path(ref).expanduser()
        if not candidate.is_absolute() and base_dir is not None:
            candidate = base_dir / candidate
        if candidate.suffix not in (".yaml", ".yml") and not candidate.exists():
            known = ", ".join(sorted(BUNDLED_RULESETS))
            raise ConfigError(f"unknown ruleset {ref!r}: not a bundled id ({known}) and no such file")
        path = candidate.resolve()
        kind = source or "override"
    raw = read_config_file(path, "ruleset")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: a ruleset must be UTF-8 text") from None
    return parse_ruleset(text, str(path), kind, path)
