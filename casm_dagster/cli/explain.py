"""``casm explain``: a run's decisions, or why the routing of a task type changed."""

from __future__ import annotations

import click

from casm_dagster.cli.common import open_instance, pull_run, state_dir
from casm_dagster.errors import CasmError


@click.command()
@click.option("--run-id", default=None, help="The CASM run id (a ULID) printed by `casm run`.")
@click.option(
    "--decision",
    "task_type",
    default=None,
    metavar="TASK_TYPE",
    help="Why the routing of a task type (review, fix, docgen, redteam) changed in the latest routing policy.",
)
def explain(run_id: str | None, task_type: str | None) -> None:
    """Print a run's stage outcomes and decisions from its persisted events (deterministic),
    or (--decision) the latest routing policy's choice for a task type with its evidence."""
    if bool(run_id) == bool(task_type):
        raise CasmError("pass --run-id RUN_ID or --decision TASK_TYPE")
    if task_type:
        from casm_dagster.economics.policy_view import explain_decision
        from casm_dagster.resources import latest_routing_policy

        click.echo(explain_decision(latest_routing_policy(open_instance()), task_type), nl=False)
        return
    from casm_dagster.run.explain import explain_run

    pull_run(run_id)
    click.echo(explain_run(state_dir(), run_id), nl=False)
