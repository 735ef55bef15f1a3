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
    help="Remove environments no run has used, and the stage outputs of runs that ended, this many days ago "
    "(0: every one not in use).",
)
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
def gc(older_than_days: float, dry_run: bool) -> None:
    """Remove cached environments under <state dir>/envs (and half-built ones), finished
    runs' stage outputs, and what killed runs left behind.

    An environment in use by a run, or being built, is never removed; the next run that
    needs a removed one builds it again. A run still marked running (in CASM's state or
    as a STARTED Dagster run) whose process is gone is marked failed, and the scratch
    clones and temp dirs of processes that are gone are removed (`casm run` does this too
    when it starts). A finished run's stage outputs (kept for re-execution from a
    failure) go once the run ended more than --older-than-days ago.
    """
    from casm_dagster.cli.launch import recover
    from casm_dagster.environments.build import collect
    from casm_dagster.safety.sandbox import ENVS_DIR

    instance = open_instance()
    for note in recover(instance, state_dir(), dry_run):
        click.echo(note)
    pruned = _prune_stage_outputs(instance, older_than_days, dry_run)
    if pruned:
        click.echo(f"{'would remove' if dry_run else 'removed'} the stage outputs of {pruned} finished runs")

    removed = collect(state_dir() / ENVS_DIR, older_than_days, dry_run)
    verb = "would remove" if dry_run else "removed"
    for path, size, used in removed:
        click.echo(f"{verb}\t{path}\t{size / 1e6:.1f} MB\tlast used {used}")
    total = sum(size for _, size, _ in removed) / 1e6
    click.echo(f"{verb} {len(removed)} environments ({total:.1f} MB)")


def _prune_stage_outputs(instance, older_than_days: float, dry_run: bool) -> int:
    """Each run keeps its stage outputs (for re-execution from a failure) until they are this
    old: files under the instance's storage, or rows in its database on PostgreSQL."""
    import time
    from pathlib import Path

    from casm_dagster.resources.instance import shared_engine
    from casm_dagster.resources.stage_io import prune, prune_stored, stored_run_ids

    root = Path(instance.storage_directory()) / "casm_runs"
    engine = shared_engine(instance)
    run_ids = [f.name for f in root.iterdir()] if root.is_dir() else []
    run_ids += stored_run_ids(engine) if engine is not None else []
    ended: dict[str, float | None] = {}
    for run_id in run_ids:
        record = instance.get_run_record_by_id(run_id)
        if record is not None:
            ended[run_id] = record.end_time if record.dagster_run.is_finished else None
    before = time.time() - older_than_days * 86400
    gone = {p.name for p in prune(root, before, ended, dry_run)}
    if engine is not None:
        gone |= set(prune_stored(engine, before, ended, dry_run))
    return len(gone)
