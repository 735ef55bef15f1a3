"""The environment a repo's checks run in: built the way the repo builds itself, cached."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class Environment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["python", "node", "none"]
    status: Literal["ready", "failed", "none"]  # none: nothing to build (no manifest)
    detail: str  # what was detected, or exactly why it could not be built
    key: str = ""  # content address: manifests/lockfiles, interpreter, recipe version
    path: str | None = None  # the cached environment directory
    python: str | None = None  # its interpreter (python kind)
    editable: bool = False  # the project itself is installed from the tree under test
    cached: bool = False  # reused (warm) rather than built (cold)
    seconds: float = 0.0  # setup wall time in this run
    steps: list[str] = []  # what was run to build it (argv, joined), for the report
