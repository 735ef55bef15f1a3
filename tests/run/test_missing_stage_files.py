"""A stage input that is missing fails the stage loudly; it is never read as "nothing"
(an empty baseline accepted every patch group; a missing model plan dropped its tasks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from casm_dagster.errors import RunNotFoundError
from casm_dagster.run.files import CHECKS_FILE, MODEL_PLAN_FILE, SPEC_FILE, load_checks, planned_tasks


def test_a_missing_baseline_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RunNotFoundError, match="baseline is gone"):
        load_checks(tmp_path)
    (tmp_path / CHECKS_FILE).write_text("[]")
    assert load_checks(tmp_path) == []  # a baseline with no checks is a real answer


def test_a_missing_model_plan_is_an_error_when_the_workflow_forecasts(tmp_path: Path) -> None:
    (tmp_path / SPEC_FILE).write_text(json.dumps({"stages": ["ingest", "forecast", "analyze"]}))
    with pytest.raises(RunNotFoundError, match="model plan is gone"):
        planned_tasks(tmp_path, "review")
    (tmp_path / MODEL_PLAN_FILE).write_text(json.dumps({"tasks": []}))
    assert planned_tasks(tmp_path, "review") == []


def test_a_workflow_without_forecast_plans_no_model_work(tmp_path: Path) -> None:
    (tmp_path / SPEC_FILE).write_text(json.dumps({"stages": ["ingest", "report"]}))
    assert planned_tasks(tmp_path, "review") == []
