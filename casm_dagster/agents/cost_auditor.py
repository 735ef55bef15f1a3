"""The cost-auditor: a short cost review of one run, for its cost report (SPEC §5).

Where the money went (the largest stage, model and task), what retries and fallbacks cost
on top, which tasks cost more than their forecast, and what the same calls would cost under
the current routing policy (its choice per task type, at this run's prices). Deterministic
arithmetic over the recorded calls: it calls no model.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from casm_dagster.cost.prices import Rates, UnknownModelError
from casm_dagster.cost.usage import llm_cost
from casm_dagster.llm.telemetry import StoredCall

OVER_FORECAST = Decimal("1.5")  # a task counts as over its forecast past 1.5 × its P50


def _usd(v: Decimal) -> str:
    return f"${v:.6f}"


def _largest(calls: list[StoredCall], key: Callable[[StoredCall], str]) -> tuple[str, Decimal]:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for c in calls:
        totals[key(c)] += c.cost
    name = max(sorted(totals), key=lambda k: totals[k])
    return name, totals[name]


def review(
    calls: list[StoredCall],
    forecast: dict[str, Any] | None,
    policy: dict[str, Any] | None,
    rates_of: Callable[[str, str], Rates],
) -> list[str]:
    """Markdown lines of the review (a heading and bullets)."""
    lines = ["## Cost review (cost-auditor)", ""]
    total = sum((c.cost for c in calls), Decimal(0))
    if not calls or total == 0:
        lines.append(
            "- No model spend in this run"
            + (" (offline: no model was called)." if calls else ".")
            + " Its cost is tools and infrastructure only."
        )
        return [*lines, *_policy_lines(calls, policy, rates_of, total)]
    for label, key in (("stage", lambda c: c.stage), ("model", lambda c: f"{c.provider}/{c.model}"),
                       ("task", lambda c: f"{c.task_type} `{c.task_id}`")):  # fmt: skip
        name, cost = _largest(calls, key)
        lines.append(f"- Largest {label}: {name} — {_usd(cost)} ({cost / total:.0%} of the model spend).")
    repeats = [c for c in calls if c.attempt > 1]
    failed = [c for c in calls if c.outcome != "pass"]
    extra = sum((c.cost for c in repeats), Decimal(0))
    wasted = sum((c.cost for c in failed), Decimal(0))
    lines.append(
        f"- Retries and fallbacks: {len(repeats)} repeated calls cost {_usd(extra)}; {len(failed)} calls that "
        f"failed or were rejected cost {_usd(wasted)}."
    )
    spent: dict[str, Decimal] = defaultdict(Decimal)
    for c in calls:
        spent[c.task_id] += c.cost
    over = []
    for task in (forecast or {}).get("by_task", []):
        p50 = Decimal(task["p50"])
        actual = spent.get(task["task_id"], Decimal(0))
        if p50 > 0 and actual > p50 * OVER_FORECAST:
            target = str(task["target"]).replace("`", "'")  # a repo path: kept inside its code span
            over.append(f"{task['task_type']} `{target}` {_usd(actual)} vs P50 {_usd(p50)}")
    lines.append(f"- Over forecast (> {OVER_FORECAST}× P50): " + ("; ".join(over[:5]) if over else "none") + ".")
    return [*lines, *_policy_lines(calls, policy, rates_of, total)]


def _policy_lines(
    calls: list[StoredCall], policy: dict[str, Any] | None, rates_of: Callable[[str, str], Rates], total: Decimal
) -> list[str]:
    if not policy:
        return ["- Next run: no routing policy yet (the daily diurnal optimization has not run)."]
    counterfactual = Decimal(0)
    moved = 0
    for c in calls:
        choice = policy.get("choices", {}).get(c.task_type)
        if choice and (choice["provider"], choice["model"]) != (c.provider, c.model):
            try:
                counterfactual += llm_cost(c.usage, rates_of(choice["provider"], choice["model"]))
                moved += 1
                continue
            except UnknownModelError:
                pass
        counterfactual += c.cost
    delta = total - counterfactual
    verdict = f"save {_usd(delta)}" if delta >= 0 else f"cost {_usd(-delta)} more (for measured quality)"
    return [
        f"- Next run under routing policy {policy['version']}: these calls would {verdict} "
        f"({moved} calls on another model; same tokens, this run's prices)."
    ]
