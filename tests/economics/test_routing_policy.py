"""The closed loop without Dagster: synthetic telemetry in which the cheap model fails fix
tasks and passes review tasks → the policy routes fix to a stronger model and keeps review
cheap; the router follows it and the next run's forecast moves accordingly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pandas as pd
import pytest

from casm_dagster.cost.forecast import PlannedTask, price
from casm_dagster.cost.formulas import CostRates
from casm_dagster.cost.prices import UnknownModelError, load_prices
from casm_dagster.economics.policy_view import routing_view
from casm_dagster.economics.routing_policy import PolicySettings, compute, wilson_lower
from casm_dagster.llm.catalog import load_catalog
from casm_dagster.llm.router import Router, RoutingSettings
from casm_dagster.stages.forecast import _Silent, as_model_task, route_for_forecast

NOW = datetime(2026, 11, 24, 4, 0, tzinfo=UTC)
CHEAP = ("openai", "gpt-4.1-mini")
STRONG = ("anthropic", "claude-sonnet-4-5")


def _calls(spec: list[tuple[str, tuple[str, str], int, int]], hours_ago: float = 2.0) -> pd.DataFrame:
    """(task type, model, passes, fails) → rows shaped like casm_model_calls."""
    rows = []
    i = 0
    for task_type, (provider, model), passes, fails in spec:
        for outcome in ["pass"] * passes + ["fail"] * fails:
            i += 1
            rows.append(
                {
                    "call_id": f"c{i}",
                    "run_id": f"r{i % 7}",
                    "task_type": task_type,
                    "provider": provider,
                    "model": model,
                    "outcome": outcome,
                    "error": "" if outcome == "pass" else "invalid_output: the diff does not apply",
                    "cost_usd": "0.0031" if provider == "openai" else "0.0420",
                    "latency_ms": 4000 if provider == "openai" else 11000,
                    "input_tokens": 3000,
                    "output_tokens": 800,
                    "ts": (NOW - timedelta(hours=hours_ago, seconds=i)).isoformat().replace("+00:00", "Z"),
                }
            )
    return pd.DataFrame(rows)


def _priced(provider: str, model: str) -> bool:
    try:
        load_prices().rates(provider, model)
    except UnknownModelError:
        return False
    return True


SYNTHETIC = [("fix", CHEAP, 6, 54), ("fix", STRONG, 58, 2), ("review", CHEAP, 59, 1), ("review", STRONG, 60, 0)]


def _router(policy: dict | None) -> Router:
    settings = RoutingSettings(available=frozenset({"openai", "anthropic"}), policy=routing_view(policy))
    return Router(load_catalog(), load_prices(), settings, clients=None, ledger=None, recorder=_Silent())  # type: ignore[arg-type]


def _task(task_type: str, profile: str) -> PlannedTask:
    return PlannedTask(
        task_id=f"t-{task_type}", task_type=task_type, stage="plan", target="app.py", profile=profile,
        requested_profile=profile, input_tokens=3000, output_p50=800, output_p90=2000, likelihood=1.0,
        exact_prompt=True,
    )  # fmt: skip


def test_wilson_lower_bound() -> None:
    assert wilson_lower(0, 0, 1.96) == 0.0
    assert wilson_lower(30, 30, 1.96) == pytest.approx(0.886, abs=1e-3)
    assert wilson_lower(4, 30, 1.96) < 0.3


def test_the_policy_routes_fix_to_the_stronger_model_and_keeps_review_cheap() -> None:
    policy = compute(_calls(SYNTHETIC), NOW, _priced)
    assert policy["choices"]["fix"]["model"] == "claude-sonnet-4-5"
    assert policy["choices"]["review"]["model"] == "gpt-4.1-mini"
    assert policy["avoid"] == {"fix": ["openai/gpt-4.1-mini"]}
    assert "lower bound" in policy["choices"]["fix"]["why"]
    evidence = policy["choices"]["fix"]["evidence"]
    assert evidence["calls"] == 60 and evidence["success_rate"] == pytest.approx(58 / 60, abs=1e-3)
    assert {c["task_type"]: c["after"] for c in policy["changes"]} == {
        "fix": "anthropic/claude-sonnet-4-5",
        "review": "openai/gpt-4.1-mini",
    }
    fix_cheap = next(r for r in policy["stats"] if r["task_type"] == "fix" and r["model"] == "gpt-4.1-mini")
    assert fix_cheap["drift"] is True and fix_cheap["drift_kind"] == "invalid_output"

    fix, review = _task("fix", "code_mid"), _task("review", "reasoning_low")
    before, after = _router(None), _router(policy)
    assert before.route(as_model_task(fix)).selected.model == "gpt-4.1-mini"
    chosen = after.route(as_model_task(fix))
    assert chosen.selected.model == "claude-sonnet-4-5"
    assert f"routing_policy:{policy['version']}" in chosen.reason_codes
    rejected = {c.candidate.key: c.reject_reasons for c in chosen.candidates}
    assert "below_measured_quality" in rejected["openai/gpt-4.1-mini"]
    assert before.route(as_model_task(review)).selected.model == "o4-mini"
    assert after.route(as_model_task(review)).selected.model == "gpt-4.1-mini"

    # The next run's forecast: fix costs more, review less.
    rates = CostRates(Decimal("0"), Decimal("0"), Decimal("0"))

    def forecast(router: Router, task: PlannedTask) -> Decimal:
        return price([task], route_for_forecast(router), 0, rates).llm_p50

    assert forecast(after, fix) > forecast(before, fix)
    assert forecast(after, review) < forecast(before, review)


def test_minimum_sample_decay_window_and_unknown_prices() -> None:
    # Too few calls: nothing changes; a previous choice is kept.
    previous = compute(_calls(SYNTHETIC), NOW, _priced)
    thin = compute(_calls([("fix", CHEAP, 1, 3)]), NOW + timedelta(days=1), _priced, previous=previous)
    assert thin["choices"]["fix"]["model"] == "claude-sonnet-4-5" and thin["choices"]["fix"]["why"].startswith("kept")
    assert thin["changes"] == [] and thin["previous_version"] == previous["version"]
    # Old evidence decays below the minimum sample; outside the window it is gone.
    old = compute(_calls(SYNTHETIC, hours_ago=20), NOW, _priced, PolicySettings(half_life_hours=4))
    assert old["choices"] == {}
    assert compute(_calls(SYNTHETIC, hours_ago=30), NOW, _priced)["stats"] == []
    # A model without a price is never chosen, however well it does.
    unpriced = compute(_calls(SYNTHETIC), NOW, lambda p, m: m != "claude-sonnet-4-5")
    assert "fix" not in unpriced["choices"]
    assert any("no price" in n for n in unpriced["notes"])


def test_provider_errors_are_not_quality_failures_and_odd_errors_do_not_crash() -> None:
    calls = _calls([("review", CHEAP, 59, 1)])
    errors = _calls([("review", CHEAP, 0, 40)])
    errors["outcome"], errors["error"] = "error", ": boom"  # a throttled evening, an odd message
    errors["call_id"] = "e" + errors["call_id"]
    policy = compute(pd.concat([calls, errors]), NOW, _priced)
    assert policy["choices"]["review"]["model"] == "gpt-4.1-mini" and policy["avoid"] == {}
    (row,) = policy["stats"]
    assert row["calls"] == 60


def test_a_high_risk_task_keeps_its_raised_profile_despite_a_cheap_choice() -> None:
    cheap = compute(_calls([("fix", CHEAP, 60, 0)]), NOW, _priced)
    assert cheap["choices"]["fix"]["model"] == "gpt-4.1-mini"
    task = PlannedTask(
        task_id="t-risky", task_type="fix", stage="plan", target=".github/workflows/ci.yml", profile="code_mid",
        requested_profile="code_mid", input_tokens=3000, output_p50=800, output_p90=2000, likelihood=1.0,
        exact_prompt=True, risk_high=True,
    )  # fmt: skip
    choice = _router(cheap).route(as_model_task(task))
    assert choice.profile == "reasoning_low" and "profile_raised_for_risk" in choice.reason_codes
    assert choice.selected.model != "gpt-4.1-mini"
    assert not any(code.startswith("routing_policy:") for code in choice.reason_codes)


def test_kept_choices_do_not_nest_their_reasons() -> None:
    policy = compute(_calls(SYNTHETIC), NOW, _priced)
    for day in range(1, 4):
        later = NOW + timedelta(days=day)
        policy = compute(_calls([("fix", CHEAP, 1, 0)]), later, _priced, previous=policy)
    assert policy["choices"]["fix"]["why"].count("kept:") == 1
