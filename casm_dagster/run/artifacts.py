"""The run's artifacts: ``report.md``, ``cost_report.md``, ``issues.json``, ``plan.json``,
``validation.json``. Written into the run dir first, then copied to the artifacts dir, so
``.casm/runs/<run_id>/`` always keeps every run's full set.
"""

from __future__ import annotations

import fcntl
import shutil
from pathlib import Path

from casm_dagster.agents.reviewer import severity_counts
from casm_dagster.contracts.environment import Environment
from casm_dagster.contracts.findings import Review
from casm_dagster.contracts.plan import PatchPlan
from casm_dagster.contracts.policy import PolicyDecision
from casm_dagster.contracts.run import Delivery, RunSpec, Snapshot
from casm_dagster.contracts.validation import CheckRun, Validation
from casm_dagster.cost.run_cost import RunCost, mode_label, summary_table
from casm_dagster.run.files import ARTIFACT_DEFAULTS, POLICY_FILE, load_environment
from casm_dagster.run.journal import Journal, write_json_atomic, write_text_atomic
from casm_dagster.safety.markdown import inert, inert_path
from casm_dagster.safety.redact import redact

MAX_FINDINGS_IN_REPORT = 200
# Written by casm_dagster.cost.proof (the last four only in proof mode).
COST_FILES = ("run_summary.json", "routing_decisions.json", "cost_forecast.json", "run_replay.sh")


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def issues_document(snap: Snapshot, review: Review) -> dict:
    return {
        "schema_version": "0.1",
        "run_id": snap.spec.run_id,
        "repo": snap.spec.repo,
        "commit": snap.head_commit,
        "analysers": [a.model_dump(mode="json") for a in review.analysers],
        "skipped_files": [s.model_dump(mode="json") for s in review.skipped_files],
        "summary": {
            "total": len(review.findings),
            "by_severity": severity_counts(review.findings),
            "auto_fixable": sum(f.auto_fixable for f in review.findings),
        },
        "findings": [f.model_dump(mode="json") for f in review.findings],
    }


def render_policy(decision: PolicyDecision | None, run_id: str) -> list[str]:
    lines = ["", "## Policy", ""]
    if decision is None or decision.status == "skipped":
        return [*lines, "Not evaluated (the workflow has no policy stage)."]
    lines.append(
        f"**{decision.status.upper()}** — risk {decision.score:.2f}; "
        f"ruleset `{decision.ruleset_id}` (`{decision.ruleset_sha256[:12]}`); "
        f"reasons: {', '.join(f'`{c}`' for c in decision.reason_codes) or 'none'}."
    )
    lines.append("")
    lines.append(_md_cell(decision.summary))
    if decision.status in ("gate", "block"):
        lines += ["", f"- Allowed files: {', '.join(f'`{_md_cell(f)}`' for f in decision.allow_files) or 'none'}"]
        lines.append(f"- Denied files: {', '.join(f'`{_md_cell(f)}`' for f in decision.deny_files) or 'none'}")
        lines.append(f"- Suggested scope: {_md_cell(decision.scope_notes)}")
    if decision.status == "gate" and decision.request_id:
        lines += [
            "",
            f"Held for approval: request `{decision.request_id}`, expires {decision.expires_at}.",
            f'Approve: `casm approve --run-id {run_id} --reason "..."` (add `--scope full` to apply the denied '
            f'files too); deny: `casm deny --run-id {run_id} --reason "..."`.',
        ]
    lines += ["", "Signals and evidence hashes: `policy_decisions.json` (no secret or snippet is stored)."]
    return lines


def _check_cell(check: CheckRun) -> str:
    tests = check.tests
    if tests is None:
        return f"{check.status} ({check.duration_s:.1f}s)"
    passed = sum(o == "passed" for o in tests.values())
    failed = sum(o in ("failed", "error") for o in tests.values())
    return f"{check.status}: {passed} passed, {failed} failed ({check.duration_s:.1f}s)"


