"""``casm templates`` and ``casm repos``: what can run, and on which repositories."""

from __future__ import annotations

import click

from casm_dagster.cli.common import open_instance


@click.group()
def templates() -> None:
    """Inspect the bundled templates."""


@templates.command("list")
def templates_list() -> None:
    """List the bundled templates with their workflow and stages."""
    from casm_dagster.run.templates import list_templates

    for template in list_templates():
        info = template.manifest.template
        click.echo(f"{info.id:<14} {template.manifest.entrypoint.workflow:<16} {' → '.join(template.stages)}")
        click.echo(f"{'':<14} {info.description}")


@click.group()
def repos() -> None:
    """Register repositories as Dagster `repos` partitions."""


@repos.command("add")
@click.argument("path")
def repos_add(path: str) -> None:
    """Register a local git repository (adds its dynamic partition)."""
    from casm_dagster.cli.stores import register_local_repo
    from casm_dagster.run.spec import resolve_local_repo

    info = resolve_local_repo(path)
    record = register_local_repo(open_instance(), info.root)
    click.echo(f"{record.partition_key}\t{record.location}")


@repos.command("list")
def repos_list() -> None:
    """List registered repositories: partition key, kind, location."""
    from casm_dagster.cli.stores import registry

    records = registry(open_instance()).list()
    if not records:
        click.echo("no repos registered (casm repos add PATH)")
    for record in records:
        click.echo(f"{record.partition_key}\t{record.kind}\t{record.location}")
