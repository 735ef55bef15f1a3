"""Run config for CASM's jobs, typed (``dg.RunConfig``) and built in one place: the CLI's
in-process launches, the heartbeat schedules, the PR sensor and the HITL sensor all ask here."""

from __future__ import annotations

import dagster as dg

from casm_dagster.assets.config import AuditConfig, PrReviewConfig
from casm_dagster.ops.hitl import ContinuationConfig
from casm_dagster.resources import CasmResource

# CASM prints its own progress in the CLI; Dagster's console logger would drown it.
QUIET_LOGGERS = {"console": {"config": {"log_level": "ERROR"}}}


def _run_config(op: str, config: dg.Config, casm: CasmResource | None) -> dg.RunConfig:
    """``casm``: a run-specific resource (the CLI's state dir and progress); None keeps the
    code location's own (schedules, sensors, the UI)."""
    if casm is None:
        return dg.RunConfig(ops={op: config})
    return dg.RunConfig(ops={op: config}, resources={"casm": casm}, loggers=QUIET_LOGGERS)


def audit_run_config(config: AuditConfig, casm: CasmResource | None = None) -> dg.RunConfig:
    """``audit_job``: its config goes to the first stage, ``repo_snapshot``."""
    return _run_config("repo_snapshot", config, casm)


def noop_run_config(config: AuditConfig, casm: CasmResource | None = None) -> dg.RunConfig:
    """``noop_job``: its one op, ``noop_run``."""
    return _run_config("noop_run", config, casm)


def pr_review_run_config(config: PrReviewConfig, casm: CasmResource | None = None) -> dg.RunConfig:
    """``pr_sentinel_job``: its one asset, ``pr_review``."""
    return _run_config("pr_review", config, casm)


def continuation_run_config(request_id: str, casm: CasmResource | None = None) -> dg.RunConfig:
    """``hitl_continuation_job``: the approval request to continue."""
    return _run_config("continue_approved_run", ContinuationConfig(request_id=request_id), casm)
