"""``casm webhook``: turn GitHub webhook payloads into queued PR reviews and approval decisions."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
import dagster as dg

from casm_dagster.cli.common import open_instance
from casm_dagster.cli.sentinel import store
from casm_dagster.cli.stores import approvals
from casm_dagster.cli.webhook_server import MAX_PAYLOAD_BYTES, serve
from casm_dagster.continuous import rules
from casm_dagster.errors import CasmError, ConfigError
from casm_dagster.github import approvals as gh_approvals
from casm_dagster.github.connector import GITHUB_FAILURES
from casm_dagster.github.webhooks import ApprovalCandidate, ReviewRequest, WebhookError, derive
from casm_dagster.resources import GitHubResource
from casm_dagster.run.journal import utc_now
from casm_dagster.stores.sentinels import Sentinel

SECRET_ENV = "CASM_WEBHOOK_SECRET"


def handle(
    instance: dg.DagsterInstance, event: str, payload: Any, dry_run: bool, delivery_id: str | None = None
) -> list[dict[str, Any]]:
    """What an event derives, as JSON-ready records; unless ``dry_run``, review requests are
    queued for the PR sensor and approvals are decided."""
    derived = derive(event, payload, utc_now())
    sentinels = {s.repo.lower(): s for s in store(instance).list(watching_prs=True)}
    out: list[dict[str, Any]] = []
    for item in derived:
        if isinstance(item, ReviewRequest):
            out.append(_review(instance, item, sentinels.get(item.repo.lower()), dry_run, delivery_id, event))
        else:
            out.append(_approval(instance, item, dry_run))
    return out


def _review(instance, item: ReviewRequest, s: Sentinel | None, dry_run: bool, delivery_id, event) -> dict[str, Any]:
    record: dict[str, Any] = {**asdict(item), "watched": s is not None}
    if s is None:
        record["note"] = f"{item.repo} is not watched: casm sentinel --repo {item.repo} --schedule daily"
        return record
    review = rules.PrReview(s.partition_key, s.repo, s.pr_template, item.pr, item.head_sha)
    record.update(job="pr_sentinel_job", partition_key=s.partition_key, template=s.pr_template, run_key=review.run_key)
    if not dry_run:
        key = delivery_id or f"cli-{uuid.uuid4()}"
        record["queued"] = store(instance).enqueue(key, event, s.repo, item.pr, item.head_sha)
    return record


def _approval(instance, item: ApprovalCandidate, dry_run: bool) -> dict[str, Any]:
    """The event only says which PR to look at: the decision is made from what GitHub's API
    says (who added the label or wrote the comment, and when), so a forged, replayed or
    late payload cannot approve anything."""
    record = item.as_json()
    store_ = approvals(instance)
    pending = gh_approvals.pending_for(store_, item.repo, item.pr)
    record["requests"] = [{"request_id": r.request_id, "run_id": r.run_id, "outcome": "pending"} for r in pending]
    if not pending:
        record["note"] = "no pending GitHub-mode approval request for this PR"
        return record
    if dry_run:
        record["note"] = "dry run: the PR's labels and comments are not read, nothing is decided"
        return record
    try:
        connector = GitHubResource.from_env().get_client()
        record["requests"] = [
            (gh_approvals.poll_pull(store_, connector, r, connector.user_orgs) or _undecided(r)).as_json()
            for r in pending
        ]
    except GITHUB_FAILURES as exc:
        record["note"] = (
            f"not decided: the approval is confirmed on GitHub, which failed ({exc}); the HITL sensor retries"
        )
    return record


def _undecided(r) -> gh_approvals.Outcome:
    return gh_approvals.Outcome(r.request_id, r.run_id, "not_an_approval", "nothing on the PR approves it")


def read_payload(path: Path) -> Any:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"--payload {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise WebhookError(f"--payload {path}: larger than GitHub's 25 MB limit")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WebhookError(f"--payload {path}: not JSON ({exc})") from None


@click.group(invoke_without_command=True)
@click.option(
    "--event",
    type=click.Choice(["pull_request", "issue_comment", "pull_request_review", "label"]),
    help="The X-GitHub-Event of the payload.",
)
@click.option("--payload", type=click.Path(path_type=Path), help="The webhook's JSON body, as GitHub sent it.")
@click.option("--delivery-id", default=None, help="X-GitHub-Delivery (dedupes a redelivered hook).")
@click.option("--dry-run", is_flag=True, help="Only print what the event derives; record and queue nothing.")
@click.pass_context
def webhook(ctx: click.Context, event, payload, delivery_id, dry_run) -> None:
    """Turn a GitHub webhook payload into run requests and approval records (JSON on stdout).

    pull_request opened/reopened/synchronize/ready_for_review → a pr-sentinel run request
    (queued for pr_sensor, same run key as its poll); a labeled PR, an issue_comment or a
    submitted review → the PR's pending approval request is decided (allowlist applies).
    Events needing no action (a closed PR, a draft) print []. `casm webhook serve` runs a
    small receiver that verifies X-Hub-Signature-256.
    """
    if ctx.invoked_subcommand is not None:
        return
    if not event or not payload:
        raise CasmError("pass --event EVENT --payload FILE (or: casm webhook serve)")
    data = read_payload(payload)
    click.echo(json.dumps(handle(open_instance(), event, data, dry_run, delivery_id), indent=2, sort_keys=True))


@webhook.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8787, show_default=True)
def webhook_serve(host: str, port: int) -> None:
    """Receive GitHub webhooks over HTTP (secret from CASM_WEBHOOK_SECRET; Ctrl-C stops)."""
    import os

    secret = os.environ.get(SECRET_ENV, "")
    if len(secret) < 16:
        raise CasmError(f"set {SECRET_ENV} to the webhook's secret (16+ characters): unsigned hooks are refused")
    instance = open_instance()
    server = serve(
        host,
        port,
        secret,
        lambda event, payload, delivery: handle(instance, event, payload, False, delivery),
        lambda line: click.echo(line, err=True),
    )
    click.echo(f"casm: receiving webhooks on http://{host}:{server.server_address[1]}/", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
