"""Stage outputs stored per Dagster run, not per partition.

Dagster's default IO manager keys an asset's value by partition (``storage/<asset>/<repo>``):
two runs on one repo, or a retried run beside a queued one, read each other's Snapshot and
re-ran each other's stages. Here every value lives under the run that produced it
(``storage/casm_runs/<run_id>/<asset>/<partition>``) and is loaded from the run the input's
producing step ran in — this run, or the parent run a re-execution from failure reuses.
A value that is not there is an error naming it, never a value from another run.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path
from typing import Any

import dagster as dg

STAGE_IO = "casm_stage_io"  # the resource key the stage assets use


class RunScopedIOManager(dg.ConfigurableIOManager):
    """``base_dir``: where run folders go (default: the instance's storage dir/casm_runs)."""

    base_dir: str | None = None

    def _path(self, context: dg.OutputContext | dg.InputContext, run_id: str) -> Path:
        base = Path(self.base_dir or Path(context.step_context.instance.storage_directory()) / "casm_runs")
        partition = context.asset_partition_key if context.has_asset_partitions else "_"
        return base / run_id / "/".join(context.asset_key.path) / partition

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        path = self._path(context, context.run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
        tmp.replace(path)

    def load_input(self, context: dg.InputContext) -> Any:
        upstream = context.upstream_output
        if upstream is None:
            raise dg.Failure(f"{context.asset_key.to_user_string()}: no producing step to load it from")
        path = self._path(context, upstream.run_id)
        if not path.exists():
            raise dg.Failure(
                f"stage output {context.asset_key.to_user_string()} of Dagster run {upstream.run_id} is missing "
                f"({path}): a stage reads only its own run's outputs — materialize the whole audit, or re-execute "
                "the run from its failure"
            )
        return pickle.loads(path.read_bytes())  # noqa: S301 - written by handle_output above, in the instance's storage


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
