"""The patch plan: the fixer's groups of deterministic fixes, one patch file each."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class PatchGroup(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    group_id: str  # e.g. "01-ruff-F401": ordinal + tool + rule, also the patch file stem
    title: str
    tool: str
    rules: list[str]
    files: list[str]
    finding_ids: list[str]
    patch_file: str  # relative to the run dir, e.g. "patches/01-ruff-F401.patch"
    patch_sha256: str
    lines_added: int
    lines_removed: int


class PatchPlan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_commit: str
    groups: list[PatchGroup]
    plan_sha256: str  # binds approvals and deliveries to exactly this set of patches
    notes: list[str] = []
