"""The ``casm`` command line. Every user error is one line on stderr and exit code 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from casm_dagster.errors import CasmError

if TYPE_CHECKING:
    from casm_dagster.run.spec import RunOptions

EXIT_RUN_FAILED = 1
# Same codes as `casm policy check`: 3 held for a human, 4 blocked by policy.
# 5: the budget stopped the run before any model call.
RUN_EXIT_CODES = {"succeeded": 0, "awaiting_approval": 3, "blocked": 4, "stopped": 5}
DEFAULT_STATE_DIR = ".casm"
STATE_DIR_ENV = "CASM_STATE_DIR"


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"casm: error: {message}", err=True)
    sys.exit(code)


class CasmGroup(click.Group):
    """Maps ``CasmError`` to a one-line message and its exit code, everywhere."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except CasmError as exc:
            _fail(str(exc), exc.exit_code)


def _state_dir() -> Path:
    import os

    return Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR).resolve()


def _instance():
    import dagster as dg

    from casm_dagster.resources.instance import ensure_dagster_home

    notice = ensure_dagster_home()
    if notice:
        click.echo(f"casm: {notice}", err=True)
    return dg.DagsterInstance.get()


@click.group(cls=CasmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="casm-dagster", prog_name="casm")
def main() -> None:
    """CASM: a governed swarm of code agents that review, fix, validate and deliver.

    Runs go through Dagster: the instance is $DAGSTER_HOME (default ./.casm/dagster_home,
    SQLite). Run state and artifacts are kept under ./.casm/runs/<run_id>/.
    """


_json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object with the outcome as the last line on stdout."
)
_artifacts_option = click.option(
    "--artifacts-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".casm/artifacts"),
    show_default=True,
    help="Where report.md, cost_report.md, issues.json and patches/ are copied.",
)
_seed_option = click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed for anything random (recorded in the run's effective config).",
)


def _bool(value: str | None) -> bool | None:
    if value is None:
        return None
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise CasmError(f"--proof-mode expects true or false, got {value!r}")


def _run_options(kw: dict) -> RunOptions:
    from casm_dagster.run.spec import RunOptions

    ruleset = kw.get("ruleset")
    if ruleset and Path(ruleset).suffix in (".yaml", ".yml"):
        if not Path(ruleset).is_file():
            raise CasmError(f"--ruleset {ruleset}: no such file")
        ruleset = str(Path(ruleset).resolve())
    prices = kw.get("prices")
    if prices:
        if not Path(prices).is_file():
            raise CasmError(f"--prices {prices}: no such file")
        prices = str(Path(prices).resolve())
    return RunOptions(
        budget_usd=kw.get("budget_usd"),
        proof_mode=_bool(kw.get("proof_mode")),
        routing=kw.get("routing"),
        prices=prices,
        replay_of=kw.get("replay_of"),
        base=kw.get("base"),
        head=kw.get("head"),
        ruleset=ruleset,
        ruleset_hash=kw.get("ruleset_hash"),
        pr=kw.get("pr"),
    )


