"""SPEC §8's formulas, in one place.

    LLM_cost     = Tin/1e6·Pin + Tout/1e6·Pout                      (usage.llm_cost)
    Run_cost     = Σ(LLM_cost·R·S) + Tool_cost + Infra_cost          (forecast: R = 1.10, S = 1.05)
    Outcome_cost = Σ Run_cost_i + HITL_minutes · Human_rate_per_min
    Gross_margin = 1 − Outcome_cost / Price_charged

A forecast applies the retry factor R and the safety margin S to its model calls; an
actual cost is what the calls cost (their retries are real calls), so it does not.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

RETRY_FACTOR = Decimal("1.10")
SAFETY_MARGIN = Decimal("1.05")


@dataclass(frozen=True)
class CostRates:
    """Non-model unit costs (USD), from the template or the user's config."""

    ci_minute: Decimal = Decimal("0.008")  # tool cost: a CI minute (GitHub-hosted Linux runner)
    infra_second: Decimal = Decimal("0.00005")  # infra cost: one second of a CASM worker
    human_minute: Decimal = Decimal("1.50")  # HITL: a reviewer's minute


def forecast_llm(costs: Iterable[Decimal]) -> Decimal:
    return sum(costs, Decimal(0)) * RETRY_FACTOR * SAFETY_MARGIN


def tool_cost(ci_minutes: Decimal, rates: CostRates) -> Decimal:
    return ci_minutes * rates.ci_minute


def infra_cost(run_seconds: Decimal, rates: CostRates) -> Decimal:
    return run_seconds * rates.infra_second


def run_cost(llm: Decimal, tools: Decimal, infra: Decimal) -> Decimal:
    return llm + tools + infra


def outcome_cost(run_costs: Iterable[Decimal], hitl_minutes: Decimal, rates: CostRates) -> Decimal:
    return sum(run_costs, Decimal(0)) + hitl_minutes * rates.human_minute


def gross_margin(outcome: Decimal, price_charged: Decimal) -> Decimal | None:
    """None when nothing was charged (a margin of an unpriced outcome means nothing)."""
    if price_charged <= 0:
        return None
    return 1 - outcome / price_charged


def per_unit(total: Decimal, count: float) -> Decimal | None:
    """$/issue found, $/PR created, $/1k LOC …: None when there is nothing to divide by."""
    if count <= 0:
        return None
    return total / Decimal(str(count))
