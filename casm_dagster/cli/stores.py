"""The instance's CASM stores as the CLI opens them (registered repos, approval requests)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from casm_dagster.assets.partitions import repos_partitions
from casm_dagster.resources import CasmResource
from casm_dagster.stores.approvals import ApprovalStore
from casm_dagster.stores.repos import RepoRecord, RepoRegistry


def registry(instance: dg.DagsterInstance) -> RepoRegistry:
    return CasmResource().registry(instance)


def approvals(instance: dg.DagsterInstance) -> ApprovalStore:
    return CasmResource().approvals(instance)


def register_local_repo(instance: dg.DagsterInstance, path: Path) -> RepoRecord:
    return register_repo(instance, "local", str(path))


def register_repo(instance: dg.DagsterInstance, kind: str, location: str) -> RepoRecord:
    """Record the repo (a local path, or owner/name) and add its dynamic partition (idempotent)."""
    record = registry(instance).add(kind, location)
    if not instance.has_dynamic_partition(repos_partitions.name, record.partition_key):
        instance.add_dynamic_partitions(repos_partitions.name, [record.partition_key])
    return record
