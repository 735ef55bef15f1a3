"""A run's own files in ``<state_dir>/runs/<run_id>/``: what each stage hands the next.

They outlive the Dagster run: the HITL continuation (a separate run, maybe days later)
resumes from exactly what was gated, and ``casm explain``/``replay`` read them back.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter

from casm_dagster.contracts.environment import Environment
from casm_dagster.contracts.validation import CheckRun
from casm_dagster.cost.forecast import PlannedTask
from casm_dagster.errors import RunNotFoundError
from casm_dagster.run.journal import write_json_atomic

M = TypeVar("M", bound=BaseModel)

STATE_DIR_ENV, DEFAULT_STATE_DIR = "CASM_STATE_DIR", ".casm"


def state_dir_from_env() -> Path:
    """This process's state dir: ``$CASM_STATE_DIR``, else ``./.casm``."""
    return Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR).resolve()


SPEC_FILE, SNAPSHOT_FILE, REVIEW_FILE, PLAN_FILE = "spec.json", "snapshot.json", "review.json", "plan.json"
CHECKS_FILE = "checks_before.json"  # the baseline check runs the validator compares against
ENV_FILE = "environment.json"  # the repo's own environment the checks ran in (or why none)
# The policy stage's result. Named before the stage was called "policy"; kept so runs held
# for approval under earlier versions still resume.
POLICY_RESULT_FILE = "gate.json"
POLICY_FILE = "policy_decisions.json"  # the spec's proof-mode document (SPEC §7)
# The model plan (the forecast stage's model tasks) — not the patch plan (PLAN_FILE).
MODEL_PLAN_FILE, FORECAST_FILE = "model_plan.json", "forecast.json"
# Every file a run writes in its run dir (and, for some, the artifacts dir): a template's
# artifact may not take one of these names, except the one that is its own default.
RUN_FILES = frozenset({
    SPEC_FILE, SNAPSHOT_FILE, REVIEW_FILE, PLAN_FILE, CHECKS_FILE, ENV_FILE, POLICY_RESULT_FILE, POLICY_FILE,
    MODEL_PLAN_FILE, FORECAST_FILE, "events.jsonl", "state.json", "validation.json", "run_summary.json",
    "routing_decisions.json", "cost_forecast.json", "run_replay.sh", "run.json", "report.md", "cost_report.md",
    "issues.json", "patches",
})  # fmt: skip
ARTIFACT_DEFAULTS = {"report_md": "report.md", "cost_report_md": "cost_report.md", "issues_json": "issues.json"}


def save(run_dir: Path, name: str, model: BaseModel) -> None:
    write_json_atomic(run_dir / name, model.model_dump(mode="json"))


def load(run_dir: Path, name: str, model: type[M]) -> M:
    path = run_dir / name
    if not path.exists():
        raise RunNotFoundError(f"{path} is missing: the run's state is incomplete")
    return model.model_validate_json(path.read_text(encoding="utf-8"))


def write_models(path: Path, models: list[M]) -> None:
    write_json_atomic(path, [m.model_dump(mode="json") for m in models])


def read_models(path: Path, model: type[M]) -> list[M]:
    if not path.exists():
        return []
    return TypeAdapter(list[model]).validate_json(path.read_text(encoding="utf-8"))  # type: ignore[valid-type]


def save_checks(run_dir: Path, runs: list[CheckRun]) -> None:
    write_models(run_dir / CHECKS_FILE, runs)


def load_checks(run_dir: Path) -> list[CheckRun]:
    """The baseline check runs; missing is an error, never "no checks": validating against
    nothing would accept every patch group."""
    path = run_dir / CHECKS_FILE
    if not path.exists():
        raise RunNotFoundError(f"{path} is missing: the analyze stage's baseline is gone, so nothing can be validated")
    return read_models(path, CheckRun)


def save_environment(run_dir: Path, env: Environment) -> None:
    save(run_dir, ENV_FILE, env)


def load_environment(run_dir: Path) -> Environment | None:
    """None for a run from before environments were built (its checks ran in CASM's own)."""
    path = run_dir / ENV_FILE
    return Environment.model_validate_json(path.read_text(encoding="utf-8")) if path.exists() else None


def parse_ts(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def load_model_plan(run_dir: Path) -> dict[str, Any]:
    path = run_dir / MODEL_PLAN_FILE
    if not path.exists():
        raise RunNotFoundError(f"{path} is missing: the run has no model plan")
    return json.loads(path.read_text(encoding="utf-8"))


def planned_tasks(run_dir: Path, task_type: str) -> list[PlannedTask]:
    """The model plan's included tasks of one type, in plan order (a workflow without the
    forecast stage has none; one with it whose plan is missing is an error, never "none":
    the planned model work would silently vanish)."""
    if not (run_dir / MODEL_PLAN_FILE).exists():
        stages = json.loads((run_dir / SPEC_FILE).read_text(encoding="utf-8")).get("stages", [])
        if "forecast" in stages:
            raise RunNotFoundError(f"{run_dir / MODEL_PLAN_FILE} is missing: the forecast stage's model plan is gone")
        return []
    return [
        PlannedTask(**t) for t in load_model_plan(run_dir)["tasks"] if t["task_type"] == task_type and t["included"]
    ]
