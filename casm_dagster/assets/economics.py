"""Economics assets (group ``economics``): the call telemetry as a DataFrame and the daily
``routing_policy`` the router reads on its next run. Bodies call ``casm_dagster.economics``."""

from datetime import UTC, datetime
from decimal import Decimal

import dagster as dg
import pandas as pd

from casm_dagster.cost.prices import UnknownModelError, load_prices
from casm_dagster.economics.frames import call_events as load_call_events
from casm_dagster.economics.routing_policy import PolicySettings, compute
from casm_dagster.resources import CasmResource, latest_routing_policy

GROUP = "economics"


def _preview(df: pd.DataFrame, rows: int = 10) -> dg.MetadataValue:
    return dg.MetadataValue.md(df.head(rows).to_markdown(index=False) if len(df) else "_no rows_")


@dg.asset(group_name=GROUP, kinds={"pandas"})
def call_events(context: dg.AssetExecutionContext, casm: CasmResource) -> dg.MaterializeResult:
    """Every model request CASM made (``casm_model_calls``): one row per call, exact costs."""
    df = load_call_events(casm.engine(context.instance))
    total = sum((Decimal(v) for v in df["cost_usd"]), Decimal(0))
    return dg.MaterializeResult(
        value=df,
        metadata={
            "dagster/row_count": len(df),
            "total_cost_usd": float(total),
            "runs": int(df["run_id"].nunique()) if len(df) else 0,
            "preview": _preview(df[["ts", "run_id", "task_type", "provider", "model", "outcome", "cost_usd"]]),
        },
    )


class PolicyConfig(dg.Config):
    """The controller's knobs (defaults: the last 24 h, half-life 12 h, 10 calls, target 0.80)."""

    window_hours: float = 24.0
    half_life_hours: float = 12.0
    min_samples: float = 10.0
    quality_target: float = 0.80
    as_of: str = ""  # ISO time to evaluate at (empty: now); for backtests and tests


def _priced(provider: str, model: str) -> bool:
    try:
        load_prices().rates(provider, model)
    except UnknownModelError:
        return False
    return True


@dg.asset(group_name=GROUP, kinds={"pandas"})
def routing_policy(
    context: dg.AssetExecutionContext, config: PolicyConfig, call_events: pd.DataFrame
) -> dg.MaterializeResult:
    """Diurnal optimization: per task type, the cheapest model whose measured success (95%
    lower bound) meets the quality target, with the evidence. The router reads the latest one."""
    now = datetime.fromisoformat(config.as_of.replace("Z", "+00:00")) if config.as_of else datetime.now(UTC)
    settings = PolicySettings(
        window_hours=config.window_hours,
        half_life_hours=config.half_life_hours,
        min_samples=config.min_samples,
        quality_target=config.quality_target,
    )
    policy = compute(call_events, now, _priced, settings, latest_routing_policy(context.instance))
    choices = pd.DataFrame(
        [
            {"task_type": t, "model": f"{c['provider']}/{c['model']}", "why": c["why"]}
            for t, c in policy["choices"].items()
        ],
        columns=["task_type", "model", "why"],
    )
    changes = pd.DataFrame(policy["changes"], columns=["task_type", "before", "after", "why"])
    stats = pd.DataFrame(policy["stats"])
    return dg.MaterializeResult(
        value=policy,
        metadata={
            "version": policy["version"],
            "previous_version": policy["previous_version"] or "none",
            "dagster/row_count": len(stats),
            "choices": _preview(choices, 50),
            "changes": _preview(changes, 50) if len(changes) else dg.MetadataValue.md("_no change_"),
            "evidence": _preview(stats, 50),
            "notes": dg.MetadataValue.md("\n".join(f"- {n}" for n in policy["notes"]) or "_none_"),
            "policy": dg.MetadataValue.json(policy),
        },
    )


ECONOMICS_ASSETS = [call_events, routing_policy]