def _run(
    template_ref: str, repo: str, artifacts_dir: Path, as_json: bool, seed: int, options: RunOptions | None = None
) -> None:
    from casm_dagster.cli.launch import launch_audit
    from casm_dagster.resources import GitHubResource
    from casm_dagster.run.spec import resolve_repo
    from casm_dagster.run.templates import load_template

    # Validate everything before anything is written.
    template = load_template(template_ref)
    options = options or _run_options({})
    if artifacts_dir.exists() and not artifacts_dir.is_dir():
        raise CasmError(f"--artifacts-dir {artifacts_dir} exists and is not a directory")
    info, github = resolve_repo(repo, _state_dir(), options.pr, connect=GitHubResource.from_env().get_client)
    if info.dirty:
        click.echo(
            f"casm: note: {info.root} has uncommitted changes; auditing HEAD {info.head_commit[:12]} only", err=True
        )
    instance = _instance()
    ref = str(template.path) if Path(template_ref).suffix in (".yaml", ".yml") else template.id
    target = f"{github.repo}@{github.head_commit[:12]}" if github else str(info.root)
    click.echo(f"casm: {template.id} on {target} (stages: {', '.join(template.stages)})", err=True)
    # Fail on a bad flag before Dagster starts (the asset would fail the same way, later).
    from casm_dagster.run.spec import build_spec

    build_spec(template, repo, info, _state_dir(), artifacts_dir.resolve(), seed, "PREFLIGHT", options, github)
    _announce_policy(instance)
    result = launch_audit(
        instance,
        template,
        ref,
        repo,
        info.root,
        _state_dir(),
        artifacts_dir.resolve(),
        seed,
        True,
        options,
        github=github.repo if github else None,
    )
    state = result.state
    status = state.status if state else "failed"
    branch = state.branch if state else None
    counts = state.counts if state else {}
    written = ("succeeded", "awaiting_approval", "blocked", "stopped")
    report_path = artifacts_dir.resolve() / "report.md" if status in written else None
    click.echo("", err=True)
    click.echo(f"run {result.run_id}: {status} (Dagster run {result.dagster_run_id})")
    click.echo(f"  repo:      {github.repo if github else info.root}")
    click.echo(f"  branch:    {branch or 'none'}")
    pull = _pull_request(result.run_dir)
    if pull:
        click.echo(f"  PR:        {pull}")
    click.echo(f"  report:    {report_path or 'not written'}")
    click.echo(f"  artifacts: {artifacts_dir.resolve()} (all files also in {result.run_dir})")
    if state and state.error:
        click.echo(f"  error:     {state.error}")
    summary = _summary(result.run_dir)
    if summary:
        totals = summary["totals"]
        click.echo(
            f"  cost:      ${float(totals['run_cost_usd']):.6f} (model ${float(totals['llm_usd']):.6f}, "
            f"{summary['calls']['count']} calls, {summary['model_mode']}); forecast P50 "
            f"${float(summary['forecast']['p50_usd'] or 0):.6f}"
        )
        counterfactual = _counterfactual(summary)
        if counterfactual:
            click.echo(f"  replay:    {counterfactual}")
    click.echo(f"  explain:   casm explain --run-id {result.run_id}")
    if status == "awaiting_approval":
        click.echo(f'  approve:   casm approve --run-id {result.run_id} --reason "..."   (or: casm deny ...)')
    if as_json:
        click.echo(
            json.dumps(
                {
                    "run_id": result.run_id,
                    "status": status,
                    "repo": github.repo if github else str(info.root),
                    "pull_request": pull,
                    "branch": branch,
                    "report": str(report_path) if report_path else None,
                    "artifacts_dir": str(artifacts_dir.resolve()),
                    "run_dir": str(result.run_dir),
                    "dagster_run_id": result.dagster_run_id,
                    "findings": counts.get("findings", 0),
                    "patches": counts.get("patches", 0),
                    "checks": counts.get("checks", 0),
                    "cost_usd": summary["totals"]["run_cost_usd"] if summary else None,
                    "model_cost_usd": summary["totals"]["llm_usd"] if summary else None,
                },
                sort_keys=True,
            )
        )
    sys.exit(RUN_EXIT_CODES.get(status, EXIT_RUN_FAILED))


def _announce_policy(instance) -> None:
    from casm_dagster.resources import latest_routing_policy

    policy = latest_routing_policy(instance)
    if policy:
        click.echo(
            f"casm: routing policy {policy['version']} (diurnal optimization of {policy['created_at']})", err=True
        )


def _pull_request(run_dir: Path) -> str | None:
    """The PR a GitHub-mode run opened or commented on (from its events)."""
    events = run_dir / "events.jsonl"
    if not events.exists():
        return None
    for line in reversed(events.read_text(encoding="utf-8").splitlines()):
        data = json.loads(line).get("data") or {}
        if data.get("decision") in ("pr_opened", "pr_updated") and data.get("url"):
            return data["url"]
    return None


