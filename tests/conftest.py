"""Shared fixtures: real git repos, real Dagster instances, the real PostgreSQL server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import isolated_env


def pytest_configure(config: pytest.Config) -> None:
    """The environments audits build install from a local wheel directory, never an index."""
    import wheelhouse

    os.environ["UV_NO_INDEX"] = "1"
    os.environ["UV_FIND_LINKS"] = str(wheelhouse.ensure())
    os.environ["UV_CACHE_DIR"] = str(wheelhouse.UV_CACHE)
    for var in ("UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_EXTRA_INDEX_URL", "UV_INDEX"):
        os.environ.pop(var, None)


@pytest.fixture(autouse=True)
def _policy_key(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process code gets a throwaway HMAC key too, never ~/.config/casm/policy.key."""
    monkeypatch.setenv("CASM_POLICY_KEY_FILE", str(tmp_path_factory.getbasetemp() / "policy.key"))


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The directory ``casm`` runs in (its ./.casm lands here)."""
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def casm_env(tmp_path: Path) -> dict[str, str]:
    """An environment with its own DAGSTER_HOME (SQLite), nothing inherited from the user's."""
    return isolated_env(tmp_path / "dagster_home")


@pytest.fixture
def demo_repo(tmp_path: Path) -> Path:
    from casm_dagster.cli.demo import make_demo_repo

    return make_demo_repo(parent=tmp_path)


def _pg_available() -> str | None:
    import psycopg2

    try:
        psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=3).close()
    except psycopg2.OperationalError as exc:
        return str(exc).strip()
    return None


@pytest.fixture
def pg_database() -> Iterator[dict[str, str]]:
    """A fresh PostgreSQL database, dropped afterwards. Skips without a server, except in CI."""
    import psycopg2

    problem = _pg_available()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI=true and is unreachable: {problem}")
        pytest.skip(f"PostgreSQL not reachable at 127.0.0.1:5432: {problem}")
    name = f"casm_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    try:
        yield {"host": "127.0.0.1", "port": "5432", "user": "postgres", "password": "", "db": name}
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
