"""A local server that speaks GitHub's REST API (the routes CASM uses) and git's smart HTTP protocol, for
driving PyGithub and plain ``git`` without the internet.

    with FakeGitHub(token="ghp_test") as gh:
        gh.create_repo("acme/widgets", source=local_repo)          # a bare repo, all branches pushed
        gh.push_branch("acme/widgets", "casm/fix-1", worktree)     # or `git push` over HTTP
        n = gh.open_pr("acme/widgets", "casm/fix-1", author="alice")
        g = gh.client()                                            # github.Github(base_url=gh.api_url, ...)
        pr = g.get_repo("acme/widgets").get_pull(n)
        gh.add_label("acme/widgets", n, "casm-approved", actor="bob")
        ...
        gh.assert_clean()          # no off-schema response, no route the fake does not know

Every JSON body is GitHub's own example response for the operation (``github_fake.openapi.example``) with
its fields replaced from the server's state, and is checked against GitHub's OpenAPI schema before it is
sent: a body that does not match is recorded in ``schema_errors`` and answered with a 500, so a test cannot
pass on a response GitHub would never send.

Wire behaviour, as GitHub's:
- auth: ``Authorization: token T`` / ``Bearer T`` (or Basic with T as the password) must carry the server's
  token: a wrong one is a 401 "Bad credentials", none a 401 "Requires authentication";
- rate limit: ``X-RateLimit-Limit/Remaining/Reset/Used/Resource`` on every response; each authenticated
  request but a 304 uses one (``rate_limit_used``); at 0 left, a 403 "API rate limit exceeded for user ID N.";
- ``ETag`` (weak, a hash of the body) on every 200 GET, and ``If-None-Match`` answered with a bodiless 304
  that uses no rate limit;
- pagination: ``per_page`` (default 30, at most 100) and ``page``; ``Link`` with ``next``/``last`` (and
  ``prev``/``first`` past page 1), pointing at ``/repositories/{id}/...`` as GitHub's do;
- ``GET /repos/{o}/{r}/pulls?head=branch`` without the ``owner:`` prefix ignores the filter (GitHub does);
- git: ``{api_url}/{o}/{r}.git/info/refs|git-upload-pack|git-receive-pack`` run ``git http-backend``; HTTP
  Basic auth with the token as the password (any user name, GitHub's is ``x-access-token``), else a 401
  with ``WWW-Authenticate: Basic realm="GitHub"``. A push moves open PRs whose head branch it updates, as
  GitHub does (``refs/pull/N/head`` too).

Fault injection (``fail_next``, ``rate_limit_next``, ``secondary_rate_limit_next``) answers matching
requests before auth and before any state change, so a failed POST creates nothing. Every request (API and
git) is recorded in ``requests`` with its headers, so tests can check where a token travels.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from github_fake.openapi import example, validate

DEFAULT_TOKEN = "ghp_fAkEfAkEfAkEfAkEfAkEfAkEfAkEfAkE0000"
DOCS = "https://docs.github.com/rest"
RATE_LIMIT_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
SECONDARY_RATE_LIMIT_DOCS = (
    "https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api"
    "#about-secondary-rate-limits"
)
GIT_SERVICES = ("git-upload-pack", "git-receive-pack")
_GIT_PATH = re.compile(
    r"^/(?P<owner>[^/]+)/(?P<name>[^/]+?)(?:\.git)?/(?P<rest>info/refs|git-upload-pack|git-receive-pack)$"
)
_EXAMPLE_REPO_API = "https://api.github.com/repos/octocat/Hello-World"
_EXAMPLE_REPO_HTML = "https://github.com/octocat/Hello-World"
_ZERO_SHA = "0" * 40


# --------------------------------------------------------------------------------------------------------------
# Records


@dataclass
class Request:
    """One request as the server saw it (API or git)."""

    kind: str  # "api" or "git"
    method: str
    path: str  # without the query string
    query: dict[str, str]  # the last value of each parameter
    headers: dict[str, str]  # names in lower case
    body: bytes
    json: Any  # the parsed JSON body, or None
    timestamp: float  # time.time()
    status: int | None = None  # None until answered (or when the connection was dropped)
    response_headers: dict[str, str] = field(default_factory=dict)

    @property
    def auth_token(self) -> str | None:
        """The token the request carried: as ``token``/``Bearer``, or as a Basic password."""
        return _token_from_header(self.headers.get("authorization", ""))


@dataclass
class Fault:
    method: str  # "*" for any
    pattern: re.Pattern[str]
    status: int
    times: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None  # dict/list: JSON; str/bytes: sent as is; None: GitHub's body for the status
    disconnect: bool = False  # close the connection without answering


class HttpError(Exception):
    """Raised inside a route: answer ``status`` with GitHub's error body."""

    def __init__(self, status: int, message: str | None = None, *, errors: list[Any] | None = None, doc: str = DOCS):
        super().__init__(status, message)
        self.status = status
        self.body: dict[str, Any] = {"message": message or _default_message(status), "documentation_url": doc}
        if errors is not None:
            self.body["errors"] = errors
        self.body["status"] = str(status)


