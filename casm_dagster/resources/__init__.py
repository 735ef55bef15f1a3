"""Dagster resources: thin wrappers that hand the domain what it needs."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from casm_dagster.contracts.run import RunSpec
from casm_dagster.instance import instance_db_url
from casm_dagster.journal import Journal, print_progress
from casm_dagster.stores.approvals import ApprovalStore
from casm_dagster.stores.db import engine_for
from casm_dagster.stores.repos import RepoRegistry


class CasmResource(dg.ConfigurableResource):
    """Where CASM keeps run state, and whether to print progress (the CLI turns it on)."""

    state_dir: str = ".casm"
    progress: bool = False

    def state_path(self) -> Path:
        return Path(self.state_dir).resolve()

    def journal(self, spec: RunSpec) -> Journal:
        return Journal(spec, listener=print_progress if self.progress else None)

    def registry(self, instance: dg.DagsterInstance) -> RepoRegistry:
        return RepoRegistry(engine_for(instance_db_url(instance)))

    def engine(self, instance: dg.DagsterInstance) -> sa.Engine:
        """CASM's tables (model calls, approvals, repos) in the instance's database."""
        return engine_for(instance_db_url(instance))

    def approvals(self, instance: dg.DagsterInstance) -> ApprovalStore:
        return ApprovalStore(engine_for(instance_db_url(instance)))


def latest_routing_policy(instance: dg.DagsterInstance) -> dict | None:
    """The last materialized ``routing_policy`` (its full document), or None before the first
    diurnal optimization. Runs record the router's view of it (``routing_view``)."""
    event = instance.get_latest_materialization_event(dg.AssetKey("routing_policy"))
    if event is None or event.asset_materialization is None:
        return None
    entry = event.asset_materialization.metadata.get("policy")
    return entry.value if entry is not None else None  # type: ignore[return-value]
