"""The ``casm`` command line: one module per command group; every user error is one line on
stderr and exit code 2 (see ``cli.common.CasmGroup``)."""

from __future__ import annotations

import click

from casm_dagster.cli.common import CasmGroup

# One module per command group, imported only when its command runs.
COMMANDS = {
    "run": "run:run",
    "demo": "run:demo",
    "explain": "explain:explain",
    "cost": "cost:cost",
    "policy": "policy:policy",
    "approve": "hitl:approve",
    "deny": "hitl:deny",
    "resume": "hitl:resume",
    "hitl": "hitl:hitl",
    "templates": "catalog:templates",
    "repos": "catalog:repos",
    "sentinel": "sentinel:sentinel",
    "webhook": "webhook:webhook",
    "gc": "gc:gc",
}


@click.group(
    cls=CasmGroup,
    lazy_commands={name: f"casm_dagster.cli.{target}" for name, target in COMMANDS.items()},
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(package_name="casm-dagster", prog_name="casm")
def main() -> None:
    """CASM: a governed swarm of code agents that review, fix, validate and deliver.

    Runs go through Dagster: the instance is $DAGSTER_HOME (default ./.casm/dagster_home,
    SQLite). Run state and artifacts are kept under ./.casm/runs/<run_id>/.
    """


if __name__ == "__main__":
    main()
