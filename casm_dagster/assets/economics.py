"""Economics assets (group ``economics``): the call telemetry as a DataFrame and the daily
``routing_policy`` the router reads on its next run. Bodies call ``casm_dagster.economics``."""

import base64
import os
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

from casm_dagster.cost.prices import UnknownModelError, load_prices
from casm_dagster.github.connector import GITHUB_FAILURES
from casm_dagster.resources import CasmResource, GitHubResource, latest_routing_policy

# pandas and matplotlib (~1.2 s of imports) load inside the bodies, not with the definitions:
# every audit run loads these definitions and never touches them.
if TYPE_CHECKING:
    from pandas import DataFrame
else:
    DataFrame = Any

GROUP = "economics"
CUSTOMERS_ENV = "CASM_CUSTOMERS"


def _as_of(value: str) -> datetime:
    """An ISO time (naive means UTC), or now."""
    if not value:
        return datetime.now(UTC)
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _preview(df: DataFrame, rows: int = 10) -> dg.MetadataValue:
    return dg.MetadataValue.md(df.head(rows).to_markdown(index=False) if len(df) else "_no rows_")


@dg.asset(group_name=GROUP, kinds={"pandas"})
def call_events(context: dg.AssetExecutionContext, casm: CasmResource) -> dg.MaterializeResult:
    """Every model request CASM made (``casm_model_calls``): one row per call, exact costs."""
    from casm_dagster.economics.frames import call_events as load_call_events

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
    context: dg.AssetExecutionContext, config: PolicyConfig, call_events: DataFrame
) -> dg.MaterializeResult:
    """Diurnal optimization: per task type, the cheapest model whose measured success (95%
    lower bound) meets the quality target, with the evidence. The router reads the latest one."""
    import pandas as pd

    from casm_dagster.economics.routing_policy import PolicySettings, compute

    now = _as_of(config.as_of)
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


def _png(title: str, png: bytes) -> dg.MetadataValue:
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{base64.b64encode(png).decode()})")


def _total(df: DataFrame, column: str = "cost_usd") -> Decimal:
    return sum((Decimal(str(v)) for v in df[column]), Decimal(0)) if len(df) else Decimal(0)


def _cost_table(key: str, name: str, title: str):
    @dg.asset(name=name, group_name=GROUP, kinds={"pandas"}, description=f"Model cost per {title}, exact.")
    def table(call_events: DataFrame) -> dg.MaterializeResult:
        from casm_dagster.economics import charts, kpis

        df = kpis.cost_by(call_events, key)
        metadata = {
            "dagster/row_count": len(df),
            "total_cost_usd": float(_total(df)),
            "calls": int(df["calls"].sum()) if len(df) else 0,
            "preview": _preview(df.drop(columns=["cost"])),
        }
        if key == "model":
            metadata["daily_spend_by_model"] = _png("daily spend by model", charts.daily_spend_by_model(
                kpis.daily_spend_by_model(call_events)))  # fmt: skip
        return dg.MaterializeResult(value=df, metadata=metadata)

    return table


cost_by_run = _cost_table("run_id", "cost_by_run", "run")
cost_by_model = _cost_table("model", "cost_by_model", "model")
cost_by_task_type = _cost_table("task_type", "cost_by_task_type", "task type")
cost_by_repo = _cost_table("repo", "cost_by_repo", "repo")
COST_TABLES = [cost_by_run, cost_by_model, cost_by_task_type, cost_by_repo]


@dg.asset(group_name=GROUP, kinds={"pandas"})
def run_outcomes(context: dg.AssetExecutionContext, casm: CasmResource, github: GitHubResource) -> dg.MaterializeResult:
    """One row per run (its run_summary.json) with what became of its PR or branch: merged,
    open, closed unmerged or reverted (GitHub mode: asks GitHub; local: the repo's branches)."""
    try:
        connector = github.get_sensor_client() if github.configured else None
    except GITHUB_FAILURES:
        connector = None
    from casm_dagster.economics import kpis
    from casm_dagster.economics.outcomes import outcome_reader

    df = kpis.load_runs(casm.state_path(), outcome_reader(connector, casm.state_path()))
    counts = df["outcome"].value_counts().to_dict() if len(df) else {}
    return dg.MaterializeResult(
        value=df,
        metadata={
            "dagster/row_count": len(df),
            "total_outcome_cost_usd": float(_total(df, "outcome_cost_usd")),
            "outcomes": dg.MetadataValue.json({k: int(v) for k, v in counts.items()}),
            "preview": _preview(df[["run_id", "repo", "status", "outcome", "findings", "fixed", "run_cost_usd"]]),
        },
    )


@dg.asset(group_name=GROUP, kinds={"pandas"})
def unit_economics(run_outcomes: DataFrame) -> dg.MaterializeResult:
    """$/issue found, $/issue fixed, $/PR created, $/PR merged, $/1k LOC, $/1% perf improvement."""
    from casm_dagster.economics import kpis

    df = kpis.unit_economics(run_outcomes)
    values = {r["metric"]: r["usd_per_unit"] for r in df.to_dict(orient="records")}
    return dg.MaterializeResult(
        value=df,
        metadata={
            "dagster/row_count": len(df),
            "total_outcome_cost_usd": float(_total(run_outcomes, "outcome_cost_usd")),
            **{k: float(v) for k, v in values.items() if v is not None},  # a metric without a basis is absent
            "preview": _preview(df),
        },
    )


