"""casm_dagster.contracts.manifest: strict loading of template manifests (v0.1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from casm_dagster.contracts.manifest import TemplateManifest, load_manifest, load_yaml, parse_manifest
from casm_dagster.errors import CasmError, TemplateError

ROOT = Path(__file__).resolve().parents[2]
AUDITOR = ROOT / "templates" / "repo-auditor" / "manifest.yaml"
NOOP = ROOT / "templates" / "noop" / "manifest.yaml"
SPEC_EXAMPLE = Path("/work/shared/spec/template-manifest.v0.1.example.yaml")


def _variant(tmp_path: Path, old: str, new: str, name: str = "manifest.yaml") -> Path:
    """The bundled repo-auditor manifest with one exact textual change, written to tmp_path."""
    text = AUDITOR.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"fixture text {old!r} must occur exactly once"
    path = tmp_path / name
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


def _error(path: Path) -> str:
    with pytest.raises(TemplateError) as info:
        load_manifest(path)
    return str(info.value)


# --- the manifests that must load -------------------------------------------------------


def test_bundled_repo_auditor_manifest_loads() -> None:
    m = load_manifest(AUDITOR)
    assert isinstance(m, TemplateManifest)
    assert m.version == "0.1"
    assert m.template.id == "repo-auditor"
    assert m.entrypoint.workflow == "repo_auditor_v1"
    assert m.runtime.sandbox.allow_network is False
    assert m.runtime.sandbox.allow_commands == [
        "python -m pytest -q",
        "pnpm -s test",
        "pnpm -s lint",
        "npm test",
        "npm run lint",
        "xo --reporter=json",
        "xo --fix",
        "eslint --format=json .",
        "eslint --fix .",
        "biome lint --reporter=json .",
        "biome lint --write .",
        "prettier --list-different .",
        "prettier --write .",
    ]
    assert m.runtime.sandbox.command_timeout_seconds == 900
    assert m.routing.budget.max_usd_per_run == 3.5
    assert [(f.on, f.action) for f in m.routing.fallbacks] == [
        ("timeout", "downgrade_model"),
        ("over_budget", "reduce_scope"),
    ]
    assert m.agent_enabled("reviewer") is True
    assert m.agent_enabled("redteam") is True
    assert m.agent_enabled("cost_auditor") is False  # not listed → not enabled
    assert m.artifact_names() == {
        "report_md": "report.md",
        "cost_report_md": "cost_report.md",
        "issues_json": "issues.json",
    }


def test_bundled_noop_manifest_loads() -> None:
    m = load_manifest(NOOP)
    assert m.template.id == "noop"
    assert m.entrypoint.workflow == "noop_v1"
    assert m.runtime.sandbox.allow_commands == []
    assert m.runtime.sandbox.command_timeout_seconds == 60
    assert m.routing.budget.max_usd_per_run == 0
    assert m.routing.strategy == "budget_first"
    assert m.agent_enabled("reviewer") is False
    assert m.agent_enabled("fixer") is False
    assert m.telemetry.emit == ["run_events"]
    assert m.telemetry.redaction.code_snippets_max_chars == 0


def test_spec_example_loads_with_on_keys_as_strings() -> None:
    m = load_manifest(SPEC_EXAMPLE)
    assert m.template.id == "repo-auditor"
    assert m.runtime.language == "node"
    assert m.runtime.minimum_node == "20"
    assert m.policy.hitl.mode == "github_label"
    assert m.policy.hitl.github is not None
    assert m.policy.hitl.github.approvers == ["ORG:my-org", "USER:sk"]
    assert [(f.on, f.action) for f in m.routing.fallbacks] == [
        ("timeout", "downgrade_model"),
        ("over_budget", "reduce_scope"),
    ]
    # The raw YAML keeps `on` a string key (YAML 1.1 would have made it the boolean True).
    raw = load_yaml(SPEC_EXAMPLE.read_text(encoding="utf-8"))
    assert list(raw["routing"]["fallbacks"][0].keys()) == ["on", "action"]
    assert True not in raw["routing"]["fallbacks"][0]


def test_yaml_loader_is_yaml_1_2_for_booleans() -> None:
    data = load_yaml("on: timeout\nyes_value: yes\noff_value: off\nreal: true\nfalse_value: False\n")
    assert data == {"on": "timeout", "yes_value": "yes", "off_value": "off", "real": True, "false_value": False}


# --- errors: TemplateError naming file, dotted key path and expected form ---------------


def test_unknown_key_names_file_and_dotted_path(tmp_path: Path) -> None:
    path = _variant(tmp_path, "allow_network: false", "allow_netwrok: false")
    msg = _error(path)
    assert str(path) in msg
    assert "runtime.sandbox.allow_netwrok" in msg
    assert "unknown keys are not allowed" in msg


def test_string_for_boolean_is_rejected_not_coerced(tmp_path: Path) -> None:
    path = _variant(tmp_path, "allow_network: false", 'allow_network: "yes"')
    msg = _error(path)
    assert str(path) in msg
    assert "runtime.sandbox.allow_network" in msg
    assert "expected a boolean" in msg
    assert "'yes'" in msg


def test_unquoted_yes_is_a_string_under_yaml_1_2_and_rejected(tmp_path: Path) -> None:
    path = _variant(tmp_path, "allow_network: false", "allow_network: yes")
    msg = _error(path)
    assert "runtime.sandbox.allow_network: expected a boolean (true/false), got 'yes'" in msg


def test_string_for_integer_is_rejected(tmp_path: Path) -> None:
    path = _variant(tmp_path, "command_timeout_seconds: 900", 'command_timeout_seconds: "900"')
    msg = _error(path)
    assert "runtime.sandbox.command_timeout_seconds: expected an integer, got '900'" in msg


def test_missing_required_section_is_named(tmp_path: Path) -> None:
    text = AUDITOR.read_text(encoding="utf-8")
    start = text.index("routing:\n")
    end = text.index("agents:\n")
    path = tmp_path / "no-routing.yaml"
    path.write_text(text[:start] + text[end:], encoding="utf-8")
    msg = _error(path)
    assert str(path) in msg
    assert "routing: expected a value (this key is required)" in msg


@pytest.mark.parametrize("version", ['"0.2"', "0.1", '"1.0"'])
def test_wrong_version_is_rejected(tmp_path: Path, version: str) -> None:
    path = _variant(tmp_path, 'version: "0.1"', f"version: {version}")
    msg = _error(path)
    assert str(path) in msg
    assert "version:" in msg
    assert "'0.1'" in msg  # the expected value is named


def test_invalid_yaml_reports_line_number(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text('version: "0.1"\ntemplate:\n  id: x\n  name: [unclosed\n  description: y\n', encoding="utf-8")
    msg = _error(path)
    assert str(path) in msg
    assert "not valid YAML" in msg
    assert "(line 5, column" in msg


def test_tab_indentation_is_invalid_yaml_with_line(tmp_path: Path) -> None:
    path = tmp_path / "tabs.yaml"
    path.write_text('version: "0.1"\ntemplate:\n\tid: x\n', encoding="utf-8")
    msg = _error(path)
    assert "not valid YAML (line 3, column 1)" in msg


@pytest.mark.parametrize("body", ["- a\n- b\n", "just a string\n", ""])
def test_non_mapping_top_level(tmp_path: Path, body: str) -> None:
    path = tmp_path / "list.yaml"
    path.write_text(body, encoding="utf-8")
    msg = _error(path)
    assert msg == f"{path}: expected a mapping at the top level"


def test_parse_manifest_names_the_given_source() -> None:
    with pytest.raises(TemplateError) as info:
        parse_manifest(["not", "a", "mapping"], "somewhere/manifest.yaml")
    assert str(info.value) == "somewhere/manifest.yaml: expected a mapping at the top level"


@pytest.mark.parametrize("bad", ["../outside/report.md", ".casm/../../report.md", "/etc/report.md"])
def test_artifact_path_must_stay_inside(tmp_path: Path, bad: str) -> None:
    path = _variant(tmp_path, '- report_md: ".casm/artifacts/report.md"', f'- report_md: "{bad}"')
    msg = _error(path)
    assert str(path) in msg
    assert "outputs.artifacts" in msg
    assert f"artifact path {bad!r} must be relative and stay inside" in msg


def test_artifact_unknown_key_is_rejected(tmp_path: Path) -> None:
    path = _variant(tmp_path, '- report_md: ".casm/artifacts/report.md"', '- report_html: "r.html"')
    msg = _error(path)
    assert "outputs.artifacts.0.report_html" in msg


def test_unknown_literal_value_lists_allowed(tmp_path: Path) -> None:
    path = _variant(tmp_path, "strategy: cost_aware_quality_floor", "strategy: cheapest")
    msg = _error(path)
    assert "routing.strategy" in msg
    assert "'budget_first'" in msg


def test_several_problems_are_all_reported(tmp_path: Path) -> None:
    path = _variant(tmp_path, "allow_network: false", 'allow_network: "no"\n    extra_thing: 1')
    msg = _error(path)
    assert "runtime.sandbox.allow_network" in msg
    assert "runtime.sandbox.extra_thing" in msg


def test_missing_file_is_a_template_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    msg = _error(path)
    assert str(path) in msg
    assert "cannot read template manifest" in msg


def test_template_error_is_a_casm_error_with_exit_code_2() -> None:
    assert issubclass(TemplateError, CasmError)
    assert TemplateError.exit_code == 2


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("command_timeout_seconds: 900", "command_timeout_seconds: 0", "runtime.sandbox.command_timeout_seconds"),
        ("command_timeout_seconds: 900", "command_timeout_seconds: true", "expected an integer, got True"),
        ('- "npm test"', '- "  "', "an allowlisted command must not be empty"),
        ("min_confidence: 0.70", "min_confidence: 1.5", "routing.quality_floor.min_confidence"),
        ("max_usd_per_run: 3.50", "max_usd_per_run: -1", "routing.budget.max_usd_per_run"),
        ("id: repo-auditor", "id: Repo_Auditor", "template.id"),
        ("reviewer:  {enabled", "overseer:  {enabled", "agents.overseer"),
        (
            '- report_md: ".casm/artifacts/report.md"',
            '- {report_md: "a.md", issues_json: "b.json"}',
            "each artifact entry maps exactly one key to a path",
        ),
    ],
)
def test_other_invalid_values(tmp_path: Path, old: str, new: str, expected: str) -> None:
    msg = _error(_variant(tmp_path, old, new))
    assert expected in msg


def test_loader_does_not_change_pyyaml_defaults() -> None:
    import yaml

    load_yaml("on: x\n")
    assert yaml.safe_load("on: yes\n") == {True: True}  # the global SafeLoader keeps YAML 1.1


# --- YAML 1.2 beyond booleans ------------------------------------------------------------------
# The loader is documented as YAML 1.2 and the module promises nothing is coerced silently.
# Under YAML 1.2 (core schema) `010` is the decimal 10 and `15:00` is a string; YAML 1.1
# reads them as octal 8 and sexagesimal 900. Duplicate keys are invalid in every YAML version.


def test_leading_zero_integer_is_decimal_as_in_yaml_1_2(tmp_path: Path) -> None:
    path = _variant(tmp_path, "command_timeout_seconds: 900", "command_timeout_seconds: 010")
    assert load_manifest(path).runtime.sandbox.command_timeout_seconds == 10


def test_sexagesimal_looking_value_is_a_string_not_an_integer(tmp_path: Path) -> None:
    path = _variant(tmp_path, "command_timeout_seconds: 900", "command_timeout_seconds: 15:00")
    msg = _error(path)
    assert "runtime.sandbox.command_timeout_seconds: expected an integer, got '15:00'" in msg


def test_duplicate_key_is_an_error_not_last_one_wins(tmp_path: Path) -> None:
    path = _variant(tmp_path, "allow_network: false", "allow_network: false\n    allow_network: true")
    msg = _error(path)
    assert str(path) in msg
    assert "allow_network" in msg
