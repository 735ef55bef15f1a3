"""What a run cost, from its recorded calls and measurements (SPEC §8), and how it is
reported: ``cost_report.md`` (per stage, per task, per call) and ``run_summary.json``.

Actual model cost is the sum of the calls as billed (their retries are real calls); tools
are the allowlisted checks' measured minutes at the CI-minute rate; infra is the run's
measured seconds at the worker rate; HITL is the human decisions at the reviewer's rate.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from casm_dagster.contracts.manifest import TemplateManifest
from casm_dagster.contracts.run import PricesPin, RunSpec
from casm_dagster.contracts.validation import CheckRun
from casm_dagster.cost.formulas import CostRates, gross_margin, infra_cost, outcome_cost, per_unit, run_cost, tool_cost
from casm_dagster.cost.usage import CENT, Usage, usd
from casm_dagster.llm.telemetry import StoredCall

SUMMARY_FILE = "run_summary.json"


@dataclass(frozen=True)
class Counts:
    findings: int = 0
    fixed: int = 0  # findings covered by accepted patch groups
    prs_created: int = 0  # a delivered branch (local mode) or pull request
    loc_audited: int = 0


@dataclass
class RunCost:
    spec: RunSpec
    status: str
    started_at: str
    finished_at: str | None
    mode: str  # offline | live | replay
    calls: list[StoredCall]
    run_seconds: Decimal
    check_minutes: Decimal
    hitl_decisions: int
    rates: CostRates
    hitl_minutes_each: Decimal
    price_charged: Decimal | None
    counts: Counts
    forecast: dict[str, Any] | None
    plan: dict[str, Any] | None
    prices: PricesPin
    llm: Decimal = field(init=False)
    tools: Decimal = field(init=False)
    infra: Decimal = field(init=False)
    hitl: Decimal = field(init=False)

    def __post_init__(self) -> None:
        self.llm = sum((c.cost for c in self.calls), Decimal(0))
        self.tools = tool_cost(self.check_minutes, self.rates)
        self.infra = infra_cost(self.run_seconds, self.rates)
        self.hitl = Decimal(self.hitl_decisions) * self.hitl_minutes_each * self.rates.human_minute

    @property
    def total(self) -> Decimal:
        return run_cost(self.llm, self.tools, self.infra)

    @property
    def outcome(self) -> Decimal:
        return outcome_cost([self.total], Decimal(self.hitl_decisions) * self.hitl_minutes_each, self.rates)

    @property
    def usage(self) -> Usage:
        return sum((c.usage for c in self.calls), Usage())

    @property
    def forecast_p50(self) -> Decimal | None:
        return Decimal(self.forecast["total_p50"]) if self.forecast else None

    def forecast_error_pct(self) -> float | None:
        f = self.forecast_p50
        if not f:
            return None
        return round(float((self.total - f) / f * 100), 2)

    def margin(self) -> Decimal | None:
        return gross_margin(self.outcome, self.price_charged) if self.price_charged is not None else None

    def unit_economics(self) -> list[dict[str, Any]]:
        bases = [
            ("cost_per_issue_found", self.counts.findings, "findings reported by the reviewer"),
            ("cost_per_issue_fixed", self.counts.fixed, "findings covered by accepted patch groups"),
            (
                "cost_per_pr_created",
                self.counts.prs_created,
                "pull requests opened (local mode: delivered branches)",
            ),
            ("cost_per_1k_loc_audited", self.counts.loc_audited / 1000, "non-blank lines audited / 1000"),
        ]
        out = []
        for name, count, description in bases:
            value = per_unit(self.outcome, count)
            if value is not None:
                out.append(
                    {
                        "name": name,
                        "value": usd(value),
                        "unit": "USD_per_unit",
                        "basis": {"count": count, "description": description},
                    }
                )
        return out


def rates_of(manifest: TemplateManifest) -> CostRates:
    e = manifest.economics
    return CostRates(Decimal(str(e.ci_minute_usd)), Decimal(str(e.infra_second_usd)), Decimal(str(e.human_minute_usd)))


def check_minutes(checks: list[CheckRun]) -> Decimal:
    return (sum((Decimal(str(c.duration_s)) for c in checks), Decimal(0)) / 60).quantize(Decimal("0.0001"))


def _money(amount: Decimal) -> str:
    """Display: cents for amounts from a cent up, six decimals below (model calls are small)."""
    return f"{amount.quantize(CENT)}" if abs(amount) >= 1 else f"{amount.quantize(Decimal('0.000001'))}"


def _group(calls: list[StoredCall], key) -> dict[str, list[StoredCall]]:
    out: dict[str, list[StoredCall]] = defaultdict(list)
    for c in calls:
        out[key(c)].append(c)
    return dict(sorted(out.items()))


def _sum(calls: list[StoredCall]) -> tuple[Usage, Decimal]:
    return sum((c.usage for c in calls), Usage()), sum((c.cost for c in calls), Decimal(0))


def mode_label(rc: RunCost) -> str:
    if rc.mode == "offline":
        return "offline (no model was called: deterministic answers, zero model cost)"
    if rc.mode == "replay":
        original = rc.spec.models.replay_of
        return f"replay of run {original} (recorded answers, no model called; costs at this run's prices)"
    return "live model providers"


def summary_table(rc: RunCost) -> str:
    """The Cost section of report.md."""
    u = rc.usage
    lines = [
        f"Model provider: {mode_label(rc)}.",
        "",
        "| item | quantity | cost (USD) |",
        "|---|---|---|",
        f"| model calls | {len(rc.calls)} calls, {u.total_input} in / {u.output} out tokens | {_money(rc.llm)} |",
        f"| tools (allowlisted checks) | {rc.check_minutes} CI minutes | {_money(rc.tools)} |",
        f"| infra (measured run time) | {rc.run_seconds.quantize(Decimal('0.1'))} s | {_money(rc.infra)} |",
        f"| **run cost** | | **{_money(rc.total)}** |",
    ]
    if rc.forecast_p50 is not None:
        err = rc.forecast_error_pct()
        lines.append(
            f"| forecast (P50 / P90) | error {err:+.1f}% | {_money(rc.forecast_p50)} / "
            f"{_money(Decimal(rc.forecast['total_p90']))} |"  # type: ignore[index]
            if err is not None
            else f"| forecast (P50 / P90) | | {_money(rc.forecast_p50)} / {_money(Decimal(rc.forecast['total_p90']))} |"  # type: ignore[index]
        )
    return "\n".join(lines)


def render_cost_report(rc: RunCost) -> str:
    spec = rc.spec
    u = rc.usage
    lines = [
        f"# CASM cost report — run `{spec.run_id}`",
        "",
        f"- Template: `{spec.template_id}`; repository: `{spec.repo}`; status: {rc.status}",
        f"- Model provider: {mode_label(rc)}",
        f"- Price registry: `{rc.prices.version}` (`{rc.prices.sha256[:12]}`)",
        f"- Routing strategy: `{spec.models.strategy}`",
        "",
        "## Totals",
        "",
        "| item | quantity | cost (USD) |",
        "|---|---|---|",
        f"| model calls | {len(rc.calls)} calls | {_money(rc.llm)} |",
        f"| tokens | {u.input} input, {u.cache_read} cache read, {u.cache_write} cache write, {u.output} output "
        f"({u.reasoning} reasoning) | |",
        f"| tools | {rc.check_minutes} CI minutes × ${rc.rates.ci_minute} | {_money(rc.tools)} |",
        f"| infra | {rc.run_seconds.quantize(Decimal('0.1'))} s × ${rc.rates.infra_second} | {_money(rc.infra)} |",
        f"| **run cost** | | **{_money(rc.total)}** |",
        f"| HITL | {rc.hitl_decisions} decisions × {rc.hitl_minutes_each} min × ${rc.rates.human_minute} "
        f"| {_money(rc.hitl)} |",
        f"| **outcome cost** | | **{_money(rc.outcome)}** |",
    ]
    if rc.forecast:
        f = rc.forecast
        err = rc.forecast_error_pct()
        lines += [
            "",
            "## Forecast and budget",
            "",
            f"- Forecast before the run: P50 ${_money(Decimal(f['total_p50']))}, "
            f"P90 ${_money(Decimal(f['total_p90']))} "
            f"(model ${_money(Decimal(f['llm_p50']))} incl. retry ×1.10 and safety ×1.05; "
            f"confidence {f['confidence']})",
            f"- Actual: ${_money(rc.total)}" + (f" (forecast error {err:+.2f}%)" if err is not None else ""),
        ]
    if rc.plan:
        b = rc.plan["budget"]
        lines.append(f"- Budget: ${b['max_usd_per_run']} per run — {b['status']}, action: {b['action']}")
        for step in b["steps"]:
            lines.append(f"  - {step['action']}: {step['detail']} (forecast ${step['forecast_usd'][:10]})")
    margin = rc.margin()
    if rc.price_charged is not None:
        lines.append(
            f"- Price charged ${rc.price_charged}; gross margin "
            + (f"{float(margin) * 100:.1f}%" if margin is not None else "n/a")
        )
    lines += ["", "## Per stage", "", "| stage | calls | tokens in / out | cost (USD) |", "|---|---|---|---|"]
    for stage, calls in _group(rc.calls, lambda c: c.stage).items():
        usage, cost = _sum(calls)
        lines.append(f"| {stage} | {len(calls)} | {usage.total_input} / {usage.output} | {_money(cost)} |")
    targets = {t["task_id"]: t["target"] for t in (rc.plan or {}).get("tasks", [])}
    lines += [
        "",
        "## Per task",
        "",
        "| task | type | target | model(s) | calls | outcome | cost (USD) |",
        "|---|---|---|---|---|---|---|",
    ]
    for task_id, calls in _group(rc.calls, lambda c: c.task_id).items():
        _, cost = _sum(calls)
        models = ", ".join(dict.fromkeys(f"{c.provider}/{c.model}" for c in calls))
        outcome = calls[-1].outcome
        lines.append(
            f"| `{task_id}` | {calls[0].task_type} | `{targets.get(task_id, '')}` | {models} | {len(calls)} | "
            f"{outcome} | {_money(cost)} |"
        )
    lines += [
        "",
        "## Per call",
        "",
        "| call | task | model | in (cache r/w) / out | latency ms | retries | outcome | cost (USD) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in rc.calls:
        lines.append(
            f"| `{c.call_id}` | `{c.task_id}` | {c.provider}/{c.model} | {c.usage.input} ({c.usage.cache_read}/"
            f"{c.usage.cache_write}) / {c.usage.output} | {c.latency_ms} | {c.retries} | {c.outcome} | "
            f"{_money(c.cost)}{' (default price)' if c.priced_by_default else ''} |"
        )
    units = rc.unit_economics()
    if units:
        lines += ["", "## Unit economics", ""]
        for m in units:
            lines.append(f"- {m['name']}: ${m['value']:.6f} ({m['basis']['count']} {m['basis']['description']})")
    lines += ["", *_cost_review(rc)]
    return "\n".join(lines) + "\n"


def _cost_review(rc: RunCost) -> list[str]:
    from casm_dagster.agents.cost_auditor import review
    from casm_dagster.cost.prices import load_prices

    models = rc.spec.models
    prices = load_prices(Path(models.prices.path))
    return review(rc.calls, rc.forecast, models.routing_policy, prices.rates)


def run_summary(rc: RunCost) -> dict[str, Any]:
    u = rc.usage
    margin = rc.margin()

    def breakdown(key) -> dict[str, Any]:
        out = {}
        for name, calls in _group(rc.calls, key).items():
            usage, cost = _sum(calls)
            out[name] = {
                "calls": len(calls),
                "input_tokens": usage.total_input,
                "output_tokens": usage.output,
                "cost_usd": str(cost),
            }
        return out

    return {
        "schema": "casm.run_summary/1",
        "run_id": rc.spec.run_id,
        "template_id": rc.spec.template_id,
        "repo": rc.spec.repo,
        "status": rc.status,
        "started_at": rc.started_at,
        "finished_at": rc.finished_at,
        "model_mode": rc.mode,
        "routing_strategy": rc.spec.models.strategy,
        "price_registry": rc.prices.model_dump(),
        "totals": {
            "llm_usd": str(rc.llm),
            "tools_usd": str(rc.tools),
            "infra_usd": str(rc.infra),
            "run_cost_usd": str(rc.total),
            "hitl_usd": str(rc.hitl),
            "outcome_cost_usd": str(rc.outcome),
        },
        "measured": {
            "run_seconds": str(rc.run_seconds),
            "check_minutes": str(rc.check_minutes),
            "hitl_decisions": rc.hitl_decisions,
        },
        "forecast": {
            "p50_usd": rc.forecast["total_p50"] if rc.forecast else None,
            "p90_usd": rc.forecast["total_p90"] if rc.forecast else None,
            "error_pct": rc.forecast_error_pct(),
        },
        "budget": (rc.plan or {}).get("budget"),
        "calls": {
            "count": len(rc.calls),
            "failed": sum(c.outcome != "pass" for c in rc.calls),
            "retries": sum(c.retries for c in rc.calls),
            "input_tokens": u.input,
            "cache_read_tokens": u.cache_read,
            "cache_write_tokens": u.cache_write,
            "output_tokens": u.output,
            "reasoning_tokens": u.reasoning,
        },
        "by_stage": breakdown(lambda c: c.stage),
        "by_model": breakdown(lambda c: f"{c.provider}/{c.model}"),
        "by_task_type": breakdown(lambda c: c.task_type),
        "unit_economics": rc.unit_economics(),
        "counts": dataclasses.asdict(rc.counts),
        "margin": {
            "price_charged_usd": str(rc.price_charged) if rc.price_charged is not None else None,
            "gross_margin": float(round(margin, 4)) if margin is not None else None,
        },
    }


def load_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
