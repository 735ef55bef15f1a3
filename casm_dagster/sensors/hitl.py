"""``hitl_approval_sensor``: launches the continuation of each approved gated run, once.

The cursor is the last approval's id in ``casm_hitl_log``; the run key
``approval:<request_id>`` makes a re-evaluated tick (or a reset cursor) launch nothing
twice, and the continuation claims the approval atomically before it applies anything.
Each tick also expires pending requests past their deadline (their runs end "expired").
"""

import time
from datetime import UTC, datetime, timedelta

import dagster as dg

from casm_dagster.assets.config import CELERY_QUEUE_TAG
from casm_dagster.github import approvals as gh_approvals
from casm_dagster.github.connector import GITHUB_FAILURES, GitHubError
from casm_dagster.jobs.run_config import continuation_run_config
from casm_dagster.ops.hitl import hitl_continuation_job
from casm_dagster.policy import hitl
from casm_dagster.resources import CasmResource, GitHubResource
from casm_dagster.stores.approvals import ApprovalRecord

# An approval older than this with no continuation run was missed (e.g. a cursor reset,
# or a commit that landed behind the cursor): it is requested again; the run key dedupes.
RESWEEP_AFTER = timedelta(minutes=10)
MAX_PER_TICK = 50
POLL_BUDGET_S = 25.0  # of the tick's 60 s, for reading approvals on GitHub


def continuation_request(record: ApprovalRecord, instance: dg.DagsterInstance | None = None) -> dg.RunRequest:
    """The continuation's run. With worker hosts it goes to the host the run was held on (its
    Dagster run's ``dagster-celery/queue``): that host has the repo and the run's checkout."""
    tags = {
        "casm/run_id": record.run_id,
        "casm/hitl_request": record.request_id,
        "casm/template": record.template_id,
        "casm/repo": record.repo,
        "casm/partition": record.partition_key,
    }
    held = instance.get_runs(dg.RunsFilter(tags={"casm/run_id": record.run_id}), limit=1) if instance else []
    if held and held[0].tags.get(CELERY_QUEUE_TAG):
        tags[CELERY_QUEUE_TAG] = held[0].tags[CELERY_QUEUE_TAG]
    return dg.RunRequest(
        run_key=f"approval:{record.request_id}", run_config=continuation_run_config(record.request_id), tags=tags
    )


def _poll_github(context: dg.SensorEvaluationContext, store, github: GitHubResource) -> None:
    """GitHub-mode requests: read the PR's labels or comments and record an approval from
    an allowlisted approver (webhooks record them too; whichever comes first decides)."""
    pending = gh_approvals.pending_for(store)[:MAX_PER_TICK]
    if not pending:
        return
    try:
        connector = github.get_sensor_client()
    except GitHubError as exc:
        context.log.warning(f"{len(pending)} GitHub approval requests are not polled: {exc}")
        return
    deadline = time.monotonic() + POLL_BUDGET_S  # approvals recorded locally must not wait on GitHub
    for record in pending:
        if time.monotonic() > deadline:
            break
        try:
            outcome = gh_approvals.poll_pull(store, connector, record, connector.user_orgs)
        except GITHUB_FAILURES as exc:
            context.log.warning(f"request {record.request_id}: {exc}")
            continue
        if outcome:
            context.log.info(f"request {record.request_id}: {outcome.outcome} ({outcome.detail})")


@dg.sensor(
    job=hitl_continuation_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches the continuation of a gated audit once its approval is recorded.",
)
def hitl_approval_sensor(
    context: dg.SensorEvaluationContext, casm: CasmResource, github: GitHubResource
) -> dg.SensorResult:
    store = casm.approvals(context.instance)
    expired = hitl.expire_due(store)
    for record in expired:
        context.log.info(f"request {record.request_id} (run {record.run_id}) expired")
        gated = hitl.gated_dagster_run_id(record, store)
        if gated and context.instance.get_run_by_id(gated):
            context.instance.add_run_tags(gated, {"casm/hitl": "expired", "casm/status": "expired"})
    _poll_github(context, store, github)
    cursor = int(context.cursor or 0)
    found = store.approvals_after(cursor, limit=MAX_PER_TICK)
    requests = {r.request_id: continuation_request(r, context.instance) for _, r in found if r.consumed_at is None}
    cutoff = (datetime.now(UTC) - RESWEEP_AFTER).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    for record in store.unconsumed_approvals(decided_before=cutoff, limit=MAX_PER_TICK):
        if record.request_id in requests:
            continue
        runs = context.instance.get_run_records(
            filters=dg.RunsFilter(tags={"casm/hitl_request": record.request_id}), limit=1
        )
        if not runs:
            requests[record.request_id] = continuation_request(record, context.instance)
    new_cursor = max([cursor, *(log_id for log_id, _ in found)])
    return dg.SensorResult(run_requests=list(requests.values()), cursor=str(new_cursor))
