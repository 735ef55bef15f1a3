"""The Dagster instance CASM runs on: SQLite under ``DAGSTER_HOME`` by default, PostgreSQL
when ``$DAGSTER_HOME/dagster.yaml`` says so (see ``infra/dagster/dagster.postgres.yaml``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg

from casm_dagster.errors import ConfigError
from casm_dagster.run.templates import bundled_dir

DEFAULT_DAGSTER_HOME = Path(".casm") / "dagster_home"


def _bundled_instance_yaml() -> Path:
    inside = Path(__file__).resolve().parents[1] / "_bundled" / "dagster.yaml"
    return inside if inside.is_file() else bundled_dir("templates").parent / "dagster.yaml"


def ensure_dagster_home() -> str | None:
    """Make sure ``DAGSTER_HOME`` names a usable directory; return a notice when defaulted,
    or when the user's own has no ``dagster.yaml``."""
    configured = os.environ.get("DAGSTER_HOME")
    if configured:
        home = Path(configured)
        if not home.is_absolute():
            raise ConfigError(f"DAGSTER_HOME must be an absolute path, got {configured!r}")
        if not home.is_dir():
            raise ConfigError(f"DAGSTER_HOME={configured} does not exist or is not a directory")
        if not (home / "dagster.yaml").is_file():
            # Not an error (Dagster runs on its defaults), but never silent: the defaults
            # lack CASM's per-repo run limit and pools, and keep Dagster's telemetry on.
            return (
                f"DAGSTER_HOME={configured} has no dagster.yaml, so Dagster's defaults apply without "
                f"CASM's instance settings (per-repo run limit, pools, telemetry off): copy "
                f"{_bundled_instance_yaml()} there"
            )
        return None
    home = (Path.cwd() / DEFAULT_DAGSTER_HOME).resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copyfile(_bundled_instance_yaml(), home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    return f"DAGSTER_HOME is not set; using {home} (SQLite). Export it to see these runs in `dagster dev`."


def instance_db_url(instance: dg.DagsterInstance) -> str:
    """CASM's tables live in the instance's own database."""
    postgres_url = getattr(instance.run_storage, "postgres_url", None)
    if postgres_url:
        return postgres_url
    root = Path(instance.root_directory)
    return f"sqlite:///{root / 'casm.db'}"