def _default_message(status: int) -> str:
    return {
        401: "Bad credentials",
        403: "Forbidden",
        404: "Not Found",
        422: "Validation Failed",
        500: "Server Error",
        502: "Server Error",
        503: "Service Unavailable",
    }.get(status, HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error")


def _token_from_header(value: str) -> str | None:
    scheme, _, credential = value.strip().partition(" ")
    scheme = scheme.lower()
    if scheme in ("token", "bearer"):
        return credential.strip() or None
    if scheme == "basic":
        try:
            decoded = base64.b64decode(credential.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def _node_id(kind: str, number: int) -> str:
    """GitHub's legacy global node id: base64("<len>:<Type><id>")."""
    return base64.b64encode(f"{len(kind):03d}:{kind}{number}".encode()).decode()


def _replace_strings(value: Any, replacements: list[tuple[str, str]]) -> Any:
    if isinstance(value, str):
        for old, new in replacements:
            value = value.replace(old, new)
        return value
    if isinstance(value, list):
        return [_replace_strings(v, replacements) for v in value]
    if isinstance(value, dict):
        return {k: _replace_strings(v, replacements) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------------------------------------------
# State


@dataclass
class User:
    login: str
    id: int
    type: str = "User"  # or "Organization"
    name: str | None = None
    orgs: list[str] = field(default_factory=list)
    created_at: datetime = field(default_factory=lambda: datetime(2020, 1, 1, tzinfo=UTC))


@dataclass
class Label:
    id: int
    name: str
    color: str = "ededed"
    description: str | None = None
    default: bool = False


@dataclass
class Comment:
    id: int
    repo: str
    number: int
    body: str
    author: str
    created_at: datetime
    updated_at: datetime


@dataclass
class Event:
    id: int
    event: str
    actor: str
    created_at: datetime
    label: str | None = None
    commit_id: str | None = None


@dataclass
class PullRequest:
    number: int
    id: int
    issue_id: int
    title: str
    body: str | None
    head: str  # branch name
    head_sha: str
    base: str
    author: str
    created_at: datetime
    updated_at: datetime
    draft: bool = False
    state: str = "open"
    merged: bool = False
    merged_at: datetime | None = None
    merged_by: str | None = None
    merge_commit_sha: str | None = None
    closed_at: datetime | None = None
    closed_by: str | None = None
    labels: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


@dataclass
class Repo:
    full_name: str
    id: int
    path: Path
    default_branch: str
    private: bool
    created_at: datetime
    pushed_at: datetime
    description: str | None = None
    next_number: int = 1
    pulls: dict[int, PullRequest] = field(default_factory=dict)
    labels: dict[str, Label] = field(default_factory=dict)  # by lower-cased name

    @property
    def owner(self) -> str:
        return self.full_name.split("/")[0]

    @property
    def name(self) -> str:
        return self.full_name.split("/")[1]


@dataclass
class _Result:
    status: int
    body: Any
    template: str  # the OpenAPI path the body is checked against
    paginate: bool = False
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Ctx:
    request: Request
    actor: str  # the token's user
    repo: Repo | None = None


# --------------------------------------------------------------------------------------------------------------
# The server


class FakeGitHub:
    """GitHub's REST API and git smart HTTP on ``127.0.0.1``: see the module doc."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        login: str = "casm-bot",
        rate_limit: int = 5000,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.token = token
        self.login = login
        self.rate_limit = rate_limit
        self.rate_limit_used = 0
        self.rate_limit_reset = int(time.time()) + 3600
        self._clock = clock or (lambda: datetime.now(UTC))
        self.requests: list[Request] = []
        self.schema_errors: list[str] = []
        self.unhandled: list[str] = []
        self.errors: list[str] = []  # the fake's own crashes (tracebacks)
        self._faults: list[Fault] = []
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._user_ids = itertools.count(1)
        self._request_ids = itertools.count(1)
        self.users: dict[str, User] = {}
        self.repos: dict[str, Repo] = {}
        self._comments: dict[int, Comment] = {}
        self._root = Path(tempfile.mkdtemp(prefix="fake-github-"))
        self.add_user(login)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> FakeGitHub:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-github", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.close_connections()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        assert self._server is not None, "the server is not started (use `with FakeGitHub() as gh:`)"
        return self._server.server_address[1]

    @property
    def api_url(self) -> str:
        """The API root, e.g. ``http://127.0.0.1:PORT``: PyGithub's ``base_url`` and ``GITHUB_API_URL``."""
        return f"http://127.0.0.1:{self.port}"

    def clone_url(self, full_name: str) -> str:
        return f"{self.api_url}/{full_name}.git"

    def git_auth_header(self, user: str = "x-access-token") -> str:
        """``Authorization: Basic ...`` for git (``git -c http.extraHeader=...``)."""
        return "Authorization: Basic " + base64.b64encode(f"{user}:{self.token}".encode()).decode()

    def client(self, **kwargs: Any) -> Any:
        """A ``github.Github`` for this server: the token, no retries and no pacing unless given."""
        import github

        kwargs.setdefault("auth", github.Auth.Token(self.token))
        kwargs.setdefault("retry", None)
        kwargs.setdefault("seconds_between_requests", None)
        kwargs.setdefault("seconds_between_writes", None)
        kwargs.setdefault("timeout", 10)
        return github.Github(base_url=self.api_url, **kwargs)

    # -- checks ----------------------------------------------------------------------------------------------

    def assert_clean(self) -> None:
        """Fail if any response was off-schema, any request hit a route the fake does not serve, or the fake
        itself crashed."""
        problems = [f"schema: {e}" for e in self.schema_errors] + [f"unhandled route: {u}" for u in self.unhandled]
        problems += [f"fake crashed: {e}" for e in self.errors]
        if problems:
            raise AssertionError("FakeGitHub saw problems:\n" + "\n".join(problems))

    @property
    def api_requests(self) -> list[Request]:
        return [r for r in self.requests if r.kind == "api"]

    @property
    def git_requests(self) -> list[Request]:
        return [r for r in self.requests if r.kind == "git"]

    @property
    def rate_limit_remaining(self) -> int:
        return max(0, self.rate_limit - self.rate_limit_used)

    def now(self) -> datetime:
        return self._clock().astimezone(UTC).replace(microsecond=0)

    # -- users -----------------------------------------------------------------------------------------------

    def add_user(self, login: str, orgs: Iterable[str] = (), *, name: str | None = None) -> User:
        """A user (created if new); ``orgs`` are created as organisations and the user joins them."""
        with self._lock:
            user = self.users.get(login)
            if user is None:
                user = self.users[login] = User(login, next(self._user_ids), name=name)
            for org in orgs:
                self._ensure_user(org, "Organization")
                if org not in user.orgs:
                    user.orgs.append(org)
            return user

    def add_org(self, login: str) -> User:
        return self._ensure_user(login, "Organization")

    def _ensure_user(self, login: str, kind: str | None = None) -> User:
        """The user ``login``, created if new (a User unless ``kind`` says); ``kind`` "Organization" turns
        an existing one (e.g. a repo owner) into an organisation."""
        with self._lock:
            user = self.users.get(login)
            if user is None:
                user = self.users[login] = User(login, next(self._user_ids), type=kind or "User")
            elif kind == "Organization":
                user.type = kind
            return user

    # -- repositories ----------------------------------------------------------------------------------------

    def create_repo(
        self,
        full_name: str,
        source: Path | None = None,
        *,
        default_branch: str = "main",
        private: bool = False,
        description: str | None = None,
    ) -> Path:
        """A bare repo for ``owner/name`` (every branch of the local repo ``source`` pushed to it); its path."""
        owner, _, name = full_name.partition("/")
        assert owner and name and "/" not in name, full_name
        path = self._root / owner / f"{name}.git"
        path.parent.mkdir(parents=True, exist_ok=True)
        _git("init", "--quiet", "--bare", f"--initial-branch={default_branch}", str(path))
        _git("config", "http.receivepack", "true", cwd=path)
        _git("config", "uploadpack.allowReachableSHA1InWant", "true", cwd=path)
        if source is not None and _git("for-each-ref", "--count=1", "refs/heads", cwd=Path(source)):
            _git(
                "push",
                "--quiet",
                "--force",
                str(path),
                "refs/heads/*:refs/heads/*",
                "refs/tags/*:refs/tags/*",
                cwd=Path(source),
            )
        with self._lock:
            if full_name in self.repos:
                raise ValueError(f"{full_name} exists")
            self._ensure_user(owner)
            now = self.now()
            self.repos[full_name] = Repo(
                full_name, next(self._ids), path, default_branch, private, now, now, description=description
            )
        return path

    def repo_path(self, full_name: str) -> Path:
        return self._repo(full_name).path

    def branch_sha(self, full_name: str, branch: str) -> str | None:
        return _rev_parse(self._repo(full_name).path, f"refs/heads/{branch}")

    def push_branch(self, full_name: str, branch: str, source: Path, ref: str = "HEAD") -> str:
        """Push ``ref`` of the local repo ``source`` to ``branch`` (forced), as a push over HTTP would: open PRs
        from that branch move to it. Returns the new sha."""
        repo = self._repo(full_name)
        _git("push", "--quiet", "--force", str(repo.path), f"{ref}:refs/heads/{branch}", cwd=Path(source))
        self._after_push(repo)
        sha = self.branch_sha(full_name, branch)
        assert sha is not None
        return sha

    def _repo(self, full_name: str) -> Repo:
        with self._lock:
            if full_name not in self.repos:
                raise KeyError(f"no repo {full_name} (create_repo first)")
            return self.repos[full_name]

    def _after_push(self, repo: Repo, pusher: str | None = None) -> None:
        with self._lock:
            repo.pushed_at = self.now()
            for pr in repo.pulls.values():
                if pr.state == "open":
                    sha = _rev_parse(repo.path, f"refs/heads/{pr.head}")
                    if sha and sha != pr.head_sha:
                        self._move_head(repo, pr, sha, pusher)

    # -- pull requests ---------------------------------------------------------------------------------------

    def open_pr(
        self,
        full_name: str,
        head_branch: str,
        base: str | None = None,
        *,
        title: str = "A change",
        body: str | None = "",
        author: str = "alice",
        commits: Path | None = None,
        draft: bool = False,
    ) -> int:
        """Open a PR from ``head_branch`` (pushed from the local repo ``commits`` first, when given; else it must
        exist) into ``base`` (the default branch). Returns its number."""
        repo = self._repo(full_name)
        if commits is not None:
            self.push_branch(full_name, head_branch, commits)
        self._ensure_user(author)
        with self._lock:
            return self._create_pr(repo, head_branch, base or repo.default_branch, title, body, author, draft).number

    def _create_pr(
        self, repo: Repo, head: str, base: str, title: str, body: str | None, author: str, draft: bool
    ) -> PullRequest:
        head_sha = _rev_parse(repo.path, f"refs/heads/{head}")
        if head_sha is None:
            raise ValueError(f"{repo.full_name} has no branch {head!r}")
        if _rev_parse(repo.path, f"refs/heads/{base}") is None:
            raise ValueError(f"{repo.full_name} has no branch {base!r}")
        now = self.now()
        number = repo.next_number
        repo.next_number += 1
        pr = PullRequest(
            number, next(self._ids), next(self._ids), title, body, head, head_sha, base, author, now, now, draft=draft
        )
        repo.pulls[number] = pr
        _git("update-ref", f"refs/pull/{number}/head", head_sha, cwd=repo.path)
        return pr

    def update_pr_head(self, full_name: str, number: int) -> str:
        """A new push: re-read the head branch, move the PR (and ``refs/pull/N/head``) to it. Returns the sha."""
        repo = self._repo(full_name)
        with self._lock:
            pr = self._pr(repo, number)
            sha = _rev_parse(repo.path, f"refs/heads/{pr.head}")
            if sha is None:
                raise ValueError(f"branch {pr.head!r} of PR #{number} is gone")
            if sha != pr.head_sha:
                self._move_head(repo, pr, sha)
            return sha

    push = update_pr_head

    def _move_head(self, repo: Repo, pr: PullRequest, sha: str, pusher: str | None = None) -> None:
        if not _is_ancestor(repo.path, pr.head_sha, sha):
            pr.events.append(Event(next(self._ids), "head_ref_force_pushed", pusher or pr.author, self.now()))
        pr.head_sha = sha
        pr.updated_at = self.now()
        _git("update-ref", f"refs/pull/{pr.number}/head", sha, cwd=repo.path)

    def close_pr(self, full_name: str, number: int, actor: str | None = None) -> None:
        repo = self._repo(full_name)
        with self._lock:
            self._close(self._pr(repo, number), actor or self.login)

    def _close(self, pr: PullRequest, actor: str) -> None:
        if pr.state == "closed":
            return
        now = self.now()
        pr.state, pr.closed_at, pr.closed_by, pr.updated_at = "closed", now, actor, now
        pr.events.append(Event(next(self._ids), "closed", actor, now))

    def reopen_pr(self, full_name: str, number: int, actor: str | None = None) -> None:
        repo = self._repo(full_name)
        with self._lock:
            pr = self._pr(repo, number)
            if pr.merged:
                raise ValueError("a merged PR cannot be reopened")
            now = self.now()
            pr.state, pr.closed_at, pr.closed_by, pr.updated_at = "open", None, None, now
            pr.events.append(Event(next(self._ids), "reopened", actor or self.login, now))

    def merge_pr(self, full_name: str, number: int, actor: str | None = None) -> str:
        """Merge as GitHub's merge button does: a merge commit on the base branch (which must merge cleanly),
        the PR closed and merged, ``merged`` and ``closed`` events. Returns the merge commit's sha."""
        repo = self._repo(full_name)
        actor = actor or self.login
        with self._lock:
            pr = self._pr(repo, number)
            if pr.state != "open":
                raise ValueError(f"PR #{number} is not open")
            base_sha = _rev_parse(repo.path, f"refs/heads/{pr.base}")
            assert base_sha is not None
            merged = subprocess.run(
                ["git", "merge-tree", "--write-tree", base_sha, pr.head_sha],
                cwd=repo.path,
                capture_output=True,
                text=True,
                env=_git_env(),
            )
            if merged.returncode != 0:
                raise ValueError(f"PR #{number} does not merge cleanly: {merged.stdout.strip()}")
            tree = merged.stdout.split()[0]
            message = f"Merge pull request #{number} from {repo.owner}/{pr.head}\n\n{pr.title}\n"
            sha = _git("commit-tree", tree, "-p", base_sha, "-p", pr.head_sha, "-m", message, cwd=repo.path)
            _git("update-ref", f"refs/heads/{pr.base}", sha, base_sha, cwd=repo.path)
            now = self.now()
            pr.merged, pr.merged_at, pr.merged_by, pr.merge_commit_sha = True, now, actor, sha
            pr.events.append(Event(next(self._ids), "merged", actor, now, commit_id=sha))
            self._close(pr, actor)
            repo.pushed_at = now
            return sha

    def _pr(self, repo: Repo, number: int) -> PullRequest:
        if number not in repo.pulls:
            raise KeyError(f"{repo.full_name} has no PR #{number}")
        return repo.pulls[number]

    def add_label(self, full_name: str, number: int, label: str, actor: str = "alice") -> None:
        """``actor`` labels the PR (a ``labeled`` event; the repo label is created if new)."""
        repo = self._repo(full_name)
        self._ensure_user(actor)
        with self._lock:
            self._add_labels(repo, self._pr(repo, number), [label], actor)

    def remove_label(self, full_name: str, number: int, label: str, actor: str = "alice") -> None:
        repo = self._repo(full_name)
        self._ensure_user(actor)
        with self._lock:
            pr = self._pr(repo, number)
            for name in list(pr.labels):
                if name.lower() == label.lower():
                    pr.labels.remove(name)
                    pr.events.append(Event(next(self._ids), "unlabeled", actor, self.now(), label=name))

    def _add_labels(self, repo: Repo, pr: PullRequest, names: list[str], actor: str) -> None:
        now = self.now()
        for name in names:
            known = repo.labels.get(name.lower())
            if known is None:
                known = repo.labels[name.lower()] = Label(next(self._ids), name)
            if known.name not in pr.labels:
                pr.labels.append(known.name)
                pr.events.append(Event(next(self._ids), "labeled", actor, now, label=known.name))
                pr.updated_at = now

    def add_comment(self, full_name: str, number: int, body: str, author: str = "alice") -> int:
        """``author`` comments on the PR; returns the comment's id."""
        repo = self._repo(full_name)
        self._ensure_user(author)
        with self._lock:
            return self._comment(repo, self._pr(repo, number), body, author).id

    def _comment(self, repo: Repo, pr: PullRequest, body: str, author: str) -> Comment:
        now = self.now()
        comment = Comment(next(self._ids), repo.full_name, pr.number, body, author, now, now)
        self._comments[comment.id] = comment
        pr.updated_at = now
        return comment

    def comments(self, full_name: str, number: int) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"id": c.id, "body": c.body, "user": c.author, "created_at": c.created_at, "updated_at": c.updated_at}
                for c in self._pr_comments(full_name, number)
            ]

    def _pr_comments(self, full_name: str, number: int) -> list[Comment]:
        return [c for c in self._comments.values() if c.repo == full_name and c.number == number]

    def pulls(self, full_name: str) -> list[dict[str, Any]]:
        repo = self._repo(full_name)
        with self._lock:
            return [
                {
                    "number": pr.number,
                    "title": pr.title,
                    "body": pr.body,
                    "head": pr.head,
                    "head_sha": pr.head_sha,
                    "base": pr.base,
                    "user": pr.author,
                    "state": pr.state,
                    "draft": pr.draft,
                    "merged": pr.merged,
                    "labels": list(pr.labels),
                    "created_at": pr.created_at,
                    "updated_at": pr.updated_at,
                }
                for pr in repo.pulls.values()
            ]

    def labels(self, full_name: str, number: int) -> list[str]:
        repo = self._repo(full_name)
        with self._lock:
            return list(self._pr(repo, number).labels)

    def events(self, full_name: str, number: int) -> list[dict[str, Any]]:
        repo = self._repo(full_name)
        with self._lock:
            return [
                {"event": e.event, "actor": e.actor, "label": e.label, "created_at": e.created_at}
                for e in self._pr(repo, number).events
            ]

    # -- fault injection -------------------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int = 500,
        *,
        times: int = 1,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        disconnect: bool = False,
    ) -> None:
        """Answer the next ``times`` requests whose method is ``method`` ("*": any) and whose path (no query)
        matches ``path_regex`` (``re.search``) with ``status``, ``headers`` and ``body`` (None: GitHub's body for
        the status), or by closing the connection when ``disconnect``. Applies before auth and state."""
        with self._lock:
            self._faults.append(
                Fault(method.upper(), re.compile(path_regex), status, times, dict(headers or {}), body, disconnect)
            )

    def rate_limit_next(
        self, method: str, path_regex: str, *, times: int = 1, reset_in: float = 60, status: int = 403
    ) -> None:
        """GitHub's primary rate limit: 403 (GitHub also uses 429), ``X-RateLimit-Remaining: 0``, reset
        ``reset_in`` seconds from now, and GitHub's message."""
        user = self.users[self.login]
        self.fail_next(
            method,
            path_regex,
            status,
            times=times,
            headers={
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Used": str(self.rate_limit),
                "X-RateLimit-Reset": str(int(time.time() + reset_in)),
            },
            body={"message": _primary_rate_limit_message(user.id), "documentation_url": RATE_LIMIT_DOCS},
        )

    def secondary_rate_limit_next(
        self, method: str, path_regex: str, *, times: int = 1, retry_after: int | None = None, status: int = 403
    ) -> None:
        """GitHub's secondary rate limit: 403 (GitHub also uses 429) with its message, and ``Retry-After`` when
        given."""
        self.fail_next(
            method,
            path_regex,
            status,
            times=times,
            headers={"Retry-After": str(retry_after)} if retry_after is not None else None,
            body={
                "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try "
                "again. If you reach out to GitHub Support for help, please include the request ID "
                "C0DE:0001:0002:0003:65F00000.",
                "documentation_url": SECONDARY_RATE_LIMIT_DOCS,
            },
        )

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times > 0 and fault.method in ("*", method) and fault.pattern.search(path):
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    # -- rendering (lock held) -------------------------------------------------------------------------------

    def _urls(self, full_name: str) -> tuple[str, str]:
        return f"{self.api_url}/repos/{full_name}", f"{self.api_url}/{full_name}"

    def _relocated(self, body: Any, full_name: str | None = None) -> Any:
        """An example body with github.com's URLs pointing at this server (and at ``full_name``)."""
        replacements = []
        if full_name is not None:
            api, html = self._urls(full_name)
            replacements += [(_EXAMPLE_REPO_API, api), (_EXAMPLE_REPO_HTML, html)]
        replacements += [("https://api.github.com", self.api_url), ("https://github.com", self.api_url)]
        return _replace_strings(body, replacements)

    def _simple_user(self, login: str) -> dict[str, Any]:
        user = self._ensure_user(login)
        api = f"{self.api_url}/users/{login}"
        return {
            "login": login,
            "id": user.id,
            "node_id": _node_id(user.type, user.id),
            "avatar_url": f"{self.api_url}/avatars/u/{user.id}?v=4",
            "gravatar_id": "",
            "url": api,
            "html_url": f"{self.api_url}/{login}",
            "followers_url": f"{api}/followers",
            "following_url": f"{api}/following{{/other_user}}",
            "gists_url": f"{api}/gists{{/gist_id}}",
            "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{api}/subscriptions",
            "organizations_url": f"{api}/orgs",
            "repos_url": f"{api}/repos",
            "events_url": f"{api}/events{{/privacy}}",
            "received_events_url": f"{api}/received_events",
            "type": user.type,
            "user_view_type": "public",
            "site_admin": False,
        }

    def _public_user(self, login: str, *, private: bool = False) -> dict[str, Any]:
        user = self._ensure_user(login)
        body = example("GET", "/user") if private else example("GET", "/users/{username}")
        body.update(self._simple_user(login))
        owned = [r for r in self.repos.values() if r.owner == login]
        body.update(
            name=user.name,
            company=None,
            blog="",
            location=None,
            email=None,
            hireable=None,
            bio=None,
            twitter_username=None,
            public_repos=sum(1 for r in owned if not r.private),
            public_gists=0,
            followers=0,
            following=0,
            created_at=_iso(user.created_at),
            updated_at=_iso(user.created_at),
        )
        if private:
            body.update(
                private_gists=0,
                total_private_repos=sum(1 for r in owned if r.private),
                owned_private_repos=sum(1 for r in owned if r.private),
                disk_usage=0,
                collaborators=0,
                two_factor_authentication=True,
                plan={"name": "free", "space": 976562499, "private_repos": 10000, "collaborators": 0},
            )
            body["user_view_type"] = "private"
        return body

    def _org_simple(self, login: str) -> dict[str, Any]:
        org = self._ensure_user(login, "Organization")
        body = example("GET", "/users/{username}/orgs")[0]
        api = f"{self.api_url}/orgs/{login}"
        body.update(
            login=login,
            id=org.id,
            node_id=_node_id("Organization", org.id),
            url=api,
            repos_url=f"{api}/repos",
            events_url=f"{api}/events",
            hooks_url=f"{api}/hooks",
            issues_url=f"{api}/issues",
            members_url=f"{api}/members{{/member}}",
            public_members_url=f"{api}/public_members{{/member}}",
            avatar_url=f"{self.api_url}/avatars/u/{org.id}?v=4",
            description=None,
        )
        return body

    def _repo_common(self, repo: Repo, body: dict[str, Any]) -> dict[str, Any]:
        body = self._relocated(body, repo.full_name)
        host = f"127.0.0.1:{self.port}"
        open_prs = sum(1 for pr in repo.pulls.values() if pr.state == "open")
        body.update(
            id=repo.id,
            node_id=_node_id("Repository", repo.id),
            name=repo.name,
            full_name=repo.full_name,
            owner=self._simple_user(repo.owner),
            private=repo.private,
            description=repo.description,
            fork=False,
            clone_url=self.clone_url(repo.full_name),
            git_url=f"git://{host}/{repo.full_name}.git",
            ssh_url=f"git@{host}:{repo.full_name}.git",
            svn_url=f"{self.api_url}/{repo.full_name}",
            mirror_url=None,
            homepage=None,
            language=None,
            forks_count=0,
            forks=0,
            stargazers_count=0,
            watchers_count=0,
            watchers=0,
            size=0,
            default_branch=repo.default_branch,
            open_issues_count=open_prs,
            open_issues=open_prs,
            topics=[],
            archived=False,
            disabled=False,
            visibility="private" if repo.private else "public",
            pushed_at=_iso(repo.pushed_at),
            created_at=_iso(repo.created_at),
            updated_at=_iso(repo.pushed_at),
            permissions={"admin": False, "maintain": False, "push": True, "triage": True, "pull": True},
            license=None,
        )
        body.pop("temp_clone_token", None)
        return body

    def _full_repo(self, repo: Repo) -> dict[str, Any]:
        body = self._repo_common(repo, example("GET", "/repos/{owner}/{repo}"))
        for key in ("parent", "source", "template_repository"):
            body.pop(key, None)
        if self.users[repo.owner].type == "Organization":
            body["organization"] = self._simple_user(repo.owner)
        else:
            body.pop("organization", None)
        body.update(network_count=0, subscribers_count=0, is_template=False)
        return body

    def _git_stats(self, repo: Repo, pr: PullRequest) -> dict[str, int]:
        base_sha = _rev_parse(repo.path, f"refs/heads/{pr.base}") or pr.head_sha
        merge_base = _merge_base(repo.path, base_sha, pr.head_sha) or base_sha
        files = _diff_files(repo.path, merge_base, pr.head_sha)
        return {
            "commits": int(_git("rev-list", "--count", f"{merge_base}..{pr.head_sha}", cwd=repo.path) or 0),
            "additions": sum(f["additions"] for f in files),
            "deletions": sum(f["deletions"] for f in files),
            "changed_files": len(files),
        }

    def _author_association(self, repo: Repo, login: str) -> str:
        if login == repo.owner:
            return "OWNER"
        if repo.owner in self._ensure_user(login).orgs:
            return "MEMBER"
        if login == self.login:
            return "COLLABORATOR"
        return "CONTRIBUTOR" if any(pr.author == login for pr in repo.pulls.values()) else "NONE"

    def _pull(self, repo: Repo, pr: PullRequest, *, full: bool = True) -> dict[str, Any]:
        body = self._relocated(example("GET", "/repos/{owner}/{repo}/pulls/{pull_number}"), repo.full_name)
        api, html = self._urls(repo.full_name)
        n = pr.number
        base_sha = _rev_parse(repo.path, f"refs/heads/{pr.base}") or pr.head_sha
        branch_repo = self._repo_common(repo, body["head"]["repo"])
        body.update(
            url=f"{api}/pulls/{n}",
            id=pr.id,
            node_id=_node_id("PullRequest", pr.id),
            html_url=f"{html}/pull/{n}",
            diff_url=f"{html}/pull/{n}.diff",
            patch_url=f"{html}/pull/{n}.patch",
            issue_url=f"{api}/issues/{n}",
            commits_url=f"{api}/pulls/{n}/commits",
            review_comments_url=f"{api}/pulls/{n}/comments",
            review_comment_url=f"{api}/pulls/comments{{/number}}",
            comments_url=f"{api}/issues/{n}/comments",
            statuses_url=f"{api}/statuses/{pr.head_sha}",
            number=n,
            state=pr.state,
            locked=False,
            title=pr.title,
            user=self._simple_user(pr.author),
            body=pr.body or None,
            labels=[self._label(repo, name) for name in pr.labels],
            milestone=None,
            active_lock_reason=None,
            created_at=_iso(pr.created_at),
            updated_at=_iso(pr.updated_at),
            closed_at=_iso(pr.closed_at),
            merged_at=_iso(pr.merged_at),
            merge_commit_sha=pr.merge_commit_sha,
            assignee=None,
            assignees=[],
            requested_reviewers=[],
            requested_teams=[],
            head={
                "label": f"{repo.owner}:{pr.head}",
                "ref": pr.head,
                "sha": pr.head_sha,
                "user": self._simple_user(repo.owner),
                "repo": branch_repo,
            },
            base={
                "label": f"{repo.owner}:{pr.base}",
                "ref": pr.base,
                "sha": base_sha,
                "user": self._simple_user(repo.owner),
                "repo": branch_repo,
            },
            _links={
                "self": {"href": f"{api}/pulls/{n}"},
                "html": {"href": f"{html}/pull/{n}"},
                "issue": {"href": f"{api}/issues/{n}"},
                "comments": {"href": f"{api}/issues/{n}/comments"},
                "review_comments": {"href": f"{api}/pulls/{n}/comments"},
                "review_comment": {"href": f"{api}/pulls/comments{{/number}}"},
                "commits": {"href": f"{api}/pulls/{n}/commits"},
                "statuses": {"href": f"{api}/statuses/{pr.head_sha}"},
            },
            author_association=self._author_association(repo, pr.author),
            auto_merge=None,
            draft=pr.draft,
        )
        if not full:
            simple = example("GET", "/repos/{owner}/{repo}/pulls")[0]
            return {key: body[key] for key in simple if key in body}
        is_open = pr.state == "open"
        body.update(
            merged=pr.merged,
            mergeable=True if is_open else None,
            rebaseable=True if is_open else None,
            mergeable_state="clean" if is_open else "unknown",
            merged_by=self._simple_user(pr.merged_by) if pr.merged_by else None,
            comments=len(self._pr_comments(repo.full_name, n)),
            review_comments=0,
            maintainer_can_modify=False,
            **self._git_stats(repo, pr),
        )
        return body

    def _label(self, repo: Repo, name: str) -> dict[str, Any]:
        label = repo.labels[name.lower()]
        api, _ = self._urls(repo.full_name)
        return {
            "id": label.id,
            "node_id": _node_id("Label", label.id),
            "url": f"{api}/labels/{quote(label.name)}",
            "name": label.name,
            "description": label.description,
            "color": label.color,
            "default": label.default,
        }

    def _issue(self, repo: Repo, pr: PullRequest) -> dict[str, Any]:
        body = self._relocated(example("GET", "/repos/{owner}/{repo}/issues/{issue_number}"), repo.full_name)
        api, html = self._urls(repo.full_name)
        n = pr.number
        body.update(
            id=pr.issue_id,
            node_id=_node_id("Issue", pr.issue_id),
            url=f"{api}/issues/{n}",
            repository_url=api,
            labels_url=f"{api}/issues/{n}/labels{{/name}}",
            comments_url=f"{api}/issues/{n}/comments",
            events_url=f"{api}/issues/{n}/events",
            html_url=f"{html}/pull/{n}",
            number=n,
            state=pr.state,
            title=pr.title,
            body=pr.body or None,
            user=self._simple_user(pr.author),
            labels=[self._label(repo, name) for name in pr.labels],
            assignee=None,
            assignees=[],
            milestone=None,
            locked=False,
            active_lock_reason=None,
            comments=len(self._pr_comments(repo.full_name, n)),
            pull_request={
                "url": f"{api}/pulls/{n}",
                "html_url": f"{html}/pull/{n}",
                "diff_url": f"{html}/pull/{n}.diff",
                "patch_url": f"{html}/pull/{n}.patch",
                "merged_at": _iso(pr.merged_at),
            },
            closed_at=_iso(pr.closed_at),
            created_at=_iso(pr.created_at),
            updated_at=_iso(pr.updated_at),
            closed_by=self._simple_user(pr.closed_by) if pr.closed_by else None,
            author_association=self._author_association(repo, pr.author),
            state_reason=None,
            draft=pr.draft,
            timeline_url=f"{api}/issues/{n}/timeline",
            performed_via_github_app=None,
        )
        body.pop("pinned_comment", None)
        return body

    def _issue_comment(self, repo: Repo, comment: Comment) -> dict[str, Any]:
        body = self._relocated(example("GET", "/repos/{owner}/{repo}/issues/comments/{comment_id}"), repo.full_name)
        api, html = self._urls(repo.full_name)
        body.update(
            id=comment.id,
            node_id=_node_id("IssueComment", comment.id),
            url=f"{api}/issues/comments/{comment.id}",
            html_url=f"{html}/pull/{comment.number}#issuecomment-{comment.id}",
            body=comment.body,
            user=self._simple_user(comment.author),
            created_at=_iso(comment.created_at),
            updated_at=_iso(comment.updated_at),
            issue_url=f"{api}/issues/{comment.number}",
            author_association=self._author_association(repo, comment.author),
            performed_via_github_app=None,
        )
        body.pop("pin", None)
        body.pop("minimized", None)
        return body

    def _event(self, repo: Repo, pr: PullRequest, event: Event) -> dict[str, Any]:
        api, _ = self._urls(repo.full_name)
        body: dict[str, Any] = {
            "id": event.id,
            "node_id": _node_id("IssueEvent", event.id),
            "url": f"{api}/issues/events/{event.id}",
            "actor": self._simple_user(event.actor),
            "event": event.event,
            "commit_id": event.commit_id,
            "commit_url": f"{api}/commits/{event.commit_id}" if event.commit_id else None,
            "created_at": _iso(event.created_at),
            "performed_via_github_app": None,
        }
        if event.label is not None:
            label = repo.labels.get(event.label.lower())
            body["label"] = {"name": event.label, "color": label.color if label else "ededed"}
        if event.event in ("closed", "reopened"):
            body["state_reason"] = None
        return body

    def _files(self, repo: Repo, pr: PullRequest) -> list[dict[str, Any]]:
        api, html = self._urls(repo.full_name)
        base_sha = _rev_parse(repo.path, f"refs/heads/{pr.base}") or pr.head_sha
        merge_base = _merge_base(repo.path, base_sha, pr.head_sha) or base_sha
        out = []
        for entry in _diff_files(repo.path, merge_base, pr.head_sha):
            path = entry["filename"]
            item = {
                "sha": entry["sha"],
                "filename": path,
                "status": entry["status"],
                "additions": entry["additions"],
                "deletions": entry["deletions"],
                "changes": entry["additions"] + entry["deletions"],
                "blob_url": f"{html}/blob/{pr.head_sha}/{quote(path)}",
                "raw_url": f"{html}/raw/{pr.head_sha}/{quote(path)}",
                "contents_url": f"{api}/contents/{quote(path)}?ref={pr.head_sha}",
            }
            if entry.get("patch") is not None:
                item["patch"] = entry["patch"]
            if entry.get("previous_filename"):
                item["previous_filename"] = entry["previous_filename"]
            out.append(item)
        return out

    # -- routes ----------------------------------------------------------------------------------------------

    def _routes(self) -> list[tuple[str, re.Pattern[str], str, Callable[..., _Result]]]:
        repo = r"/repos/(?P<owner>[^/]+)/(?P<name>[^/]+)"
        table = [
            ("GET", "/user", "/user", self._r_me),
            ("GET", r"/users/(?P<login>[^/]+)", "/users/{username}", self._r_user),
            ("GET", r"/users/(?P<login>[^/]+)/orgs", "/users/{username}/orgs", self._r_user_orgs),
            ("GET", repo, "/repos/{owner}/{repo}", self._r_repo),
            ("GET", repo + "/pulls", "/repos/{owner}/{repo}/pulls", self._r_list_pulls),
            ("POST", repo + "/pulls", "/repos/{owner}/{repo}/pulls", self._r_create_pull),
            ("GET", repo + r"/pulls/(?P<n>\d+)", "/repos/{owner}/{repo}/pulls/{pull_number}", self._r_get_pull),
            ("PATCH", repo + r"/pulls/(?P<n>\d+)", "/repos/{owner}/{repo}/pulls/{pull_number}", self._r_edit_pull),
            (
                "GET",
                repo + r"/pulls/(?P<n>\d+)/files",
                "/repos/{owner}/{repo}/pulls/{pull_number}/files",
                self._r_files,
            ),
            ("GET", repo + r"/issues/(?P<n>\d+)", "/repos/{owner}/{repo}/issues/{issue_number}", self._r_issue),
            (
                "GET",
                repo + r"/issues/(?P<n>\d+)/comments",
                "/repos/{owner}/{repo}/issues/{issue_number}/comments",
                self._r_list_comments,
            ),
            (
                "POST",
                repo + r"/issues/(?P<n>\d+)/comments",
                "/repos/{owner}/{repo}/issues/{issue_number}/comments",
                self._r_create_comment,
            ),
            (
                "GET",
                repo + r"/issues/comments/(?P<id>\d+)",
                "/repos/{owner}/{repo}/issues/comments/{comment_id}",
                self._r_get_comment,
            ),
            (
                "PATCH",
                repo + r"/issues/comments/(?P<id>\d+)",
                "/repos/{owner}/{repo}/issues/comments/{comment_id}",
                self._r_edit_comment,
            ),
            (
                "GET",
                repo + r"/issues/(?P<n>\d+)/labels",
                "/repos/{owner}/{repo}/issues/{issue_number}/labels",
                self._r_list_labels,
            ),
            (
                "POST",
                repo + r"/issues/(?P<n>\d+)/labels",
                "/repos/{owner}/{repo}/issues/{issue_number}/labels",
                self._r_add_labels,
            ),
            (
                "GET",
                repo + r"/issues/(?P<n>\d+)/events",
                "/repos/{owner}/{repo}/issues/{issue_number}/events",
                self._r_events,
            ),
        ]
        return [(m, re.compile(f"^{p}$"), t, h) for m, p, t, h in table]

    def _route(self, method: str, path: str) -> tuple[str, Callable[..., _Result], dict[str, str]] | None:
        m = re.match(r"^/repositories/(\d+)(/.*)?$", path)
        if m:  # GitHub's Link headers point at /repositories/{id}/...
            with self._lock:
                found = next((r for r in self.repos.values() if r.id == int(m.group(1))), None)
            if found is None:
                raise HttpError(404)
            path = f"/repos/{found.full_name}{m.group(2) or ''}"
        known_path = False
        for route_method, pattern, template, handler in self._routes():
            match = pattern.match(path)
            if match:
                known_path = True
                if route_method == method:
                    return template, handler, match.groupdict()
        if known_path:
            raise HttpError(404)  # GitHub answers an unsupported method on a known path with 404 too
        return None

    def _repo_for(self, ctx: _Ctx, owner: str, name: str) -> Repo:
        repo = self.repos.get(f"{owner}/{name}")
        if repo is None:
            raise HttpError(404, doc=f"{DOCS}/repos/repos#get-a-repository")
        ctx.repo = repo
        return repo

    def _pr_for(self, repo: Repo, n: str) -> PullRequest:
        pr = repo.pulls.get(int(n))
        if pr is None:
            raise HttpError(404)
        return pr

    def _r_me(self, ctx: _Ctx) -> _Result:
        return _Result(200, self._public_user(ctx.actor, private=True), "/user")

    def _r_user(self, ctx: _Ctx, login: str) -> _Result:
        if login not in self.users:
            raise HttpError(404, doc=f"{DOCS}/users/users#get-a-user")
        return _Result(200, self._public_user(login), "/users/{username}")

    def _r_user_orgs(self, ctx: _Ctx, login: str) -> _Result:
        if login not in self.users:
            raise HttpError(404)
        orgs = [self._org_simple(org) for org in self.users[login].orgs]
        return _Result(200, orgs, "/users/{username}/orgs", paginate=True)

    def _r_repo(self, ctx: _Ctx, owner: str, name: str) -> _Result:
        return _Result(200, self._full_repo(self._repo_for(ctx, owner, name)), "/repos/{owner}/{repo}")

    def _r_list_pulls(self, ctx: _Ctx, owner: str, name: str) -> _Result:
        repo = self._repo_for(ctx, owner, name)
        q = ctx.request.query
        state = q.get("state", "open")
        if state not in ("open", "closed", "all"):
            raise HttpError(422, errors=[{"resource": "PullRequest", "field": "state", "code": "invalid"}])
        pulls = [pr for pr in repo.pulls.values() if state == "all" or pr.state == state]
        head = q.get("head")
        if head and ":" in head:  # without "owner:" GitHub silently ignores the filter
            head_owner, _, head_branch = head.partition(":")
            pulls = [pr for pr in pulls if head_owner == repo.owner and pr.head == head_branch]
        if q.get("base"):
            pulls = [pr for pr in pulls if pr.base == q["base"]]
        sort = q.get("sort", "created")
        direction = q.get("direction", "desc" if sort == "created" else "asc")
        key: Callable[[PullRequest], Any] = {
            "updated": lambda pr: (pr.updated_at, pr.number),
            "popularity": lambda pr: (len(self._pr_comments(repo.full_name, pr.number)), pr.number),
            "long-running": lambda pr: (pr.created_at, pr.number),
        }.get(sort, lambda pr: (pr.created_at, pr.number))
        pulls.sort(key=key, reverse=direction == "desc")
        return _Result(
            200, [self._pull(repo, pr, full=False) for pr in pulls], "/repos/{owner}/{repo}/pulls", paginate=True
        )

    def _r_create_pull(self, ctx: _Ctx, owner: str, name: str) -> _Result:
        repo = self._repo_for(ctx, owner, name)
        data = ctx.request.json if isinstance(ctx.request.json, dict) else {}
        doc = f"{DOCS}/pulls/pulls#create-a-pull-request"
        missing = [f for f in ("head", "base") if not isinstance(data.get(f), str) or not data.get(f)]
        if not data.get("title") and "issue" not in data:
            missing.insert(0, "title")
        if missing:
            raise HttpError(
                422,
                doc=doc,
                errors=[{"resource": "PullRequest", "field": f, "code": "missing_field"} for f in missing],
            )
        head = data["head"]
        head_owner, _, head_branch = head.rpartition(":")
        if head_owner and head_owner != repo.owner:  # forks are not modelled
            raise HttpError(422, doc=doc, errors=[{"resource": "PullRequest", "field": "head", "code": "invalid"}])
        base = data["base"]
        for field_name, branch in (("base", base), ("head", head_branch)):
            if _rev_parse(repo.path, f"refs/heads/{branch}") is None:
                raise HttpError(
                    422, doc=doc, errors=[{"resource": "PullRequest", "field": field_name, "code": "invalid"}]
                )
        existing = [
            pr for pr in repo.pulls.values() if pr.state == "open" and pr.head == head_branch and pr.base == base
        ]
        if existing:
            message = f"A pull request already exists for {repo.owner}:{head_branch}."
            raise HttpError(422, doc=doc, errors=[{"resource": "PullRequest", "code": "custom", "message": message}])
        head_sha = _rev_parse(repo.path, f"refs/heads/{head_branch}")
        base_sha = _rev_parse(repo.path, f"refs/heads/{base}")
        if head_sha and base_sha and _is_ancestor(repo.path, head_sha, base_sha):
            message = f"No commits between {base} and {head_branch}"
            raise HttpError(422, doc=doc, errors=[{"resource": "PullRequest", "code": "custom", "message": message}])
        pr = self._create_pr(
            repo, head_branch, base, data.get("title") or "", data.get("body"), ctx.actor, bool(data.get("draft"))
        )
        api, _ = self._urls(repo.full_name)
        return _Result(
            201, self._pull(repo, pr), "/repos/{owner}/{repo}/pulls", headers={"Location": f"{api}/pulls/{pr.number}"}
        )

    def _r_get_pull(self, ctx: _Ctx, owner: str, name: str, n: str) -> _Result:
        repo = self._repo_for(ctx, owner, name)
        return _Result(200, self._pull(repo, self._pr_for(repo, n)), "/repos/{owner}/{repo}/pulls/{pull_number}")

    def _r_edit_pull(self, ctx: _Ctx, owner: str, name: str, n: str) -> _Result:
        repo = self._repo_for(ctx, owner, name)
        pr = self._pr_for(repo, n)
        data = ctx.request.json if isinstance(ctx.request.json, dict) else {}
        doc = f"{DOCS}/pulls/pulls#update-a-pull-request"
        if "state" in data and data["state"] not in ("open", "closed"):
            raise HttpError(422, doc=doc, errors=[{"resource": "PullRequest", "field": "state", "code": "invalid"}])
        if "base" in data and _rev_parse(repo.path, f"refs/heads/{data['base']}") is None:
            raise HttpError(422, doc=doc, errors=[{"resource": "PullRequest", "field": "base", "code": "invalid"}])
        if "title" in data:
            pr.title = data["title"]
        if "body" in data:
            pr.body = data["body"]
        if "base" in data:
            pr.base = data["base"]
        if data.get("state") == "closed":
            self._close(pr, ctx.actor)
        elif data.get("state") == "open" and pr.state == "closed" and not pr.merged:
            pr.state, pr.closed_at, pr.closed_by = "open", None, None
            pr.events.append(Event(next(self._ids), "reopened", ctx.actor, self.now()))
        pr.updated_at = self.now()
        return _Result(200, self._pull(repo, pr), "/repos/{owner}/{repo}/pulls/{pull_number}")

    def _r_files(self, ctx: _Ctx, owner: str, name: str, n: str) -> _Result:
        repo = self._repo_for(ctx, owner, name)
        files = self._files(repo, self._pr_for(repo, n))
        return _Result(200, files, "/repos/{owner}/{repo}/pulls/{pull_number}/files", paginate=True)

    def _r_issue(self, ctx: _Ctx, owner: str, name: str, n: str) -> _Result:
        repo = self._repo_for(ctx, owner, name)
        return _Result(200, self._issue(repo, self._pr_for(repo, n)), "/repos/{owner}/{repo}/issues/{issue_number}")

    def _r_list_comments(self, ctx: _Ctx, owner: str, name: str, n: str) -> _Result:
        repo = self._repo_for(ctx, owner, name)
        pr = self._pr_for(repo, n)
        comments = sorted(self._pr_comments(repo.full_name, pr.number), key=lambda c: c.id)
        since = ctx.request.query.get("since")
        if since:
            try:
                moment = datetime.fromisoformat(since.replace("Z", "+00:00"))
            except ValueError:
                raise HttpError(
                    422, errors=[{"resource": "IssueComment", "field": "since", "code": "invalid"}]
                ) from None
            comments = [c for c in comments if c.updated_at >= moment]
        return _Result(
            200,
            [self._issue_comment(repo, c) for c in comments],
            "/repos/{owner}/{repo}/issues/{issue_number}/comments",
            paginate=True,
        )

    def _r_create_comment(self, ctx: _Ctx, owner: str, name: str, n: str) -> _Result:
        repo = self._repo_for(ctx, owner, name)
        pr = self._pr_for(repo, n)
        data = ctx.request.json if isinstance(ctx.request.json, dict) else {}
        if not isinstance(data.get("body"), str) or not data["body"]:
            raise HttpError(
                422,
                doc=f"{DOCS}/issues/comments#create-an-issue-comment",
                errors=[{"resource": "IssueComment", "field": "body", "code": "missing_field"}],
            )
        comment = self._comment(repo, pr, data["body"], ctx.actor)
        return _Result(
            201,
            self._issue_comment(repo, comment),
            "/repos/{owner}/{repo}/issues/{issue_number}/comments",
            headers={"Location": f"{self._urls(repo.full_name)[0]}/issues/comments/{comment.id}"},
        )

    def _comment_for(self, repo: Repo, comment_id: str) -> Comment:
        comment = self._comments.get(int(comment_id))
        if comment is None or comment.repo != repo.full_name:
            raise HttpError(404)
        return comment

    def _r_get_comment(self, ctx: _Ctx, owner: str, name: str, id: str) -> _Result:
        repo = self._repo_for(ctx, owner, name)
        return _Result(
            200,
            self._issue_comment(repo, self._comment_for(repo, id)),
            "/repos/{owner}/{repo}/issues/comments/{comment_id}",
        )

    def _r_edit_comment(self, ctx: _Ctx, owner: str, name: str, id: str) -> _Result:
        repo = self._repo_for(ctx, owner, name)
        comment = self._comment_for(repo, id)
        data = ctx.request.json if isinstance(ctx.request.json, dict) else {}
        if not isinstance(data.get("body"), str) or not data["body"]:
            raise HttpError(422, errors=[{"resource": "IssueComment", "field": "body", "code": "missing_field"}])
        comment.body = data["body"]
        comment.updated_at = self.now()
        return _Result(200, self._issue_comment(repo, comment), "/repos/{owner}/{repo}/issues/comments/{comment_id}")

    def _r_list_labels(self, ctx: _Ctx, owner: str, name: str, n: str) -> _Result:
        repo = self._repo_for(ctx, owner, name)
        pr = self._pr_for(repo, n)
        return _Result(
            200,
            [self._label(repo, label) for label in pr.labels],
            "/repos/{owner}/{repo}/issues/{issue_number}/labels",
            paginate=True,
        )

    def _r_add_labels(self, ctx: _Ctx, owner: str, name: str, n: str) -> _Result:
        repo = self._repo_for(ctx, owner, name)
        pr = self._pr_for(repo, n)
        data = ctx.request.json
        names = data.get("labels") if isinstance(data, dict) else data
        if isinstance(names, list) and names and all(isinstance(x, dict) for x in names):
            names = [x.get("name") for x in names]
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not all(isinstance(x, str) and x for x in names):
            raise HttpError(
                422,
                "Invalid request.\n\nFor 'links/0/schema', nil is not an array.",
                doc=f"{DOCS}/issues/labels#add-labels-to-an-issue",
            )
        self._add_labels(repo, pr, names, ctx.actor)
        return _Result(
            200,
            [self._label(repo, label) for label in pr.labels],
            "/repos/{owner}/{repo}/issues/{issue_number}/labels",
        )

    def _r_events(self, ctx: _Ctx, owner: str, name: str, n: str) -> _Result:
        repo = self._repo_for(ctx, owner, name)
        pr = self._pr_for(repo, n)
        return _Result(
            200,
            [self._event(repo, pr, e) for e in pr.events],
            "/repos/{owner}/{repo}/issues/{issue_number}/events",
            paginate=True,
        )

    # -- request handling ------------------------------------------------------------------------------------

    def _rate_headers(self, remaining: int | None = None) -> dict[str, str]:
        remaining = self.rate_limit_remaining if remaining is None else remaining
        return {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(self.rate_limit_reset),
            "X-RateLimit-Used": str(self.rate_limit - remaining),
            "X-RateLimit-Resource": "core",
        }

    def _base_headers(self) -> dict[str, str]:
        n = next(self._request_ids)
        return {
            "Server": "github.com",
            "X-GitHub-Request-Id": f"C0DE:{n:04X}:{n * 7919 % 0xFFFFFF:06X}:{n * 104729 % 0xFFFFFFF:07X}:65F0{n:04X}",
            "X-GitHub-Media-Type": "github.v3; format=json",
            "X-GitHub-Api-Version-Selected": "2022-11-28",
            "X-OAuth-Scopes": "repo, read:org",
            "X-Accepted-OAuth-Scopes": "",
            "Vary": "Accept, Authorization, Cookie, X-GitHub-OTP, Accept-Encoding",
            "X-Content-Type-Options": "nosniff",
        }

    def _serve_api(self, request: Request) -> tuple[int, dict[str, str], bytes | None]:
        headers = self._base_headers()
        token = request.auth_token
        if token != self.token:
            message = "Requires authentication" if "authorization" not in request.headers else "Bad credentials"
            body = {"message": message, "documentation_url": DOCS, "status": "401"}
            headers.update(self._rate_headers(60))
            headers["X-RateLimit-Limit"] = "60"
            return self._json_response(request, 401, body, headers, template=None)
        with self._lock:
            if self.rate_limit_remaining <= 0:
                body = {
                    "message": _primary_rate_limit_message(self.users[self.login].id),
                    "documentation_url": RATE_LIMIT_DOCS,
                }
                headers.update(self._rate_headers())
                return self._json_response(request, 403, body, headers, template=None)
            ctx = _Ctx(request, self.login)
            template: str | None = None
            try:
                routed = self._route(request.method, request.path)
                if routed is None:
                    self.unhandled.append(f"{request.method} {request.path}")
                    result = _Result(404, HttpError(404).body, "")
                else:
                    template, handler, args = routed
                    result = handler(ctx, **args)
            except HttpError as err:
                result = _Result(err.status, err.body, template or "")
            except Exception as exc:  # a bug in the fake: a 500, and assert_clean fails
                self.errors.append(f"{request.method} {request.path}: {traceback.format_exc()}")
                result = _Result(500, {"message": f"fake GitHub crashed: {exc!r}", "status": "500"}, "")
            body = result.body
            headers.update(result.headers)
            if result.paginate and result.status == 200:
                body, link = self._paginate(request, body, ctx.repo)
                if link:
                    headers["Link"] = link
            encoded = _encode(body)
            etag = 'W/"' + hashlib.sha256(encoded).hexdigest()[:40] + '"'
            if request.method == "GET" and result.status == 200:
                headers["ETag"] = etag
                headers["Cache-Control"] = "private, max-age=60, s-maxage=60"
                if _etag_matches(request.headers.get("if-none-match"), etag):
                    headers.update(self._rate_headers())
                    return 304, headers, None
            self.rate_limit_used += 1
            headers.update(self._rate_headers())
            return self._json_response(request, result.status, body, headers, template=result.template or None)

    def _json_response(
        self, request: Request, status: int, body: Any, headers: dict[str, str], *, template: str | None
    ) -> tuple[int, dict[str, str], bytes | None]:
        try:
            if template:
                validate(request.method, template, status, body)
            elif status >= 400:
                validate("GET", "/user", 401, body)  # any basic-error
        except AssertionError as exc:
            with self._lock:
                self.schema_errors.append(str(exc))
            status = 500
            body = {"message": f"fake GitHub: response does not match GitHub's schema: {exc}", "status": "500"}
            headers.pop("ETag", None)
        headers["Content-Type"] = "application/json; charset=utf-8"
        return status, headers, _encode(body)

    def _paginate(self, request: Request, items: list[Any], repo: Repo | None) -> tuple[list[Any], str | None]:
        q = request.query
        per_page = _int(q.get("per_page"), 30)
        per_page = 30 if per_page < 1 else min(per_page, 100)
        page = max(_int(q.get("page"), 1), 1)
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        path = request.path
        if repo is not None:  # GitHub's links use the repository's id
            path = re.sub(r"^/repos/[^/]+/[^/]+", f"/repositories/{repo.id}", path)

        def url(n: int) -> str:
            params = {k: v for k, v in q.items() if k != "page"}
            params["page"] = str(n)
            return f"{self.api_url}{path}?{urlencode(params)}"

        links = []
        if page > 1:
            links += [f'<{url(min(page - 1, last))}>; rel="prev"']
        if page < last:
            links += [f'<{url(page + 1)}>; rel="next"', f'<{url(last)}>; rel="last"']
        if page > 1:
            links += [f'<{url(1)}>; rel="first"']
        return chunk, ", ".join(links) or None

    def _serve_git(self, request: Request, owner: str, name: str, rest: str) -> tuple[int, dict[str, str], bytes]:
        token = request.auth_token if request.headers.get("authorization", "").lower().startswith("basic ") else None
        if token != self.token:
            return 401, {"WWW-Authenticate": 'Basic realm="GitHub"', "Content-Type": "text/plain"}, b""
        with self._lock:
            repo = self.repos.get(f"{owner}/{name}")
        if repo is None:
            return 404, {"Content-Type": "text/plain"}, b"Repository not found.\n"
        service = request.query.get("service", "") if rest == "info/refs" else rest
        if service not in GIT_SERVICES:
            return 403, {"Content-Type": "text/plain"}, b"Unsupported service\n"
        env = {
            **_git_env(),
            "GIT_PROJECT_ROOT": str(self._root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": f"/{owner}/{name}.git/{rest}",
            "REQUEST_METHOD": request.method,
            "QUERY_STRING": urlencode(request.query),
            "CONTENT_TYPE": request.headers.get("content-type", ""),
            "CONTENT_LENGTH": str(len(request.body)),
            "REMOTE_USER": self.login,
            "REMOTE_ADDR": "127.0.0.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "GATEWAY_INTERFACE": "CGI/1.1",
        }
        if "content-encoding" in request.headers:
            env["HTTP_CONTENT_ENCODING"] = request.headers["content-encoding"]
        if "git-protocol" in request.headers:
            env["HTTP_GIT_PROTOCOL"] = request.headers["git-protocol"]
        done = subprocess.run(["git", "http-backend"], input=request.body, capture_output=True, env=env, timeout=120)
        status, headers, body = _parse_cgi(done.stdout)
        if done.returncode != 0 and status == 200 and not body:
            return 500, {"Content-Type": "text/plain"}, done.stderr
        if rest == "git-receive-pack" and status == 200:
            self._after_push(repo, pusher=self.login)
        return status, headers, body


def _primary_rate_limit_message(user_id: int) -> str:
    return (
        f"API rate limit exceeded for user ID {user_id}. If you reach out to GitHub Support for help, please "
        "include the request ID C0DE:0001:0002:0003:65F00000 and timestamp 2024-01-01 00:00:00 UTC."
    )


def _encode(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True

    def bare(tag: str) -> str:
        tag = tag.strip()
        return tag[2:] if tag.startswith("W/") else tag

    return any(bare(tag) == bare(etag) for tag in header.split(","))


def _parse_cgi(output: bytes) -> tuple[int, dict[str, str], bytes]:
    crlf, lf = output.find(b"\r\n\r\n"), output.find(b"\n\n")
    if crlf != -1 and (lf == -1 or crlf < lf):
        head, body = output[:crlf], output[crlf + 4 :]
    elif lf != -1:
        head, body = output[:lf], output[lf + 2 :]
    else:
        head, body = output, b""
    status, headers = 200, {}
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.strip().split()[0])
        elif name:
            headers[name.strip()] = value.strip()
    return status, headers, body


# --------------------------------------------------------------------------------------------------------------
# git


def _git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_CONFIG_NOSYSTEM="1",
        GIT_TERMINAL_PROMPT="0",
        GIT_AUTHOR_NAME="GitHub",
        GIT_AUTHOR_EMAIL="noreply@github.com",
        GIT_COMMITTER_NAME="GitHub",
        GIT_COMMITTER_EMAIL="noreply@github.com",
    )
    return env


