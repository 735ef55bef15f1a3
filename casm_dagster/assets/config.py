"""Run config of the stage assets (``dg.Config``): what the CLI, the schedules and the
sensors pass in (``casm_dagster/jobs/run_config.py`` builds it in one place)."""

import os
from pathlib import Path

import dagster as dg

from casm_dagster.contracts.run import RunSpec
from casm_dagster.economics.policy_view import routing_view
from casm_dagster.resources import CasmResource, GitHubResource, ModelProvidersResource, latest_routing_policy
from casm_dagster.run.spec import RunOptions, build_spec, resolve_repo
from casm_dagster.run.templates import load_template

# A worker host's own Celery queue (infra/systemd/casm-celery-worker.service), and the run tag
# dagster-celery's run launcher routes a run by.
HOST_QUEUE_ENV, CELERY_QUEUE_TAG = "CASM_HOST_QUEUE", "dagster-celery/queue"


class AuditConfig(dg.Config):
    """What to run. From the UI, only ``template`` matters; the CLI fills in the rest."""

    template: str = "repo-auditor"
    run_id: str = ""  # empty: a new ULID
    repo: str = ""  # empty: the location registered for the partition
    artifacts_dir: str = ""  # empty: <state_dir>/artifacts
    seed: int = 0
    # The replay flags (SPEC §3); None: the template's setting.
    budget_usd: float | None = None
    proof_mode: bool | None = None
    routing: str | None = None
    prices: str | None = None
    replay_of: str | None = None
    base: str | None = None
    head: str | None = None
    ruleset: str | None = None
    ruleset_hash: str | None = None
    pr: int | None = None  # GitHub mode, pr-sentinel: the pull request

    def options(self) -> RunOptions:
        return RunOptions(
            budget_usd=self.budget_usd,
            proof_mode=self.proof_mode,
            routing=self.routing,
            prices=self.prices,
            replay_of=self.replay_of,
            base=self.base,
            head=self.head,
            ruleset=self.ruleset,
            ruleset_hash=self.ruleset_hash,
            pr=self.pr,
        )


class PrReviewConfig(AuditConfig):
    """Which PR (GitHub mode: ``pr``), or which range of a local repo (``base``/``head``)."""

    template: str = "pr-sentinel"
    head_sha: str = ""  # the head the trigger saw (recorded; the fetched head is reviewed)


def run_spec(
    context: dg.AssetExecutionContext | dg.OpExecutionContext,
    config: AuditConfig,
    casm: CasmResource,
    github: GitHubResource,
    models: ModelProvidersResource,
    pr: int | None = None,
) -> RunSpec:
    """The run's fixed spec, for the repo registered under the context's partition (GitHub
    mode: ``pr`` checks out that pull request's head)."""
    record = casm.registry(context.instance).require(context.partition_key)
    state_dir = casm.state_path()
    shared = casm.run_files(context.instance)
    if config.replay_of and shared is not None:  # the original may have run on another host
        shared.pull(config.replay_of, state_dir / "runs" / config.replay_of)
    info, checkout = resolve_repo(record.location, state_dir, pr, connect=github.get_client)
    return build_spec(
        load_template(config.template),
        config.repo or record.location,
        info,
        state_dir,
        Path(config.artifacts_dir) if config.artifacts_dir else state_dir / "artifacts",
        seed=config.seed,
        run_id=config.run_id or None,
        options=config.options(),
        github=checkout,
        routing_policy=routing_view(latest_routing_policy(context.instance)),
        providers=models.env(),
    )


def tag_identity(context: dg.AssetExecutionContext | dg.OpExecutionContext, spec: RunSpec) -> None:
    """A run launched from the UI, a schedule or the API gets the tags `casm explain` and
    `casm approve` look runs up by, as one launched by `casm run` has them."""
    identity = {"casm/run_id": spec.run_id, "casm/template": spec.template_id, "casm/repo": spec.repo}
    missing = {k: v for k, v in identity.items() if k not in context.run.tags}
    if missing:
        context.instance.add_run_tags(context.run.run_id, missing)


def stage_journal(context: dg.AssetExecutionContext | dg.OpExecutionContext, casm: CasmResource, spec: RunSpec):
    """The CASM run's journal for a stage about to run, shared with other hosts when the
    instance is on PostgreSQL. It notes the Dagster run executing the stage: after a run
    retry (a dead run worker) the retry, not the failed run, is the one to tag and follow.
    On a worker host (``CASM_HOST_QUEUE``) the run is pinned to this host's queue, so a retry
    comes back here, where its checkout and run folder are."""
    try:
        run = context.run
    except dg.DagsterError:  # the asset invoked directly (a built context): no Dagster run
        return casm.journal(spec)
    journal = casm.journal(spec, context.instance)
    journal.state.dagster_run_id = run.run_id
    queue = os.environ.get(HOST_QUEUE_ENV)
    if queue and run.tags.get(CELERY_QUEUE_TAG) != queue:
        context.instance.add_run_tags(run.run_id, {CELERY_QUEUE_TAG: queue})
    return journal