def _summary(run_dir: Path) -> dict | None:
    path = run_dir / "run_summary.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _counterfactual(summary: dict) -> str | None:
    """For a replay: what the same run cost originally, and what it costs under this replay's
    routing and prices."""
    state = json.loads((_state_dir() / "runs" / summary["run_id"] / "state.json").read_text(encoding="utf-8"))
    original_id = state["effective_config"]["run"]["models"].get("replay_of")
    if not original_id:
        return None
    original = _summary(_state_dir() / "runs" / original_id)
    if original is None:
        return f"replay of {original_id} (the original run has no cost summary)"
    before, after = original["totals"]["llm_usd"], summary["totals"]["llm_usd"]
    same = (
        original["routing_strategy"] == summary["routing_strategy"]
        and original["price_registry"]["sha256"] == summary["price_registry"]["sha256"]
    )
    what = (
        "same routing and prices"
        if same
        else (f"counterfactual: routing {summary['routing_strategy']}, prices {summary['price_registry']['version']}")
    )
    return f"replay of {original_id}: model cost ${float(before):.6f} originally, ${float(after):.6f} here ({what})"


def _replay_flags(func):
    flags = [
        click.option(
            "--budget-usd",
            type=float,
            default=None,
            help="Budget for this run in USD (default: the template's routing.budget.max_usd_per_run).",
        ),
        click.option(
            "--proof-mode",
            type=click.Choice(["true", "false"]),
            default=None,
            help="Write policy_decisions.json, routing_decisions.json, cost_forecast.json and run_replay.sh "
            "(default: the template's telemetry.proof_mode).",
        ),
        click.option(
            "--routing",
            type=click.Choice(["cost_aware_quality_floor", "quality_first", "budget_first", "latency_first"]),
            default=None,
            help="Routing strategy (default: the template's routing.strategy).",
        ),
        click.option(
            "--prices",
            metavar="FILE",
            default=None,
            help="Price registry YAML (default: $CASM_PRICES, else the bundled one).",
        ),
        click.option(
            "--replay-of",
            metavar="RUN_ID",
            default=None,
            help="Replay a run: serve its recorded model answers (no model is called).",
        ),
        click.option("--base", metavar="COMMIT", default=None, help="Base commit (repo-auditor: must equal --head)."),
        click.option("--head", metavar="COMMIT", default=None, help="Audit this commit instead of HEAD."),
        click.option(
            "--ruleset",
            metavar="ID|PATH",
            default=None,
            help="Policy ruleset (default: the template's policy.ruleset).",
        ),
        click.option(
            "--ruleset-hash", metavar="SHA256", default=None, help="Refuse to run unless the ruleset has this sha256."
        ),
    ]
    for flag in reversed(flags):
        func = flag(func)
    return func


@main.command()
@click.option(
    "--template",
    "template_ref",
    required=True,
    metavar="ID|PATH",
    help="A template id (see `casm templates list`) or a manifest.yaml path.",
)
@click.option(
    "--repo",
    required=True,
    metavar="PATH|OWNER/NAME",
    help="A local git repository (its HEAD is audited), or a GitHub repo owner/name (GitHub mode: "
    "GITHUB_TOKEN, GITHUB_API_URL).",
)
@click.option("--pr", type=click.IntRange(min=1), default=None, help="GitHub mode, pr-sentinel: the pull request.")
@_artifacts_option
@_json_option
@_seed_option
@_replay_flags
def run(template_ref: str, repo: str, artifacts_dir: Path, as_json: bool, seed: int, **flags) -> None:
    """Run one audit of a repository through Dagster.

    Audits the committed HEAD (uncommitted changes are reported and left alone) and, when
    fixes pass validation, creates the branch casm/<template>/<run_id> without touching
    your working tree. The policy engine scores the planned patch before it is applied.

    Models are reached through the cost-aware router when a provider key is set
    (OPENAI_API_KEY, ANTHROPIC_API_KEY, MOONSHOT_API_KEY, HF_TOKEN); otherwise the
    offline provider answers (no model called, $0). The forecast stage fits the run to
    the budget: downgrade models, then reduce scope, then stop.

    Exit 0 on success, 1 if the run failed, 2 on bad input, 3 if the policy held the
    run for approval (see `casm approve`), 4 if the policy blocked it, 5 if the budget
    stopped it before any model call.
    """
    _run(template_ref, repo, artifacts_dir, as_json, seed, _run_options(flags))


