"""The cost forecast before the run, and the budget cascade (SPEC §1, §8).

A run's model work is planned as tasks (files × task types × profiles). Review tasks are
priced from the token count of their actual prompts; fix, docgen and redteam tasks from
projected prompts, weighted by how likely they are to run (P50) or assumed all to run at
their output cap (P90). Model cost carries the retry factor and safety margin; tools
(CI minutes of the allowlisted checks) and infra (worker seconds) are added.

Over budget → downgrade every task one profile at a time, then drop tasks (docgen, then
fixes, then redteam, then reviews of the largest files), then stop — each step recorded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from casm_dagster.cost.formulas import CostRates, forecast_llm, infra_cost, tool_cost
from casm_dagster.cost.prices import Rates
from casm_dagster.cost.usage import Usage, llm_cost, usd

# Forecast assumptions (documented in docs/economics.md and repeated in cost_forecast.json's notes).
LIKELIHOOD = {"review": 1.0, "fix": 0.25, "docgen": 0.10, "redteam": 1.0}
CHECK_MINUTES = Decimal("0.2")  # one run of one allowlisted check
BASE_SECONDS = Decimal(10)  # ingest, scans, git work
PARALLEL = 4  # review tasks run concurrently
DROP_ORDER = ("docgen", "fix", "redteam", "review")


@dataclass(frozen=True)
class PlannedTask:
    task_id: str
    task_type: str
    stage: str
    target: str
    profile: str  # after any downgrade
    requested_profile: str
    input_tokens: int
    output_p50: int
    output_p90: int  # the task's output cap
    likelihood: float
    exact_prompt: bool  # input counted from the prompt that will be sent
    risk_high: bool = False
    included: bool = True
    drop_reason: str = ""

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Priced:
    task: PlannedTask
    provider: str
    model: str
    latency_ms: int
    p50: Decimal  # weighted by likelihood
    p90: Decimal


@dataclass(frozen=True)
class Forecast:
    priced: list[Priced]
    llm_p50: Decimal  # with retry factor and safety margin
    llm_p90: Decimal
    input_tokens: int
    output_tokens: int
    tools: Decimal
    tool_details: list[dict[str, Any]]
    infra: Decimal
    infra_details: list[dict[str, Any]]
    confidence: float

    @property
    def total_p50(self) -> Decimal:
        return self.llm_p50 + self.tools + self.infra

    @property
    def total_p90(self) -> Decimal:
        return self.llm_p90 + self.tools + self.infra


Route = Callable[[PlannedTask], tuple[str, str, int, Rates]]  # → provider, model, latency_ms, rates


def price(tasks: list[PlannedTask], route: Route, check_runs: int, rates: CostRates) -> Forecast:
    priced: list[Priced] = []
    in_tokens = out_tokens = 0
    exact = total_in = 0
    latency = 0
    for t in tasks:
        if not t.included:
            continue
        provider, model, latency_ms, r = route(t)
        p50 = llm_cost(Usage(input=t.input_tokens, output=t.output_p50), r) * Decimal(str(t.likelihood))
        p90 = llm_cost(Usage(input=t.input_tokens, output=t.output_p90), r)
        priced.append(Priced(t, provider, model, latency_ms, p50, p90))
        in_tokens += round(t.input_tokens * t.likelihood)
        out_tokens += round(t.output_p50 * t.likelihood)
        total_in += t.input_tokens
        exact += t.input_tokens if t.exact_prompt else 0
        latency += round(latency_ms * t.likelihood)
    minutes = CHECK_MINUTES * check_runs
    seconds = BASE_SECONDS + minutes * 60 + Decimal(latency) / 1000 / PARALLEL
    tools = tool_cost(minutes, rates)
    infra = infra_cost(seconds, rates)
    return Forecast(
        priced=priced,
        llm_p50=forecast_llm(p.p50 for p in priced),
        llm_p90=forecast_llm(p.p90 for p in priced),
        input_tokens=in_tokens,
        output_tokens=out_tokens,
        tools=tools,
        tool_details=[
            {
                "name": "allowlisted checks (CI minutes)",
                "unit": "minutes",
                "quantity": float(minutes),
                "unit_cost_usd": float(rates.ci_minute),
                "cost_usd": usd(tools),
            }
        ],
        infra=infra,
        infra_details=[
            {
                "name": "CASM worker time",
                "unit": "seconds",
                "quantity": float(seconds.quantize(Decimal("0.001"))),
                "unit_cost_usd": float(rates.infra_second),
                "cost_usd": usd(infra),
            }
        ],
        confidence=round(exact / total_in, 4) if total_in else 1.0,
    )


@dataclass(frozen=True)
class BudgetStep:
    action: str  # none | downgrade_model | reduce_scope | stop
    detail: str
    forecast_usd: Decimal


@dataclass(frozen=True)
class BudgetOutcome:
    tasks: list[PlannedTask]
    forecast: Forecast
    steps: list[BudgetStep]
    status: str  # within_budget | forecast_over_budget | blocked
    action: str  # the strongest action taken

    @property
    def stopped(self) -> bool:
        return self.action == "stop"


def enforce(
    tasks: list[PlannedTask],
    budget: Decimal | None,
    forecast_of: Callable[[list[PlannedTask]], Forecast],
    lower: Callable[[str], str | None],
) -> BudgetOutcome:
    """Fit the plan into ``budget`` (compared with the P50 total, which already carries the
    safety margin): downgrade, then reduce scope, then stop."""
    forecast = forecast_of(tasks)
    if budget is None or forecast.total_p50 <= budget:
        return BudgetOutcome(tasks, forecast, [], "within_budget", "none")
    steps = [
        BudgetStep("none", f"forecast ${usd(forecast.total_p50)} is over the budget ${budget}", forecast.total_p50)
    ]
    action = "none"
    while forecast.total_p50 > budget:
        moved = [dataclasses.replace(t, profile=lower(t.profile) or t.profile) for t in tasks]
        if all(a.profile == b.profile for a, b in zip(moved, tasks, strict=True)):
            break
        changed = sorted(
            {f"{b.profile}→{a.profile}" for a, b in zip(moved, tasks, strict=True) if a.profile != b.profile}
        )
        cheaper = forecast_of(moved)
        if cheaper.total_p50 >= forecast.total_p50:
            break  # nothing to save by downgrading (e.g. offline)
        tasks, forecast, action = moved, cheaper, "downgrade_model"
        steps.append(BudgetStep("downgrade_model", f"downgraded {', '.join(changed)}", forecast.total_p50))
    for kind in DROP_ORDER:
        if forecast.total_p50 <= budget:
            break
        # Largest first: the fewest tasks dropped for the money saved.
        costs = {p.task.task_id: p.p50 for p in forecast.priced}
        victims = sorted(
            (t for t in tasks if t.included and t.task_type == kind and costs.get(t.task_id, 0) > 0),
            key=lambda t: (-t.input_tokens, t.target),
        )
        for victim in victims:
            if forecast.total_p50 <= budget:
                break
            if kind == "review" and sum(t.included and t.task_type == "review" for t in tasks) == 1:
                break  # the last review is the audit's floor: below it the run stops
            tasks = [
                dataclasses.replace(t, included=False, drop_reason="budget: scope reduced") if t is victim else t
                for t in tasks
            ]
            forecast, action = forecast_of(tasks), "reduce_scope"
            steps.append(BudgetStep("reduce_scope", f"dropped {kind} {victim.target}", forecast.total_p50))
    if forecast.total_p50 <= budget:
        return BudgetOutcome(tasks, forecast, steps, "forecast_over_budget", action)
    steps.append(
        BudgetStep(
            "stop",
            f"even the smallest scope forecasts ${usd(forecast.total_p50)}, over the budget ${budget}: "
            "the run stops before any model call (raise --budget-usd or routing.budget.max_usd_per_run)",
            forecast.total_p50,
        )
    )
    return BudgetOutcome(tasks, forecast, steps, "blocked", "stop")
