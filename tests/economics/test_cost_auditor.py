"""The cost-auditor's review: where the money went, retries, over-forecast tasks, and what
the current routing policy would change on the next run."""

from __future__ import annotations

from decimal import Decimal

from casm_dagster.agents.cost_auditor import review
from casm_dagster.cost.prices import load_prices
from casm_dagster.cost.usage import Usage, llm_cost
from casm_dagster.llm.telemetry import StoredCall

PRICES = load_prices()


def _call(i: int, task: str, task_type: str, model: tuple[str, str], attempt: int = 1, outcome: str = "pass"):
    usage = Usage(input=4000, output=1000)
    return StoredCall(
        call_id=f"c{i}", run_id="R", task_id=task, task_type=task_type,
        stage="plan" if task_type == "fix" else "analyze",
        provider=model[0], model=model[1], profile="code_mid", attempt=attempt, retries=attempt - 1, usage=usage,
        latency_ms=1000, outcome=outcome, quality=1.0, cost=llm_cost(usage, PRICES.rates(*model)),
        priced_by_default=False, price_registry="x", route_reason="", error="", ts="2026-11-24T00:00:00Z",
    )  # fmt: skip


def test_review_names_the_spend_retries_overruns_and_policy_savings() -> None:
    mini, sonnet = ("openai", "gpt-4.1-mini"), ("anthropic", "claude-sonnet-4-5")
    calls = [
        _call(1, "T1", "fix", sonnet),
        _call(2, "T1", "fix", sonnet, attempt=2, outcome="fail"),
        _call(3, "T2", "review", sonnet),
    ]
    forecast = {"by_task": [{"task_id": "T1", "task_type": "fix", "target": "a.py", "p50": "0.001"}]}
    policy = {"version": "20261124-abcd", "choices": {"review": {"provider": "openai", "model": "gpt-4.1-mini"}}}
    text = "\n".join(review(calls, forecast, policy, PRICES.rates))
    assert "Largest stage: plan" in text and "Largest model: anthropic/claude-sonnet-4-5" in text
    assert "1 repeated calls cost $" in text and "1 calls that failed or were rejected" in text
    assert "fix `a.py`" in text  # over its forecast
    saving = calls[2].cost - llm_cost(calls[2].usage, PRICES.rates(*mini))
    assert f"would save ${saving:.6f}" in text and "1 calls on another model" in text
    offline = "\n".join(review([], None, None, PRICES.rates))
    assert "No model spend" in offline and "no routing policy yet" in offline
    assert Decimal(0) < saving
