"""GitHub webhook payloads → what CASM does about them.

``pull_request`` opened / reopened / synchronize / ready_for_review → a pr-sentinel run
request (the same run key as the PR sensor's, so whichever sees a head first wins);
a PR ``labeled`` event, an ``issue_comment`` on a PR and a submitted
``pull_request_review`` → an approval candidate for the PR's pending HITL request;
everything else (a closed PR, a draft, the ``label`` event about label definitions) →
nothing. A payload without the fields its event must carry is a ``WebhookError``.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import asdict, dataclass
from typing import Any

from casm_dagster.errors import CasmError

EVENTS = ("pull_request", "issue_comment", "pull_request_review", "label")
REVIEW_ACTIONS = ("opened", "reopened", "synchronize", "ready_for_review")


class WebhookError(CasmError):
    """A payload or signature CASM cannot accept."""


@dataclass(frozen=True)
class ReviewRequest:
    repo: str
    pr: int
    head_sha: str
    action: str
    type: str = "run_request"


@dataclass(frozen=True)
class ApprovalCandidate:
    repo: str
    pr: int
    kind: str  # label | comment
    actor: str
    at: str
    label: str | None = None
    body: str | None = None
    type: str = "approval"

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        if data["body"] is not None:
            data["body"] = data["body"][:200]  # enough to see why it matched
        return data


Derived = ReviewRequest | ApprovalCandidate


def _get(payload: Any, path: str) -> Any:
    node = payload
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise WebhookError(f"malformed payload: missing {path!r}")
        node = node[part]
    return node


def _str(payload: Any, path: str) -> str:
    value = _get(payload, path)
    if not isinstance(value, str) or not value:
        raise WebhookError(f"malformed payload: {path!r} must be a non-empty string")
    return value


def _int(payload: Any, path: str) -> int:
    value = _get(payload, path)
    if not isinstance(value, int) or isinstance(value, bool):
        raise WebhookError(f"malformed payload: {path!r} must be an integer")
    return value


def derive(event: str, payload: Any, received_at: str) -> list[Derived]:
    if event not in EVENTS:
        raise WebhookError(f"unsupported event {event!r} (one of: {', '.join(EVENTS)})")
    if not isinstance(payload, dict):
        raise WebhookError("malformed payload: expected a JSON object")
    if event == "label":
        _str(payload, "action")
        return []  # label definitions changed: no PR is involved
    action = _str(payload, "action")
    repo = _str(payload, "repository.full_name")
    if event == "pull_request":
        number = _int(payload, "pull_request.number")
        if action in REVIEW_ACTIONS:
            if _get(payload, "pull_request.draft") is True:
                return []  # reviewed when marked ready (ready_for_review)
            return [ReviewRequest(repo, number, _str(payload, "pull_request.head.sha"), action)]
        if action == "labeled":
            return [ApprovalCandidate(repo, number, "label", _str(payload, "sender.login"), received_at,
                                      label=_str(payload, "label.name"))]  # fmt: skip
        return []
    if event == "issue_comment":
        if not isinstance(_get(payload, "issue"), dict) or "pull_request" not in payload["issue"]:
            return []  # a comment on an issue, not on a PR
        if action != "created":
            return []  # edits never approve: the comment's time would be rewritten
        return [
            ApprovalCandidate(
                repo,
                _int(payload, "issue.number"),
                "comment",
                _str(payload, "comment.user.login"),
                _str(payload, "comment.created_at"),
                body=_get(payload, "comment.body") or "",
            )
        ]
    # pull_request_review
    if action != "submitted":
        return []
    return [
        ApprovalCandidate(
            repo,
            _int(payload, "pull_request.number"),
            "comment",
            _str(payload, "review.user.login"),
            _str(payload, "review.submitted_at"),
            body=_get(payload, "review.body") or "",
        )
    ]


def verify_signature(secret: str, body: bytes, header: str | None) -> None:
    """``X-Hub-Signature-256: sha256=<hex HMAC of the raw body>``; constant-time compare."""
    if not header or not header.startswith("sha256="):
        raise WebhookError("missing X-Hub-Signature-256 header (configure the webhook's secret)")
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, header.strip()):
        raise WebhookError("X-Hub-Signature-256 does not match: wrong secret, or the body was altered")
