"""The run's cost artifacts, written wherever a run ends (delivered, held, blocked, stopped):
``cost_report.md`` and ``run_summary.json`` always; in proof mode (SPEC §9) also
``routing_decisions.json``, ``cost_forecast.json`` and ``run_replay.sh`` (and the
``policy_decisions.json`` the policy stage wrote), each schema-valid exactly."""

from __future__ import annotations

import shlex
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from casm_dagster.contracts.run import RunSpec
from casm_dagster.contracts.validation import CheckRun
from casm_dagster.cost.run_cost import (
    SUMMARY_FILE,
    Counts,
    RunCost,
    check_minutes,
    load_json,
    rates_of,
    render_cost_report,
    run_summary,
)
from casm_dagster.cost.usage import usd
from casm_dagster.llm.router import ROUTER_VERSION
from casm_dagster.llm.telemetry import ROUTING_FILE, calls_for_run, read_jsonl
from casm_dagster.run.files import FORECAST_FILE, MODEL_PLAN_FILE
from casm_dagster.run.journal import Journal, read_events, worked_seconds, write_json_atomic, write_text_atomic

ROUTING_DOC, FORECAST_DOC, REPLAY_SCRIPT = "routing_decisions.json", "cost_forecast.json", "run_replay.sh"


def measure(spec: RunSpec, journal: Journal, engine: sa.Engine, checks: list[CheckRun], counts: Counts) -> RunCost:
    s = spec.models
    manifest = spec.manifest
    state = journal.state
    mode = "replay" if s.replay_of else ("offline" if not s.available_providers else "live")
    events = read_events(journal.run_dir) if journal.events_path.exists() else []
    decisions = sum(1 for e in events if e.type == "hitl_decision" and e.data.get("outcome") in ("approved", "denied"))
    price = manifest.economics.price_per_run_usd
    return RunCost(
        spec=spec,
        status=state.status,
        started_at=state.started_at,
        finished_at=state.finished_at,
        mode=mode,
        calls=calls_for_run(engine, spec.run_id),
        run_seconds=Decimal(str(round(worked_seconds(events, state.started_at, time.time()), 3))),
        check_minutes=check_minutes(checks),
        hitl_decisions=decisions,
        rates=rates_of(manifest),
        hitl_minutes_each=Decimal(str(manifest.economics.hitl_minutes_per_decision)),
        price_charged=Decimal(str(price)) if price is not None else None,
        counts=counts,
        forecast=load_json(journal.run_dir / FORECAST_FILE),
        plan=load_json(journal.run_dir / MODEL_PLAN_FILE),
        prices=s.prices,
    )


def _run_block(spec: RunSpec, started_at: str, finished_at: str | None = None) -> dict[str, Any]:
    run = {"run_id": spec.run_id, "template_id": spec.template_id, "started_at": started_at}
    if finished_at:
        run["completed_at"] = finished_at
    return run


def routing_document(spec: RunSpec, started_at: str) -> dict[str, Any]:
    s = spec.models
    entries = read_jsonl(spec.run_dir / ROUTING_FILE)
    plan = load_json(spec.run_dir / MODEL_PLAN_FILE) or {"tasks": []}
    order = {t["task_id"]: i for i, t in enumerate(plan["tasks"])}
    # Concurrent tasks append in finishing order; the document lists them in plan order
    # (each task's own re-routes stay in the order they happened).
    entries = sorted(entries, key=lambda e: order.get(e["task_id"], len(order)))
    first: dict[str, dict[str, Any]] = {}
    for e in entries:
        first.setdefault(e["task_id"], e)
    offline = not s.available_providers
    policy = s.routing_policy
    version = f"{ROUTER_VERSION}+policy.{policy['version']}" if policy else ROUTER_VERSION
    return {
        "schema_version": "0.1",
        "run": _run_block(spec, started_at),
        "routing_strategy": {"name": s.strategy, "version": version},
        "constraints": {
            "budget": {
                "max_usd_per_run": float(s.budget_usd),
                "max_usd_per_task_default": float(s.max_usd_per_task),
            },
            "latency_slo_ms": s.latency_slo_ms,
            "quality_floor": {"min_confidence": s.quality_floor},
        },
        "tasks": entries,
        "summary": {
            "estimated_total_cost_usd": round(sum(e["selected"]["estimated_cost_usd"] for e in first.values()), 6),
            "estimated_total_latency_ms": sum(e["selected"]["estimated_latency_ms"] for e in first.values()),
            "notes": (
                f"{len(first)} model tasks, {len(entries)} routing decisions; catalog {s.catalog.version}, "
                f"price registry {s.prices.version}"
                + ("; offline: no provider key was set, no model was called" if offline else "")
                + _policy_note(policy)
            ),
        },
    }


