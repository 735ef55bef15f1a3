"""The GitHub connector (PyGithub) against the local GitHub server: reads, idempotent
writes, ETag polling, retries on 5xx and rate limits, and errors that name what is missing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from github_fake.fake_github import FakeGitHub
from helpers import git, make_repo

from casm_dagster.github.connector import GitHubConnector, GitHubError, GitHubSettings, GitHubUnavailable
from casm_dagster.github.mirror import fetch, push

TOKEN = "ghp_" + "T0kenForTests" * 3


@pytest.fixture
def gh(tmp_path: Path):
    source = make_repo(tmp_path / "src", {"app.py": "print('hi')\n"})
    git(source, "checkout", "-q", "-b", "feature")
    (source / "app.py").write_text("print('hello')\n")
    git(source, "commit", "-qam", "change")
    git(source, "checkout", "-q", "main")
    with FakeGitHub(token=TOKEN) as server:
        server.create_repo("acme/widgets", source)
        yield server
        server.assert_clean()


def _connector(gh: FakeGitHub, **overrides) -> GitHubConnector:
    settings = dict(token=TOKEN, api_url=gh.api_url, write_interval_s=0, backoff_s=0.05, retries=4, max_wait_s=10)
    settings.update(overrides)
    return GitHubConnector(GitHubSettings(**settings))


def test_settings_from_env_and_clear_errors() -> None:
    with pytest.raises(GitHubError, match="set GITHUB_TOKEN"):
        GitHubSettings.from_env({})
    s = GitHubSettings.from_env({"GITHUB_TOKEN": TOKEN, "GITHUB_API_URL": "https://ghe.example.com/api/v3/"})
    assert s.api_url == "https://ghe.example.com/api/v3" and TOKEN not in repr(s)
    assert GitHubSettings.from_env({"GITHUB_TOKEN": TOKEN}).api_url == "https://api.github.com"
    with pytest.raises(Exception, match="not an http"):
        GitHubSettings.from_env({"GITHUB_TOKEN": TOKEN, "GITHUB_API_URL": "ftp://x"})


def test_reads_and_idempotent_writes(gh: FakeGitHub) -> None:
    c = _connector(gh)
    meta = c.repo("acme/widgets")
    assert (meta.default_branch, meta.clone_url) == ("main", gh.clone_url("acme/widgets"))
    number = gh.open_pr("acme/widgets", "feature", author="alice")
    pr = c.pull("acme/widgets", number)
    assert (pr.head_ref, pr.base_ref, pr.author) == ("feature", "main", "alice")
    assert [f.filename for f in c.pull_files("acme/widgets", number)] == ["app.py"]
    # One sticky comment per marker: created, then updated in place, then left alone.
    first, action = c.upsert_comment("acme/widgets", number, "<!-- casm:x", "<!-- casm:x -->\nv1")
    assert action == "created"
    again, action = c.upsert_comment("acme/widgets", number, "<!-- casm:x", "<!-- casm:x -->\nv2")
    assert (action, again.id) == ("updated", first.id)
    assert c.upsert_comment("acme/widgets", number, "<!-- casm:x", "<!-- casm:x -->\nv2")[1] == "unchanged"
    # Someone else pasting the marker does not take over the sticky comment.
    gh.add_comment("acme/widgets", number, "<!-- casm:y -->\nfake", author="mallory")
    assert c.upsert_comment("acme/widgets", number, "<!-- casm:y", "<!-- casm:y -->\nours")[1] == "created"
    assert [x["body"] for x in gh.comments("acme/widgets", number)] == [
        "<!-- casm:x -->\nv2",
        "<!-- casm:y -->\nfake",
        "<!-- casm:y -->\nours",
    ]
    # Labels and who added them.
    c.add_labels("acme/widgets", number, "casm-gated")
    gh.add_label("acme/widgets", number, "casm-approved", actor="bob")
    assert set(c.labels("acme/widgets", number)) == {"casm-gated", "casm-approved"}
    assert [(e.label, e.actor) for e in c.label_events("acme/widgets", number)][-1] == ("casm-approved", "bob")


def test_pull_request_opened_once_then_updated(gh: FakeGitHub) -> None:
    c = _connector(gh)
    gh.push_branch("acme/widgets", "casm/repo-auditor/R1", gh.repo_path("acme/widgets"), ref="refs/heads/feature")
    pr, created = c.open_or_update_pull("acme/widgets", "casm/repo-auditor/R1", "main", "CASM", "body 1")
    assert created
    again, created = c.open_or_update_pull("acme/widgets", "casm/repo-auditor/R1", "main", "CASM", "body 2")
    assert not created and again.number == pr.number
    assert [p["body"] for p in gh.pulls("acme/widgets")] == ["body 2"]


def test_polling_uses_etags_so_unchanged_repos_cost_no_rate_limit(gh: FakeGitHub) -> None:
    c = _connector(gh)
    number = gh.open_pr("acme/widgets", "feature")
    etag, pulls = c.open_pulls("acme/widgets")
    assert etag and [p.number for p in pulls] == [number]
    used = gh.rate_limit_used
    assert c.open_pulls("acme/widgets", etag) == (etag, None)
    assert gh.rate_limit_used == used  # the 304 was free
    assert gh.api_requests[-1].headers.get("if-none-match") == etag


def test_5xx_is_retried_with_backoff(gh: FakeGitHub) -> None:
    gh.fail_next("GET", r"^/repos/acme/widgets$", 502, times=2)
    assert _connector(gh).repo("acme/widgets").full_name == "acme/widgets"
    assert [r.status for r in gh.api_requests if r.path == "/repos/acme/widgets"] == [502, 502, 200]


def test_5xx_beyond_the_retries_is_unavailable(gh: FakeGitHub) -> None:
    gh.fail_next("GET", r"^/repos/acme/widgets$", 503, times=10)
    with pytest.raises(GitHubUnavailable, match="kept failing"):
        _connector(gh, retries=2).repo("acme/widgets")


def test_secondary_rate_limit_honours_retry_after(gh: FakeGitHub) -> None:
    number = gh.open_pr("acme/widgets", "feature")
    gh.secondary_rate_limit_next("POST", r"/comments$", retry_after=1)
    start = time.monotonic()
    _connector(gh).upsert_comment("acme/widgets", number, "<!-- casm:z", "<!-- casm:z -->\nhi")
    assert time.monotonic() - start >= 0.9
    assert len(gh.comments("acme/widgets", number)) == 1  # the refused POST created nothing


def test_primary_rate_limit_waits_for_the_reset(gh: FakeGitHub) -> None:
    gh.rate_limit_next("GET", r"^/repos/acme/widgets$", reset_in=1)
    start = time.monotonic()
    assert _connector(gh).repo("acme/widgets").default_branch == "main"
    assert time.monotonic() - start >= 0.9


def test_rate_limit_reset_too_far_away_is_a_clear_error(gh: FakeGitHub) -> None:
    gh.rate_limit_next("GET", r"^/repos/acme/widgets$", reset_in=3600)
    with pytest.raises(GitHubUnavailable, match="rate limit is exhausted"):
        _connector(gh, max_wait_s=5).repo("acme/widgets")


def test_auth_and_access_errors_name_what_is_missing(gh: FakeGitHub) -> None:
    with pytest.raises(GitHubError, match="GITHUB_TOKEN is wrong, expired or revoked") as bad:
        _connector(gh, token="ghp_" + "x" * 36).repo("acme/widgets")
    assert "ghp_" not in str(bad.value)
    with pytest.raises(GitHubError, match="not found \\(404\\).*token can see the repository"):
        _connector(gh).repo("acme/secret")
    gh.fail_next(
        "POST",
        r"/comments$",
        403,
        headers={"X-Accepted-OAuth-Scopes": "repo", "X-OAuth-Scopes": "read:org"},
        body={"message": "Resource not accessible by integration", "documentation_url": "https://docs.github.com"},
    )
    number = gh.open_pr("acme/widgets", "feature")
    with pytest.raises(GitHubError, match="forbidden.*needs: repo; the token has: read:org"):
        _connector(gh).upsert_comment("acme/widgets", number, "<!-- casm:q", "x")


def test_mirror_fetch_and_push_never_put_the_token_in_argv_config_or_errors(gh: FakeGitHub, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror.git"
    shas = fetch(mirror, gh.clone_url("acme/widgets"), TOKEN, {"refs/heads/main": "refs/remotes/origin/main"})
    assert shas["refs/heads/main"] == gh.branch_sha("acme/widgets", "main")
    feature = fetch(mirror, gh.clone_url("acme/widgets"), TOKEN, {"refs/heads/feature": "refs/remotes/origin/feature"})
    push(mirror, gh.clone_url("acme/widgets"), TOKEN, "casm/test/1", feature["refs/heads/feature"])
    assert gh.branch_sha("acme/widgets", "casm/test/1") == feature["refs/heads/feature"]
    for path in mirror.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    with pytest.raises(Exception) as failure:
        fetch(mirror, gh.clone_url("acme/widgets"), "ghp_wrong" + "x" * 30, {"refs/heads/main": "refs/x"})
    assert "ghp_wrong" not in str(failure.value)
    with pytest.raises(Exception, match="only http"):
        fetch(mirror, "ext::sh -c touch% /tmp/pwned", TOKEN, {"refs/heads/main": "refs/x"})
    with pytest.raises(Exception, match="only pushes its own casm/ branches"):
        push(mirror, gh.clone_url("acme/widgets"), TOKEN, "main", feature["refs/heads/feature"])


def test_a_post_that_failed_with_5xx_is_not_blindly_resent(gh: FakeGitHub) -> None:
    number = gh.open_pr("acme/widgets", "feature")
    gh.fail_next("POST", r"/comments$", 502)
    with pytest.raises(GitHubUnavailable):
        _connector(gh).upsert_comment("acme/widgets", number, "<!-- casm:p", "<!-- casm:p -->\nhi")
    assert [r.status for r in gh.api_requests if r.method == "POST"] == [502]
    # The rerun finds no comment (none was created) and posts exactly one.
    _connector(gh).upsert_comment("acme/widgets", number, "<!-- casm:p", "<!-- casm:p -->\nhi")
    assert len(gh.comments("acme/widgets", number)) == 1


def test_installation_tokens_that_cannot_read_user_still_keep_one_sticky_comment(tmp_path: Path) -> None:
    # GitHub Actions' GITHUB_TOKEN gets 403 on GET /user; its comments are by a bot.
    source = make_repo(tmp_path / "src", {"a.py": "x = 1\n"})
    git(source, "checkout", "-q", "-b", "feature")
    (source / "a.py").write_text("x = 2\n")
    git(source, "commit", "-qam", "change")
    with FakeGitHub(token=TOKEN, login="github-actions[bot]") as gh:
        gh.users["github-actions[bot]"].type = "Bot"
        gh.create_repo("acme/widgets", source)
        number = gh.open_pr("acme/widgets", "feature")
        gh.fail_next("GET", r"^/user$", 403, times=100, body={"message": "Resource not accessible by integration"})
        c = _connector(gh)
        assert c.whoami() is None
        gh.add_comment("acme/widgets", number, "<!-- casm:s -->\nfrom a human", author="mallory")
        assert c.upsert_comment("acme/widgets", number, "<!-- casm:s", "<!-- casm:s -->\nv1")[1] == "created"
        assert c.upsert_comment("acme/widgets", number, "<!-- casm:s", "<!-- casm:s -->\nv2")[1] == "updated"
        assert [x["body"] for x in gh.comments("acme/widgets", number)] == [
            "<!-- casm:s -->\nfrom a human",
            "<!-- casm:s -->\nv2",
        ]
        gh.clear_faults()
        assert not gh.schema_errors
