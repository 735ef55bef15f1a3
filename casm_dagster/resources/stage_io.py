"""Stage outputs stored per Dagster run, not per partition.

Dagster's default IO manager keys an asset's value by partition (``storage/<asset>/<repo>``):
two runs on one repo, or a retried run beside a queued one, read each other's Snapshot and
re-ran each other's stages. Here every value lives under the run that produced it
(``storage/casm_runs/<run_id>/<asset>/<partition>``) and is loaded from the run the input's
producing step ran in — this run, or the parent run a re-execution from failure reuses.
A value that is not there is an error naming it, never a value from another run.

On a PostgreSQL instance the values live in its database (``casm_stage_outputs``) instead:
run workers may be on other hosts (dagster-celery), each with its own disk.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa

from casm_dagster.resources.instance import shared_engine
from casm_dagster.stores.db import stage_outputs_table

STAGE_IO = "casm_stage_io"  # the resource key the stage assets use


class RunScopedIOManager(dg.ConfigurableIOManager):
    """``base_dir``: where run folders go (default: the instance's storage dir/casm_runs)."""

    base_dir: str | None = None

    def _path(self, context: dg.OutputContext | dg.InputContext, run_id: str) -> Path:
        base = Path(self.base_dir or Path(context.step_context.instance.storage_directory()) / "casm_runs")
        return base / run_id / self._key(context)

    def _engine(self, context: dg.OutputContext | dg.InputContext) -> sa.Engine | None:
        if self.base_dir:
            return None
        return shared_engine(context.step_context.instance)

    @staticmethod
    def _key(context: dg.OutputContext | dg.InputContext) -> str:
        partition = context.asset_partition_key if context.has_asset_partitions else "_"
        return "/".join([*context.asset_key.path, partition])

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        engine = self._engine(context)
        if engine is not None:
            t, key = stage_outputs_table, self._key(context)
            with engine.begin() as conn:  # a re-executed step replaces its own earlier value
                conn.execute(sa.delete(t).where(t.c.dagster_run_id == context.run_id, t.c.key == key))
                conn.execute(sa.insert(t).values(dagster_run_id=context.run_id, key=key, data=data))
            return
        path = self._path(context, context.run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)

    def load_input(self, context: dg.InputContext) -> Any:
        upstream = context.upstream_output
        if upstream is None:
            raise dg.Failure(f"{context.asset_key.to_user_string()}: no producing step to load it from")
        engine = self._engine(context)
        if engine is not None:
            t = stage_outputs_table
            with engine.connect() as conn:
                data = conn.execute(
                    sa.select(t.c.data).where(t.c.dagster_run_id == upstream.run_id, t.c.key == self._key(context))
                ).scalar()
            where = "the instance database"
        else:
            path = self._path(context, upstream.run_id)
            data = path.read_bytes() if path.exists() else None
            where = str(path)
        if data is None:
            raise dg.Failure(
                f"stage output {context.asset_key.to_user_string()} of Dagster run {upstream.run_id} is missing "
                f"({where}): a stage reads only its own run's outputs — materialize the whole audit, or re-execute "
                "the run from its failure"
            )
        return pickle.loads(data)  # noqa: S301 - written by handle_output above, in the instance's own storage


def stored_run_ids(engine: sa.Engine) -> list[str]:
    """The Dagster runs with stage outputs in the database."""
    with engine.connect() as conn:
        return list(conn.execute(sa.select(stage_outputs_table.c.dagster_run_id).distinct()).scalars())


def prune_stored(engine: sa.Engine, ended_before: float, ended_at: dict[str, float | None], dry_run: bool) -> list[str]:
    """``prune`` for the database: the runs whose stage outputs went (or would go)."""
    gone = [r for r in stored_run_ids(engine) if (end := ended_at.get(r, 0.0)) is not None and end < ended_before]
    if gone and not dry_run:
        with engine.begin() as conn:
            conn.execute(sa.delete(stage_outputs_table).where(stage_outputs_table.c.dagster_run_id.in_(gone)))
    return gone


def prune(root: Path, ended_before: float, ended_at: dict[str, float | None], dry_run: bool) -> list[Path]:
    """Run folders under ``root`` of runs that ended before ``ended_before`` (epoch seconds)
    or that the instance no longer has; a run still going (no end time) is kept."""
    removed = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        end = ended_at.get(folder.name, 0.0)  # a run the instance lost counts as long ended
        if end is not None and end < ended_before:
            removed.append(folder)
            if not dry_run:
                shutil.rmtree(folder, ignore_errors=True)
    return removed