def _policy_note(policy: dict[str, Any] | None) -> str:
    """Which routing policy the router followed, and why (SPEC §8's daily retuning)."""
    if not policy:
        return "; routing policy: none yet (catalog assumptions; the daily optimization has not run)"
    choices = ", ".join(
        f"{t} → {c['provider']}/{c['model']} ({c['why']})" for t, c in sorted(policy["choices"].items())
    )
    avoid = "; ".join(f"{t}: avoid {', '.join(ms)}" for t, ms in sorted(policy["avoid"].items()))
    return (
        f"; routing policy {policy['version']} of {policy['created_at']} (the latest diurnal optimization): "
        f"{choices or 'no choices'}" + (f"; {avoid}" if avoid else "")
    )


def forecast_document(rc: RunCost) -> dict[str, Any]:
    from casm_dagster.cost.prices import load_prices

    f = rc.forecast or {}
    plan = rc.plan or {}
    prices = load_prices(Path(rc.prices.path))
    used = sorted(
        {(t["provider"], t["model"]) for t in f.get("by_task", [])} | {(c.provider, c.model) for c in rc.calls}
    )
    models = []
    for provider, model in used:
        entry = prices.model.models.get(f"{provider}/{model}")
        if entry is not None:
            models.append(
                {
                    "provider": provider,
                    "model": model,
                    "price_in_per_1m": entry.price_in_per_1m,
                    "price_out_per_1m": entry.price_out_per_1m,
                }
            )
    usage = rc.usage
    budget = plan.get("budget", {})
    status = budget.get("status", "within_budget")
    if rc.total > Decimal(rc.spec.models.budget_usd) and status != "blocked":
        status = "actual_over_budget"
    err = rc.forecast_error_pct()
    return {
        "schema_version": "0.1",
        "run": _run_block(rc.spec, rc.started_at, rc.finished_at),
        "prices": {"registry_version": rc.prices.version, "currency": "USD", "models": models},
        "forecast": {
            "llm": {
                "input_tokens": f.get("input_tokens", 0),
                "output_tokens": f.get("output_tokens", 0),
                "cost_usd": usd(Decimal(f.get("llm_p50", "0"))),
                "by_task": [
                    {
                        "task_id": t["task_id"],
                        "provider": t["provider"],
                        "model": t["model"],
                        "input_tokens": t["input_tokens"],
                        "output_tokens": t["output_tokens"],
                        "cost_usd": usd(Decimal(t["p50"])),
                    }
                    for t in f.get("by_task", [])
                ],
            },
            "tools": {"cost_usd": usd(Decimal(f.get("tools", "0"))), "details": f.get("tool_details", [])},
            "infra": {"cost_usd": usd(Decimal(f.get("infra", "0"))), "details": f.get("infra_details", [])},
            "total_usd": usd(Decimal(f.get("total_p50", "0"))),
            "confidence": f.get("confidence", 1.0),
        },
        "actual": {
            "present": True,
            "llm": {
                "input_tokens": usage.total_input,
                "output_tokens": usage.output,
                "cost_usd": usd(rc.llm),
                "by_call": [
                    {
                        "call_id": c.call_id,
                        "task_id": c.task_id,
                        "provider": c.provider,
                        "model": c.model,
                        "input_tokens": c.usage.total_input,
                        "output_tokens": c.usage.output,
                        "cost_usd": usd(c.cost),
                        "latency_ms": c.latency_ms,
                        "retries": c.retries,
                    }
                    for c in rc.calls
                ],
            },
            "tools": {
                "cost_usd": usd(rc.tools),
                "details": [
                    {"name": "allowlisted checks (CI minutes)", "unit": "minutes", "quantity": float(rc.check_minutes)}
                ],
            },
            "infra": {
                "cost_usd": usd(rc.infra),
                "details": [{"name": "CASM worker time", "unit": "seconds", "quantity": float(rc.run_seconds)}],
            },
            "total_usd": usd(rc.total),
        },
        "unit_economics": {"metrics": rc.unit_economics()},
        "budget": {
            "max_usd_per_run": float(rc.spec.models.budget_usd),
            "status": status,
            "enforcement_action": budget.get("action", "none"),
        },
        "notes": (
            f"forecast P50 ${f.get('total_p50', '0')[:10]}, P90 ${f.get('total_p90', '0')[:10]} "
            "(model cost × retry 1.10 × "
            f"safety 1.05); actual ${usd(rc.total)}"
            + (f", forecast error {err:+.2f}%" if err is not None else "")
            + f"; model provider: {rc.mode}"
        ),
    }


