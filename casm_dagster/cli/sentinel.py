"""What ``casm sentinel`` and ``casm webhook`` do, apart from parsing flags."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg

from casm_dagster.cli.launch import approvals, register_repo
from casm_dagster.continuous import rules
from casm_dagster.errors import ConfigError
from casm_dagster.github import approvals as gh_approvals
from casm_dagster.github.connector import GITHUB_FAILURES, TOKEN_ENV, GitHubError
from casm_dagster.github.webhooks import ApprovalCandidate, ReviewRequest, WebhookError, derive, verify_signature
from casm_dagster.resources import GitHubResource
from casm_dagster.resources.instance import instance_db_url
from casm_dagster.run.journal import utc_now
from casm_dagster.run.templates import PR_WORKFLOW, load_template
from casm_dagster.safety import gitops
from casm_dagster.safety.redact import redact
from casm_dagster.stores.db import engine_for
from casm_dagster.stores.repos import is_github_name, partition_key_for
from casm_dagster.stores.sentinels import Sentinel, SentinelStore

SECRET_ENV = "CASM_WEBHOOK_SECRET"
MAX_PAYLOAD_BYTES = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB


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
    return store(instance).register(record.partition_key, location, schedule, heartbeat, pr_template), notes


def remove(instance: dg.DagsterInstance, repo: str) -> bool:
    """Unregister (the partition and its history stay: past runs remain browsable)."""
    sentinels = store(instance)
    if is_github_name(repo):  # GitHub names are case-insensitive
        found = [s for s in sentinels.list() if s.repo.lower() == repo.lower()]
        return any(sentinels.remove(s.partition_key) for s in found)
    return sentinels.remove(partition_key_for("local", str(Path(repo).expanduser().resolve())))


def describe(s: Sentinel) -> dict[str, Any]:
    return asdict(s)


# -- webhooks ----------------------------------------------------------------------------


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


def serve(instance: dg.DagsterInstance, host: str, port: int, secret: str, log) -> ThreadingHTTPServer:
    """A small receiver: POST a GitHub webhook; 401 on a bad signature, 400 on a malformed
    payload, 202 with the derived records otherwise (ping → 200)."""

    class Handler(BaseHTTPRequestHandler):
        timeout = 30  # a client that stops sending is dropped

        def log_message(self, fmt: str, *args: Any) -> None:  # one line per delivery, via ``log``
            return

        def _answer(self, status: int, payload: Any) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_PAYLOAD_BYTES:
                self._answer(413 if length > 0 else 400, {"error": "bad or missing Content-Length"})
                return
            body = self.rfile.read(length)
            event = self.headers.get("X-GitHub-Event", "")
            delivery = self.headers.get("X-GitHub-Delivery") or None
            try:
                verify_signature(secret, body, self.headers.get("X-Hub-Signature-256"))
            except WebhookError as exc:
                log(f"{delivery}: refused: {exc}")
                self._answer(401, {"error": str(exc)})
                return
            if event == "ping":
                self._answer(200, {"ok": True})
                return
            try:
                records = handle(instance, event, json.loads(body), dry_run=False, delivery_id=delivery)
            except (WebhookError, json.JSONDecodeError, UnicodeDecodeError) as exc:
                log(f"{delivery}: {event}: rejected: {exc}")
                self._answer(400, {"error": str(exc)})
                return
            except Exception as exc:  # noqa: BLE001 - GitHub should see a 500 and redeliver, not a reset
                log(f"{delivery}: {event}: failed: {type(exc).__name__}: {redact(str(exc))}")
                self._answer(500, {"error": "internal error; see the receiver's log"})
                return
            log(f"{delivery}: {event}: {len(records)} records")
            self._answer(202, {"records": records})

    return ThreadingHTTPServer((host, port), Handler)
