"""Dagster resources: thin wrappers that hand the domain what it needs.

- ``casm`` (``CasmResource``): where run state lives, progress printing, and CASM's tables in
  the instance's database (repos, approvals, model calls).
- ``github`` (``GitHubResource``): GitHub mode's credentials and endpoint, from ``EnvVar``s
  resolved when a run starts (never shown in the UI, never in run config).
- ``models`` (``ModelProvidersResource``): the model providers' keys and base URLs, the
  offline switch, and the price registry and catalog overrides, also from ``EnvVar``s.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import sqlalchemy as sa

from casm_dagster.contracts.run import RunSpec
from casm_dagster.resources.instance import instance_db_url
from casm_dagster.run.files import DEFAULT_STATE_DIR, STATE_DIR_ENV
from casm_dagster.run.journal import Journal, print_progress
from casm_dagster.stores.approvals import ApprovalStore
from casm_dagster.stores.db import engine_for
from casm_dagster.stores.repos import RepoRegistry
from casm_dagster.stores.run_files import RunFileStore, publisher, shared_store

if TYPE_CHECKING:
    from casm_dagster.github.connector import GitHubConnector, GitHubSettings


class CasmResource(dg.ConfigurableResource):
    """Where CASM keeps run state, and whether to print progress (the CLI turns it on)."""

    state_dir: str = DEFAULT_STATE_DIR
    progress: bool = False

    def state_path(self) -> Path:
        return Path(self.state_dir).resolve()

    def journal(self, spec: RunSpec, instance: dg.DagsterInstance | None = None) -> Journal:
        """The run's journal. With an ``instance`` on PostgreSQL the run folder is shared:
        first brought up to date with what other hosts published, then published at each
        stage boundary (stores/run_files.py)."""
        listener = print_progress if self.progress else None
        store = self.run_files(instance) if instance is not None else None
        if store is None:
            return Journal(spec, listener=listener)
        store.pull(spec.run_id, spec.run_dir)
        return Journal(spec, listener=listener, publish=publisher(store, spec.run_id))

    def run_files(self, instance: dg.DagsterInstance) -> RunFileStore | None:
        """Where run folders are published for other hosts: the instance's database when it is
        PostgreSQL (reachable from every host); none on SQLite, a one-host instance."""
        return shared_store(self.engine(instance))

    def engine(self, instance: dg.DagsterInstance) -> sa.Engine:
        """CASM's tables (model calls, approvals, repos) in the instance's database; one
        engine per database, cached (``stores.db.engine_for``)."""
        return engine_for(instance_db_url(instance))

    def registry(self, instance: dg.DagsterInstance) -> RepoRegistry:
        return RepoRegistry(self.engine(instance))

    def approvals(self, instance: dg.DagsterInstance) -> ApprovalStore:
        return ApprovalStore(self.engine(instance))


class GitHubResource(dg.ConfigurableResource):
    """GitHub mode: a token (``GITHUB_TOKEN``), the API (``GITHUB_API_URL``, GHES too) and
    optionally the login CASM comments as (``CASM_GITHUB_LOGIN``). Without a token, local
    mode works and anything that needs GitHub says which variable to set."""

    token: str | None = None
    api_url: str | None = None
    login: str | None = None

    @property
    def configured(self) -> bool:
        from casm_dagster.github.connector import TOKEN_ENV

        return bool(self.token or os.environ.get(TOKEN_ENV))

    def settings(self) -> GitHubSettings:
        from casm_dagster.github.connector import API_URL_ENV, LOGIN_ENV, TOKEN_ENV, GitHubSettings

        # The connector's own validation (clear errors for a missing token or a bad URL) on
        # this resource's values; a field left unset falls back to the process environment
        # (definitions loaded before the variable was exported).
        env = dict(os.environ)
        for var, value in ((TOKEN_ENV, self.token), (API_URL_ENV, self.api_url), (LOGIN_ENV, self.login)):
            if value:
                env[var] = value
        return GitHubSettings.from_env(env)

    @classmethod
    def from_env(cls) -> GitHubResource:
        """The resource with the environment's values, for code outside a Dagster run (the CLI
        before it launches one); the ``Definitions`` bind ``EnvVar``s instead
        (``github_resource``)."""
        from casm_dagster.github.connector import API_URL_ENV, LOGIN_ENV, TOKEN_ENV

        return cls(
            token=os.environ.get(TOKEN_ENV), api_url=os.environ.get(API_URL_ENV), login=os.environ.get(LOGIN_ENV)
        )

    def get_client(self) -> GitHubConnector:
        """A client for runs: full retries, rate-limit waits up to 15 minutes."""
        from casm_dagster.github.connector import GitHubConnector

        return GitHubConnector(self.settings())

    def get_sensor_client(self) -> GitHubConnector:
        """A client for sensor ticks (60 s each): few retries, short waits."""
        from casm_dagster.github.connector import GitHubConnector

        return GitHubConnector(self.settings().for_sensor())


def github_resource() -> GitHubResource:
    """The ``github`` resource of the ``Definitions``, resolved when a run starts. Each variable is attached as an
    ``EnvVar`` only when it is set: an unset ``EnvVar`` fails every run, and local mode needs
    no token."""
    from casm_dagster.github.connector import API_URL_ENV, LOGIN_ENV, TOKEN_ENV

    fields = {"token": TOKEN_ENV, "api_url": API_URL_ENV, "login": LOGIN_ENV}
    return GitHubResource(**{field: dg.EnvVar(var) for field, var in fields.items() if os.environ.get(var)})


# ModelProvidersResource field -> the variable it stands for (the bundled catalog's names).
MODEL_ENV = {
    "openai_api_key": "OPENAI_API_KEY",
    "openai_base_url": "OPENAI_BASE_URL",
    "anthropic_api_key": "ANTHROPIC_API_KEY",
    "anthropic_base_url": "ANTHROPIC_BASE_URL",
    "moonshot_api_key": "MOONSHOT_API_KEY",
    "moonshot_base_url": "MOONSHOT_BASE_URL",
    "hf_token": "HF_TOKEN",
    "hf_base_url": "HF_BASE_URL",
    "model_provider": "CASM_MODEL_PROVIDER",  # "offline": never call a model, keys or not
    "prices": "CASM_PRICES",
    "model_catalog": "CASM_MODEL_CATALOG",
}


class ModelProvidersResource(dg.ConfigurableResource):
    """The model providers the router may call: a provider is available when its key is set.
    A field left unset falls back to the process environment, which also serves a custom
    catalog's providers under their own variable names."""

    openai_api_key: str | None = None
    openai_base_url: str | None = None
    anthropic_api_key: str | None = None
    anthropic_base_url: str | None = None
    moonshot_api_key: str | None = None
    moonshot_base_url: str | None = None
    hf_token: str | None = None
    hf_base_url: str | None = None
    model_provider: str | None = None
    prices: str | None = None
    model_catalog: str | None = None

    def env(self) -> dict[str, str]:
        """The settings by variable name, as ``build_spec`` and ``open_session`` take them."""
        env = dict(os.environ)
        env.update({var: value for field, var in MODEL_ENV.items() if (value := getattr(self, field))})
        return env


def models_resource() -> ModelProvidersResource:
    """The ``models`` resource of the ``Definitions``: ``EnvVar``s for the variables that are
    set (an unset ``EnvVar`` fails every run; the offline provider needs none)."""
    return ModelProvidersResource(**{f: dg.EnvVar(var) for f, var in MODEL_ENV.items() if os.environ.get(var)})


def casm_resource() -> CasmResource:
    return CasmResource(state_dir=os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)


def latest_routing_policy(instance: dg.DagsterInstance) -> dict | None:
    """The last materialized ``routing_policy`` (its full document), or None before the first
    diurnal optimization. Runs record the router's view of it (``routing_view``)."""
    event = instance.get_latest_materialization_event(dg.AssetKey("routing_policy"))
    if event is None or event.asset_materialization is None:
        return None
    entry = event.asset_materialization.metadata.get("policy")
    return entry.value if entry is not None else None  # type: ignore[return-value]