@main.command()
@click.option("--template", "template_ref", default="repo-auditor", show_default=True, metavar="ID|PATH")
@_artifacts_option
@_json_option
@_seed_option
@_replay_flags
def demo(template_ref: str, artifacts_dir: Path, as_json: bool, seed: int, **flags) -> None:
    """Audit a fresh copy of the bundled demo repo (a temp git repo) on the embedded defaults."""
    from casm_dagster.cli.demo import make_demo_repo

    repo = make_demo_repo()
    click.echo(f"casm: demo repo created at {repo}", err=True)
    _run(template_ref, str(repo), artifacts_dir, as_json, seed, _run_options(flags))


@main.command()
@click.option("--run-id", default=None, help="The CASM run id (a ULID) printed by `casm run`.")
@click.option(
    "--decision",
    "task_type",
    default=None,
    metavar="TASK_TYPE",
    help="Why the routing of a task type (review, fix, docgen, redteam) changed in the latest routing policy.",
)
def explain(run_id: str | None, task_type: str | None) -> None:
    """Print a run's stage outcomes and decisions from its persisted events (deterministic),
    or (--decision) the latest routing policy's choice for a task type with its evidence."""
    if bool(run_id) == bool(task_type):
        raise CasmError("pass --run-id RUN_ID or --decision TASK_TYPE")
    if task_type:
        from casm_dagster.economics.routing_policy import explain_decision
        from casm_dagster.resources import latest_routing_policy

        click.echo(explain_decision(latest_routing_policy(_instance()), task_type), nl=False)
        return
    from casm_dagster.run.explain import explain_run

    click.echo(explain_run(_state_dir(), run_id), nl=False)


@main.command()
@click.option("--last-run", is_flag=True, help="The most recent run in this state dir (the default).")
@click.option("--run-id", default=None, help="A CASM run id.")
@click.option(
    "--price-usd",
    type=float,
    default=None,
    help="Price charged for the run, for the margin (default: the template's economics.price_per_run_usd).",
)
@_json_option
def cost(last_run: bool, run_id: str | None, price_usd: float | None, as_json: bool) -> None:
    """Print a run's cost summary: model, tools, infra, forecast vs actual, margin."""
    from casm_dagster.cli.cost import last_run_id, render_summary

    if last_run and run_id:
        raise CasmError("pass --last-run or --run-id, not both")
    run_id = run_id or last_run_id(_state_dir())
    summary = _summary(_state_dir() / "runs" / run_id)
    if summary is None:
        raise CasmError(f"run {run_id} has no run_summary.json (it failed before its report, or predates cost reports)")
    text, data = render_summary(summary, price_usd)
    click.echo(text)
    if as_json:
        click.echo(json.dumps(data, sort_keys=True))


@main.group()
def policy() -> None:
    """Score changes with the policy engine (usable as a pre-commit hook or CI step)."""


@policy.command("check")
@click.option("--repo", type=click.Path(path_type=Path), default=None, help="The git repository [default: .]")
@click.option("--base", metavar="REV", help="Scan base...head (from their merge base), e.g. origin/main.")
@click.option("--head", metavar="REV", help="Head of the range [default: HEAD]; needs --base.")
@click.option(
    "--diff",
    "diff_file",
    type=click.File("rb"),
    default=None,
    help="Scan this unified diff instead ('-' reads stdin); --repo/--base give its base side.",
)
@click.option(
    "--ruleset",
    "ruleset_ref",
    default="default.devtools",
    show_default=True,
    metavar="ID|PATH",
    help="A bundled ruleset id or a ruleset file.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the policy_decisions.json document instead.")
