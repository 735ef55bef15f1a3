"""The policy stage's output: the decision on the planned patch, and the HITL request if any."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class PolicyDecision(BaseModel):
    """The policy stage's decision (the asset ``policy_decision``): proceed (pass/warn), hold for
    a human (gate) or stop (block)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Literal["pass", "warn", "gate", "block", "skipped"]
    score: float
    reason_codes: list[str]
    ruleset_id: str
    ruleset_sha256: str
    plan_sha256: str
    summary: str
    allow_files: list[str] = []
    deny_files: list[str] = []
    scope_notes: str = ""
    request_id: str | None = None
    expires_at: str | None = None
    document: str | None = None  # path of policy_decisions.json in the run dir

    @property
    def proceeds(self) -> bool:
        return self.status in ("pass", "warn", "skipped")
