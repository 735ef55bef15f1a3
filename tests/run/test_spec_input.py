"""Bad run input is one clear error before anything runs: a budget that is not a finite
amount, artifact names that would overwrite the run's own files or each other."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from helpers import git, make_repo

from casm_dagster.errors import ConfigError, TemplateError
from casm_dagster.run.spec import RunOptions, build_spec, resolve_local_repo
from casm_dagster.run.templates import load_template


def _build(tmp_path: Path, template, options: RunOptions | None = None):
    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    info = resolve_local_repo(str(repo))
    return build_spec(template, str(repo), info, tmp_path / "state", tmp_path / "artifacts", options=options)


@pytest.mark.parametrize("budget", [float("nan"), float("inf"), -1.0])
def test_a_budget_must_be_a_finite_amount(tmp_path: Path, budget: float) -> None:
    with pytest.raises(ConfigError, match="--budget-usd .*expected a finite amount"):
        _build(tmp_path, load_template("repo-auditor"), RunOptions(budget_usd=budget))
    assert not (tmp_path / "state").exists() and not (tmp_path / "artifacts").exists()


@pytest.mark.parametrize(
    ("artifacts", "why"),
    [
        ([{"report_md": "events.jsonl"}], "'events.jsonl' is a file the run itself writes"),
        ([{"report_md": "."}], "the path names no file"),
        ([{"report_md": "out/x.md"}, {"issues_json": "x.md"}], "both named 'x.md'"),
        ([{"issues_json": "cost_report.md"}], "'cost_report.md' is a file the run itself writes"),
    ],
)
def test_artifact_names_cannot_collide(tmp_path: Path, artifacts: list[dict[str, str]], why: str) -> None:
    template = load_template("repo-auditor")
    outputs = template.manifest.outputs.model_copy(update={"artifacts": artifacts})
    manifest = template.manifest.model_copy(update={"outputs": outputs})
    with pytest.raises(ConfigError, match=re.escape(why)):
        _build(tmp_path, dataclasses.replace(template, manifest=manifest))


def test_default_artifact_names_are_fine(tmp_path: Path) -> None:
    assert _build(tmp_path, load_template("repo-auditor")).manifest.artifact_names()


@pytest.mark.parametrize("value", [".inf", ".nan"])
def test_a_template_budget_must_be_finite(tmp_path: Path, value: str) -> None:
    source = Path(load_template("repo-auditor").path).read_text()
    (tmp_path / "manifest.yaml").write_text(re.sub(r"max_usd_per_run: [0-9.]+", f"max_usd_per_run: {value}", source))
    with pytest.raises(TemplateError, match="max_usd_per_run: Input should be a finite number"):
        load_template(str(tmp_path / "manifest.yaml"))


@pytest.mark.parametrize("branch", ["casm", "casm/repo-auditor"])
def test_a_branch_that_leaves_no_room_for_casms_is_refused_up_front(tmp_path: Path, branch: str) -> None:
    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    git(repo, "branch", branch)
    with pytest.raises(ConfigError, match=f"the repo has a branch named '{branch}'"):
        build_spec(
            load_template("repo-auditor"), str(repo), resolve_local_repo(str(repo)), tmp_path / "s", tmp_path / "a"
        )
