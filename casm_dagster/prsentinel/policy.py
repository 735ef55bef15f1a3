"""pr-sentinel's policy stage: the PR's own diff (merge base → head), scored by the same
engine and ruleset as a planned patch. A gated PR gets an approval request bound to the
diff's hash (a new push needs a new approval) and answerable on the PR itself."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from casm_dagster.contracts.run import Snapshot
from casm_dagster.policy.check import DIFF_ARGS, engine_for
from casm_dagster.policy.diff import parse_diff
from casm_dagster.policy.document import HitlInfo, RunContext, policy_document
from casm_dagster.policy.sources import GitRange
from casm_dagster.run.files import POLICY_FILE
from casm_dagster.run.journal import Journal, stage, write_json_atomic
from casm_dagster.safety import gitops
from casm_dagster.stages.policy import event_data, hitl_info, repo_type, request_approval, ruleset_for
from casm_dagster.stores.approvals import ApprovalStore


@dataclass(frozen=True)
class PrPolicy:
    status: str  # pass | warn | gate | block
    score: float
    reason_codes: list[str]
    summary: str
    scope_notes: str
    deny_files: list[str]
    diff_sha256: str
    hitl: HitlInfo
    request_id: str | None = None
    expires_at: str | None = None


def score(
    snap: Snapshot,
    journal: Journal,
    approvals: ApprovalStore,
    start: str,
    mode_override: str | None,
    pull: dict | None,
) -> PrPolicy:
    """``pull``: ``{"repo", "pr", "head", "url"}`` in GitHub mode (where approvals are read); None
    for a local range, whose gated requests are approved with ``casm approve``."""
    spec = snap.spec
    repo = Path(spec.repo_path)
    with stage(journal, "policy", f"scoring the PR diff {start[:12]}..{snap.head_commit[:12]}"):
        ruleset = ruleset_for(snap)
        diff = gitops.git(repo, *DIFF_ARGS, start, snap.head_commit).stdout
        result = engine_for(ruleset).evaluate(parse_diff(diff), GitRange(repo, start, snap.head_commit))
        hitl = HitlInfo()
        if result.status == "gate":
            mode = spec.manifest.policy.hitl.mode if pull else "local"
            if pull and mode_override and mode_override != mode:
                if hitl_info(spec, mode_override).approvers:
                    mode = mode_override
                else:  # an allowlist is what makes a GitHub approval mean something
                    journal.decision(
                        "policy", "hitl_mode_kept", f".casm.yaml asks for {mode_override}, but the template "
                        f"lists no GitHub approvers: {mode} is kept",
                    )  # fmt: skip
            hitl = hitl_info(spec, mode)
        ctx = RunContext(
            run_id=spec.run_id,
            template_id=spec.template_id,
            repo_type=repo_type(spec),
            repo_id=spec.repo,
            started_at=journal.state.started_at,
            base=start,
            head=snap.head_commit,
            stage="policy",
            pull_request={"present": True, "number": pull["pr"], "url": pull["url"]} if pull else None,
        )
        document = policy_document(result, ctx, hitl)
        data = event_data(result, document)
        journal.state.policy_status = result.status
        journal.decision("policy", f"policy_{result.status}", result.human_summary, **data)
        digest = hashlib.sha256(diff).hexdigest()
        request = None
        if result.status == "gate":
            channel = {"github": pull} if pull else None
            request = request_approval(approvals, spec, journal, hitl, digest, ruleset, result, data, channel)
        write_json_atomic(journal.run_dir / POLICY_FILE, document)
        journal.emit(
            "stage_completed",
            f"{result.status} (risk {result.score:.2f})",
            stage="policy",
            status=result.status,
            score=result.score,
            request_id=request.request_id if request else None,
        )
    return PrPolicy(
        status=result.status,
        score=result.score,
        reason_codes=result.reason_codes,
        summary=result.human_summary,
        scope_notes=result.scope.notes if result.scope else "",
        deny_files=result.scope.deny_files if result.scope else [],
        diff_sha256=digest,
        hitl=hitl,
        request_id=request.request_id if request else None,
        expires_at=request.expires_at if request else None,
    )