def _git(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=_git_env(), timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout.strip()


def _rev_parse(repo: Path, ref: str) -> str | None:
    done = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        cwd=repo,
        capture_output=True,
        text=True,
        env=_git_env(),
    )
    return done.stdout.strip() or None if done.returncode == 0 else None


def _merge_base(repo: Path, a: str, b: str) -> str | None:
    done = subprocess.run(["git", "merge-base", a, b], cwd=repo, capture_output=True, text=True, env=_git_env())
    return done.stdout.strip() or None if done.returncode == 0 else None


def _is_ancestor(repo: Path, ancestor: str, descendant: str) -> bool:
    done = subprocess.run(
        ["git", "merge-base", "--is-ancestor", ancestor, descendant], cwd=repo, capture_output=True, env=_git_env()
    )
    return done.returncode == 0


_STATUS = {"A": "added", "D": "removed", "M": "modified", "R": "renamed", "C": "copied", "T": "changed"}


def _diff_files(repo: Path, base: str, head: str) -> list[dict[str, Any]]:
    """The files a PR changes, as GitHub lists them: status, blob sha, +/- counts and the patch (hunks only)."""
    raw = _git("diff", "--raw", "-z", "-M", "--no-abbrev", base, head, cwd=repo)
    numstat = _git("diff", "--numstat", "-z", "-M", base, head, cwd=repo)
    patch = subprocess.run(
        ["git", "diff", "-M", "--no-color", "--no-ext-diff", base, head],
        cwd=repo,
        capture_output=True,
        env=_git_env(),
        check=True,
    ).stdout.decode("utf-8", "replace")

    entries: list[dict[str, Any]] = []
    parts = raw.split("\0")
    i = 0
    while i < len(parts) and parts[i]:
        meta = parts[i].lstrip(":").split()
        old_sha, new_sha, code = meta[2], meta[3], meta[4][0]
        if code in "RC":
            old_path, path = parts[i + 1], parts[i + 2]
            i += 3
        else:
            old_path, path = None, parts[i + 1]
            i += 2
        entries.append(
            {
                "filename": path,
                "previous_filename": old_path,
                "status": _STATUS.get(code, "modified"),
                "sha": old_sha if code == "D" else new_sha,
                "additions": 0,
                "deletions": 0,
                "patch": None,
            }
        )

    counts: list[tuple[int, int]] = []
    parts = numstat.split("\0")
    i = 0
    while i < len(parts) and parts[i]:
        added, deleted, path = parts[i].split("\t", 2)
        i += 3 if path == "" else 1  # a rename: "a\td\t\0old\0new\0"
        counts.append((int(added) if added.isdigit() else 0, int(deleted) if deleted.isdigit() else 0))
    for entry, (added, deleted) in zip(entries, counts, strict=False):
        entry["additions"], entry["deletions"] = added, deleted

    blocks = re.split(r"^diff --git .*\n", patch, flags=re.MULTILINE)[1:]
    for entry, block in zip(entries, blocks, strict=False):
        hunk = block.find("@@")
        if hunk != -1 and not block.startswith("Binary files"):
            entry["patch"] = block[hunk:].rstrip("\n")
    return entries


