"""Continuous Sentinel's rules, without Dagster: which repos a heartbeat tick audits, and
which pull-request heads the PR sensor has not reviewed yet.

Run keys make both idempotent: ``hb:<partition>:<window>`` (a tick evaluated twice
launches nothing twice) and ``pr:<partition>:<number>:<head sha>`` (one review per head,
whether the sensor's poll or a webhook saw it first).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from casm_dagster.github.connector import GITHUB_FAILURES, PullRequest
from casm_dagster.stores.sentinels import Sentinel

WINDOW_FORMAT = {"hourly": "%Y-%m-%dT%H", "daily": "%Y-%m-%d"}
CRON = {"hourly": "0 * * * *", "daily": "0 3 * * *"}


def window(schedule: str, at: datetime) -> str:
    return at.astimezone(UTC).strftime(WINDOW_FORMAT[schedule])


def heartbeat_key(partition_key: str, window_id: str) -> str:
    return f"hb:{partition_key}:{window_id}"


def pr_key(partition_key: str, number: int, head_sha: str) -> str:
    return f"pr:{partition_key}:{number}:{head_sha}"


@dataclass(frozen=True)
class Due:
    """One run a heartbeat tick asks for."""

    partition_key: str
    repo: str
    template: str
    run_key: str
    window: str


def due(sentinels: Iterable[Sentinel], schedule: str, at: datetime) -> list[Due]:
    """Every repo registered on ``schedule`` with a heartbeat template is due once per window."""
    w = window(schedule, at)
    return [
        Due(s.partition_key, s.repo, s.template, heartbeat_key(s.partition_key, w), w)
        for s in sentinels
        if s.schedule == schedule and s.template
    ]


@dataclass(frozen=True)
class PrReview:
    """One pr-sentinel run the PR sensor (or a webhook) asks for."""

    partition_key: str
    repo: str
    template: str
    pr: int
    head_sha: str

    @property
    def run_key(self) -> str:
        return pr_key(self.partition_key, self.pr, self.head_sha)


@dataclass
class PollCursor:
    """The PR sensor's cursor: per repo the open PRs' reviewed heads and the list's ETag;
    where the round-robin resumes; the webhook inbox position."""

    heads: dict[str, dict[str, str]] = field(default_factory=dict)  # partition → {pr number: head sha}
    etags: dict[str, str] = field(default_factory=dict)
    offset: int = 0
    inbox: int = 0

    def dump(self) -> str:
        return json.dumps(
            {"heads": self.heads, "etags": self.etags, "offset": self.offset, "inbox": self.inbox},
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def load(cls, text: str | None) -> PollCursor:
        if not text:
            return cls()
        try:
            data = json.loads(text)
            return cls(dict(data["heads"]), dict(data["etags"]), int(data["offset"]), int(data["inbox"]))
        except (ValueError, KeyError, TypeError):
            return cls()  # a garbled cursor re-polls everything; the run keys dedupe


Lister = Callable[[str, str | None], tuple[str | None, list[PullRequest] | None]]


def poll(
    cursor: PollCursor, sentinels: list[Sentinel], list_open: Lister, max_repos: int, budget_s: float = 40.0
) -> tuple[list[PrReview], list[str]]:
    """Poll up to ``max_repos`` watched repos (round-robin, within ``budget_s`` seconds) and
    return the new heads to review and the per-repo errors; ``cursor`` is updated in place.
    Drafts wait until they are marked ready; closed PRs leave the cursor."""
    watched = [s for s in sentinels if s.pr_template]
    if not watched:
        return [], []
    start = cursor.offset % len(watched)
    batch = (watched[start:] + watched[:start])[:max_repos]
    reviews: list[PrReview] = []
    errors: list[str] = []
    deadline = time.monotonic() + budget_s
    polled = 0
    for s in batch:
        if time.monotonic() > deadline:
            break  # the rest first thing next tick
        polled += 1
        try:
            etag, pulls = list_open(s.repo, cursor.etags.get(s.partition_key))
        except GITHUB_FAILURES as exc:  # one repo's problem (access, outage) never stops the rest
            errors.append(str(exc))
            continue
        if pulls is None:
            continue  # 304: nothing changed, no rate limit spent
        if etag:
            cursor.etags[s.partition_key] = etag
        known = cursor.heads.get(s.partition_key, {})
        current: dict[str, str] = {}
        for pr in pulls:
            if pr.draft:
                continue
            current[str(pr.number)] = pr.head_sha
            if known.get(str(pr.number)) != pr.head_sha:
                reviews.append(PrReview(s.partition_key, s.repo, s.pr_template, pr.number, pr.head_sha))
        cursor.heads[s.partition_key] = current
    cursor.offset = (start + polled) % len(watched)
    names = {s.partition_key for s in sentinels}
    for gone in [k for k in cursor.heads if k not in names]:  # unregistered repos leave the cursor
        cursor.heads.pop(gone, None)
        cursor.etags.pop(gone, None)
    return reviews, errors
