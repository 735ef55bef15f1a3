"""``policy_decisions.json`` (schemas/policy_decisions.schema.json, v0.1) from a result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from casm_dagster.policy.engine import PolicyResult, Signal
from casm_dagster.run.ids import new_ulid

REDACTION_NOTES = (
    "No raw secret, matched value or code snippet is stored. Signals carry file, line range, "
    "pattern id and an HMAC-SHA256 of the diff hunk keyed per installation."
)


@dataclass(frozen=True)
class RunContext:
    run_id: str
    template_id: str
    repo_type: str  # "local" | "github"
    repo_id: str
    started_at: str
    base: str
    head: str
    stage: str = "plan"
    pull_request: dict[str, Any] | None = None


@dataclass(frozen=True)
class HitlInfo:
    mode: str = "none"  # none | local | github_label | github_comment
    status: str = "not_required"  # not_required | pending | approved | denied | expired
    approvers: tuple[str, ...] = ()
    required_label: str | None = None
    approval_comment_regex: str | None = None
    approved_by: str | None = None
    approved_at: str | None = None
    reason: str | None = None


def _signal(signal: Signal) -> dict[str, Any]:
    out: dict[str, Any] = {
        "signal_id": signal.signal_id,
        "type": signal.type,
        "severity": signal.severity,
        "file": signal.file,
        "message": signal.message,
    }
    if signal.line_start is not None:
        out["line_start"] = signal.line_start
        out["line_end"] = signal.line_end or signal.line_start
    evidence: dict[str, Any] = {"kind": signal.evidence.kind}
    if signal.evidence.pattern_id:
        evidence["pattern_id"] = signal.evidence.pattern_id
    if signal.evidence.diff_hunk_sha256:
        evidence["diff_hunk_sha256"] = signal.evidence.diff_hunk_sha256
    out["evidence"] = evidence
    return out


def _decisions(result: PolicyResult, ctx: RunContext, hitl: HitlInfo) -> list[dict[str, Any]]:
    pending = hitl.status == "pending"
    status = "pending_hitl" if (result.status == "gate" and pending) else "applied"
    main = {
        "decision_id": new_ulid(),
        "stage": ctx.stage,
        "action": {"pass": "allow"}.get(result.status, result.status),
        "status": status,
        "reason_codes": result.reason_codes,
    }
    decisions = [main]
    if result.scope is not None:
        decisions.append(
            {
                "decision_id": new_ulid(),
                "stage": ctx.stage,
                "action": "scope_reduce",
                "status": "pending_hitl" if pending else ("applied" if hitl.status == "approved" else "skipped"),
                "reason_codes": result.reason_codes,
                "scope_reduction": {
                    "allow_files": result.scope.allow_files,
                    "deny_files": result.scope.deny_files,
                    "notes": result.scope.notes,
                },
            }
        )
    return decisions


def _hitl(result: PolicyResult, hitl: HitlInfo) -> dict[str, Any]:
    out: dict[str, Any] = {
        "required": result.status == "gate",
        "mode": hitl.mode if result.status == "gate" else "none",
        "status": hitl.status if result.status == "gate" else "not_required",
    }
    if result.status == "gate":
        out["required_approvals"] = 1
        if hitl.approvers:
            out["approvers"] = list(hitl.approvers)
        if hitl.required_label:
            out["required_label"] = hitl.required_label
        if hitl.approval_comment_regex:
            out["approval_comment_regex"] = hitl.approval_comment_regex
        if hitl.approved_by:
            approval = {"approved_by": hitl.approved_by}
            if hitl.approved_at:
                approval["approved_at"] = hitl.approved_at
            if hitl.reason:
                approval["reason"] = hitl.reason
            out["approval"] = approval
    return out


def policy_document(result: PolicyResult, ctx: RunContext, hitl: HitlInfo | None = None) -> dict[str, Any]:
    hitl = hitl or HitlInfo()
    run: dict[str, Any] = {
        "run_id": ctx.run_id,
        "template_id": ctx.template_id,
        "repo": {"type": ctx.repo_type, "id": ctx.repo_id},
        "started_at": ctx.started_at,
        "commit": {"base": ctx.base, "head": ctx.head},
    }
    if ctx.pull_request is not None:
        run["pull_request"] = ctx.pull_request
    thresholds = result.ruleset.model.risk_thresholds
    return {
        "schema_version": "0.1",
        "run": run,
        "ruleset": {"id": result.ruleset.id, "hash": result.ruleset.sha256, "source": result.ruleset.source},
        "summary": {
            "status": result.status,
            "reason_codes": result.reason_codes,
            "human_summary": result.human_summary,
        },
        "risk": {
            "score": result.score,
            "thresholds": {"warn": thresholds.warn, "gate": thresholds.gate, "block": thresholds.block},
            "components": [
                {
                    "name": c.name,
                    "weight": c.weight,
                    "contribution": c.contribution,
                    "evidence_count": c.evidence_count,
                }
                for c in result.components
            ],
        },
        "signals": [_signal(s) for s in result.signals],
        "decisions": _decisions(result, ctx, hitl),
        "hitl": _hitl(result, hitl),
        "redaction": {"secrets": True, "snippets_included": False, "notes": REDACTION_NOTES},
    }