def group_verdict(group_id: str, validation: Validation) -> str:
    """What the validator says of one patch group, in words a maintainer can act on."""
    if group_id in validation.rejected_groups:
        return f"rejected: {validation.rejected_groups[group_id]}"
    if group_id in validation.unvalidated_groups:
        delivered = group_id in validation.accepted_groups
        return ("delivered, " if delivered else "") + validation.unvalidated_groups[group_id]
    if group_id not in validation.accepted_groups:
        return "not delivered (not applied)"
    tests = sum(len([o for o in (c.tests or {}).values() if o == "passed"]) for c in validation.after())
    if tests:
        return f"accepted: validated by {tests} passing test{'s' if tests != 1 else ''}"
    checks = ", ".join(f"`{c.command}`" for c in validation.after() if c.status == "passed")
    return f"accepted: validated by {checks}" if checks else "accepted"


def render_report(
    snap: Snapshot,
    review: Review,
    plan: PatchPlan,
    validation: Validation,
    branch: str | None,
    cost: RunCost,
    decision: PolicyDecision | None = None,
    environment: Environment | None = None,
) -> str:
    spec = snap.spec
    lines = [
        f"# CASM {spec.template_id} report",
        "",
        f"- Run: `{spec.run_id}`",
        f"- Repository: `{spec.repo}` at `{snap.head_commit[:12]}` ({snap.head_ref})",
        f"- Workflow: `{spec.workflow}` — stages: {', '.join(spec.stages)}",
        f"- Branch: `{branch}`" if branch else "- Branch: none (no accepted patch)",
        f"- Model provider: {mode_label(cost)}",
    ]
    if snap.dirty:
        lines.append("- Note: the working tree had uncommitted changes; the audit covers HEAD only.")
    lines += render_policy(decision, spec.run_id)
    lines += ["", "## Review summary", ""]
    counts = severity_counts(review.findings)
    lines.append(
        f"{len(review.findings)} findings in {review.files_audited} files "
        f"({review.loc_audited} lines of code; languages: {', '.join(review.languages) or 'none'}): "
        + ", ".join(f"{n} {sev}" for sev, n in counts.items())
        + "."
    )
    fixable = sum(f.auto_fixable for f in review.findings)
    lines.append(f"{fixable} are auto-fixable; {len(review.findings) - fixable} need a human.")
    lines += [
        "",
        "### Analysers",
        "",
        "| analyser | status | files | findings | detail |",
        "|---|---|---|---|---|",
    ]
    for run in review.analysers:
        lines.append(f"| {run.name} | {run.status} | {run.files} | {run.findings} | {_md_cell(run.detail)} |")
    if review.skipped_files:
        lines += ["", "### Files not read", ""]
        lines += [f"- {inert_path(s.path)} — {s.reason}" for s in review.skipped_files]
    lines += [
        "",
        "### Findings",
        "",
        "| severity | rule | location | message | auto-fix |",
        "|---|---|---|---|---|",
    ]
    for f in review.findings[:MAX_FINDINGS_IN_REPORT]:
        # The path and the message are the repo's (a TODO's words) or a model's: inert.
        where = inert_path(f"{f.file}:{f.line}" if f.line else f.file) if f.file else "repo"
        lines.append(
            f"| {f.severity} | {f.analyser}:{inert(f.rule, 80)} | {where} | {inert(f.message, 500)} | "
            f"{'yes' if f.auto_fixable else 'no'} |"
        )
    if len(review.findings) > MAX_FINDINGS_IN_REPORT:
        lines.append(f"\n…and {len(review.findings) - MAX_FINDINGS_IN_REPORT} more in issues.json.")
    lines += ["", "## Patch set", ""]
    if not plan.groups:
        lines.append("No patches.")
    for group in plan.groups:
        verdict = group_verdict(group.group_id, validation)
        lines.append(
            f"- `{group.group_id}` {group.title} — {len(group.files)} files, "
            f"+{group.lines_added}/-{group.lines_removed} — {verdict} (`{group.patch_file}`)"
        )
    for note in plan.notes:
        lines.append(f"- note: {_md_cell(note)}")
    lines += ["", f"Plan hash: `{plan.plan_sha256}`", "", "## Test results", ""]
    if environment is not None:
        how = {"ready": "reused" if environment.cached else "built", "failed": "FAILED", "none": "none"}
        lines.append(f"Environment ({how[environment.status]}): {_md_cell(environment.detail)}")
        lines.append("")
    if not validation.checks:
        lines.append("No allowlisted check ran in this repository.")
    else:
        lines += ["| command | before | after | network |", "|---|---|---|---|"]
        after = {c.command: c for c in validation.after()}
        for check in validation.before():
            post = after.get(check.command)
            lines.append(
                f"| `{_md_cell(check.command)}` | {_check_cell(check)} | "
                f"{_check_cell(post) if post else 'not run'} | {check.network} |"
            )
        for check in validation.after():
            if check.flaky:
                lines.append(f"\nFlaky (failed, then passed on a re-run): {', '.join(check.flaky[:20])}")
        not_enforced = [c for c in validation.checks if c.network == "not_enforced"]
        if not_enforced:
            lines.append(f"\nNetwork isolation was NOT enforced: {not_enforced[0].network_detail}")
    if validation.benchmarks:
        lines += [
            "",
            "## Benchmarks",
            "",
            "| command | before (median s) | after (median s) | change |",
            "|---|---|---|---|",
        ]
        for b in validation.benchmarks:
            change = f"{b.change_pct:+.2f}%" if b.change_pct is not None else b.detail
            lines.append(f"| `{_md_cell(b.command)}` | {b.before_median_s} | {b.after_median_s} | {change} |")
    lines += ["", "## Cost", "", summary_table(cost), "", "Details per stage, task and call: `cost_report.md`.", ""]
    return redact("\n".join(lines) + "\n")


