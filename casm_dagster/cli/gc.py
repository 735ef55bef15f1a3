"""``casm gc``: prune the repos' cached environments that no run has used for a while, and
clear what killed runs left (runs still marked running, scratch clones, temp dirs)."""

from __future__ import annotations

import click

from casm_dagster.cli.common import open_instance, state_dir


@click.command()
@click.option(
    "--older-than-days",
    type=click.FloatRange(min=0),
    default=14,
    show_default=True,
    help="Remove environments no run has used for this many days (0: every one not in use).",
)
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
def gc(older_than_days: float, dry_run: bool) -> None:
    """Remove cached environments under <state dir>/envs (and half-built ones), and clear
    what killed runs left behind.

    An environment in use by a run, or being built, is never removed; the next run that
    needs a removed one builds it again. A run still marked running (in CASM's state or
    as a STARTED Dagster run) whose process is gone is marked failed, and the scratch
    clones and temp dirs of processes that are gone are removed (`casm run` does this too
    when it starts).
    """
    from casm_dagster.cli.launch import recover
    from casm_dagster.environments.build import collect
    from casm_dagster.safety.sandbox import ENVS_DIR

    for note in recover(open_instance(), state_dir(), dry_run):
        click.echo(note)

    removed = collect(state_dir() / ENVS_DIR, older_than_days, dry_run)
    verb = "would remove" if dry_run else "removed"
    for path, size, used in removed:
        click.echo(f"{verb}\t{path}\t{size / 1e6:.1f} MB\tlast used {used}")
    total = sum(size for _, size, _ in removed) / 1e6
    click.echo(f"{verb} {len(removed)} environments ({total:.1f} MB)")
