"""``casm approve``, ``deny``, ``resume`` and ``hitl list``: the human in the loop, locally."""

from __future__ import annotations

import json
import sys

import click

from casm_dagster.cli.common import (
    EXIT_RUN_FAILED,
    RUN_EXIT_CODES,
    json_option,
    open_instance,
    reason_option,
    state_dir,
)
from casm_dagster.cli.stores import approvals
from casm_dagster.errors import CasmError


def _tag_gated_run(instance, record, value: str) -> None:
    """Keep the gated Dagster run's ``casm/hitl`` tag in step with the decision."""
    from casm_dagster.policy import hitl

    dagster_run_id = hitl.gated_dagster_run_id(record, approvals(instance))
    if dagster_run_id and instance.get_run_by_id(dagster_run_id):
        instance.add_run_tags(dagster_run_id, {"casm/hitl": value, "casm/status": value})


def _decide(run_id: str, outcome: str, reason: str, scope: str) -> None:
    from casm_dagster.policy import hitl

    instance = open_instance()
    store = approvals(instance)
    record = hitl.require_request(store, run_id)
    decided = hitl.decide(store, record, outcome, hitl.local_user(), reason, via="local", scope=scope)
    _tag_gated_run(instance, record, outcome)
    click.echo(f"request {decided.request_id} for run {run_id}: {decided.status} by {decided.approver}")
    if outcome == "approved":
        click.echo(
            "  the hitl_approval_sensor launches the continuation on its next tick when the Dagster daemon "
            f"runs (dagster dev); to continue now: casm resume --run-id {run_id}"
        )
    else:
        click.echo("  the run ends here: nothing is applied")


@click.command()
@click.option("--run-id", required=True, help="The gated run's id.")
@reason_option
@click.option(
    "--scope",
    type=click.Choice(["packet", "full"]),
    default="packet",
    show_default=True,
    help="packet: apply only the decision packet's allowed files; full: every file of the plan.",
)
def approve(run_id: str, reason: str, scope: str) -> None:
    """Approve a run the policy held (local HITL mode), as your OS account.

    The continuation applies exactly the plan that was approved: if the plan or the
    ruleset changed since, the approval is void and nothing is applied.
    """
    _decide(run_id, "approved", reason, scope)


@click.command()
@click.option("--run-id", required=True, help="The gated run's id.")
@reason_option
def deny(run_id: str, reason: str) -> None:
    """Deny a run the policy held: it ends with status "denied" and nothing is applied."""
    _decide(run_id, "denied", reason, "packet")


@click.command()
@click.option("--run-id", required=True, help="The approved run's id.")
@json_option
def resume(run_id: str, as_json: bool) -> None:
    """Run the continuation of an approved run now, in this process (instead of waiting for the sensor).

    Safe to race with the sensor: the approval is consumed exactly once.
    """
    from casm_dagster.cli.launch import launch_continuation, recover
    from casm_dagster.policy import hitl

    instance = open_instance()
    for note in recover(instance, state_dir()):
        click.echo(f"casm: note: {note}", err=True)
    record = hitl.require_request(approvals(instance), run_id)
    if record.status != "approved":
        raise CasmError(
            f"run {run_id} cannot continue: its request {record.request_id} is {record.status}"
            + (f" (casm approve --run-id {run_id} --reason ...)" if record.status == "pending" else "")
        )
    if record.consumed_at:
        raise CasmError(
            f"run {run_id} was already continued (Dagster run {record.continuation_run_id}, "
            f"{record.outcome or 'in progress'}): an approval is used once"
        )
    from casm_dagster.stages.resume import held_spec, require_checkout_here

    require_checkout_here(held_spec(approvals(instance), record))
    result = launch_continuation(instance, record.request_id, state_dir(), progress=True)
    state = result.state
    status = state.status if state else "failed"
    click.echo(f"run {run_id}: {status} (continuation Dagster run {result.dagster_run_id})")
    click.echo(f"  branch:    {(state.branch if state else None) or 'none'}")
    click.echo(f"  explain:   casm explain --run-id {run_id}")
    if as_json:
        payload = {
            "run_id": run_id,
            "status": status,
            "branch": state.branch if state else None,
            "dagster_run_id": result.dagster_run_id,
            "request_id": record.request_id,
        }
        click.echo(json.dumps(payload, sort_keys=True))
    sys.exit(RUN_EXIT_CODES.get(status, EXIT_RUN_FAILED))


@click.group()
def hitl() -> None:
    """Inspect human-in-the-loop approval requests."""


@hitl.command("list")
@click.option(
    "--status",
    type=click.Choice(["pending", "approved", "denied", "expired", "all"]),
    default="pending",
    show_default=True,
)
def hitl_list(status: str) -> None:
    """List approval requests: request id, run id, status, expiry, repo, reasons."""
    records = approvals(open_instance()).list(None if status == "all" else status)
    if not records:
        click.echo(f"no {'' if status == 'all' else status + ' '}approval requests")
    for r in records:
        codes = ",".join(r.packet.get("reason_codes", []))
        click.echo(f"{r.request_id}\t{r.run_id}\t{r.status}\t{r.expires_at}\t{r.repo}\t{codes}")
