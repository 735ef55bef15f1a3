"""Cost tables, unit economics and business KPIs from telemetry (SPEC §1, §8).

Inputs: ``call_events`` (one row per model call, exact decimal cost strings) and ``runs``
(one row per run: its ``run_summary.json`` with repo, status, counts, totals, plus the PR
outcome). Money is summed as ``Decimal`` and shown rounded to the cent only at the end, so
every table reconciles with the per-call sum exactly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from casm_dagster.contracts.yaml12 import load_config
from casm_dagster.cost.formulas import per_unit

BusinessLine = Literal["templates", "sentinel", "agentforge"]
OUTCOMES = ("merged", "open", "closed_unmerged", "reverted", "no_pr", "unknown")


def _money(values) -> Decimal:
    return sum((Decimal(str(v)) for v in values), Decimal(0))


def cost_by(calls: pd.DataFrame, key: str) -> pd.DataFrame:
    """Calls, tokens, failures and exact cost per ``key`` (run_id, model, task_type, repo)."""
    columns = [key, "calls", "failed", "input_tokens", "output_tokens", "cost_usd", "cost"]
    if calls.empty:
        return pd.DataFrame(columns=columns)
    df = calls.copy()
    if key == "model":
        df["model"] = df["provider"] + "/" + df["model"]
    rows = []
    for value, g in df.groupby(key, sort=True):
        total = _money(g["cost_usd"])
        rows.append(
            {
                key: value,
                "calls": len(g),
                "failed": int((g["outcome"] != "pass").sum()),
                "input_tokens": int(g["input_tokens"].sum()),
                "output_tokens": int(g["output_tokens"].sum()),
                "cost_usd": str(total),  # exact
                "cost": float(total),  # for charts and sorting
            }
        )
    return pd.DataFrame(rows, columns=columns).sort_values("cost", ascending=False, kind="stable")


def daily_spend_by_model(calls: pd.DataFrame) -> pd.DataFrame:
    if calls.empty:
        return pd.DataFrame(columns=["day", "model", "cost"])
    df = calls.assign(day=calls["ts"].str[:10], model=calls["provider"] + "/" + calls["model"])
    out = df.groupby(["day", "model"])["cost_usd"].agg(lambda v: float(_money(v))).reset_index()
    return out.rename(columns={"cost_usd": "cost"})


# -- runs and outcomes --------------------------------------------------------------------


def load_runs(state_dir: Path, outcome_of: Callable[[dict[str, Any]], str]) -> pd.DataFrame:
    """One row per run that wrote a ``run_summary.json`` under ``state_dir/runs``;
    ``outcome_of(run)`` says what became of its PR or branch (see ``OUTCOMES``)."""
    rows = []
    for path in sorted((state_dir / "runs").glob("*/run_summary.json")):
        summary = json.loads(path.read_text(encoding="utf-8"))
        state_file = path.parent / "state.json"
        state = json.loads(state_file.read_text(encoding="utf-8")) if state_file.exists() else {}
        counts = summary.get("counts") or {}
        budget = summary.get("budget") or {}
        run = {
            "run_id": summary["run_id"],
            "repo": summary["repo"],
            "template_id": summary["template_id"],
            "status": state.get("status", summary["status"]),  # a held run is decided after its summary
            "started_at": summary["started_at"],
            "branch": state.get("branch"),
            "run_dir": str(path.parent),
            "findings": int(counts.get("findings", 0)),
            "fixed": int(counts.get("fixed", 0)),
            "prs_created": int(counts.get("prs_created", 0)),
            "loc_audited": int(counts.get("loc_audited", 0)),
            "llm_usd": summary["totals"]["llm_usd"],
            "run_cost_usd": summary["totals"]["run_cost_usd"],
            "outcome_cost_usd": summary["totals"]["outcome_cost_usd"],
            "hitl_decisions": int(summary["measured"].get("hitl_decisions", 0)),
            "over_budget": budget.get("status") not in (None, "within_budget"),
            "perf_improvement_pct": _perf(path.parent),
        }
        run["outcome"] = outcome_of(run) if run["prs_created"] else "no_pr"
        rows.append(run)
    return pd.DataFrame(rows, columns=_RUN_COLUMNS)


_RUN_COLUMNS = [
    "run_id", "repo", "template_id", "status", "started_at", "branch", "run_dir", "findings", "fixed",
    "prs_created", "loc_audited", "llm_usd", "run_cost_usd", "outcome_cost_usd", "hitl_decisions", "over_budget",
    "perf_improvement_pct", "outcome",
]  # fmt: skip


def _perf(run_dir: Path) -> float:
    """The best benchmark improvement (%) the run measured, 0 when none ran."""
    validation = run_dir / "validation.json"
    if not validation.exists():
        return 0.0
    benches = json.loads(validation.read_text(encoding="utf-8")).get("benchmarks") or []
    return max((float(b.get("improvement_pct") or 0.0) for b in benches), default=0.0)


def unit_economics(runs: pd.DataFrame) -> pd.DataFrame:
    """$ per outcome over all runs (SPEC §8): the outcome cost divided by each count."""
    total = _money(runs["outcome_cost_usd"]) if len(runs) else Decimal(0)
    merged = int(runs["outcome"].isin(["merged", "reverted"]).sum()) if len(runs) else 0  # reverted were merged
    bases = [
        ("cost_per_issue_found", int(runs["findings"].sum()) if len(runs) else 0),
        ("cost_per_issue_fixed", int(runs["fixed"].sum()) if len(runs) else 0),
        ("cost_per_pr_created", int(runs["prs_created"].sum()) if len(runs) else 0),
        ("cost_per_pr_merged", merged),
        ("cost_per_1k_loc_audited", float(runs["loc_audited"].sum()) / 1000 if len(runs) else 0.0),
        ("cost_per_1pct_perf_improvement", float(runs["perf_improvement_pct"].sum()) if len(runs) else 0.0),
    ]
    rows = []
    for name, count in bases:
        value = per_unit(total, count)
        rows.append({"metric": name, "basis": count, "outcome_cost_usd": str(total),
                     "usd_per_unit": float(value) if value is not None else None})  # fmt: skip
    return pd.DataFrame(rows)


# -- customers, plans, business KPIs ---------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Plan(_Strict):
    business_line: BusinessLine
    price_usd_month: float = Field(default=0.0, ge=0)  # subscription
    price_per_run_usd: float = Field(default=0.0, ge=0)  # pay per run (Templates)


class Customer(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    name: str
    plan: str
    repos: list[str] = []


class CustomersConfig(_Strict):
    version: Literal[1] = 1
    plans: dict[str, Plan]
    customers: list[Customer]

    @model_validator(mode="after")
    def _references(self) -> CustomersConfig:
        ids = [c.id for c in self.customers]
        if dupes := sorted({i for i in ids if ids.count(i) > 1}):
            raise ValueError(f"customer ids listed twice: {', '.join(dupes)}")
        for c in self.customers:
            if c.plan not in self.plans:
                raise ValueError(f"customer {c.id}: unknown plan {c.plan!r} (plans: {', '.join(sorted(self.plans))})")
        owners: dict[str, str] = {}
        for c in self.customers:
            for repo in c.repos:
                if repo.lower() in owners:
                    raise ValueError(f"repo {repo} belongs to both {owners[repo.lower()]} and {c.id}")
                owners[repo.lower()] = c.id
        return self


def load_customers(path: Path) -> CustomersConfig:
    return load_config(path, CustomersConfig, "customers and plans")[0]


CHURN_WEIGHTS = {"merge_rate_drop": 0.35, "rework_rate": 0.25, "budget_overruns": 0.2, "hitl_backlog": 0.2}


def business_kpis(
    config: CustomersConfig, runs: pd.DataFrame, pending_hitl: dict[str, int], now: datetime, days: int = 30
) -> pd.DataFrame:
    """Per customer over the last ``days``: MRR, cost, gross margin and an explained churn
    risk (0..1): each input is a column, the score their weighted sum (``CHURN_WEIGHTS``)."""
    rows = []
    start = now - timedelta(days=days)
    half = now - timedelta(days=days / 2)
    at = pd.to_datetime(runs["started_at"], utc=True, format="ISO8601") if len(runs) else pd.Series(dtype="object")
    for c in config.customers:
        plan = config.plans[c.plan]
        in_window = (at > start) & (at <= now) if len(runs) else None
        mine = runs[(runs["repo"].str.lower().isin([r.lower() for r in c.repos])) & in_window] if len(runs) else runs
        recent = mine[pd.to_datetime(mine["started_at"], utc=True, format="ISO8601") > half] if len(mine) else mine
        earlier = mine.drop(recent.index) if len(mine) else mine
        mrr = Decimal(str(plan.price_usd_month)) + Decimal(str(plan.price_per_run_usd)) * len(mine)
        cost = _money(mine["outcome_cost_usd"]) if len(mine) else Decimal(0)
        margin = float(1 - cost / mrr) if mrr else None
        drop = max(0.0, _merge_rate(earlier) - _merge_rate(recent)) if _decided(recent) and _decided(earlier) else 0.0
        rework = _rework_rate(mine)
        overruns = float(mine["over_budget"].mean()) if len(mine) else 0.0
        backlog = sum(pending_hitl.get(r.lower(), 0) for r in c.repos)
        backlog_score = min(1.0, backlog / 5)
        inputs = {"merge_rate_drop": drop, "rework_rate": rework, "budget_overruns": overruns,
                  "hitl_backlog": backlog_score}  # fmt: skip
        risk = sum(CHURN_WEIGHTS[k] * v for k, v in inputs.items())
        why = ", ".join(f"{k} {v:.2f}×{CHURN_WEIGHTS[k]}" for k, v in inputs.items() if v > 0) or "no risk signal"
        rows.append(
            {
                "customer": c.id,
                "business_line": plan.business_line,
                "plan": c.plan,
                "runs": len(mine),
                "mrr_usd": float(mrr),
                "cost_usd": str(cost),
                "gross_margin": round(margin, 4) if margin is not None else None,
                "merge_rate_recent": round(_merge_rate(recent), 4),
                "merge_rate_earlier": round(_merge_rate(earlier), 4),
                "merge_rate_drop": round(drop, 4),
                "rework_rate": round(rework, 4),
                "budget_overruns": round(overruns, 4),
                "hitl_pending": backlog,
                "churn_risk": round(risk, 4),
                "churn_why": why,
            }
        )
    return pd.DataFrame(rows)


def by_business_line(kpis: pd.DataFrame) -> pd.DataFrame:
    if kpis.empty:
        return pd.DataFrame(columns=["business_line", "customers", "mrr_usd", "cost_usd", "gross_margin"])
    rows = []
    for line, g in kpis.groupby("business_line", sort=True):
        mrr, cost = Decimal(str(g["mrr_usd"].sum())), _money(g["cost_usd"])
        rows.append({"business_line": line, "customers": len(g), "mrr_usd": float(mrr), "cost_usd": str(cost),
                     "gross_margin": round(float(1 - cost / mrr), 4) if mrr else None})  # fmt: skip
    return pd.DataFrame(rows)


DECIDED = ("merged", "closed_unmerged", "reverted")  # an open PR has not been decided yet


def _decided(runs: pd.DataFrame) -> int:
    return int(runs["outcome"].isin(DECIDED).sum()) if len(runs) else 0


def _merge_rate(runs: pd.DataFrame) -> float:
    decided = runs[runs["outcome"].isin(DECIDED)] if len(runs) else runs
    return float((decided["outcome"] == "merged").mean()) if len(decided) else 0.0


def _rework_rate(runs: pd.DataFrame) -> float:
    decided = runs[runs["outcome"].isin(DECIDED)] if len(runs) else runs
    return float(decided["outcome"].isin(["closed_unmerged", "reverted"]).mean()) if len(decided) else 0.0
