"""The forecast stage: plan the run's model work, forecast its cost, fit it to the budget.

Runs after ingest and before any model is called. The plan (``model_plan.json``) fixes
each task's id, profile and whether it runs; later stages execute exactly that plan, and a
replay pins the same task ids. ``forecast.json`` keeps the forecast for cost_forecast.json.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from casm_dagster.agents import prompts, validator
from casm_dagster.contracts.run import Snapshot
from casm_dagster.cost.forecast import LIKELIHOOD, BudgetOutcome, Forecast, PlannedTask, enforce, price
from casm_dagster.cost.prices import Rates, load_prices
from casm_dagster.cost.run_cost import Counts, rates_of
from casm_dagster.cost.usage import usd
from casm_dagster.llm.catalog import OFFLINE_MODEL, OFFLINE_PROVIDER, load_catalog, lower_profile
from casm_dagster.llm.providers import Prompt
from casm_dagster.llm.router import ModelTask, RouteChoice, Router
from casm_dagster.llm.session import routing_settings
from casm_dagster.llm.tokens import estimate_tokens
from casm_dagster.prsentinel.scope import restrict
from casm_dagster.run.files import FORECAST_FILE, MODEL_PLAN_FILE, load_model_plan
from casm_dagster.run.ids import new_ulid
from casm_dagster.run.journal import Journal, skipped, stage, write_json_atomic
from casm_dagster.run.workspace import scratch_checkout
from casm_dagster.safety.repo_scan import Inventory, SourceFile, scan
from casm_dagster.safety.sandbox import Sandbox
from casm_dagster.stages.policy import ruleset_for

# Output-token guesses per task type (P50); the prompt's cap is P90.
OUTPUT_P50 = {"review": 300, "fix": 400, "docgen": 300, "redteam": 200}
FINDINGS_ALLOWANCE = 150  # tokens a fix prompt adds for the findings it lists
DIFF_ALLOWANCE = 500  # tokens of a plan's diff beyond the model fixes (deterministic fixes)


def model_files(inventory: Inventory) -> list[SourceFile]:
    """What model agents read: source files in a known language, in path order."""
    return sorted((f for f in inventory.files if f.language), key=lambda f: f.path)


class _Silent:
    """Forecast-time routing is planning, not a decision to record."""

    def route(self, choice: RouteChoice) -> None: ...
    def call(self, record, reply_text, error) -> None: ...
    def dropped(self, task, reason) -> None: ...


def planning_router(spec) -> Router:
    s = spec.models
    settings = routing_settings(spec)
    return Router(
        load_catalog(Path(s.catalog.path)),
        load_prices(Path(s.prices.path)),
        settings,
        clients=None,  # type: ignore[arg-type]
        ledger=None,  # type: ignore[arg-type]
        recorder=_Silent(),
    )


def as_model_task(t: PlannedTask) -> ModelTask:
    prompt = Prompt("", "", t.output_p90)
    return ModelTask(
        t.task_id, t.task_type, t.stage, t.profile, t.target, prompt, t.output_p50, t.risk_high, t.input_tokens
    )  # type: ignore[arg-type]


class NoEligibleModel(Exception):
    def __init__(self, choice: RouteChoice) -> None:
        reasons = sorted({r for c in choice.candidates for r in c.reject_reasons})
        super().__init__(f"no eligible model ({', '.join(reasons) or 'no candidates'})")


def without_unroutable(tasks: list[PlannedTask], route) -> tuple[list[PlannedTask], list[str]]:
    """Tasks no model may serve (every candidate rejected) are dropped before the forecast,
    as the router would drop them at run time; each is noted."""
    out, notes = [], []
    for t in tasks:
        try:
            route(t)
        except NoEligibleModel as exc:
            out.append(dataclasses.replace(t, included=False, drop_reason=str(exc)))
            notes.append(f"{t.task_type} {t.target}: {exc}")
            continue
        out.append(t)
    return out, notes


def route_for_forecast(router: Router):
    def route(t: PlannedTask) -> tuple[str, str, int, Rates]:
        choice = router.route(as_model_task(t), t.profile if not t.risk_high else None)
        sel = choice.selected
        if sel is None:
            raise NoEligibleModel(choice)
        if sel.provider == OFFLINE_PROVIDER:
            return OFFLINE_PROVIDER, OFFLINE_MODEL, 0, router.prices.rates(OFFLINE_PROVIDER, OFFLINE_MODEL)
        return sel.provider, sel.model, sel.latency_ms, router.prices.rates(sel.provider, sel.model)

    return route


def plan_tasks(snap: Snapshot, inventory: Inventory, pinned: dict[tuple[str, str], str]) -> list[PlannedTask]:
    manifest = snap.spec.manifest
    high = ruleset_for(snap).high_paths()
    files = model_files(inventory)
    tasks: list[PlannedTask] = []

    def add(task_type: str, stage: str, target: str, input_tokens: int, cap: int, exact: bool, risk: bool) -> None:
        agent = {"review": "reviewer", "fix": "fixer", "docgen": "docgen", "redteam": "redteam"}[task_type]
        profile = manifest.agents[agent].model_profile  # type: ignore[index]
        tasks.append(
            PlannedTask(
                task_id=pinned.get((task_type, target)) or new_ulid(),
                task_type=task_type,
                stage=stage,
                target=target,
                profile=profile,  # type: ignore[arg-type]
                requested_profile=profile,  # type: ignore[arg-type]
                input_tokens=input_tokens,
                output_p50=min(OUTPUT_P50[task_type], cap),
                output_p90=cap,
                likelihood=LIKELIHOOD[task_type],
                exact_prompt=exact,
                risk_high=risk,
            )
        )

    def uses_model(agent: str) -> bool:
        a = manifest.agents.get(agent)  # type: ignore[call-overload]
        return bool(a and a.enabled and a.model_profile)

    if uses_model("reviewer"):
        for f in files:
            p = prompts.review_prompt(f.path, f.text, f.language)
            add("review", "analyze", f.path, estimate_tokens(p.text), p.max_output_tokens, True, False)
    if uses_model("fixer"):
        for f in files:
            p = prompts.fix_prompt(f.path, f.text, [])
            risky = bool(high.match(f.path))
            add("fix", "plan", f.path, estimate_tokens(p.text) + FINDINGS_ALLOWANCE, p.max_output_tokens, False, risky)
    if uses_model("docgen"):
        for f in files:
            if f.language == "python":
                p = prompts.docgen_prompt(f.path, f.text, [])
                add(
                    "docgen",
                    "plan",
                    f.path,
                    estimate_tokens(p.text),
                    p.max_output_tokens,
                    False,
                    bool(high.match(f.path)),
                )
    if uses_model("redteam"):
        projected = DIFF_ALLOWANCE + sum(
            round(t.output_p50 * t.likelihood) for t in tasks if t.task_type in ("fix", "docgen")
        )
        p = prompts.redteam_prompt("")
        add("redteam", "policy", "plan", estimate_tokens(p.text) + projected, p.max_output_tokens, False, False)
    return tasks


@dataclass(frozen=True)
class ForecastResult:
    proceeds: bool
    status: str  # within_budget | forecast_over_budget | blocked
    action: str
    total_p50_usd: float
    total_p90_usd: float
    tasks: int
    reason: str = ""


def forecast_json(f: Forecast) -> dict[str, Any]:
    return {
        "llm_p50": str(f.llm_p50),
        "llm_p90": str(f.llm_p90),
        "input_tokens": f.input_tokens,
        "output_tokens": f.output_tokens,
        "tools": str(f.tools),
        "tool_details": f.tool_details,
        "infra": str(f.infra),
        "infra_details": f.infra_details,
        "total_p50": str(f.total_p50),
        "total_p90": str(f.total_p90),
        "confidence": f.confidence,
        "by_task": [
            {
                "task_id": p.task.task_id,
                "task_type": p.task.task_type,
                "target": p.task.target,
                "provider": p.provider,
                "model": p.model,
                "input_tokens": round(p.task.input_tokens * p.task.likelihood),
                "output_tokens": round(p.task.output_p50 * p.task.likelihood),
                "p50": str(p.p50),
                "p90": str(p.p90),
            }
            for p in f.priced
        ],
    }


def _pinned(spec) -> dict[tuple[str, str], str]:
    replay_dir = spec.models.replay_dir
    if not replay_dir:
        return {}
    return {(t["task_type"], t["target"]): t["task_id"] for t in load_model_plan(Path(replay_dir))["tasks"]}


def forecast(snap: Snapshot, journal: Journal, engine: sa.Engine) -> ForecastResult:
    spec = snap.spec
    if skipped(journal, "forecast"):
        return ForecastResult(True, "within_budget", "none", 0.0, 0.0, 0)
    with stage(journal, "forecast", "planning model work and forecasting its cost"):
        s = spec.models
        manifest = spec.manifest
        sandbox = Sandbox.for_run(spec)
        with scratch_checkout(Path(spec.repo_path), snap.head_commit) as tree:
            inventory = restrict(scan(tree), journal.run_dir)  # pr-sentinel: the PR's files
            checks = validator.applicable_checks(sandbox, tree, inventory) if "validate" in spec.stages else []
        tasks = plan_tasks(snap, inventory, _pinned(spec))
        route = route_for_forecast(planning_router(spec))
        tasks, unroutable = without_unroutable(tasks, route)
        for note in unroutable:
            journal.decision("forecast", "model_task_dropped", note)
        rates = rates_of(manifest)
        check_runs = 2 * len(checks)  # before and after the patch
        budget = Decimal(s.budget_usd)
        outcome: BudgetOutcome = enforce(tasks, budget, lambda ts: price(ts, route, check_runs, rates), lower_profile)
        for step in outcome.steps:
            journal.decision(
                "forecast",
                f"budget_{step.action}",
                f"{step.detail} (forecast now ${usd(step.forecast_usd)})",
                action=step.action,
                forecast_usd=str(step.forecast_usd),
            )
        f = outcome.forecast
        write_json_atomic(
            journal.run_dir / MODEL_PLAN_FILE,
            {
                "tasks": [t.as_json() for t in outcome.tasks],
                "budget": {
                    "max_usd_per_run": s.budget_usd,
                    "status": outcome.status,
                    "action": outcome.action,
                    "steps": [
                        {"action": st.action, "detail": st.detail, "forecast_usd": str(st.forecast_usd)}
                        for st in outcome.steps
                    ],
                },
            },
        )
        write_json_atomic(journal.run_dir / FORECAST_FILE, forecast_json(f))
        included = sum(t.included for t in outcome.tasks)
        result = ForecastResult(
            proceeds=not outcome.stopped,
            status=outcome.status,
            action=outcome.action,
            total_p50_usd=usd(f.total_p50),
            total_p90_usd=usd(f.total_p90),
            tasks=included,
            reason=outcome.steps[-1].detail if outcome.stopped else "",
        )
        journal.emit(
            "stage_completed",
            f"{included} model tasks, forecast ${result.total_p50_usd} (P90 ${result.total_p90_usd}), "
            f"budget ${s.budget_usd}: {outcome.status}",
            stage="forecast",
            tasks=included,
            forecast_p50_usd=str(f.total_p50),
            forecast_p90_usd=str(f.total_p90),
            budget_status=outcome.status,
            budget_action=outcome.action,
        )
    if outcome.stopped:
        from casm_dagster.cost import proof
        from casm_dagster.run import artifacts

        for name in spec.stages[spec.stages.index("forecast") + 1 :]:
            journal.emit("stage_skipped", "stopped by the budget", stage=name)  # type: ignore[arg-type]
        journal.emit("run_stopped", f"budget: {result.reason}", stage=None)
        cost = proof.finalize(spec, journal, engine, [], Counts(), status="stopped")
        artifacts.write_stopped(spec, f"Budget: {result.reason}", cost, journal)
    return result
