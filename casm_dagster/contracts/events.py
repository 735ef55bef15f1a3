"""Typed run events: the append-only ``events.jsonl`` that ``casm explain`` replays."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

Stage = Literal["ingest", "forecast", "analyze", "plan", "policy", "apply", "validate", "report", "telemetry"]
STAGES: tuple[Stage, ...] = (
    "ingest",
    "forecast",
    "analyze",
    "plan",
    "policy",
    "apply",
    "validate",
    "report",
    "telemetry",
)

EventType = Literal[
    "run_started",
    "stage_started",
    "stage_completed",
    "stage_skipped",
    "stage_failed",
    "decision",
    "run_completed",
    "run_failed",
    "security_alert",  # the policy blocked the change (a secret, or a score over block)
    "run_held",  # gated: waiting for a human decision (HITL)
    "run_blocked",
    "hitl_decision",  # approved / denied / expired / refused / void, with who and why
    "run_resumed",  # the approved continuation picked the run up
    "model_call",  # one request to a model: tokens, latency, cost, outcome (recorded before use)
    "run_stopped",  # the budget stopped the run before any model call
]

_NEEDS_STAGE = {
    "model_call",
    "stage_started",
    "stage_completed",
    "stage_skipped",
    "stage_failed",
    "decision",
    "security_alert",
}


class RunEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seq: int  # 1-based, gap-free within a run
    run_id: str
    ts: str  # ISO 8601 UTC
    type: EventType
    stage: Stage | None = None
    message: str
    data: dict[str, Any] = {}

    @model_validator(mode="after")
    def _stage_where_needed(self) -> RunEvent:
        if self.type in _NEEDS_STAGE and self.stage is None:
            raise ValueError(f"event type {self.type!r} needs a stage")
        return self
