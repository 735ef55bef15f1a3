"""Continuous Sentinel in Dagster: the hourly and daily heartbeat schedules, and the PR
sensor. The rules (which repos are due, which heads are new) live in ``casm_dagster.continuous.rules``.

Every run request carries ``casm/repo``: the instance's tag concurrency limit
(``dagster.yaml``) runs at most one audit per repo at a time.
"""

from datetime import UTC, datetime

import dagster as dg

from casm_dagster.assets.config import CELERY_QUEUE_TAG, AuditConfig, PrReviewConfig
from casm_dagster.continuous import rules
from casm_dagster.github.connector import GitHubError
from casm_dagster.jobs.run_config import audit_run_config, pr_review_run_config
from casm_dagster.resources import CasmResource, GitHubResource
from casm_dagster.resources.instance import ACTIVE_RUN_STATUSES
from casm_dagster.stores.sentinels import SentinelStore

MAX_REPOS_PER_TICK = 50  # the sensor's 60 s budget; the round-robin covers the rest next tick
MAX_INBOX_PER_TICK = 200


def _tags(partition_key: str, repo: str, template: str, trigger: str) -> dict[str, str]:
    return {"casm/repo": repo, "casm/partition": partition_key, "casm/template": template, "casm/trigger": trigger}


def _partitions(instance: dg.DagsterInstance, runs_filter: dg.RunsFilter) -> set[str]:
    return {r.tags["casm/partition"] for r in instance.get_runs(runs_filter) if "casm/partition" in r.tags}


def heartbeat_requests(
    store: SentinelStore, instance: dg.DagsterInstance, schedule: str, at: datetime
) -> tuple[list[dg.RunRequest], rules.Skipped]:
    """This tick's audits: the repos whose slot has come, not yet launched this window, with
    no audit still queued or running, up to the per-tick cap."""
    trigger = f"heartbeat:{schedule}:{rules.window(schedule, at)}"
    launched = _partitions(instance, dg.RunsFilter(tags={"casm/trigger": trigger}))
    busy = _partitions(instance, dg.RunsFilter(statuses=ACTIVE_RUN_STATUSES))
    sentinels = store.list(schedule=schedule)
    queues = {s.partition_key: s.host_queue for s in sentinels if s.host_queue}
    due, skipped = rules.due(sentinels, schedule, at, launched, busy)
    requests = [
        dg.RunRequest(
            run_key=d.run_key,
            partition_key=d.partition_key,
            run_config=audit_run_config(AuditConfig(template=d.template)),
            tags=_tags(d.partition_key, d.repo, d.template, trigger)
            | ({CELERY_QUEUE_TAG: queues[d.partition_key]} if d.partition_key in queues else {}),
        )
        for d in due
    ]
    return requests, skipped


def _heartbeat(schedule: str):
    @dg.schedule(
        name=f"heartbeat_{schedule}",
        cron_schedule=rules.CRON[schedule],
        job_name="audit_job",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Continuous Sentinel: one audit per repo registered with --schedule {schedule}, per window, "
        "each repo at its own tick of the window.",
    )
    def heartbeat(context: dg.ScheduleEvaluationContext, casm: CasmResource):
        at = context.scheduled_execution_time or datetime.now(UTC)
        requests, skipped = heartbeat_requests(
            SentinelStore(casm.engine(context.instance)), context.instance, schedule, at
        )
        if skipped.busy or skipped.capped:
            context.log.info(
                f"{len(requests)} audits requested; later this window: {skipped.busy} still auditing, "
                f"{skipped.capped} over the cap of {rules.MAX_RUNS_PER_TICK} per tick"
            )
        return requests

    return heartbeat


heartbeat_hourly = _heartbeat("hourly")
heartbeat_daily = _heartbeat("daily")


def review_request(review: rules.PrReview, trigger: str) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=review.run_key,
        partition_key=review.partition_key,
        run_config=pr_review_run_config(
            PrReviewConfig(template=review.template, pr=review.pr, head_sha=review.head_sha)
        ),
        tags={**_tags(review.partition_key, review.repo, review.template, trigger), "casm/pr": str(review.pr)},
    )


@dg.sensor(
    job_name="pr_sentinel_job",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Polls the open PRs of watched repos (ETag: unchanged repos cost no rate limit) and "
    "drains the webhook inbox; one pr-sentinel run per new PR head.",
)
def pr_sensor(context: dg.SensorEvaluationContext, casm: CasmResource, github: GitHubResource) -> dg.SensorResult:
    store = SentinelStore(casm.engine(context.instance))
    cursor = rules.PollCursor.load(context.cursor)
    watched = store.list(watching_prs=True)
    by_repo = {s.repo: s for s in watched}
    requests: dict[str, dg.RunRequest] = {}
    for item in store.inbox_after(cursor.inbox, MAX_INBOX_PER_TICK):
        cursor.inbox = item.id
        s = by_repo.get(item.repo)
        if s is None:
            context.log.info(f"webhook {item.delivery_id}: {item.repo} is not watched; ignored")
            continue
        review = rules.PrReview(s.partition_key, s.repo, s.pr_template, item.pr, item.head_sha)
        requests[review.run_key] = review_request(review, f"webhook:{item.event}")
        cursor.heads.setdefault(s.partition_key, {})[str(item.pr)] = item.head_sha
    if watched:  # only GitHub repos are watched for PRs
        try:
            connector = github.get_sensor_client()
        except GitHubError as exc:
            context.log.warning(f"PR polling is off: {exc}")
        else:
            reviews, errors = rules.poll(cursor, watched, connector.open_pulls, MAX_REPOS_PER_TICK)
            for message in errors:
                context.log.warning(message)
            for review in reviews:
                requests.setdefault(review.run_key, review_request(review, "poll"))
    return dg.SensorResult(run_requests=list(requests.values()), cursor=cursor.dump())