def artifact_names(spec: RunSpec) -> dict[str, str]:
    """The run's artifact file names: the defaults, as the template's ``outputs`` renamed them."""
    return ARTIFACT_DEFAULTS | spec.effective_config.artifact_names


def write_all(
    snap: Snapshot,
    review: Review,
    plan: PatchPlan,
    validation: Validation,
    branch: str | None,
    cost: RunCost,
    journal: Journal,
    decision: PolicyDecision | None = None,
) -> Delivery:
    spec = snap.spec
    run_dir = spec.run_dir
    names = artifact_names(spec)
    write_text_atomic(
        run_dir / names["report_md"],
        render_report(snap, review, plan, validation, branch, cost, decision, load_environment(journal.run_dir)),
    )
    write_json_atomic(run_dir / names["issues_json"], issues_document(snap, review))
    write_json_atomic(run_dir / "plan.json", plan.model_dump(mode="json"))
    write_json_atomic(run_dir / "validation.json", validation.model_dump(mode="json"))
    artifacts = Path(spec.artifacts_dir)
    publish_artifacts(spec, list(names.values()))
    status = "delivered" if branch else ("no_changes" if "apply" in spec.stages else "not_applicable")
    return Delivery(
        status=status,
        branch=branch,
        report=str(artifacts / names["report_md"]),
        artifacts_dir=str(artifacts),
        run_dir=str(run_dir),
        findings=len(review.findings),
        patches=len(validation.accepted_groups),
        checks=len({c.command for c in validation.checks}),  # distinct checks run (before and after)
    )


