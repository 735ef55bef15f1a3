"""``casm run`` and ``casm demo``: one audit through Dagster, and its summary."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from casm_dagster.cli.common import (
    EXIT_RUN_FAILED,
    RUN_EXIT_CODES,
    check_sarif_path,
    ignore_own_dir,
    json_option,
    open_instance,
    read_summary,
    sarif_option,
    state_dir,
)
from casm_dagster.errors import CasmError

if TYPE_CHECKING:
    from casm_dagster.run.spec import RunOptions


artifacts_option = click.option(
    "--artifacts-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".casm/artifacts"),
    show_default=True,
    help="Where report.md, cost_report.md, issues.json and patches/ are copied.",
)
seed_option = click.option(
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
    template_ref: str,
    repo: str,
    artifacts_dir: Path,
    as_json: bool,
    seed: int,
    options: RunOptions | None = None,
    sarif_path: Path | None = None,
    submit: bool = False,
    workspace: Path | None = None,
) -> None:
    """``submit``: through the instance's run queue (code location from ``workspace``),
    followed to its end; otherwise the run executes in this process."""
    from casm_dagster.resources import CasmResource, GitHubResource
    from casm_dagster.run.spec import resolve_repo
    from casm_dagster.run.templates import load_template

    # Validate everything before anything is written.
    template = load_template(template_ref)
    options = options or _run_options({})
    if artifacts_dir.exists() and not artifacts_dir.is_dir():
        raise CasmError(f"--artifacts-dir {artifacts_dir} exists and is not a directory")
    check_sarif_path(sarif_path)
    if submit:
        from casm_dagster.cli.submit import given_workspace

        workspace = given_workspace(workspace)
    info, github = resolve_repo(repo, state_dir(), options.pr, connect=GitHubResource.from_env().get_client)
    if info.dirty:
        click.echo(
            f"casm: note: {info.root} has uncommitted changes; auditing HEAD {info.head_commit[:12]} only", err=True
        )
    # Fail on a bad flag, manifest field or ruleset before Dagster's instance is created or
    # touched (the asset would fail the same way, later, with the instance written).
    from casm_dagster.run.spec import build_spec

    build_spec(template, repo, info, state_dir(), artifacts_dir.resolve(), seed, "PREFLIGHT", options, github)
    instance = open_instance()
    ignore_own_dir(artifacts_dir)
    from casm_dagster.cli.launch import launch_audit, prepare, recover

    for note in recover(instance, state_dir()):
        click.echo(f"casm: note: {note}", err=True)
    ref = str(template.path) if Path(template_ref).suffix in (".yaml", ".yml") else template.id
    target = f"{github.repo}@{github.head_commit[:12]}" if github else str(info.root)
    click.echo(f"casm: {template.id} on {target} (stages: {', '.join(template.stages)})", err=True)
    _announce_policy(instance)
    # A submitted run on a shared instance (PostgreSQL) may execute on another host: it keeps
    # its files under that host's own state dir, and the run folder comes back through the store.
    shared = submit and CasmResource(state_dir=str(state_dir())).run_files(instance) is not None
    launch = prepare(
        instance, template, ref, repo, info.root, state_dir(), artifacts_dir.resolve(), seed,
        not submit,  # the stages print progress only in this process; --submit follows the journal
        options, github.repo if github else None, own_paths=not shared,
    )  # fmt: skip
    if submit:
        from casm_dagster.cli.submit import default_workspace, follow, submit_run

        dagster_run_id = submit_run(launch, workspace or default_workspace(state_dir()))
        click.echo(f"casm: submitted run {launch.run_id} to the run queue (Dagster run {dagster_run_id})", err=True)
        result = follow(instance, dagster_run_id, launch, state_dir(), artifacts_dir.resolve())
        if shared:
            from casm_dagster.run.artifacts import publish_here

            publish_here(result.run_dir, state_dir(), artifacts_dir.resolve())
    else:
        result = launch_audit(instance, launch, repo, state_dir())
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
    summary = read_summary(result.run_dir)
    if summary:
        totals = summary["totals"]
        click.echo(
            f"  cost:      ${float(totals['run_cost_usd']):.6f} (model ${float(totals['llm_usd']):.6f}, "
            f"{_calls(summary)}, {summary['model_mode']}); forecast P50 "
            f"${float(summary['forecast']['p50_usd'] or 0):.6f}"
        )
        counterfactual = _counterfactual(summary)
        if counterfactual:
            click.echo(f"  replay:    {counterfactual}")
    if sarif_path is not None:
        click.echo(f"  sarif:     {_write_sarif(sarif_path, result.run_dir, state)}")
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


def _write_sarif(path: Path, run_dir: Path, state) -> str:
    from casm_dagster.run.sarif import sarif_for_run, write_sarif

    log = sarif_for_run(run_dir, state.head_commit if state else None)
    if log is None:
        # An empty SARIF upload would close every open code-scanning alert as fixed.
        return "not written (the run ended before its analysis; an empty upload would close open alerts)"
    write_sarif(path, log)
    return f"{path.resolve()} ({len(log['runs'][0]['results'])} results)"


def _calls(summary: dict) -> str:
    """Offline answers are not model calls: say so instead of counting them."""
    if summary["model_mode"].startswith("offline"):
        return "no model called"
    return f"{summary['calls']['count']} calls"


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


def _counterfactual(summary: dict) -> str | None:
    """For a replay: what the same run cost originally, and what it costs under this replay's
    routing and prices."""
    state = json.loads((state_dir() / "runs" / summary["run_id"] / "state.json").read_text(encoding="utf-8"))
    original_id = state["effective_config"]["run"]["models"].get("replay_of")
    if not original_id:
        return None
    original = read_summary(state_dir() / "runs" / original_id)
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


@click.command()
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
@artifacts_option
@json_option
@seed_option
@sarif_option
@click.option(
    "--submit",
    is_flag=True,
    help="Submit the run to the Dagster instance's run queue (dagster-daemon starts it with the instance's "
    "run launcher, one per repo at a time) and follow it to its end, instead of running it in this process.",
)
@click.option(
    "--workspace",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="With --submit: the workspace file the daemon uses (default: $CASM_WORKSPACE, else CASM's "
    "definitions as code location `casm`).",
)
@_replay_flags
def run(
    template_ref: str,
    repo: str,
    artifacts_dir: Path,
    as_json: bool,
    seed: int,
    sarif_path: Path | None,
    submit: bool,
    workspace: Path | None,
    **flags,
) -> None:
    """Run one audit of a repository through Dagster.

    Audits the committed HEAD (uncommitted changes are reported and left alone) and, when
    fixes pass validation, creates the branch casm/<template>/<run_id> without touching
    your working tree. The policy engine scores the planned patch before it is applied.

    Models are reached through the cost-aware router when a provider key is set
    (OPENAI_API_KEY, ANTHROPIC_API_KEY, MOONSHOT_API_KEY, HF_TOKEN); otherwise the
    offline provider answers (no model called, $0). The forecast stage fits the run to
    the budget: downgrade models, then reduce scope, then stop.

    By default the run executes in this process (refused while another run audits the
    repo); with --submit it goes through the instance's run queue and this command follows
    it: same output, same exit codes.

    Exit 0 on success, 1 if the run failed, 2 on bad input, 3 if the policy held the
    run for approval (see `casm approve`), 4 if the policy blocked it, 5 if the budget
    stopped it before any model call.
    """
    if workspace is not None and not submit:
        raise CasmError("--workspace is for --submit")
    _run(template_ref, repo, artifacts_dir, as_json, seed, _run_options(flags), sarif_path, submit, workspace)


@click.command()
@click.option("--template", "template_ref", default="repo-auditor", show_default=True, metavar="ID|PATH")
@artifacts_option
@json_option
@seed_option
@_replay_flags
def demo(template_ref: str, artifacts_dir: Path, as_json: bool, seed: int, **flags) -> None:
    """Audit a fresh copy of the bundled demo repo (a temp git repo) on the embedded defaults."""
    from casm_dagster.cli.demo import make_demo_repo

    repo = make_demo_repo()
    click.echo(f"casm: demo repo created at {repo}", err=True)
    _run(template_ref, str(repo), artifacts_dir, as_json, seed, _run_options(flags))
