"""``casm sentinel``: register repos for the heartbeat schedules and the PR sensor."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
import dagster as dg

from casm_dagster.assets.config import HOST_QUEUE_ENV
from casm_dagster.cli.common import json_option, open_instance
from casm_dagster.cli.stores import register_repo
from casm_dagster.errors import CasmError, ConfigError
from casm_dagster.github.connector import TOKEN_ENV, GitHubError
from casm_dagster.resources import GitHubResource
from casm_dagster.resources.instance import instance_db_url
from casm_dagster.run.templates import PR_WORKFLOW, load_template
from casm_dagster.safety import gitops
from casm_dagster.stores.db import engine_for
from casm_dagster.stores.repos import is_github_name, partition_key_for
from casm_dagster.stores.sentinels import Sentinel, SentinelStore


def store(instance: dg.DagsterInstance) -> SentinelStore:
    return SentinelStore(engine_for(instance_db_url(instance)))


def register(
    instance: dg.DagsterInstance, repo: str, schedule: str, template_ref: str, pr_template_ref: str | None
) -> tuple[Sentinel, list[str]]:
    """Register (or re-register) a repo; returns the registration and notes for the user."""
    notes: list[str] = []
    template = load_template(template_ref)
    heartbeat, pr_template = template_ref, pr_template_ref or ""
    if template.manifest.entrypoint.workflow == PR_WORKFLOW:  # --template pr-sentinel: PRs only
        if pr_template_ref is None:
            raise ConfigError(f"--template {template_ref} reviews pull requests; it contradicts --no-prs")
        heartbeat, pr_template = "", template_ref
        notes.append(f"{template.id} reviews pull requests: the PR sensor runs it; no heartbeat audit")
    elif template.job != "audit_job":  # the heartbeat schedules launch audit_job
        raise ConfigError(f"--template {template_ref}: {template.id} runs as {template.job}; the heartbeat runs audits")
    elif pr_template:
        pr = load_template(pr_template)
        if pr.manifest.entrypoint.workflow != PR_WORKFLOW:
            raise ConfigError(f"--pr-template {pr_template}: {pr.id} does not review pull requests")
    if is_github_name(repo):
        kind, location = "github", repo
        try:
            meta = GitHubResource.from_env().get_client().repo(repo)
            location = meta.full_name
        except GitHubError as exc:
            if os.environ.get(TOKEN_ENV):
                raise
            notes.append(f"not verified on GitHub ({exc})")
    else:
        kind, location = "local", str(gitops.inspect_repo(Path(repo).expanduser()).root)
        if pr_template:
            notes.append("a local repo has no pull requests: only the heartbeat applies")
            pr_template = ""
    record = register_repo(instance, kind, location)
    if heartbeat:  # fail now on a template the heartbeat could not run
        load_template(heartbeat)
        heartbeat = str(Path(heartbeat).resolve()) if Path(heartbeat).suffix in (".yaml", ".yml") else heartbeat
    if pr_template and Path(pr_template).suffix in (".yaml", ".yml"):
        pr_template = str(Path(pr_template).resolve())
    # A local path exists on this host only: its audits go to this host's worker queue.
    queue = os.environ.get(HOST_QUEUE_ENV) if kind == "local" else None
    return store(instance).register(record.partition_key, location, schedule, heartbeat, pr_template, queue), notes


def remove(instance: dg.DagsterInstance, repo: str) -> bool:
    """Unregister (the partition and its history stay: past runs remain browsable)."""
    sentinels = store(instance)
    if is_github_name(repo):  # GitHub names are case-insensitive
        found = [s for s in sentinels.list() if s.repo.lower() == repo.lower()]
        return any(sentinels.remove(s.partition_key) for s in found)
    return sentinels.remove(partition_key_for("local", str(Path(repo).expanduser().resolve())))


def describe(s: Sentinel) -> dict[str, Any]:
    return asdict(s)


@click.group(invoke_without_command=True)
@click.option("--repo", metavar="OWNER/NAME|PATH", help="The repository to watch.")
@click.option(
    "--schedule", type=click.Choice(["hourly", "daily"]), help="How often the heartbeat audits it (per UTC window)."
)
@click.option(
    "--template",
    "template_ref",
    default="repo-auditor",
    show_default=True,
    metavar="ID|PATH",
    help="What the heartbeat runs: an audit template. A PR template (pr-sentinel) here means: watch PRs only, "
    "no heartbeat audit.",
)
@click.option(
    "--pr-template",
    default="pr-sentinel",
    show_default=True,
    metavar="ID|PATH",
    help="What the PR sensor runs on each new PR head (a copy of pr-sentinel with your approvers).",
)
@click.option("--no-prs", is_flag=True, help="Do not watch pull requests (heartbeat only).")
@click.pass_context
def sentinel(ctx: click.Context, repo, schedule, template_ref, pr_template, no_prs) -> None:
    """Continuous Sentinel: register a repo for the heartbeat and the PR sensor.

    casm sentinel --repo owner/name --schedule hourly|daily [--template pr-sentinel]
    adds the repo's dynamic partition and its settings (kept in the instance database);
    the heartbeat_hourly / heartbeat_daily schedules then emit one audit per window, and
    pr_sensor one pr-sentinel run per new PR head. Registering again updates the settings.
    """
    if ctx.invoked_subcommand is not None:
        if repo or schedule:
            raise CasmError("--repo/--schedule register a repo; they do not combine with list/remove")
        return
    if not repo or not schedule:
        raise CasmError("register with: casm sentinel --repo OWNER/NAME --schedule hourly|daily (or: list, remove)")
    record, notes = register(open_instance(), repo, schedule, template_ref, None if no_prs else pr_template)
    for note in notes:
        click.echo(f"casm: note: {note}", err=True)
    heartbeat = f"{record.schedule} heartbeat: {record.template}" if record.template else "no heartbeat audit"
    prs = f"PRs: {record.pr_template}" if record.pr_template else "PRs not watched"
    click.echo(f"{record.repo} registered as partition {record.partition_key} ({heartbeat}; {prs})")


@sentinel.command("list")
@json_option
def sentinel_list(as_json: bool) -> None:
    """List registered repos: partition, schedule, heartbeat template, PR template."""
    records = store(open_instance()).list()
    if as_json:
        click.echo(json.dumps([describe(r) for r in records], sort_keys=True))
        return
    if not records:
        click.echo("no repos registered (casm sentinel --repo OWNER/NAME --schedule hourly)")
    for r in records:
        click.echo(f"{r.repo}\t{r.schedule}\t{r.template or '-'}\t{r.pr_template or '-'}\t{r.partition_key}")


@sentinel.command("remove")
@click.option("--repo", "target", required=True, metavar="OWNER/NAME|PATH")
def sentinel_remove(target: str) -> None:
    """Stop watching a repo (its partition and past runs stay)."""
    if not remove(open_instance(), target):
        raise CasmError(f"{target} is not registered (see `casm sentinel list`)")
    click.echo(f"{target} removed")