def publish_artifacts(spec: RunSpec, names: list[str]) -> None:
    """Copy this run's files to the artifacts dir, with ``run.json`` naming the run; drop a
    previous run's files this run lacks. Runs sharing the dir (the default ``.casm/artifacts``)
    publish one at a time, so the dir always holds one run's complete set, never a mix."""
    artifacts = Path(spec.artifacts_dir)
    artifacts.mkdir(parents=True, exist_ok=True)
    with open(artifacts / ".casm-publish.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for name in [*names, "plan.json", "validation.json", POLICY_FILE, *COST_FILES]:
            source, target = spec.run_dir / name, artifacts / name
            if source.exists():
                shutil.copyfile(source, target)
                if name.endswith(".sh"):
                    target.chmod(0o755)
            elif target.exists():
                target.unlink()  # a previous run's file must not pass for this run's
        if (artifacts / "patches").exists():
            shutil.rmtree(artifacts / "patches")
        if (spec.run_dir / "patches").exists():
            shutil.copytree(spec.run_dir / "patches", artifacts / "patches", copy_function=_copy_redacted)
        write_json_atomic(artifacts / "run.json", {"run_id": spec.run_id, "run_dir": str(spec.run_dir)})


def _copy_redacted(source: str, target: str) -> None:
    """Published patches carry no token-shaped values (context lines may hold the repo's own
    secrets); the run dir keeps the exact patches the continuation applies."""
    data = Path(source).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        shutil.copyfile(source, target)
        return
    Path(target).write_text(redact(text), encoding="utf-8")


def write_held(
    snap: Snapshot, review: Review, plan: PatchPlan, decision: PolicyDecision, journal: Journal, cost: RunCost
) -> Path:
    """The report of a run the policy stopped before apply (held for approval, or blocked)."""
    spec = snap.spec
    names = artifact_names(spec)
    nothing = Validation(checks=[], accepted_groups=[], rejected_groups={}, final_commit=None)
    text = render_report(snap, review, plan, nothing, None, cost, decision)
    verdict = "held for approval" if decision.status == "gate" else "blocked by policy"
    text = text.replace("## Patch set\n", f"## Patch set ({verdict}: nothing applied)\n", 1)
    write_text_atomic(spec.run_dir / names["report_md"], text)
    write_json_atomic(spec.run_dir / names["issues_json"], issues_document(snap, review))
    write_json_atomic(spec.run_dir / "plan.json", plan.model_dump(mode="json"))
    (spec.run_dir / "validation.json").unlink(missing_ok=True)
    publish_artifacts(spec, list(names.values()))
    return Path(spec.artifacts_dir) / names["report_md"]


def write_stopped(spec: RunSpec, reason: str, cost: RunCost, journal: Journal) -> Path:
    """The report of a run the budget stopped before any model call."""
    names = artifact_names(spec)
    text = "\n".join(
        [
            f"# CASM {spec.template_id} report",
            "",
            f"- Run: `{spec.run_id}`",
            f"- Repository: `{spec.repo}`",
            "- Status: **stopped by the budget** before any model call; nothing reviewed, fixed or applied.",
            "",
            _md_cell(reason),
            "",
            "## Cost",
            "",
            summary_table(cost),
            "",
        ]
    )
    write_text_atomic(spec.run_dir / names["report_md"], redact(text))
    for stale in ("issues_json",):
        (spec.run_dir / names[stale]).unlink(missing_ok=True)
    publish_artifacts(spec, list(names.values()))
    return Path(spec.artifacts_dir) / names["report_md"]


def publish_here(run_dir: Path, state_dir: Path, artifacts_dir: Path) -> bool:
    """The artifacts of a run another host executed, from the run folder it published
    (pulled into ``state_dir``), into this host's ``artifacts_dir``; False before spec.json."""
    if not (run_dir / "spec.json").is_file():
        return False
    spec = RunSpec.model_validate_json((run_dir / "spec.json").read_text(encoding="utf-8"))
    here = spec.model_copy(update={"state_dir": str(state_dir), "artifacts_dir": str(artifacts_dir)})
    publish_artifacts(here, ["pr_comment.md", *artifact_names(here).values()])  # pr-sentinel's comment too
    return True
