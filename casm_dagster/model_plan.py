"""The run's model plan on disk (``model_plan.json``, written by the forecast stage): which
model tasks run, with which ids and profiles. Stages read it to do exactly that work."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from casm_dagster.cost.forecast import PlannedTask
from casm_dagster.errors import RunNotFoundError

MODEL_PLAN_FILE, FORECAST_FILE = "model_plan.json", "forecast.json"


def load_plan(run_dir: Path) -> dict[str, Any]:
    path = run_dir / MODEL_PLAN_FILE
    if not path.exists():
        raise RunNotFoundError(f"{path} is missing: the run has no model plan")
    return json.loads(path.read_text(encoding="utf-8"))


def planned(run_dir: Path, task_type: str) -> list[PlannedTask]:
    """The included tasks of one type, in plan order (a run without a plan has none)."""
    if not (run_dir / MODEL_PLAN_FILE).exists():
        return []
    return [PlannedTask(**t) for t in load_plan(run_dir)["tasks"] if t["task_type"] == task_type and t["included"]]