def policy_check(
    repo: Path | None, base: str | None, head: str | None, diff_file, ruleset_ref: str, as_json: bool
) -> None:
    """Score a diff: the staged changes (default), a --base/--head range, or --diff.

    Exit 0 for pass or warn, 3 for gate (needs a human), 4 for block (e.g. a secret),
    2 for bad input. No raw secret or code snippet is ever printed: signals show the
    file, line, pattern id and a keyed hash of the diff hunk.
    """
    from casm_dagster.policy.check import EXIT_CODES, check, render, resolve_target

    diff_bytes = diff_file.read() if diff_file is not None else None
    target = resolve_target(repo or Path.cwd(), base, head, diff_bytes, repo_given=repo is not None)
    result, document = check(target, ruleset_ref)
    if as_json:
        click.echo(json.dumps(document, indent=2, sort_keys=True))
    else:
        click.echo(render(result), nl=False)
    sys.exit(EXIT_CODES[result.status])


def _approvals(instance):
    from casm_dagster.cli.launch import approvals

    return approvals(instance)


def _tag_gated_run(instance, record, value: str) -> None:
    """Keep the gated Dagster run's ``casm/hitl`` tag in step with the decision."""
    from casm_dagster.policy import hitl

    dagster_run_id = hitl.gated_dagster_run_id(record)
    if dagster_run_id and instance.get_run_by_id(dagster_run_id):
        instance.add_run_tags(dagster_run_id, {"casm/hitl": value})


def _decide(run_id: str, outcome: str, reason: str, scope: str) -> None:
    from casm_dagster.policy import hitl

    instance = _instance()
    store = _approvals(instance)
    record = hitl.require_request(store, run_id)
    decided = hitl.decide(store, record, outcome, hitl.local_user(), reason, via="local", scope=scope)
    _tag_gated_run(instance, record, outcome)
    click.echo(f"request {decided.request_id} for run {run_id}: {decided.status} by {decided.approver}")
    if outcome == "approved":
        click.echo(
            "  the hitl_approval_sensor launches the continuation on its next tick when the Dagster daemon "
            f"runs (dagster dev); to continue now: casm resume --run-id {run_id}"
        )
    else:
        click.echo("  the run ends here: nothing is applied")


_reason_option = click.option("--reason", required=True, help="Why (required; logged with the decision).")


@main.command()
@click.option("--run-id", required=True, help="The gated run's id.")
@_reason_option
@click.option(
    "--scope",
    type=click.Choice(["packet", "full"]),
    default="packet",
    show_default=True,
    help="packet: apply only the decision packet's allowed files; full: every file of the plan.",
)
def approve(run_id: str, reason: str, scope: str) -> None:
    """Approve a run the policy held (local HITL mode), as your OS account.

    The continuation applies exactly the plan that was approved: if the plan or the
    ruleset changed since, the approval is void and nothing is applied.
    """
    _decide(run_id, "approved", reason, scope)


@main.command()
@click.option("--run-id", required=True, help="The gated run's id.")
@_reason_option
def deny(run_id: str, reason: str) -> None:
    """Deny a run the policy held: it ends with status "denied" and nothing is applied."""
    _decide(run_id, "denied", reason, "packet")


@main.command()
@click.option("--run-id", required=True, help="The approved run's id.")
@_json_option
def resume(run_id: str, as_json: bool) -> None:
    """Run the continuation of an approved run now, in this process (instead of waiting for the sensor).

    Safe to race with the sensor: the approval is consumed exactly once.
    """
    from casm_dagster.cli.launch import launch_continuation
    from casm_dagster.policy import hitl

    instance = _instance()
    record = hitl.require_request(_approvals(instance), run_id)
    if record.status != "approved":
        raise CasmError(
            f"run {run_id} cannot continue: its request {record.request_id} is {record.status}"
            + (f" (casm approve --run-id {run_id} --reason ...)" if record.status == "pending" else "")
        )
    if record.consumed_at:
        raise CasmError(
            f"run {run_id} was already continued (Dagster run {record.continuation_run_id}, "
            f"{record.outcome or 'in progress'}): an approval is used once"
        )
    result = launch_continuation(instance, record.request_id, _state_dir(), progress=True)
    state = result.state
    status = state.status if state else "failed"
    click.echo(f"run {run_id}: {status} (continuation Dagster run {result.dagster_run_id})")
    click.echo(f"  branch:    {(state.branch if state else None) or 'none'}")
    click.echo(f"  explain:   casm explain --run-id {run_id}")
    if as_json:
        payload = {
            "run_id": run_id,
            "status": status,
            "branch": state.branch if state else None,
            "dagster_run_id": result.dagster_run_id,
            "request_id": record.request_id,
        }
        click.echo(json.dumps(payload, sort_keys=True))
    sys.exit(RUN_EXIT_CODES.get(status, EXIT_RUN_FAILED))


