"""The analyze stage: the reviewer's findings (deterministic analysers, then the model
review the model plan includes) and the baseline run of the allowlisted checks."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import sqlalchemy as sa

from casm_dagster.agents import js_tools, model_agents, reviewer, validator
from casm_dagster.contracts.environment import Environment
from casm_dagster.contracts.findings import AnalyserRun, Review
from casm_dagster.contracts.run import Snapshot
from casm_dagster.environments import build
from casm_dagster.prsentinel.scope import restrict
from casm_dagster.run.files import REVIEW_FILE, planned_tasks, save, save_checks, save_environment
from casm_dagster.run.journal import Journal, skipped, stage
from casm_dagster.run.workspace import scratch_checkout
from casm_dagster.safety.repo_scan import scan
from casm_dagster.safety.sandbox import ENVS_DIR, Sandbox
from casm_dagster.stages.model_work import open_model_session, record_tally


def setup_environment(journal: Journal, box: Sandbox, tree: Path) -> Environment:
    """The repo's own environment for its checks, built (or reused) the way the repo builds
    itself; recorded in the run dir. A failure is said exactly, and is no finding."""
    cache = box.env_cache or Path(journal.spec.state_dir) / ENVS_DIR
    env = build.prepare(tree, cache, box.timeout_s, box.allow_commands)
    save_environment(journal.run_dir, env)
    if env.status == "failed":
        journal.decision("analyze", "environment_failed", env.detail)
    elif env.status == "ready":
        how = "reused" if env.cached else "built"
        journal.decision("analyze", "environment_ready", f"{how} in {env.seconds:.1f}s: {env.detail}", key=env.key)
    return env


EMPTY = Review(findings=[], analysers=[], skipped_files=[], languages=[], files_audited=0, loc_audited=0)


def analyze(
    snap: Snapshot, journal: Journal, engine: sa.Engine | None = None, providers: Mapping[str, str] | None = None
) -> Review:
    if skipped(journal, "analyze"):
        return EMPTY
    spec = snap.spec
    with stage(journal, "analyze", "running analysers and the baseline checks"):
        box = Sandbox.for_run(spec)
        with scratch_checkout(Path(spec.repo_path), snap.head_commit) as tree:
            inventory = restrict(scan(tree), journal.run_dir)  # pr-sentinel: the PR's files
            checks = validator.applicable_checks(box, tree, inventory)
            # The code analysers read the tree while the environment is set up and the
            # baseline checks run: the two are independent, and tests are the long pole.
            with ThreadPoolExecutor(max_workers=1) as pool:
                static = pool.submit(reviewer.static_findings, tree, inventory)
                # The JS/TS tools a repo declares (and the template allows) run from it too,
                # once it is set up, also beside the checks (they only read the tree).
                wanted = checks or any(t.check in box.allow_commands for t in js_tools.declared(tree))
                env = setup_environment(journal, box, tree) if wanted else None
                js = pool.submit(reviewer.analyse_js, Sandbox.for_run(spec, env), tree, inventory)
                baseline = []
                if env is None or env.status != "failed":
                    baseline = validator.run_checks(Sandbox.for_run(spec, env), checks, tree, "before")
                raw, runs = static.result()
                js_raw, js_runs = js.result()
            raw, runs = [*raw, *js_raw], [*runs, *js_runs]
            findings, analysers = reviewer.conclude(raw, runs, baseline, inventory)
            tasks = planned_tasks(journal.run_dir, "review")
            session = open_model_session(snap, journal, engine, providers) if tasks else None
            if session is not None:
                files = {f.path: f for f in inventory.files}
                found, tally = model_agents.review(session.router, tasks, files, spec.manifest.routing.max_parallel)
                known = {f.id for f in findings}
                extra = []
                for item in found:  # the same model finding twice counts once
                    if item.id not in known:
                        known.add(item.id)
                        extra.append(item)
                findings = sorted([*findings, *extra], key=lambda f: (f.file, f.line, f.analyser, f.rule, f.message))
                offline = spec.models.offline
                analysers.append(
                    AnalyserRun(
                        name="model-review",
                        status="skipped" if offline else "ran",
                        detail=(
                            "offline: no model provider key is set, no model was called"
                            if offline
                            else f"{tally.done} files reviewed by a model, {tally.dropped} dropped"
                        ),
                        files=tally.done,
                        findings=len(extra),
                    )
                )
                record_tally(journal, "analyze", "model review", tally)
        result = Review(
            findings=findings,
            analysers=analysers,
            skipped_files=inventory.skipped,
            languages=inventory.languages,
            files_audited=len(inventory.files),
            loc_audited=sum(f.loc for f in inventory.files),
        )
        save_checks(journal.run_dir, baseline)
        save(journal.run_dir, REVIEW_FILE, result)
        for run in analysers:
            if run.status != "ran":
                journal.decision("analyze", f"analyser_{run.status}", f"analyser {run.name} {run.status}: {run.detail}")
        for item in inventory.skipped:
            journal.decision("analyze", "file_skipped", f"skipped {item.path!r}: {item.reason}", path=item.path)
        journal.emit(
            "stage_completed",
            f"{len(findings)} findings in {len(inventory.files)} files",
            stage="analyze",
            findings=len(findings),
            checks=len(baseline),
            severity=reviewer.severity_counts(findings),
        )
    return result
