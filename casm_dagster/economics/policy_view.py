"""The routing policy as runs and people read it: the view a run records for its router,
and ``casm explain --decision``. Plain dicts, no pandas: every audit run imports this."""

from __future__ import annotations

from typing import Any


def routing_view(policy: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a run records and its router reads: the version, the choices, the models to avoid,
    and each sampled model's measured quality (success lower bound) per task type."""
    if not policy:
        return None
    min_n = policy["settings"]["min_samples"]
    measured: dict[str, dict[str, float]] = {}
    for row in policy["stats"]:
        if row["effective_n"] >= min_n:
            measured.setdefault(row["task_type"], {})[f"{row['provider']}/{row['model']}"] = row["success_lower"]
    return {
        "version": policy["version"],
        "created_at": policy["created_at"],
        "quality_target": policy["settings"]["quality_target"],
        "choices": {
            t: {"provider": c["provider"], "model": c["model"], "why": c["why"]} for t, c in policy["choices"].items()
        },
        "avoid": policy["avoid"],
        "measured": measured,
    }


def explain_decision(policy: dict[str, Any] | None, task_type: str) -> str:
    """``casm explain --decision TASK_TYPE``: the routing of one task type in the latest
    policy — before and after, why, and the measured evidence behind it."""
    if not policy:
        return (
            f"no routing policy yet: {task_type} tasks route by the catalog's assumed qualities "
            "(the diurnal_optimization job materializes routing_policy daily)\n"
        )
    s = policy["settings"]
    lines = [
        f"routing policy {policy['version']} of {policy['created_at']} "
        f"(previous: {policy['previous_version'] or 'none'})",
        f"window {s['window_hours']:g} h, half-life {s['half_life_hours']:g} h, minimum {s['min_samples']:g} calls, "
        f"quality target {s['quality_target']:.2f} (95% lower bound of the success rate)",
        "",
        f"task type {task_type}:",
    ]
    change = next((c for c in policy["changes"] if c["task_type"] == task_type), None)
    choice = policy["choices"].get(task_type)
    if change:
        lines.append(f"  changed: {change['before'] or 'catalog default'} → {change['after'] or 'catalog default'}")
        lines.append(f"  why:     {change['why']}")
    elif choice:
        lines.append(f"  unchanged: {choice['provider']}/{choice['model']}")
        lines.append(f"  why:       {choice['why']}")
    else:
        lines.append("  no choice: no model has enough evidence meeting the target (catalog defaults apply)")
    if policy["avoid"].get(task_type):
        lines.append(f"  avoid:   {', '.join(policy['avoid'][task_type])} (measured below the target)")
    rows = [r for r in policy["stats"] if r["task_type"] == task_type]
    lines += ["", "  evidence (model, calls, effective n, success, lower bound, mean $, P90 $, P95 ms, drift):"]
    for r in sorted(rows, key=lambda r: (-r["success_lower"], r["mean_cost_usd"])):
        drift = f"drift: {r['drift_kind']}" if r["drift"] else "-"
        lines.append(
            f"    {r['provider']}/{r['model']:<28} {r['calls']:>5} {r['effective_n']:>8.1f} {r['success_rate']:>7.2%} "
            f"{r['success_lower']:>6.2f} {r['mean_cost_usd']:>10.6f} {r['p90_cost_usd']:>10.6f} "
            f"{r['p95_latency_ms']:>7} {drift}"
        )
    if not rows:
        lines.append("    none in the window")
    return "\n".join(lines) + "\n"
