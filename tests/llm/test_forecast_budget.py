"""The forecast and the budget cascade: downgrade, then reduce scope, then stop."""

from __future__ import annotations

from decimal import Decimal

from casm_dagster.cost.forecast import PlannedTask, enforce, price
from casm_dagster.cost.formulas import RETRY_FACTOR, SAFETY_MARGIN, CostRates
from casm_dagster.cost.prices import load_prices
from casm_dagster.cost.usage import Usage, llm_cost
from casm_dagster.llm.catalog import load_catalog, lower_profile
from casm_dagster.llm.router import Router, RoutingSettings
from casm_dagster.stages.forecast import _Silent, route_for_forecast

RATES = CostRates()


def _router(available=("openai", "anthropic")) -> Router:
    settings = RoutingSettings(available=frozenset(available), quality_floor=0.7)
    return Router(load_catalog(), load_prices(), settings, None, None, _Silent())  # type: ignore[arg-type]


def _task(n: int, kind: str, profile: str, tokens: int, likelihood: float = 1.0) -> PlannedTask:
    return PlannedTask(
        task_id=f"T{n:03d}",
        task_type=kind,
        stage={"review": "analyze", "fix": "plan", "docgen": "plan", "redteam": "policy"}[kind],
        target=f"src/f{n}.py",
        profile=profile,
        requested_profile=profile,
        input_tokens=tokens,
        output_p50=300,
        output_p90=1200,
        likelihood=likelihood,
        exact_prompt=kind == "review",
    )


def _plan() -> list[PlannedTask]:
    return [
        _task(1, "review", "reasoning_low", 20_000),
        _task(2, "review", "reasoning_low", 5_000),
        _task(3, "fix", "code_mid", 20_000, 0.25),
        _task(4, "docgen", "cheap", 20_000, 0.1),
        _task(5, "redteam", "reasoning_low", 3_000),
    ]


def _forecaster(router: Router):
    route = route_for_forecast(router)
    return lambda tasks: price(tasks, route, check_runs=2, rates=RATES)


def test_forecast_prices_each_task_with_its_routed_model_and_applies_retry_and_safety():
    router = _router()
    f = _forecaster(router)(_plan())
    prices = load_prices()
    # reasoning_low, cheapest meeting the floor among available: openai/o4-mini (1.10/4.40)
    review = next(p for p in f.priced if p.task.task_id == "T001")
    assert (review.provider, review.model) == ("openai", "o4-mini")
    assert review.p50 == llm_cost(Usage(input=20_000, output=300), prices.rates("openai", "o4-mini"))
    assert review.p90 == llm_cost(Usage(input=20_000, output=1200), prices.rates("openai", "o4-mini"))
    fix = next(p for p in f.priced if p.task.task_id == "T003")
    assert fix.p50 == llm_cost(Usage(input=20_000, output=300), prices.rates(fix.provider, fix.model)) * Decimal("0.25")
    assert f.llm_p50 == sum(p.p50 for p in f.priced) * RETRY_FACTOR * SAFETY_MARGIN
    assert f.total_p90 > f.total_p50 > f.llm_p50
    assert 0 < f.confidence < 1  # reviews are exact prompts, the rest projected


def test_within_budget_takes_no_action():
    outcome = enforce(_plan(), Decimal("10"), _forecaster(_router()), lower_profile)
    assert (outcome.status, outcome.action, outcome.steps) == ("within_budget", "none", [])


def test_over_budget_downgrades_before_reducing_scope():
    full = _forecaster(_router())(_plan())
    downgraded = _forecaster(_router())(
        [
            _task(int(t.task_id[1:]), t.task_type, lower_profile(t.profile) or t.profile, t.input_tokens, t.likelihood)
            for t in _plan()
        ]
    )
    budget = (full.total_p50 + downgraded.total_p50) / 2  # one downgrade step fits
    outcome = enforce(_plan(), budget, _forecaster(_router()), lower_profile)
    assert outcome.action == "downgrade_model"
    assert [s.action for s in outcome.steps] == ["none", "downgrade_model"]
    assert all(t.included for t in outcome.tasks)
    assert {t.task_id: t.profile for t in outcome.tasks}["T001"] == "code_mid"
    assert outcome.forecast.total_p50 <= budget


def test_then_reduces_scope_docgen_first_and_keeps_one_review():
    forecaster = _forecaster(_router())
    cheapest = [_task(int(t.task_id[1:]), t.task_type, "cheap", t.input_tokens, t.likelihood) for t in _plan()]
    all_cheap = forecaster(cheapest)
    without_docgen = forecaster([t for t in cheapest if t.task_type != "docgen"])
    budget = (all_cheap.total_p50 + without_docgen.total_p50) / 2
    outcome = enforce(_plan(), budget, forecaster, lower_profile)
    assert outcome.action == "reduce_scope"
    actions = [s.action for s in outcome.steps]
    assert actions.index("reduce_scope") > actions.index("downgrade_model")
    dropped = [t for t in outcome.tasks if not t.included]
    assert [t.task_type for t in dropped] == ["docgen"]
    assert dropped[0].drop_reason == "budget: scope reduced"


def test_stops_when_even_the_smallest_scope_is_over_budget():
    forecaster = _forecaster(_router())
    outcome = enforce(_plan(), Decimal("0.000001"), forecaster, lower_profile)
    assert outcome.stopped and outcome.status == "blocked"
    assert outcome.steps[-1].action == "stop"
    assert "smallest scope" in outcome.steps[-1].detail
    kept_reviews = [t for t in outcome.tasks if t.included and t.task_type == "review"]
    assert len(kept_reviews) == 1  # the audit's floor
    # the order of the cascade, as recorded
    actions = [s.action for s in outcome.steps]
    assert actions == sorted(actions, key=["none", "downgrade_model", "reduce_scope", "stop"].index)


def test_offline_forecast_is_zero_model_cost_but_not_zero_run_cost():
    f = _forecaster(_router(available=()))(_plan())
    assert f.llm_p50 == 0 and all(p.provider == "offline" for p in f.priced)
    assert f.tools > 0 and f.infra > 0
    # offline: dropping tasks saves nothing, so a budget below tools + infra stops at once
    outcome = enforce(_plan(), Decimal("0"), _forecaster(_router(available=())), lower_profile)
    assert [s.action for s in outcome.steps] == ["none", "stop"]
