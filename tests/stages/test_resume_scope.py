"""The approved scope is enforced from the patch bytes, never from the plan's file list."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from helpers import git, make_repo

from casm_dagster.contracts.plan import PatchGroup, PatchPlan
from casm_dagster.errors import TemplateError
from casm_dagster.run.spec import build_spec
from casm_dagster.run.templates import Template, load_template
from casm_dagster.safety.gitops import inspect_repo
from casm_dagster.stages import resume


def _two_file_patch(tmp_path: Path) -> tuple[Path, bytes, str]:
    repo = make_repo(tmp_path / "repo", {"app.py": "import sys\n", "auth/login.py": "import os\n"})
    base = git(repo, "rev-parse", "HEAD")
    (repo / "app.py").write_text("")
    (repo / "auth/login.py").write_text("")
    patch = (git(repo, "diff") + "\n").encode()
    git(repo, "checkout", "--", ".")
    return repo, patch, base


def test_a_group_whose_file_list_lies_is_still_trimmed(tmp_path: Path) -> None:
    repo, patch, base = _two_file_patch(tmp_path)
    spec = build_spec(load_template("repo-auditor"), str(repo), inspect_repo(repo), tmp_path / "state", tmp_path / "a")
    (spec.run_dir / "patches").mkdir(parents=True)
    (spec.run_dir / "patches" / "01-ruff-F401.patch").write_bytes(patch)
    group = PatchGroup(
        group_id="01-ruff-F401", title="F401", tool="ruff", rules=["F401"],
        files=["app.py"],  # edited to hide auth/login.py
        finding_ids=[], patch_file="patches/01-ruff-F401.patch",
        patch_sha256=hashlib.sha256(patch).hexdigest(), lines_added=0, lines_removed=2,
    )  # fmt: skip
    plan = PatchPlan(base_commit=base, groups=[group], plan_sha256="x")
    scoped, notes = resume.scoped_plan(spec, plan, {"app.py"})
    (kept,) = scoped.groups
    assert kept.files == ["app.py"] and kept.patch_file.startswith("patches/scoped/")
    text = (spec.run_dir / kept.patch_file).read_text()
    assert "auth/login.py" not in text and "app.py" in text
    assert notes == ["01-ruff-F401 trimmed to the approved scope: app.py"]


def test_github_approval_modes_are_refused_for_local_runs(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    source = load_template("repo-auditor")
    manifest = source.manifest.model_copy(
        update={
            "policy": source.manifest.policy.model_copy(
                update={
                    "hitl": source.manifest.policy.hitl.model_copy(
                        update={"mode": "github_label", "github": {"approvers": ["USER:octocat"]}}
                    )
                }
            )
        }
    )
    with pytest.raises(TemplateError, match="use mode: local"):
        build_spec(Template(manifest, source.path), str(repo), inspect_repo(repo), tmp_path / "s", tmp_path / "a")
