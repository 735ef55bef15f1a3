"""``casm cost``: a run's summary for a terminal, with the margin against a price."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from casm_dagster.cli.common import json_option, pull_run, read_summary, state_dir
from casm_dagster.cost.formulas import gross_margin
from casm_dagster.errors import CasmError, RunNotFoundError


def last_run_id(state_dir: Path) -> str:
    """Run ids are ULIDs: the greatest is the most recent."""
    runs = state_dir / "runs"
    ids = sorted(p.name for p in runs.iterdir() if (p / "state.json").exists()) if runs.is_dir() else []
    if not ids:
        raise RunNotFoundError(f"no runs in {runs} (run `casm run` or `casm demo` first)")
    return ids[-1]


def render_summary(summary: dict[str, Any], price_usd: float | None) -> tuple[str, dict[str, Any]]:
    t = summary["totals"]
    calls = summary["calls"]
    f = summary["forecast"]
    price = (
        Decimal(str(price_usd))
        if price_usd is not None
        else (Decimal(summary["margin"]["price_charged_usd"]) if summary["margin"]["price_charged_usd"] else None)
    )
    outcome = Decimal(t["outcome_cost_usd"])
    margin = gross_margin(outcome, price) if price is not None else None
    lines = [
        f"run {summary['run_id']} ({summary['template_id']} on {summary['repo']}): {summary['status']}",
        f"  model mode:   {summary['model_mode']}; routing {summary['routing_strategy']}; "
        f"prices {summary['price_registry']['version']}",
        f"  model calls:  {calls['count']} ({calls['failed']} failed, {calls['retries']} retries); tokens "
        f"{calls['input_tokens']} in + {calls['cache_read_tokens']} cache read + {calls['cache_write_tokens']} cache "
        f"write, {calls['output_tokens']} out",
        f"  model:        ${Decimal(t['llm_usd']):.6f}",
        f"  tools:        ${Decimal(t['tools_usd']):.6f}",
        f"  infra:        ${Decimal(t['infra_usd']):.6f}",
        f"  run cost:     ${Decimal(t['run_cost_usd']):.6f}",
        f"  HITL:         ${Decimal(t['hitl_usd']):.6f}",
        f"  outcome cost: ${outcome:.6f}",
    ]
    if f["p50_usd"] is not None:
        err = f" (error {f['error_pct']:+.2f}%)" if f["error_pct"] is not None else ""
        lines.append(f"  forecast:     P50 ${Decimal(f['p50_usd']):.6f}, P90 ${Decimal(f['p90_usd']):.6f}{err}")
    budget = summary.get("budget")
    if budget:
        lines.append(f"  budget:       ${budget['max_usd_per_run']} — {budget['status']}, action {budget['action']}")
    if price is None:
        lines.append("  margin:       no price configured (--price-usd, or economics.price_per_run_usd)")
    else:
        lines.append(
            f"  margin:       price ${price}: gross margin "
            + (f"{float(margin) * 100:.2f}%" if margin is not None else "n/a (price 0)")
        )
    for m in summary.get("unit_economics", []):
        lines.append(f"  {m['name']}: ${m['value']:.6f} ({m['basis']['count']} {m['basis']['description']})")
    data = {
        "run_id": summary["run_id"],
        "status": summary["status"],
        "outcome_cost_usd": str(outcome),
        "price_usd": str(price) if price is not None else None,
        "gross_margin": float(round(margin, 4)) if margin is not None else None,
        "totals": t,
    }
    return "\n".join(lines), data


@click.command()
@click.option("--last-run", is_flag=True, help="The most recent run in this state dir (the default).")
@click.option("--run-id", default=None, help="A CASM run id.")
@click.option(
    "--price-usd",
    type=float,
    default=None,
    help="Price charged for the run, for the margin (default: the template's economics.price_per_run_usd).",
)
@json_option
def cost(last_run: bool, run_id: str | None, price_usd: float | None, as_json: bool) -> None:
    """Print a run's cost summary: model, tools, infra, forecast vs actual, margin."""
    if last_run and run_id:
        raise CasmError("pass --last-run or --run-id, not both")
    if run_id:
        pull_run(run_id)
    run_id = run_id or last_run_id(state_dir())
    summary = read_summary(state_dir() / "runs" / run_id)
    if summary is None:
        raise CasmError(f"run {run_id} has no run_summary.json (it failed before its report, or predates cost reports)")
    # The summary is written when the run stops; a held run is decided later (approved and
    # continued, denied, expired): the run's state has the status it has now.
    state_path = state_dir() / "runs" / run_id / "state.json"
    if state_path.exists():
        summary = {**summary, "status": json.loads(state_path.read_text(encoding="utf-8"))["status"]}
    text, data = render_summary(summary, price_usd)
    click.echo(text)
    if as_json:
        click.echo(json.dumps(data, sort_keys=True))
