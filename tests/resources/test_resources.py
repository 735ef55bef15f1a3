"""The ``github`` and ``models`` resources: ``EnvVar``s bound only for variables that are set,
values that reach the domain, and the process environment as the fallback."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from helpers import make_repo

from casm_dagster.resources import GitHubResource, ModelProvidersResource, github_resource, models_resource
from casm_dagster.run.spec import build_spec, resolve_local_repo
from casm_dagster.run.templates import load_template

KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "MOONSHOT_API_KEY", "HF_TOKEN", "CASM_MODEL_PROVIDER")


@pytest.fixture
def no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in KEYS:
        monkeypatch.delenv(var, raising=False)


def _available(tmp_path: Path, providers: dict[str, str] | None) -> list[str]:
    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    template = load_template("repo-auditor")
    spec = build_spec(template, str(repo), resolve_local_repo(str(repo)), tmp_path / "s", tmp_path / "a",
                      providers=providers)  # fmt: skip
    return spec.models.available_providers


def test_a_key_on_the_models_resource_makes_its_provider_available(tmp_path: Path, no_keys: None) -> None:
    assert _available(tmp_path / "none", ModelProvidersResource().env()) == []
    assert _available(tmp_path / "one", ModelProvidersResource(anthropic_api_key="k-test").env()) == ["anthropic"]
    forced = ModelProvidersResource(anthropic_api_key="k-test", model_provider="offline").env()
    assert _available(tmp_path / "forced", forced) == []


def test_unset_fields_fall_back_to_the_environment(monkeypatch: pytest.MonkeyPatch, no_keys: None) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    monkeypatch.setenv("CUSTOM_PROVIDER_KEY", "custom")  # a custom catalog's own variable
    env = ModelProvidersResource(anthropic_api_key="from-resource").env()
    assert env["OPENAI_API_KEY"] == "from-env"
    assert env["ANTHROPIC_API_KEY"] == "from-resource"
    assert env["CUSTOM_PROVIDER_KEY"] == "custom"


def test_definitions_bind_env_vars_only_for_set_variables(monkeypatch: pytest.MonkeyPatch, no_keys: None) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.setenv("HF_TOKEN", "hf-secret")
    models = models_resource()
    assert models.hf_token == dg.EnvVar("HF_TOKEN") and models.openai_api_key is None
    assert github_resource().token is None
    # Resolved when the resource is used (at run start), never stored as the value itself.
    with dg.build_resources({"models": models}) as resources:
        assert resources.models.env()["HF_TOKEN"] == "hf-secret"
    assert "hf-secret" not in repr(models.hf_token)


def test_github_resource_values_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "env-token")
    monkeypatch.setenv("GITHUB_API_URL", "http://127.0.0.1:9/api")
    settings = GitHubResource(token="resource-token").settings()
    assert settings.token == "resource-token"
    assert settings.api_url.startswith("http://127.0.0.1:9")


def test_a_users_dagster_home_without_dagster_yaml_is_said_not_silent(tmp_path, monkeypatch) -> None:
    from casm_dagster.resources.instance import ensure_dagster_home

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    notice = ensure_dagster_home()
    assert notice is not None and "has no dagster.yaml" in notice and "per-repo run limit" in notice
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    assert ensure_dagster_home() is None
