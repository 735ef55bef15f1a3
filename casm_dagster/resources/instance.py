"""The Dagster instance CASM runs on: SQLite under ``DAGSTER_HOME`` by default, PostgreSQL
when ``$DAGSTER_HOME/dagster.yaml`` says so (see ``infra/dagster/dagster.postgres.yaml``)."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
import yaml

from casm_dagster.contracts.yaml12 import yaml_problem
from casm_dagster.errors import ConfigError
from casm_dagster.run.templates import bundled_dir
from casm_dagster.safety.redact import redact
from casm_dagster.stores.db import engine_for

DEFAULT_DAGSTER_HOME = Path(".casm") / "dagster_home"
POOLS = ("casm_models", "casm_sandbox")  # the model-call and target-command pools (assets.stages)
# A run in one of these still holds its repo (queued, starting, running or stopping).
ACTIVE_RUN_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


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


def shared_engine(instance: dg.DagsterInstance) -> sa.Engine | None:
    """The instance's database when every host reaches it (PostgreSQL): where stage outputs
    and run folders travel between hosts. None on SQLite, a one-host instance."""
    url = instance_db_url(instance)
    return None if url.startswith("sqlite") else engine_for(url)


class _NoRetryNoise(logging.Filter):
    """dagster-postgres logs each failed connection attempt at WARNING on the root logger;
    the one error below says it once."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Retrying failed database connection")


def open_dagster_instance() -> dg.DagsterInstance:
    """``DagsterInstance.get()`` with every way it fails (a malformed ``dagster.yaml``, an
    unset ``DAGSTER_PG_*`` variable, an unreachable PostgreSQL, a missing driver) as one
    ``ConfigError`` line instead of a 100-line traceback."""
    quiet = _NoRetryNoise()
    logging.getLogger().addFilter(quiet)
    try:
        with _init_lock():
            instance = dg.DagsterInstance.get()
            # Create (or migrate) every storage and CASM's tables now, one process at a time:
            # four runs on a fresh instance raced here (two alembic heads, "table runs
            # already exists", a duplicate type on PostgreSQL).
            instance.get_runs_count()
            instance.event_log_storage.get_event_records(dg.EventRecordsFilter(dg.DagsterEventType.RUN_START), limit=1)
            if instance.schedule_storage is not None:
                instance.schedule_storage.all_instigator_state()
            storage = instance.event_log_storage
            if storage.supports_global_concurrency_limits:  # the pools' rows (a duplicate insert on PostgreSQL)
                # Only when missing: on PostgreSQL, Dagster's insert-then-update of an existing
                # row fails in an aborted transaction.
                for pool in set(POOLS) - set(storage.get_concurrency_keys()):
                    storage.initialize_concurrency_limit_to_default(pool)
            engine_for(instance_db_url(instance))
            return instance
    except Exception as exc:  # noqa: BLE001 - every cause is reported, in one line
        where = Path(os.environ.get("DAGSTER_HOME", "")) / "dagster.yaml"
        raise ConfigError(f"cannot open the Dagster instance ({where}): {redact(instance_problem(exc))}") from None
    finally:
        logging.getLogger().removeFilter(quiet)


@contextlib.contextmanager
def _init_lock() -> Iterator[None]:
    """An exclusive lock on ``$DAGSTER_HOME`` (a file lock: every process that opens this
    instance on this host takes it); held only while the instance is opened."""
    path = Path(os.environ["DAGSTER_HOME"]) / ".casm-init.lock"
    created = not path.exists()
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        except BaseException:
            if created:  # an instance that cannot be opened is left as it was found
                path.unlink(missing_ok=True)
            raise
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def instance_problem(exc: BaseException) -> str:
    """The most specific cause in a chain, in one line."""
    chain = []
    cause: BaseException | None = exc
    while cause is not None and len(chain) < 20:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    for c in chain:
        if isinstance(c, yaml.YAMLError):
            return yaml_problem(c)
        if isinstance(c, ModuleNotFoundError) and c.name == "psycopg":
            return (
                "the PostgreSQL URL needs the psycopg (3) driver, which is not installed: "
                "set `scheme: postgresql+psycopg2` under postgres_db (see infra/dagster/dagster.postgres.yaml)"
            )
        if isinstance(c, dg.DagsterInvalidConfigError):
            env = re.search(r'environment variable "([^"]+)" which is not set', str(c))
            if env:
                return f"environment variable {env.group(1)} is not set (dagster.yaml reads it)"
            errors = [e.message for e in getattr(c, "errors", [])]
            return "invalid configuration: " + " ".join(" ".join(errors).split())[:400]
    last = chain[-1]
    first = next((line.strip() for line in str(last).splitlines() if line.strip()), type(last).__name__)
    if last is not exc and "postgres" in type(exc).__module__ + type(last).__module__:
        return f"PostgreSQL: {first}"
    return f"{type(last).__name__}: {first}"[:400]
