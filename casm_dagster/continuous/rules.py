"""Continuous Sentinel's rules, without Dagster: which repos a heartbeat tick audits, and
which pull-request heads the PR sensor has not reviewed yet.

Run keys make both idempotent: ``hb:<partition>:<window>`` (a tick evaluated twice
launches nothing twice) and ``pr:<partition>:<number>:<head sha>`` (one review per head,
whether the sensor's poll or a webhook saw it first).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from casm_dagster.github.connector import GITHUB_FAILURES, PullRequest
from casm_dagster.stores.sentinels import Sentinel

WINDOW_FORMAT = {"hourly": "%Y-%m-%dT%H", "daily": "%Y-%m-%d"}
# A schedule ticks several times per window and each repo has its own slot in the window, so
# 1,000 repos arrive as a steady stream (~84 per 5-minute tick) rather than one burst the
# queue drains for the rest of the hour. A repo skipped at its slot (its last audit still
# queued or running, or the tick's cap reached) is due again at every later tick of the window.
CRON = {"hourly": "*/5 * * * *", "daily": "0 * * * *"}
TICKS_PER_WINDOW = {"hourly": 12, "daily": 24}
MAX_RUNS_PER_TICK = 150  # 12 ticks × 150 = 1,800 audits an hour at most, whatever is registered


def window(schedule: str, at: datetime) -> str:
    return at.astimezone(UTC).strftime(WINDOW_FORMAT[schedule])


def tick_index(schedule: str, at: datetime) -> int:
    """Which of the window's ticks ``at`` is (0-based)."""
    at = at.astimezone(UTC)
    return at.minute * TICKS_PER_WINDOW["hourly"] // 60 if schedule == "hourly" else at.hour


def slot(partition_key: str, schedule: str) -> int:
    """A repo's tick within each window: stable (a hash of its partition), spread evenly."""
    digest = hashlib.sha256(partition_key.encode()).digest()
    return int.from_bytes(digest[:4], "big") % TICKS_PER_WINDOW[schedule]


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


@dataclass(frozen=True)
class Skipped:
    """What a tick left for a later tick, counted for the tick's log line."""

    busy: int = 0  # the repo's previous audit is still queued or running
    capped: int = 0  # over the tick's cap


def due(
    sentinels: Iterable[Sentinel],
    schedule: str,
    at: datetime,
    launched: Collection[str] = (),
    busy: Collection[str] = (),
    cap: int = MAX_RUNS_PER_TICK,
) -> tuple[list[Due], Skipped]:
    """The repos registered on ``schedule`` (with a heartbeat template) whose slot has come in
    this window, minus those already ``launched`` this window and those ``busy`` with an audit,
    earliest slot first, at most ``cap``. Each repo is audited once per window."""
    w, now = window(schedule, at), tick_index(schedule, at)
    ready = sorted(
        (slot(s.partition_key, schedule), s.partition_key, s)
        for s in sentinels
        if s.schedule == schedule and s.template and s.partition_key not in launched
    )
    ready = [(n, s) for n, _, s in ready if n <= now]
    waiting = [s for _, s in ready if s.partition_key not in busy]
    chosen = waiting[:cap]
    runs = [Due(s.partition_key, s.repo, s.template, heartbeat_key(s.partition_key, w)) for s in chosen]
    return runs, Skipped(busy=len(ready) - len(waiting), capped=len(waiting) - len(chosen))


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