def replay_script(spec: RunSpec, head: str, ruleset_ref: str, ruleset_sha256: str) -> str:
    """POSIX sh that re-runs this run with identical constraints (SPEC §9); extra arguments
    (e.g. ``--routing quality_first`` or ``--prices FILE``) are passed on to ``casm run``
    and give the counterfactual cost of the same run."""
    run = spec.effective_config.run
    s = run.models
    q = shlex.quote
    replays = Path(spec.state_dir) / "replays" / spec.run_id
    github = run.github
    target = spec.repo if github else spec.repo_path  # GitHub mode: fetched again, pinned by commit
    pr = [f"  --pr {github.pr} \\"] if github and github.pr else []
    lines = [
        "#!/usr/bin/env sh",
        f"# CASM replay of run {spec.run_id} ({spec.template_id} on {spec.repo}).",
        "# Re-runs the same audit with the same constraints: the original run's recorded model",
        "# answers are served again (no model is called, nothing is billed). Extra arguments are",
        "# passed to `casm run`: --routing STRATEGY or --prices FILE prints the counterfactual cost.",
        "# Contains no secrets: paths, commits, hashes and settings only.",
        "set -eu",
        f'CASM_STATE_DIR="${{CASM_STATE_DIR:-{spec.state_dir}}}"',
        "export CASM_STATE_DIR",
        'exec "${CASM:-casm}" run \\',
        f"  --template {q(spec.manifest_path)} \\",
        f"  --repo {q(target)} \\",
        *pr,
        f"  --base {run.base or head} --head {head} \\",
        f"  --ruleset {q(ruleset_ref)} --ruleset-hash {ruleset_sha256} \\",
        f"  --routing {s.strategy} \\",
        f"  --budget-usd {s.budget_usd} \\",
        f"  --prices {q(s.prices.path)} \\",
        "  --proof-mode true \\",
        f"  --replay-of {s.replay_of or spec.run_id} \\",
        f'  --artifacts-dir "${{CASM_REPLAY_ARTIFACTS_DIR:-{replays}}}" \\',
        f"  --seed {spec.seed} \\",
        '  "$@"',
    ]
    return "\n".join(lines) + "\n"


def _ruleset_pin(spec: RunSpec) -> tuple[str, str]:
    pinned = spec.effective_config.run.ruleset
    if pinned:
        return pinned.ref, pinned.sha256
    from casm_dagster.policy.ruleset import load_ruleset

    ref = spec.manifest.policy.ruleset
    return ref, load_ruleset(ref, source="template", base_dir=Path(spec.manifest_path).parent).sha256


def finalize(
    spec: RunSpec,
    journal: Journal,
    engine: sa.Engine,
    checks: list[CheckRun],
    counts: Counts,
    status: str | None = None,
) -> RunCost:
    """Write the cost artifacts into the run dir (the report stage copies them out).
    ``status``: how the run is ending, when the journal has not said so yet."""
    rc = measure(spec, journal, engine, checks, counts)
    if status:
        rc.status = status
    write_text_atomic(spec.run_dir / cost_report_name(spec), render_cost_report(rc))
    write_json_atomic(spec.run_dir / SUMMARY_FILE, run_summary(rc))
    if spec.models.proof_mode:
        write_json_atomic(spec.run_dir / ROUTING_DOC, routing_document(spec, rc.started_at))
        write_json_atomic(spec.run_dir / FORECAST_DOC, forecast_document(rc))
        script = spec.run_dir / REPLAY_SCRIPT
        write_text_atomic(script, replay_script(spec, journal.state.head_commit or "", *_ruleset_pin(spec)))
        script.chmod(0o755)
    return rc


def cost_report_name(spec: RunSpec) -> str:
    return spec.effective_config.artifact_names.get("cost_report_md", "cost_report.md")