class KpiConfig(dg.Config):
    customers_file: str = ""  # empty: $CASM_CUSTOMERS; unset: no customers (zero rows)
    days: int = 30
    as_of: str = ""


@dg.asset(group_name=GROUP, kinds={"pandas"})
def business_kpis(
    context: dg.AssetExecutionContext, config: KpiConfig, casm: CasmResource, run_outcomes: DataFrame
) -> dg.MaterializeResult:
    """Per customer and business line (Templates, Sentinel, AgentForge): MRR, cost, gross
    margin and an explained churn risk, from the customers/plans file plus telemetry."""
    from casm_dagster.economics import charts, kpis

    path = config.customers_file or os.environ.get(CUSTOMERS_ENV, "")
    now = _as_of(config.as_of)
    if not path:
        df = kpis.business_kpis(kpis.CustomersConfig(plans={}, customers=[]), run_outcomes, {}, now, config.days)
        note = f"no customers configured (set {CUSTOMERS_ENV} or customers_file; see docs/economics.md)"
    else:
        customers = kpis.load_customers(Path(path))
        pending: dict[str, int] = {}
        for record in casm.approvals(context.instance).list(status="pending", limit=10_000):
            pending[record.repo.lower()] = pending.get(record.repo.lower(), 0) + 1
        df = kpis.business_kpis(customers, run_outcomes, pending, now, config.days)
        note = f"{len(df)} customers from {path}"
    lines = kpis.by_business_line(df)
    return dg.MaterializeResult(
        value=df,
        metadata={
            "dagster/row_count": len(df),
            "mrr_usd": float(df["mrr_usd"].sum()) if len(df) else 0.0,
            "source": note,
            "by_business_line": _preview(lines),
            "preview": _preview(df),
            "margin_per_customer": _png("margin per customer", charts.margin_per_customer(df)),
        },
    )


# -- asset checks: the invariants a finance reader relies on ------------------------------


@dg.asset_check(asset=call_events, blocking=True, description="No call is counted twice.")
def call_events_unique(call_events: DataFrame) -> dg.AssetCheckResult:
    dupes = call_events["call_id"][call_events["call_id"].duplicated()].tolist() if len(call_events) else []
    return dg.AssetCheckResult(passed=not dupes, metadata={"duplicated_call_ids": len(dupes)})


@dg.asset_check(asset=call_events, blocking=True, description="Every call's cost is a non-negative number.")
def call_costs_non_negative(call_events: DataFrame) -> dg.AssetCheckResult:
    bad = [c for c, v in zip(call_events["call_id"], call_events["cost_usd"], strict=True) if not _non_negative(v)]
    return dg.AssetCheckResult(passed=not bad, metadata={"bad_calls": len(bad), "first": bad[0] if bad else ""})


def _non_negative(value) -> bool:
    try:
        return Decimal(str(value)) >= 0
    except ArithmeticError:
        return False


def _reconcile(table: DataFrame, call_events: DataFrame) -> dg.AssetCheckResult:
    """Exact decimal sums must match (so they match to the cent), and so must the call counts
    (a call counted twice is caught even when it cost $0)."""
    ours, calls = _total(table), _total(call_events)
    counted = int(table["calls"].sum()) if len(table) else 0
    return dg.AssetCheckResult(
        passed=ours == calls and counted == len(call_events),
        metadata={
            "table_total_usd": str(ours),
            "calls_total_usd": str(calls),
            "table_calls": counted,
            "calls": len(call_events),
        },
    )


_RECONCILES = "The table's total and call count equal the per-call sum and count, exactly (so to the cent)."
_CALLS = {"call_events": dg.AssetIn("call_events")}


@dg.asset_check(asset=cost_by_run, additional_ins=_CALLS, description=_RECONCILES)
def cost_by_run_reconciles(cost_by_run: DataFrame, call_events: DataFrame) -> dg.AssetCheckResult:
    return _reconcile(cost_by_run, call_events)


@dg.asset_check(asset=cost_by_model, additional_ins=_CALLS, description=_RECONCILES)
def cost_by_model_reconciles(cost_by_model: DataFrame, call_events: DataFrame) -> dg.AssetCheckResult:
    return _reconcile(cost_by_model, call_events)


@dg.asset_check(asset=cost_by_task_type, additional_ins=_CALLS, description=_RECONCILES)
def cost_by_task_type_reconciles(cost_by_task_type: DataFrame, call_events: DataFrame) -> dg.AssetCheckResult:
    return _reconcile(cost_by_task_type, call_events)


@dg.asset_check(asset=cost_by_repo, additional_ins=_CALLS, description=_RECONCILES)
def cost_by_repo_reconciles(cost_by_repo: DataFrame, call_events: DataFrame) -> dg.AssetCheckResult:
    return _reconcile(cost_by_repo, call_events)


ECONOMICS_ASSETS = [call_events, *COST_TABLES, run_outcomes, unit_economics, business_kpis, routing_policy]
ECONOMICS_CHECKS = [
    call_events_unique,
    call_costs_non_negative,
    cost_by_run_reconciles,
    cost_by_model_reconciles,
    cost_by_task_type_reconciles,
    cost_by_repo_reconciles,
]
