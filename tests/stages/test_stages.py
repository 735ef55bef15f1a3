"""The audit's stages as plain functions (no Dagster): ingest → forecast → analyze → plan →
policy → apply → validate → report → telemetry on a real git repo, and the first stage's
asset called directly with a built asset context."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
from helpers import git, make_repo

from casm_dagster.assets.stages import patch_plan, review_findings
from casm_dagster.cli.stores import register_local_repo
from casm_dagster.resources import CasmResource, ModelProvidersResource
from casm_dagster.run.journal import Journal
from casm_dagster.run.spec import build_spec, resolve_local_repo
from casm_dagster.run.templates import load_template
from casm_dagster.stages.analyze import analyze
from casm_dagster.stages.apply import apply
from casm_dagster.stages.forecast import forecast
from casm_dagster.stages.ingest import ingest
from casm_dagster.stages.plan import plan
from casm_dagster.stages.policy import policy
from casm_dagster.stages.report import report
from casm_dagster.stages.telemetry import telemetry
from casm_dagster.stages.validate import validate
from casm_dagster.stores.approvals import ApprovalStore
from casm_dagster.stores.db import engine_for

# One unused import ruff fixes, and a test that keeps passing after the fix.
FILES = {
    "pyproject.toml": '[project]\nname = "tiny"\nversion = "0"\n\n[tool.ruff.lint]\nselect = ["F"]\n',
    "tiny.py": "import os\n\n\ndef add(a, b):\n    return a + b\n",
    "test_tiny.py": "from tiny import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n",
}


def _spec(repo: Path, tmp_path: Path):
    template = load_template("repo-auditor")
    return build_spec(template, str(repo), resolve_local_repo(str(repo)), tmp_path / "state", tmp_path / "artifacts")


def test_the_stages_run_as_plain_functions_and_deliver_a_validated_branch(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "tiny", FILES)
    head = git(repo, "rev-parse", "HEAD")
    spec = _spec(repo, tmp_path)
    journal = Journal(spec)
    engine = engine_for(f"sqlite:///{tmp_path / 'casm.db'}")

    snap = ingest(spec, journal)
    assert snap.head_commit == head
    assert forecast(snap, journal, engine).proceeds
    review = analyze(snap, journal, engine)
    assert any(f.rule == "F401" and f.file == "tiny.py" for f in review.findings)
    planned = plan(snap, review, journal, engine)
    assert planned.groups
    decision = policy(snap, review, planned, journal, ApprovalStore(engine), engine)
    assert decision.proceeds, decision.summary
    applied = apply(snap, planned, journal)
    validation = validate(snap, planned, applied, journal)
    assert validation.accepted_groups and validation.final_commit
    delivery = report(snap, review, planned, validation, journal, engine, decision)
    summary = telemetry(spec, journal, engine)

    assert delivery.status == "delivered" and delivery.branch
    assert git(repo, "rev-parse", delivery.branch) == validation.final_commit
    assert "import os" not in git(repo, "show", f"{delivery.branch}:tiny.py")
    assert git(repo, "rev-parse", "HEAD") == head and git(repo, "status", "--porcelain") == ""
    assert summary["run_id"] == spec.run_id
    state = json.loads((spec.run_dir / "state.json").read_text(encoding="utf-8"))
    assert state["status"] == "succeeded"
    assert set(state["stages"].values()) <= {"completed", "skipped"}, state["stages"]
    assert state["stages"]["telemetry"] == state["stages"]["validate"] == "completed"


def test_the_review_and_plan_assets_run_on_a_built_asset_context(tmp_path: Path) -> None:
    """The asset bodies, called directly on their partition (the atproto style): each hands
    its stage's value to Dagster with the metadata the UI shows."""
    repo = make_repo(tmp_path / "tiny", FILES)
    casm = CasmResource(state_dir=str(tmp_path / "state"))
    with dg.instance_for_test() as instance:
        record = register_local_repo(instance, repo)
        spec = _spec(repo, tmp_path)
        snap = ingest(spec, casm.journal(spec))
        forecast_result = forecast(snap, casm.journal(spec), casm.engine(instance))
        resources = {"casm": casm, "models": ModelProvidersResource()}
        context = dg.build_asset_context(partition_key=record.partition_key, instance=instance, resources=resources)
        reviewed = review_findings(context, repo_snapshot=snap, cost_forecast=forecast_result)
        planned = patch_plan(context, repo_snapshot=snap, review_findings=reviewed.value)
    assert reviewed.metadata["findings"] == len(reviewed.value.findings) > 0
    assert planned.metadata["plan_sha256"] == planned.value.plan_sha256
    assert planned.metadata["groups"] == len(planned.value.groups) > 0


def test_a_branch_moved_after_validation_fails_loudly(tmp_path: Path) -> None:
    import pytest

    from casm_dagster.safety import gitops
    from casm_dagster.stages.report import verify_branch

    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    validated = git(repo, "rev-parse", "HEAD")
    gitops.create_branch(repo, "casm/repo-auditor/R1", validated)
    verify_branch(repo, "casm/repo-auditor/R1", validated)
    with pytest.raises(gitops.RepoError):  # create is compare-and-swap: never moves a branch
        gitops.create_branch(repo, "casm/repo-auditor/R1", validated)
    (repo / "BACKDOOR.py").write_text("x = 2\n")
    git(repo, "add", "BACKDOOR.py")
    git(repo, "commit", "-q", "-m", "backdoor")
    git(repo, "update-ref", "refs/heads/casm/repo-auditor/R1", "HEAD")
    with pytest.raises(gitops.RepoError, match="not the validated commit"):
        verify_branch(repo, "casm/repo-auditor/R1", validated)
