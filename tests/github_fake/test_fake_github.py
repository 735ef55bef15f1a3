"""The fake GitHub itself: every route CASM uses, driven through PyGithub 2.x (and plain ``git`` for smart
HTTP), with every response checked against GitHub's OpenAPI description (``gh.assert_clean()``).

Also pins down what PyGithub does on the wire conditions the production connector must handle: a 304, 5xx,
primary and secondary rate limits, a dropped connection (see ``test_pygithub_*``)."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import github
import pytest
import requests
from github import Auth, Github, GithubException, GithubRetry

from github_fake import openapi
from github_fake.fake_github import FakeGitHub

TOKEN = "ghp_TeStToKeN0123456789abcdefghijklmnopq"
REPO = "acme/widgets"


def git(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Plain git with no user or system config (so no credential helper answers a 401) and no prompts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_TERMINAL_PROMPT="0",
        GIT_AUTHOR_NAME="Dev",
        GIT_AUTHOR_EMAIL="dev@example.com",
        GIT_COMMITTER_NAME="Dev",
        GIT_COMMITTER_EMAIL="dev@example.com",
    )
    env.pop("SSH_ASKPASS", None)
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    if check and done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
    return done


def commit(repo: Path, files: dict[str, str | None], message: str) -> str:
    for name, text in files.items():
        if text is None:
            git("rm", "-q", name, cwd=repo)
        else:
            (repo / name).write_text(text)
            git("add", name, cwd=repo)
    git("commit", "-q", "-m", message, cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo).stdout.strip()


@pytest.fixture(scope="module")
def _source_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("template") / "src"
    git("init", "-q", "-b", "main", str(repo))
    commit(repo, {"a.txt": "hello\nworld\n", "gone.txt": "x\n"}, "init")
    git("checkout", "-q", "-b", "feature", cwd=repo)
    commit(repo, {"a.txt": "hello\nthere\nworld\n", "gone.txt": None, "b.txt": "new\n"}, "change")
    git("checkout", "-q", "main", cwd=repo)
    return repo


@pytest.fixture
def source(_source_template: Path, tmp_path: Path) -> Path:
    """A local repo: main (two files) and feature (one file changed, one removed, one added)."""
    return Path(shutil.copytree(_source_template, tmp_path / "src", symlinks=True))


@pytest.fixture
def gh(source: Path) -> Iterator[FakeGitHub]:
    openapi.load_spec()  # skips (fails under CI=true) when the description cannot be had
    with FakeGitHub(token=TOKEN) as server:
        server.create_repo(REPO, source)
        yield server


@pytest.fixture
def g(gh: FakeGitHub) -> Github:
    return gh.client()


# -- the OpenAPI helper ------------------------------------------------------------------------------------------


def test_openapi_examples_are_copies_and_validate_catches_mistakes() -> None:
    assert openapi.spec_path().is_file()
    assert openapi.load_spec()["openapi"].startswith("3.0")
    first = openapi.example("GET", "/repos/{owner}/{repo}/pulls/{pull_number}")
    first["title"] = "changed"
    assert openapi.example("get", "/repos/{owner}/{repo}/pulls/{pull_number}")["title"] != "changed"
    assert isinstance(openapi.example("GET", "/repos/{owner}/{repo}/issues/{issue_number}/labels"), list)

    comment = openapi.example("GET", "/repos/{owner}/{repo}/issues/comments/{comment_id}")
    openapi.validate("GET", "/repos/{owner}/{repo}/issues/comments/{comment_id}", 200, comment)
    comment["user"]["login"] = 7
    del comment["id"]
    with pytest.raises(AssertionError) as err:
        openapi.validate("GET", "/repos/{owner}/{repo}/issues/comments/{comment_id}", 200, comment)
    assert "'id' is a required property" in str(err.value)
    assert "$['user']['login']: 7 is not of type 'string'" in str(err.value)

    # nullable: `body` of an issue comment may be null, `id` may not
    comment = openapi.example("GET", "/repos/{owner}/{repo}/issues/comments/{comment_id}")
    comment["performed_via_github_app"] = None
    openapi.validate("GET", "/repos/{owner}/{repo}/issues/comments/{comment_id}", "200", comment)
    # undeclared error statuses are GitHub's basic-error; bodiless ones must be empty
    openapi.validate("GET", "/repos/{owner}/{repo}", 502, {"message": "Server Error"})
    openapi.validate("GET", "/repos/{owner}/{repo}/pulls", 304, None)
    with pytest.raises(AssertionError):
        openapi.validate("GET", "/repos/{owner}/{repo}/pulls", 304, {"x": 1})


def test_openapi_to_json_schema_handles_nullable() -> None:
    to = openapi.to_json_schema
    assert to({"type": "string", "nullable": True}) == {"type": ["string", "null"]}
    assert to({"type": "string", "enum": ["a"], "nullable": True}) == {"type": ["string", "null"], "enum": ["a", None]}
    assert to({"allOf": [{"$ref": "#/x"}], "nullable": True}) == {
        "anyOf": [{"allOf": [{"$ref": "#/x"}]}, {"type": "null"}]
    }
    assert to({"oneOf": [{"type": "string"}]}) == {"anyOf": [{"type": "string"}]}
    assert to({"$ref": "#/x", "description": "ignored"}) == {"$ref": "#/x"}
    assert to({"properties": {"nullable": {"type": "integer", "nullable": True}}}) == {
        "properties": {"nullable": {"type": ["integer", "null"]}}
    }


def test_openapi_unavailable_skips_or_fails_under_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(openapi.ENV_VAR, str(tmp_path / "missing.json"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="npm pack @octokit/openapi@23.0.2"):
        openapi.spec_path()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="is not a file"):
        openapi.spec_path()
    monkeypatch.setattr(openapi.shutil, "which", lambda name: None)
    with pytest.raises(openapi.SpecUnavailable, match="npm is not installed"):
        openapi.fetch(tmp_path / "cache")


# -- REST routes through PyGithub --------------------------------------------------------------------------------


def test_repository(gh: FakeGitHub, g: Github) -> None:
    repo = g.get_repo(REPO)
    assert (repo.full_name, repo.name, repo.owner.login) == (REPO, "widgets", "acme")
    assert repo.default_branch == "main"
    assert repo.clone_url == f"{gh.api_url}/{REPO}.git"
    assert repo.private is False
    assert repo.html_url == f"{gh.api_url}/{REPO}"
    assert repo.permissions.push is True and repo.permissions.admin is False
    assert repo.url == f"{gh.api_url}/repos/{REPO}"
    gh.assert_clean()


def test_pulls_list_create_get_edit(gh: FakeGitHub, g: Github, source: Path) -> None:
    gh.push_branch(REPO, "other", source, "feature")
    first = gh.open_pr(REPO, "feature", title="First", body="one", author="alice")
    repo = g.get_repo(REPO)

    created = repo.create_pull(title="Second", body="two", head="other", base="main")
    assert created.number == first + 1
    assert created.user.login == "casm-bot"
    assert (created.head.ref, created.base.ref) == ("other", "main")
    assert created.head.sha == gh.branch_sha(REPO, "other")
    assert created.state == "open" and created.merged is False

    open_pulls = repo.get_pulls(state="open")
    assert [p.number for p in open_pulls] == [created.number, first]  # newest first, as GitHub sorts
    only = list(repo.get_pulls(state="open", head="acme:feature"))
    assert [p.number for p in only] == [first]
    assert only[0].head.sha == gh.branch_sha(REPO, "feature")
    # GitHub ignores a head filter without the owner prefix: every open PR comes back
    assert len(list(repo.get_pulls(state="open", head="feature"))) == 2
    assert list(repo.get_pulls(state="closed")) == []
    assert [p.number for p in repo.get_pulls(state="all", sort="created", direction="asc")] == [first, created.number]
    assert list(repo.get_pulls(base="develop")) == []

    pr = repo.get_pull(first)
    assert (pr.title, pr.body, pr.user.login) == ("First", "one", "alice")
    assert (pr.commits, pr.additions, pr.deletions, pr.changed_files) == (1, 2, 1, 3)
    assert pr.mergeable is True
    pr.edit(body="rewritten", title="First!")
    assert (pr.title, pr.body) == ("First!", "rewritten")
    assert gh.pulls(REPO)[0]["body"] == "rewritten"

    # GitHub's 422s: a second PR for the same head, a head branch that does not exist
    with pytest.raises(GithubException) as err:
        repo.create_pull(title="again", body="", head="feature", base="main")
    assert err.value.status == 422
    assert err.value.data["errors"][0]["message"] == "A pull request already exists for acme:feature."
    with pytest.raises(GithubException) as err:
        repo.create_pull(title="nope", body="", head="acme:no-such-branch", base="main")
    assert err.value.status == 422 and err.value.data["errors"][0]["field"] == "head"
    assert len(gh.pulls(REPO)) == 2
    gh.assert_clean()


def test_pull_files_come_from_the_git_diff(gh: FakeGitHub, g: Github) -> None:
    n = gh.open_pr(REPO, "feature")
    files = {f.filename: f for f in g.get_repo(REPO).get_pull(n).get_files()}
    assert sorted(files) == ["a.txt", "b.txt", "gone.txt"]
    a, b, gone = files["a.txt"], files["b.txt"], files["gone.txt"]
    assert (a.status, a.additions, a.deletions, a.changes) == ("modified", 1, 0, 1)
    assert a.patch == "@@ -1,2 +1,3 @@\n hello\n+there\n world"
    assert (b.status, b.additions, b.patch) == ("added", 1, "@@ -0,0 +1 @@\n+new")
    assert (gone.status, gone.deletions) == ("removed", 1)
    assert len(a.sha) == 40
    gh.assert_clean()


def test_issue_side_comments_labels_events(gh: FakeGitHub, g: Github) -> None:
    n = gh.open_pr(REPO, "feature", title="T", author="alice")
    gh.add_user("bob", orgs=["acme"])
    issue = g.get_repo(REPO).get_issue(n)
    assert (issue.number, issue.title, issue.user.login, issue.state) == (n, "T", "alice", "open")
    assert issue.pull_request is not None

    mine = issue.create_comment("CASM review: 2 findings")
    assert (mine.user.login, mine.body) == ("casm-bot", "CASM review: 2 findings")
    mine.edit("CASM review: 3 findings")
    assert mine.body == "CASM review: 3 findings"
    gh.add_comment(REPO, n, "/casm approve", author="bob")
    listed = list(issue.get_comments())
    assert [(c.user.login, c.body) for c in listed] == [
        ("casm-bot", "CASM review: 3 findings"),
        ("bob", "/casm approve"),
    ]
    assert listed[0].id == mine.id
    assert g.get_repo(REPO).get_issue(n).get_comments()[1].created_at.tzinfo is not None
    assert [c["body"] for c in gh.comments(REPO, n)] == ["CASM review: 3 findings", "/casm approve"]

    issue.add_to_labels("casm-pending")
    gh.add_label(REPO, n, "casm-approved", actor="bob")
    assert [label.name for label in issue.get_labels()] == ["casm-pending", "casm-approved"]
    events = list(issue.get_events())
    assert [(e.event, e.actor.login, e.label.name) for e in events] == [
        ("labeled", "casm-bot", "casm-pending"),
        ("labeled", "bob", "casm-approved"),
    ]
    assert events[1].created_at.tzinfo is not None

    # the same routes through the PullRequest's helpers (they go to its issue_url)
    pr = g.get_repo(REPO).get_pull(n)
    assert pr.create_issue_comment("via the PR").body == "via the PR"
    assert len(list(pr.get_issue_comments())) == 3
    pr.add_to_labels("casm-x")
    assert [label.name for label in pr.get_labels()][-1] == "casm-x"
    assert [e.event for e in pr.get_issue_events()] == ["labeled"] * 3
    assert pr.as_issue().number == n
    gh.assert_clean()


def test_users_orgs_and_the_token_user(gh: FakeGitHub, g: Github) -> None:
    gh.add_user("bob", orgs=["acme", "widgets-inc"])
    bob = g.get_user("bob")
    assert (bob.login, bob.type) == ("bob", "User")
    assert [org.login for org in bob.get_orgs()] == ["acme", "widgets-inc"]
    assert [org.login for org in g.get_user("casm-bot").get_orgs()] == []
    assert g.get_user().login == "casm-bot"
    assert g.get_user("acme").type == "Organization"
    gh.assert_clean()


def test_merge_and_close(gh: FakeGitHub, g: Github, source: Path) -> None:
    n = gh.open_pr(REPO, "feature")
    base_before = gh.branch_sha(REPO, "main")
    merge_sha = gh.merge_pr(REPO, n, actor="bob")
    pr = g.get_repo(REPO).get_pull(n)
    assert (pr.state, pr.merged, pr.merged_by.login, pr.merge_commit_sha) == ("closed", True, "bob", merge_sha)
    assert pr.merged_at is not None and pr.closed_at is not None
    assert gh.branch_sha(REPO, "main") == merge_sha != base_before
    assert [e.event for e in g.get_repo(REPO).get_issue(n).get_events()] == ["merged", "closed"]

    gh.push_branch(REPO, "other", source, "feature")
    m = gh.open_pr(REPO, "other")
    g.get_repo(REPO).get_pull(m).edit(state="closed")
    assert gh.pulls(REPO)[1]["state"] == "closed"
    assert g.get_repo(REPO).get_issue(m).closed_by.login == "casm-bot"
    gh.assert_clean()


# -- errors, pagination, caching, rate limits --------------------------------------------------------------------


def test_bad_token_missing_repo_and_unknown_routes(gh: FakeGitHub) -> None:
    bad = Github(auth=Auth.Token("ghp_wrong"), base_url=gh.api_url, retry=None)
    with pytest.raises(github.BadCredentialsException) as err:
        bad.get_repo(REPO)
    assert err.value.status == 401
    assert err.value.data == {
        "message": "Bad credentials",
        "documentation_url": "https://docs.github.com/rest",
        "status": "401",
    }
    with pytest.raises(github.UnknownObjectException):
        gh.client().get_repo("acme/nope")
    with pytest.raises(github.UnknownObjectException):
        gh.client().get_repo(REPO).get_pull(99)
    gh.assert_clean()

    with pytest.raises(github.UnknownObjectException):
        gh.client().get_repo(REPO).get_branch("main")  # a route the fake does not serve
    assert gh.unhandled == [f"GET /repos/{REPO}/branches/main"]
    with pytest.raises(AssertionError, match="unhandled route"):
        gh.assert_clean()


def test_pagination_follows_githubs_link_headers(gh: FakeGitHub) -> None:
    n = gh.open_pr(REPO, "feature")
    for i in range(5):
        gh.add_comment(REPO, n, f"comment {i}")
    g2 = gh.client(per_page=2)
    comments = g2.get_repo(REPO).get_issue(n).get_comments()
    assert [c.body for c in comments] == [f"comment {i}" for i in range(5)]
    pages = [r for r in gh.requests if r.path.endswith("/comments") and r.status == 200]
    assert [r.query.get("page") for r in pages] == [None, "2", "3"]
    repo_id = g2.get_repo(REPO).id
    first_link = pages[0].response_headers["Link"]
    assert first_link == (
        f'<{gh.api_url}/repositories/{repo_id}/issues/{n}/comments?per_page=2&page=2>; rel="next", '
        f'<{gh.api_url}/repositories/{repo_id}/issues/{n}/comments?per_page=2&page=3>; rel="last"'
    )
    assert 'rel="prev"' in pages[1].response_headers["Link"] and 'rel="first"' in pages[1].response_headers["Link"]
    assert "Link" not in pages[2].response_headers or 'rel="next"' not in pages[2].response_headers["Link"]
    assert gh.client().get_repo(REPO).get_issue(n).get_comments().totalCount == 5  # per_page=1 and rel="last"
    # per_page is capped at 100, and a page past the end is empty
    status, headers, body = g2.requester.requestJson("GET", f"/repos/{REPO}/issues/{n}/comments", {"page": "9"})
    assert (status, body) == (200, "[]")
    gh.assert_clean()


def test_pygithub_list_items_are_lazy_and_totalcount_after_iterating_drops_filters(gh: FakeGitHub, g: Github) -> None:
    """PyGithub quirks the connector must know: a PR from ``get_pulls`` holds only the list view (reading e.g.
    ``merged`` or ``mergeable`` costs a GET of the PR), and ``totalCount`` read after the first page was
    fetched re-requests the list WITHOUT its filters (``_getPage`` clears ``__nextParams``)."""
    n = gh.open_pr(REPO, "feature")
    gh.close_pr(REPO, n)
    pulls = g.get_repo(REPO).get_pulls(state="closed")
    assert pulls.totalCount == 1  # before iterating: filters kept
    start = len(gh.requests)
    first = pulls[0]
    assert first.head.ref == "feature" and len(gh.requests) == start + 1
    assert first.merged is False and gh.requests[-1].path == f"/repos/{REPO}/pulls/{n}"  # a lazy completion

    again = g.get_repo(REPO).get_pulls(state="closed")
    assert [p.number for p in again] == [n]
    assert again.totalCount == 0  # sic: it counted the OPEN pulls
    assert gh.requests[-1].query == {"per_page": "1"}
    gh.assert_clean()


def test_etag_and_if_none_match_give_a_304_that_costs_no_rate_limit(gh: FakeGitHub, g: Github) -> None:
    """PyGithub on a 304: ``requestJsonAndCheck`` raises nothing and returns ``(headers, None)``
    (``requestJson`` returns ``(304, headers, "")``)."""
    gh.open_pr(REPO, "feature")
    headers, data = g.requester.requestJsonAndCheck("GET", f"/repos/{REPO}/pulls", parameters={"state": "open"})
    etag = headers["etag"]
    assert etag.startswith('W/"') and len(data) == 1
    used = gh.rate_limit_used
    headers, data = g.requester.requestJsonAndCheck(
        "GET", f"/repos/{REPO}/pulls", parameters={"state": "open"}, headers={"If-None-Match": etag}
    )
    assert data is None
    assert headers["etag"] == etag
    assert gh.requests[-1].status == 304
    assert gh.rate_limit_used == used
    assert int(headers["x-ratelimit-remaining"]) == gh.rate_limit - used

    gh.add_label(REPO, 1, "casm-approved")  # the list shows labels: a new body, a new ETag
    headers, data = g.requester.requestJsonAndCheck(
        "GET", f"/repos/{REPO}/pulls", parameters={"state": "open"}, headers={"If-None-Match": etag}
    )
    assert data is not None and headers["etag"] != etag
    assert gh.rate_limit_used == used + 1
    gh.assert_clean()


def test_rate_limit_headers_and_exhaustion(source: Path) -> None:
    with FakeGitHub(token=TOKEN, rate_limit=3) as gh:
        gh.create_repo(REPO, source)
        g = gh.client()
        g.get_repo(REPO)
        last = gh.requests[-1].response_headers
        assert (last["X-RateLimit-Limit"], last["X-RateLimit-Remaining"], last["X-RateLimit-Used"]) == ("3", "2", "1")
        assert last["X-RateLimit-Resource"] == "core" and int(last["X-RateLimit-Reset"]) > time.time()
        assert last["X-GitHub-Request-Id"]
        assert g.rate_limiting == (2, 3)
        g.get_repo(REPO)
        g.get_repo(REPO)
        with pytest.raises(github.RateLimitExceededException) as err:
            g.get_repo(REPO)
        assert err.value.data["message"].startswith("API rate limit exceeded for user ID 1.")
        assert gh.rate_limit_used == 3
        gh.assert_clean()


# -- fault injection, and what PyGithub's retry does with each fault ---------------------------------------------


def test_fault_on_a_post_creates_nothing(gh: FakeGitHub, g: Github) -> None:
    repo = g.get_repo(REPO)
    gh.fail_next("POST", r"/pulls$", 500)
    with pytest.raises(GithubException) as err:
        repo.create_pull(title="t", body="b", head="feature", base="main")
    assert err.value.status == 500
    assert gh.pulls(REPO) == []
    assert repo.create_pull(title="t", body="b", head="feature", base="main").number == 1
    gh.assert_clean()


def test_pygithub_default_retry_rides_out_5xx_and_gives_up_with_requests_retryerror(gh: FakeGitHub) -> None:
    g = gh.client(retry=GithubRetry())  # PyGithub's default: 10 retries, no backoff, GET and POST on 403/5xx
    gh.fail_next("GET", rf"^/repos/{REPO}$", 502, times=2)
    assert g.get_repo(REPO).full_name == REPO
    assert [r.status for r in gh.requests if r.path == f"/repos/{REPO}"] == [502, 502, 200]

    gh.fail_next("GET", rf"^/repos/{REPO}$", 502, times=20)
    with pytest.raises(requests.exceptions.RetryError):  # NOT a GithubException
        g.get_repo(REPO)
    gh.clear_faults()

    gh.fail_next("PATCH", r"/pulls/\d+$", 502)  # PATCH is not in GithubRetry's allowed methods
    pr_number = gh.open_pr(REPO, "feature")
    with pytest.raises(GithubException) as err:
        g.get_repo(REPO).get_pull(pr_number).edit(title="x")
    assert err.value.status == 502

    gh.fail_next("GET", rf"^/repos/{REPO}$", 0, disconnect=True)
    assert g.get_repo(REPO).full_name == REPO  # a dropped connection is retried too
    gh.fail_next("GET", rf"^/repos/{REPO}$", 0, disconnect=True)
    with pytest.raises(requests.exceptions.ConnectionError):
        gh.client(retry=None).get_repo(REPO)
    gh.assert_clean()


def test_pygithub_secondary_rate_limit_honours_retry_after(gh: FakeGitHub) -> None:
    n = gh.open_pr(REPO, "feature")
    issue = gh.client(retry=GithubRetry()).get_repo(REPO).get_issue(n)
    gh.secondary_rate_limit_next("POST", r"/comments$", retry_after=1)
    started = time.monotonic()
    issue.create_comment("after a wait")
    assert time.monotonic() - started >= 0.9
    assert [r.status for r in gh.requests if r.method == "POST"] == [403, 201]
    assert gh.requests[-2].response_headers["Retry-After"] == "1"

    gh.secondary_rate_limit_next("POST", r"/comments$")  # no Retry-After: secondary_rate_wait (default 60 s)
    quick = gh.client(retry=GithubRetry(secondary_rate_wait=0.1)).get_repo(REPO).get_issue(n)
    quick.create_comment("again")
    gh.secondary_rate_limit_next("POST", r"/comments$")
    with pytest.raises(github.RateLimitExceededException):
        gh.client(retry=None).get_repo(REPO).get_issue(n).create_comment("no retry")
    assert len(gh.comments(REPO, n)) == 2
    gh.assert_clean()


def test_pygithub_primary_rate_limit_waits_for_reset_unless_capped(gh: FakeGitHub) -> None:
    gh.rate_limit_next("GET", rf"^/repos/{REPO}$", reset_in=600)
    capped = gh.client(retry=GithubRetry(max_rate_limit_wait=5))
    with pytest.raises(github.RateLimitExceededExceedsMaxWait) as err:
        capped.get_repo(REPO)
    assert err.value.headers["x-ratelimit-remaining"] == "0"

    gh.rate_limit_next("GET", rf"^/repos/{REPO}$", reset_in=600)
    with pytest.raises(github.RateLimitExceededException) as err:
        gh.client(retry=None).get_repo(REPO)
    assert err.value.data["message"].startswith("API rate limit exceeded for user ID 1.")
    assert int(err.value.headers["x-ratelimit-reset"]) > time.time() + 500
    gh.assert_clean()


# -- responses are checked against the schema --------------------------------------------------------------------


def test_an_off_schema_response_is_a_500_and_recorded(
    gh: FakeGitHub, g: Github, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = gh._full_repo

    def broken(repo: object) -> dict:
        body = original(repo)  # type: ignore[arg-type]
        body["default_branch"] = None
        return body

    monkeypatch.setattr(gh, "_full_repo", broken)
    with pytest.raises(GithubException) as err:
        g.get_repo(REPO)
    assert err.value.status == 500
    assert "default_branch" in gh.schema_errors[0]
    with pytest.raises(AssertionError, match="schema"):
        gh.assert_clean()


# -- git smart HTTP ----------------------------------------------------------------------------------------------


def test_git_clone_needs_the_token_and_push_works(gh: FakeGitHub, tmp_path: Path) -> None:
    url = gh.clone_url(REPO)
    denied = git("clone", "-q", url, str(tmp_path / "denied"), check=False)
    assert denied.returncode != 0
    assert gh.git_requests[-1].status == 401
    assert gh.git_requests[-1].response_headers["WWW-Authenticate"] == 'Basic realm="GitHub"'
    wrong = "Authorization: Basic " + base64.b64encode(b"x-access-token:ghp_wrong").decode()
    assert git("-c", f"http.extraHeader={wrong}", "clone", "-q", url, str(tmp_path / "w"), check=False).returncode != 0

    clone = tmp_path / "clone"
    header = gh.git_auth_header()
    git("-c", f"http.extraHeader={header}", "clone", "-q", url, str(clone))
    assert (clone / "a.txt").read_text() == "hello\nworld\n"
    assert git("rev-parse", "origin/feature", cwd=clone).stdout.strip() == gh.branch_sha(REPO, "feature")
    assert TOKEN not in (clone / ".git" / "config").read_text()

    git("checkout", "-q", "-b", "casm/fix-1", cwd=clone)
    sha = commit(clone, {"c.txt": "fixed\n"}, "fix")
    git("-c", f"http.extraHeader={header}", "push", "-q", "origin", "casm/fix-1", cwd=clone)
    assert gh.branch_sha(REPO, "casm/fix-1") == sha

    n = gh.client().get_repo(REPO).create_pull(title="fix", body="", head="casm/fix-1", base="main").number
    assert git("ls-remote", str(gh.repo_path(REPO)), f"refs/pull/{n}/head").stdout.split()[0] == sha

    # a push to the head branch moves the PR, as on GitHub; a force push is a head_ref_force_pushed event
    newer = commit(clone, {"c.txt": "fixed again\n"}, "fix 2")
    git("-c", f"http.extraHeader={header}", "push", "-q", "origin", "casm/fix-1", cwd=clone)
    assert gh.client().get_repo(REPO).get_pull(n).head.sha == newer
    git("reset", "-q", "--hard", "HEAD~2", cwd=clone)
    rewritten = commit(clone, {"c.txt": "rewritten\n"}, "rewrite")
    git("-c", f"http.extraHeader={header}", "push", "-q", "--force", "origin", "casm/fix-1", cwd=clone)
    assert gh.pulls(REPO)[0]["head_sha"] == rewritten
    assert [e["event"] for e in gh.events(REPO, n)] == ["head_ref_force_pushed"]

    # the token travelled only in Authorization headers: never in a path, a query or a response
    for request in gh.requests:
        assert TOKEN not in request.path and TOKEN not in str(request.query)
        assert TOKEN not in str(request.response_headers)
    assert all(r.headers.get("authorization") == header.split(": ", 1)[1] for r in gh.git_requests if r.status == 200)
    services = {(r.method, r.path.rsplit("/", 1)[-1]) for r in gh.git_requests if r.status == 200}
    assert {("GET", "refs"), ("POST", "git-upload-pack"), ("POST", "git-receive-pack")} <= services
    gh.assert_clean()


def test_git_fetch_with_a_gzipped_request_and_update_pr_head(gh: FakeGitHub, source: Path, tmp_path: Path) -> None:
    for i in range(40):  # enough wants that git gzips its upload-pack request
        git("branch", f"topic/{i:02d}-{'x' * 30}", "feature", cwd=source)
    git("push", "-q", str(gh.repo_path(REPO)), "refs/heads/*:refs/heads/*", cwd=source)
    clone = tmp_path / "many"
    git("-c", f"http.extraHeader={gh.git_auth_header()}", "clone", "-q", gh.clone_url(REPO), str(clone))
    assert any(r.headers.get("content-encoding") == "gzip" for r in gh.git_requests)
    assert len(git("branch", "-r", cwd=clone).stdout.splitlines()) >= 40

    n = gh.open_pr(REPO, "feature")
    old = gh.pulls(REPO)[0]["head_sha"]
    git("checkout", "-q", "feature", cwd=source)
    sha = commit(source, {"d.txt": "d\n"}, "more")
    git("push", "-q", str(gh.repo_path(REPO)), "feature", cwd=source)  # behind the server's back
    assert gh.pulls(REPO)[0]["head_sha"] == old
    assert gh.update_pr_head(REPO, n) == sha
    assert gh.client().get_repo(REPO).get_pull(n).head.sha == sha
    gh.assert_clean()