@main.group()
def hitl() -> None:
    """Inspect human-in-the-loop approval requests."""


@hitl.command("list")
@click.option(
    "--status",
    type=click.Choice(["pending", "approved", "denied", "expired", "all"]),
    default="pending",
    show_default=True,
)
def hitl_list(status: str) -> None:
    """List approval requests: request id, run id, status, expiry, repo, reasons."""
    records = _approvals(_instance()).list(None if status == "all" else status)
    if not records:
        click.echo(f"no {'' if status == 'all' else status + ' '}approval requests")
    for r in records:
        codes = ",".join(r.packet.get("reason_codes", []))
        click.echo(f"{r.request_id}\t{r.run_id}\t{r.status}\t{r.expires_at}\t{r.repo}\t{codes}")


@main.group()
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


@main.group()
def repos() -> None:
    """Register repositories as Dagster `repos` partitions."""


@repos.command("add")
@click.argument("path")
def repos_add(path: str) -> None:
    """Register a local git repository (adds its dynamic partition)."""
    from casm_dagster.cli.launch import register_local_repo
    from casm_dagster.run.spec import resolve_local_repo

    info = resolve_local_repo(path)
    record = register_local_repo(_instance(), info.root)
    click.echo(f"{record.partition_key}\t{record.location}")


@repos.command("list")
def repos_list() -> None:
    """List registered repositories: partition key, kind, location."""
    from casm_dagster.cli.launch import registry

    records = registry(_instance()).list()
    if not records:
        click.echo("no repos registered (casm repos add PATH)")
    for record in records:
        click.echo(f"{record.partition_key}\t{record.kind}\t{record.location}")


@main.group(invoke_without_command=True)
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
    help="What the heartbeat runs. A PR template (pr-sentinel) here means: watch PRs only, no heartbeat audit.",
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
    from casm_dagster.cli.sentinel import register

    record, notes = register(_instance(), repo, schedule, template_ref, None if no_prs else pr_template)
    for note in notes:
        click.echo(f"casm: note: {note}", err=True)
    heartbeat = f"{record.schedule} heartbeat: {record.template}" if record.template else "no heartbeat audit"
    prs = f"PRs: {record.pr_template}" if record.pr_template else "PRs not watched"
    click.echo(f"{record.repo} registered as partition {record.partition_key} ({heartbeat}; {prs})")


@sentinel.command("list")
@_json_option
def sentinel_list(as_json: bool) -> None:
    """List registered repos: partition, schedule, heartbeat template, PR template."""
    from casm_dagster.cli.sentinel import describe, store

    records = store(_instance()).list()
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
    from casm_dagster.cli.sentinel import remove

    if not remove(_instance(), target):
        raise CasmError(f"{target} is not registered (see `casm sentinel list`)")
    click.echo(f"{target} removed")


@main.group(invoke_without_command=True)
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
    from casm_dagster.cli.sentinel import handle, read_payload

    data = read_payload(payload)
    click.echo(json.dumps(handle(_instance(), event, data, dry_run, delivery_id), indent=2, sort_keys=True))


@webhook.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8787, show_default=True)
def webhook_serve(host: str, port: int) -> None:
    """Receive GitHub webhooks over HTTP (secret from CASM_WEBHOOK_SECRET; Ctrl-C stops)."""
    import os

    from casm_dagster.cli.sentinel import SECRET_ENV, serve

    secret = os.environ.get(SECRET_ENV, "")
    if len(secret) < 16:
        raise CasmError(f"set {SECRET_ENV} to the webhook's secret (16+ characters): unsigned hooks are refused")
    server = serve(_instance(), host, port, secret, lambda line: click.echo(line, err=True))
    click.echo(f"casm: receiving webhooks on http://{host}:{server.server_address[1]}/", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
