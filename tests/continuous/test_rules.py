"""Continuous Sentinel's rules without Dagster or GitHub: heartbeat windows and run keys,
PR polling with a cursor, webhook payloads, markers, review scope, repo settings."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest

from casm_dagster.continuous import rules
from casm_dagster.github import markers
from casm_dagster.github.connector import GitHubError, PullRequest
from casm_dagster.github.webhooks import ApprovalCandidate, ReviewRequest, WebhookError, derive, verify_signature
from casm_dagster.prsentinel.scope import select
from casm_dagster.prsentinel.settings import RepoSettings, parse_settings
from casm_dagster.safety.repo_scan import Inventory, SkippedFile, SourceFile
from casm_dagster.stores.sentinels import Sentinel


def _sentinel(repo: str, schedule: str = "hourly", template: str = "repo-auditor", pr: str = "pr-sentinel") -> Sentinel:
    key = repo.replace("/", "__")
    return Sentinel(key, repo, schedule, template, pr, "t", "t")


def _pr(number: int, sha: str, draft: bool = False) -> PullRequest:
    return PullRequest(number, "t", "open", False, draft, "alice", "feat", sha, "o/r", "main", "b" * 40, "", "")


# -- heartbeat --------------------------------------------------------------------------


def test_due_once_per_window_with_stable_run_keys() -> None:
    regs = [_sentinel("o/a"), _sentinel("o/b", "daily"), _sentinel("o/c", template="")]
    late = datetime(2026, 11, 23, 14, 55, tzinfo=UTC)  # the window's last tick: every slot has come
    hourly, _ = rules.due(regs, "hourly", late)
    assert [d.repo for d in hourly] == ["o/a"]  # o/b is daily, o/c watches PRs only
    assert hourly[0].run_key == "hb:o__a:2026-11-23T14"
    # Its own tick of the window, and every later one, ask for the same run key.
    first = datetime(2026, 11, 23, 14, 5 * rules.slot("o__a", "hourly"), tzinfo=UTC)
    assert [d.run_key for d in rules.due(regs, "hourly", first)[0]] == [hourly[0].run_key]
    nxt = datetime(2026, 11, 23, 15, 55, tzinfo=UTC)
    assert rules.due(regs, "hourly", nxt)[0][0].run_key.endswith("T15")
    daily, _ = rules.due(regs, "daily", datetime(2026, 11, 23, 23, 0, tzinfo=UTC))
    assert [(d.repo, d.run_key) for d in daily] == [("o/b", "hb:o__b:2026-11-23")]


def test_a_thousand_repos_are_spread_over_the_hour() -> None:
    regs = [_sentinel(f"org/repo-{i:04d}") for i in range(1000)]
    per_tick = [0] * rules.TICKS_PER_WINDOW["hourly"]
    for s in regs:
        per_tick[rules.slot(s.partition_key, "hourly")] += 1
    assert sum(per_tick) == 1000 and min(per_tick) >= 50 and max(per_tick) <= 120, per_tick
    launched: set[str] = set()
    for minute in range(0, 60, 5):  # the hour's ticks, each launching what is due
        runs, skipped = rules.due(regs, "hourly", datetime(2026, 11, 23, 14, minute, tzinfo=UTC), launched)
        assert len(runs) == per_tick[minute // 5] and skipped == rules.Skipped()
        launched |= {d.partition_key for d in runs}
    assert len(launched) == 1000  # each once


def test_busy_and_capped_repos_wait_for_a_later_tick_of_the_window() -> None:
    regs = [_sentinel(f"org/repo-{i:04d}") for i in range(40)]
    late = datetime(2026, 11, 23, 14, 55, tzinfo=UTC)
    keys = sorted(s.partition_key for s in regs)
    busy = set(keys[:5])  # their previous audit is still queued or running
    runs, skipped = rules.due(regs, "hourly", late, busy=busy, cap=30)
    assert len(runs) == 30 and skipped == rules.Skipped(busy=5, capped=5)
    assert not busy & {d.partition_key for d in runs}
    # The next tick takes the rest (the busy ones once they are done); the earliest slots go first.
    rest, skipped = rules.due(regs, "hourly", late, launched={d.partition_key for d in runs}, cap=30)
    assert len(rest) == 10 and skipped == rules.Skipped()
    assert [rules.slot(d.partition_key, "hourly") for d in runs] == sorted(
        rules.slot(d.partition_key, "hourly") for d in runs
    )


# -- PR polling -------------------------------------------------------------------------


def test_poll_reports_each_new_head_once_and_skips_drafts_and_304s() -> None:
    regs = [_sentinel("o/a"), _sentinel("o/b")]
    answers = {"o/a": ('"e1"', [_pr(1, "a1"), _pr(2, "a2", draft=True)]), "o/b": ('"e2"', [])}
    seen_etags: list[tuple[str, str | None]] = []

    def lister(repo: str, etag: str | None):
        seen_etags.append((repo, etag))
        return answers[repo]

    cursor = rules.PollCursor()
    reviews, errors = rules.poll(cursor, regs, lister, 10)
    assert [(r.repo, r.pr, r.head_sha) for r in reviews] == [("o/a", 1, "a1")] and errors == []
    assert reviews[0].run_key == "pr:o__a:1:a1"
    # Persisted and reloaded: nothing new → nothing requested; the ETags are sent back.
    cursor = rules.PollCursor.load(cursor.dump())
    answers["o/a"] = ('"e1"', None)  # 304
    assert rules.poll(cursor, regs, lister, 10) == ([], [])
    assert ("o/a", '"e1"') in seen_etags and ("o/b", '"e2"') in seen_etags
    # A push (new head) and the draft marked ready → two reviews; PR 1's old head is gone.
    answers["o/a"] = ('"e3"', [_pr(1, "a1b"), _pr(2, "a2")])
    reviews, _ = rules.poll(cursor, regs, lister, 10)
    assert [(r.pr, r.head_sha) for r in reviews] == [(1, "a1b"), (2, "a2")]
    assert cursor.heads["o__a"] == {"1": "a1b", "2": "a2"}


def test_poll_round_robin_bounds_work_and_one_failing_repo_does_not_stop_the_rest() -> None:
    regs = [_sentinel(f"o/r{i}") for i in range(5)]
    polled: list[str] = []

    def lister(repo: str, etag: str | None):
        polled.append(repo)
        if repo == "o/r1":
            raise GitHubError("reading o/r1: not found (404)")
        return None, [_pr(1, repo)]

    cursor = rules.PollCursor()
    reviews, errors = rules.poll(cursor, regs, lister, 2)
    assert polled == ["o/r0", "o/r1"] and errors == ["reading o/r1: not found (404)"]
    assert [r.repo for r in reviews] == ["o/r0"]
    rules.poll(cursor, regs, lister, 2)
    rules.poll(cursor, regs, lister, 2)
    assert polled[2:] == ["o/r2", "o/r3", "o/r4", "o/r0"]


def test_garbled_cursor_starts_over() -> None:
    assert rules.PollCursor.load("{not json") == rules.PollCursor()
    assert rules.PollCursor.load('{"heads": 3}') == rules.PollCursor()


# -- webhooks ---------------------------------------------------------------------------


def _pull_request_payload(action: str, draft: bool = False) -> dict:
    return {
        "action": action,
        "number": 7,
        "pull_request": {"number": 7, "draft": draft, "head": {"sha": "c" * 40}, "state": "open"},
        "repository": {"full_name": "octo/app"},
        "sender": {"login": "alice"},
    }


@pytest.mark.parametrize("action", ["opened", "reopened", "synchronize", "ready_for_review"])
def test_pull_request_actions_that_need_a_review(action: str) -> None:
    assert derive("pull_request", _pull_request_payload(action), "2026-11-23T00:00:00Z") == [
        ReviewRequest("octo/app", 7, "c" * 40, action)
    ]


@pytest.mark.parametrize("action", ["closed", "edited", "assigned"])
def test_pull_request_actions_that_need_nothing(action: str) -> None:
    assert derive("pull_request", _pull_request_payload(action), "now") == []


def test_draft_pr_waits_and_label_events_are_approval_candidates() -> None:
    assert derive("pull_request", _pull_request_payload("opened", draft=True), "now") == []
    payload = {**_pull_request_payload("labeled"), "label": {"name": "casm-approved"}}
    assert derive("pull_request", payload, "2026-11-23T10:00:00Z") == [
        ApprovalCandidate("octo/app", 7, "label", "alice", "2026-11-23T10:00:00Z", label="casm-approved")
    ]
    assert derive("label", {"action": "created", "label": {"name": "x"}}, "now") == []


def test_comments_on_prs_only_and_never_edits() -> None:
    payload = {
        "action": "created",
        "issue": {"number": 7, "pull_request": {"url": "x"}},
        "comment": {"body": "/casm approve looks fine", "user": {"login": "bob"}, "created_at": "2026-11-23T11:00:00Z"},
        "repository": {"full_name": "octo/app"},
    }
    (found,) = derive("issue_comment", payload, "now")
    assert (found.kind, found.actor, found.at, found.body) == (
        "comment",
        "bob",
        "2026-11-23T11:00:00Z",
        payload["comment"]["body"],
    )
    assert derive("issue_comment", {**payload, "action": "edited"}, "now") == []
    plain_issue = {**payload, "issue": {"number": 7}}
    assert derive("issue_comment", plain_issue, "now") == []


@pytest.mark.parametrize(
    ("event", "payload", "problem"),
    [
        ("pull_request", {"action": "opened", "repository": {"full_name": "o/r"}}, "missing 'pull_request.number'"),
        ("pull_request", {"action": "opened"}, "missing 'repository.full_name'"),
        ("pull_request", [], "expected a JSON object"),
        (
            "issue_comment",
            {"action": "created", "repository": {"full_name": "o/r"}, "issue": {"number": "7", "pull_request": {}}},
            "'issue.number' must be an integer",
        ),
        ("push", {}, "unsupported event 'push'"),
    ],
)
def test_malformed_payloads_are_clear_errors(event: str, payload, problem: str) -> None:
    with pytest.raises(WebhookError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        derive(event, payload, "now")


def test_signature_verification() -> None:
    body = json.dumps({"a": 1}).encode()
    good = "sha256=" + hmac.new(b"s3cret-s3cret-s3cret", body, hashlib.sha256).hexdigest()
    verify_signature("s3cret-s3cret-s3cret", body, good)
    with pytest.raises(WebhookError, match="does not match"):
        verify_signature("s3cret-s3cret-s3cret", body + b" ", good)
    with pytest.raises(WebhookError, match="missing X-Hub-Signature-256"):
        verify_signature("s3cret-s3cret-s3cret", body, None)


# -- markers, settings, scope -------------------------------------------------------------


def test_marker_round_trip_cannot_be_closed_early() -> None:
    state = {"head": "abc", "findings": [{"message": "x --> <b>y</b>"}]}
    text = markers.render("pr-sentinel", state) + "\nbody"
    assert text.count("-->") == 1
    assert markers.read(text, "pr-sentinel") == state
    assert markers.read(text, "cost-report") is None
    assert markers.read("<!-- casm:pr-sentinel {garbled -->", "pr-sentinel") == {}


def test_repo_settings_defaults_and_clear_errors() -> None:
    assert parse_settings(None) == (RepoSettings(), None)
    settings, problem = parse_settings(b"severity_threshold: high\nignore: ['docs/**']\nmax_findings: 3\n")
    assert problem is None and settings.severity_threshold == "high" and settings.max_findings == 3
    settings, problem = parse_settings(b"severity_threshold: loud\nmax_findings: 0\n")
    assert settings == RepoSettings()
    assert "severity_threshold" in problem and "max_findings" in problem
    _, problem = parse_settings(b"ignore: [\n")
    assert "not valid YAML" in problem
    _, problem = parse_settings(b"ignore: ['../x']\n")
    assert "ignore" in problem


def test_scope_cuts_in_order_with_reasons() -> None:
    files = [
        SourceFile(p, "python", "x = 1\n" * n)
        for p, n in [("a.py", 10), ("big.py", 40_000), ("c.py", 5), ("d.py", 3), ("docs/x.py", 1)]
    ]
    inventory = Inventory(
        files=[*files, SourceFile("vendor/lib.py", "python", "x")],
        skipped=[SkippedFile(path="img.png", reason="binary")],
    )
    changed = {
        "a.py": "M",
        "big.py": "A",
        "c.py": "M",
        "docs/x.py": "M",
        "vendor/lib.py": "A",
        "img.png": "A",
        "gone.py": "D",
        "d.py": "M",
    }
    settings = RepoSettings(ignore=["docs/**"], token_budget=5_000)
    scope = select(changed, inventory, settings, {"a.py", "big.py"}, "f" * 40, covered={"a.py", "c.py"})
    assert scope.reviewed == ["a.py", "d.py"]  # d.py: unchanged, but the last review skipped it
    assert scope.carried == ["c.py"]  # unchanged since the last review, which covered it
    assert scope.not_reviewed["gone.py"] == "deleted"
    assert scope.not_reviewed["docs/x.py"] == "ignored by .casm.yaml"
    assert scope.not_reviewed["vendor/lib.py"].startswith("generated or vendored")
    assert scope.not_reviewed["img.png"] == "binary"
    assert scope.not_reviewed["big.py"].startswith("over the token budget (5000 tokens")