# --------------------------------------------------------------------------------------------------------------
# HTTP


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeGitHub

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End the keep-alive connections clients still hold, so their handler threads end too."""
        with self.connections_lock:
            connections, self.connections = self.connections, set()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = do_GET

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        fake = self.server.fake
        split = urlsplit(self.path)
        body = self._read_body()
        try:
            parsed = json.loads(body) if body and "json" in self.headers.get("Content-Type", "json") else None
        except ValueError:
            parsed = None
        git = _GIT_PATH.match(split.path)
        request = Request(
            kind="git" if git else "api",
            method=self.command,
            path=split.path,
            query={k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()},
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            json=parsed,
            timestamp=time.time(),
        )
        with fake._lock:
            fake.requests.append(request)
        fault = fake._take_fault(self.command, split.path)
        if fault is not None:
            if fault.disconnect:
                self.close_connection = True
                return
            status, headers, payload = self._fault_response(fault)
        else:
            try:
                if git:
                    status, headers, payload = fake._serve_git(request, **git.groupdict())
                else:
                    status, headers, payload = fake._serve_api(request)
            except Exception:
                with fake._lock:
                    fake.errors.append(f"{request.method} {request.path}: {traceback.format_exc()}")
                status, headers, payload = 500, {"Content-Type": "text/plain"}, b"fake GitHub crashed\n"
        request.status, request.response_headers = status, dict(headers)
        self._send(status, headers, payload)

    def _fault_response(self, fault: Fault) -> tuple[int, dict[str, str], bytes]:
        fake = self.server.fake
        headers = {**fake._base_headers(), **fake._rate_headers()}
        body = fault.body
        if body is None:
            body = HttpError(fault.status).body
        if isinstance(body, (dict, list)):
            headers["Content-Type"] = "application/json; charset=utf-8"
            payload = _encode(body)
        else:
            headers["Content-Type"] = "text/html; charset=utf-8"
            payload = body.encode() if isinstance(body, str) else bytes(body)
        headers.update(fault.headers)
        return fault.status, headers, payload

    def _send(self, status: int, headers: dict[str, str], payload: bytes | None) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if status != 304:
            self.send_header("Content-Length", str(len(payload or b"")))
        self.end_headers()
        if payload and self.command != "HEAD" and status != 304:
            self.wfile.write(payload)
