"""casm_dagster.run.templates: discovery by id or path, workflows and their stages."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import ROOT

from casm_dagster.contracts.events import STAGES
from casm_dagster.errors import TemplateError
from casm_dagster.run.templates import WORKFLOWS, bundled_dir, list_templates, load_template, template_ids

NOOP_TEXT = (ROOT / "templates" / "noop" / "manifest.yaml").read_text(encoding="utf-8")


def _write_template(root: Path, template_id: str, workflow: str = "noop_v1") -> Path:
    text = NOOP_TEXT.replace("id: noop", f"id: {template_id}").replace("workflow: noop_v1", f"workflow: {workflow}")
    path = root / template_id / "manifest.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_template_ids_lists_bundled_templates() -> None:
    assert template_ids() == ["noop", "pr-sentinel", "repo-auditor"]


def test_bundled_dir_is_the_source_tree_templates() -> None:
    assert bundled_dir("templates").resolve() == (ROOT / "templates").resolve()


def test_template_ids_in_custom_root_sorted_and_ignores_dirs_without_manifest(tmp_path: Path) -> None:
    _write_template(tmp_path, "zeta")
    _write_template(tmp_path, "alpha")
    (tmp_path / "empty-dir").mkdir()
    assert template_ids(tmp_path) == ["alpha", "zeta"]


@pytest.mark.parametrize(
    ("template_id", "workflow", "stages"),
    [
        ("noop", "noop_v1", ("ingest", "report")),
        (
            "repo-auditor",
            "repo_auditor_v1",
            ("ingest", "forecast", "analyze", "plan", "policy", "apply", "validate", "report", "telemetry"),
        ),
    ],
)
def test_load_by_id(template_id: str, workflow: str, stages: tuple[str, ...]) -> None:
    t = load_template(template_id)
    assert t.id == template_id
    assert t.manifest.entrypoint.workflow == workflow
    assert t.stages == stages
    assert t.path == bundled_dir("templates") / template_id / "manifest.yaml"


def test_load_by_path(tmp_path: Path) -> None:
    path = _write_template(tmp_path, "my-custom")
    t = load_template(str(path))
    assert t.id == "my-custom"
    assert t.path == path.resolve()
    assert t.stages == ("ingest", "report")


def test_load_by_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_template(tmp_path, "rel")
    monkeypatch.chdir(tmp_path)
    t = load_template("rel/manifest.yaml")
    assert t.id == "rel"
    assert t.path == (tmp_path / "rel" / "manifest.yaml").resolve()


def test_load_by_id_from_custom_root(tmp_path: Path) -> None:
    _write_template(tmp_path, "custom", workflow="repo_auditor_v1")
    t = load_template("custom", root=tmp_path)
    assert t.id == "custom"
    assert t.stages == STAGES


def test_missing_manifest_path_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "manifest.yaml"
    with pytest.raises(TemplateError) as info:
        load_template(str(missing))
    assert str(info.value) == f"template manifest not found: {missing}"


def test_unknown_id_lists_available() -> None:
    with pytest.raises(TemplateError) as info:
        load_template("repo-audtor")
    assert str(info.value) == "unknown template 'repo-audtor' (available: noop, pr-sentinel, repo-auditor)"


def test_unknown_id_in_empty_root_says_none(tmp_path: Path) -> None:
    with pytest.raises(TemplateError) as info:
        load_template("anything", root=tmp_path)
    assert str(info.value) == "unknown template 'anything' (available: none)"


def test_unknown_workflow_is_an_error_naming_known_ones(tmp_path: Path) -> None:
    path = _write_template(tmp_path, "weird", workflow="mystery_v9")
    with pytest.raises(TemplateError) as info:
        load_template(str(path))
    msg = str(info.value)
    assert msg.startswith(str(path.resolve()))
    assert "entrypoint.workflow: unknown workflow 'mystery_v9'" in msg
    assert "(known: noop_v1, pr_sentinel_v1, repo_auditor_v1)" in msg


def test_malformed_manifest_by_id_is_a_template_error(tmp_path: Path) -> None:
    path = _write_template(tmp_path, "bad")
    path.write_text(path.read_text().replace("allow_network: false", "allow_network: 1"))
    with pytest.raises(TemplateError) as info:
        load_template("bad", root=tmp_path)
    assert "runtime.sandbox.allow_network: expected a boolean" in str(info.value)


def test_stages_per_workflow() -> None:
    assert WORKFLOWS == {
        "repo_auditor_v1": (
            "ingest",
            "forecast",
            "analyze",
            "plan",
            "policy",
            "apply",
            "validate",
            "report",
            "telemetry",
        ),
        "noop_v1": ("ingest", "report"),
        # pr-sentinel applies nothing: no plan, apply or validate.
        "pr_sentinel_v1": ("ingest", "forecast", "analyze", "policy", "report", "telemetry"),
    }


def test_list_templates_loads_every_bundled_template() -> None:
    templates = list_templates()
    assert [t.id for t in templates] == ["noop", "pr-sentinel", "repo-auditor"]
    assert [len(t.stages) for t in templates] == [2, 6, 9]


@pytest.mark.parametrize("template_id", ["repo-auditor", "pr-sentinel"])
def test_sellable_templates_ship_docs_example_config_telemetry_and_a_workflow(template_id: str) -> None:
    from casm_dagster.contracts.yaml12 import load_yaml
    from casm_dagster.prsentinel.settings import parse_settings

    folder = ROOT / "templates" / template_id
    template = load_template(template_id)
    assert template.manifest.telemetry.emit  # explicit telemetry fields
    assert (folder / "docs.md").read_text().startswith(f"# {template_id}")
    example = folder / "example-config.yaml"
    if template_id == "pr-sentinel":
        settings, problem = parse_settings(example.read_bytes())
        assert problem is None and settings.ignore
    else:
        assert load_template(str(example)).id == template_id
    workflows = [load_yaml(p.read_text()) for p in (ROOT / "infra" / "github" / "workflows").glob("*.yml")]
    steps = [
        (wf["on"], step.get("with") or {})
        for wf in workflows
        for job in wf["jobs"].values()
        for step in job["steps"]
        if step.get("uses", "").split("@")[0].endswith("/casm")  # the CASM action (action.yml)
    ]
    mine = [on for on, inputs in steps if inputs.get("template") == template_id]
    assert mine, f"no GitHub Actions example runs {template_id}"
    expected = "pull_request" if template_id == "pr-sentinel" else "schedule"
    assert expected in mine[0]
