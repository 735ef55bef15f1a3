"""The GitHub connector: everything CASM asks of GitHub's REST API, through PyGithub.

Settings come from the environment GitHub Actions sets: ``GITHUB_TOKEN`` and
``GITHUB_API_URL`` (GitHub Enterprise: ``https://HOST/api/v3``). PyGithub's ``GithubRetry``
retries 5xx and rate limits (secondary: ``Retry-After``; primary: ``X-RateLimit-Reset``),
capped at ``max_wait_s``; every failure that remains becomes a ``GitHubError`` that names
what is missing (token, scope, repo access) and never carries the token. Results are plain
dataclasses, so callers never hold lazy PyGithub objects.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from casm_dagster.errors import CasmError, ConfigError, RunFailedError
from casm_dagster.safety.redact import redact

DEFAULT_API_URL = "https://api.github.com"
TOKEN_ENV, API_URL_ENV = "GITHUB_TOKEN", "GITHUB_API_URL"
# GitHub asks integrations to space writes (secondary rate limits); tests against a local
# server set it to 0.
WRITE_INTERVAL_ENV = "CASM_GITHUB_WRITE_INTERVAL"
# The login CASM comments as. Read from GET /user when unset; installation tokens (GitHub
# Actions' GITHUB_TOKEN, GitHub Apps) cannot read /user, and their comments are by a bot.
LOGIN_ENV = "CASM_GITHUB_LOGIN"


class GitHubError(CasmError):
    """GitHub refused a request for a reason the user must fix (token, scope, access, input)."""


class GitHubUnavailable(RunFailedError):
    """GitHub kept failing (5xx, rate limit, network) after the retries."""


# Everything the connector raises: a sensor catches these per repo and carries on.
GITHUB_FAILURES = (GitHubError, GitHubUnavailable)


@dataclass(frozen=True)
class GitHubSettings:
    token: str
    api_url: str = DEFAULT_API_URL
    write_interval_s: float = 1.0
    retries: int = 6
    backoff_s: float = 1.0  # exponential: 1, 2, 4, ... (a Retry-After or reset wins)
    max_wait_s: float = 900.0  # the longest rate-limit wait CASM accepts before giving up
    timeout_s: int = 30
    login: str | None = None  # the token's user, when known without asking GitHub

    def __repr__(self) -> str:  # the token never reaches a log through repr()
        return f"GitHubSettings(api_url={self.api_url!r}, token=[REDACTED])"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GitHubSettings:
        env = os.environ if environ is None else environ
        token = (env.get(TOKEN_ENV) or "").strip()
        if not token:
            raise GitHubError(
                f"GitHub mode needs a token: set {TOKEN_ENV} (a classic token with `repo` scope, or a fine-grained "
                "token with Contents, Pull requests and Issues read & write on the repository)"
            )
        api_url = (env.get(API_URL_ENV) or DEFAULT_API_URL).strip().rstrip("/")
        if not re.match(r"^https?://[^/\s]+", api_url):
            raise ConfigError(f"{API_URL_ENV}={api_url!r} is not an http(s) URL (e.g. {DEFAULT_API_URL})")
        interval = env.get(WRITE_INTERVAL_ENV)
        try:
            write_interval = float(interval) if interval else 1.0
        except ValueError:
            raise ConfigError(f"{WRITE_INTERVAL_ENV}={interval!r} is not a number of seconds") from None
        login = (env.get(LOGIN_ENV) or "").strip() or None
        return cls(token=token, api_url=api_url, write_interval_s=max(write_interval, 0.0), login=login)

    def for_sensor(self) -> GitHubSettings:
        """A sensor tick has 60 s: few retries, short waits; the next tick tries again."""
        return dataclasses.replace(self, retries=2, backoff_s=0.5, max_wait_s=5.0, timeout_s=10)


@dataclass(frozen=True)
class RepoMeta:
    full_name: str
    default_branch: str
    clone_url: str
    html_url: str
    private: bool


@dataclass(frozen=True)
class PullRequest:
    number: int
    title: str
    state: str  # open | closed
    merged: bool
    draft: bool
    author: str
    head_ref: str
    head_sha: str
    head_repo: str | None  # owner/name of the head's repository (forks differ)
    base_ref: str
    base_sha: str
    html_url: str
    updated_at: str
    merge_commit_sha: str | None = None  # once merged: the merge (or squash) commit


@dataclass(frozen=True)
class Comment:
    id: int
    author: str
    body: str
    created_at: str
    author_is_bot: bool = False


@dataclass(frozen=True)
class LabelEvent:
    label: str
    actor: str
    created_at: str


@dataclass(frozen=True)
class PrFile:
    filename: str
    status: str  # added | removed | modified | renamed | copied | changed | unchanged
    additions: int
    deletions: int
    previous_filename: str | None


def _iso(value: Any) -> str:
    return value.isoformat().replace("+00:00", "Z") if value is not None else ""


def _pull(pr: Any) -> PullRequest:
    head_repo = pr.head.repo.full_name if pr.head.repo is not None else None
    return PullRequest(
        number=pr.number,
        title=pr.title or "",
        state=pr.state,
        merged=bool(pr.merged),
        draft=bool(pr.draft),
        author=pr.user.login if pr.user else "",
        head_ref=pr.head.ref,
        head_sha=pr.head.sha,
        head_repo=head_repo,
        base_ref=pr.base.ref,
        base_sha=pr.base.sha,
        html_url=pr.html_url or "",
        updated_at=_iso(pr.updated_at),
        merge_commit_sha=pr.merge_commit_sha if pr.merged else None,
    )


def pull_from_json(data: Mapping[str, Any]) -> PullRequest:
    """A PR from the REST API's JSON (a conditional poll, or a webhook payload's ``pull_request``)."""
    head, base = data["head"], data["base"]
    return PullRequest(
        number=int(data["number"]),
        title=data.get("title") or "",
        state=data.get("state") or "open",
        merged=bool(data.get("merged") or data.get("merged_at")),
        draft=bool(data.get("draft")),
        author=(data.get("user") or {}).get("login", ""),
        head_ref=head["ref"],
        head_sha=head["sha"],
        head_repo=(head.get("repo") or {}).get("full_name"),
        base_ref=base["ref"],
        base_sha=base["sha"],
        html_url=data.get("html_url") or "",
        updated_at=data.get("updated_at") or "",
        merge_commit_sha=data.get("merge_commit_sha") if data.get("merged_at") else None,
    )


def _message(exc: Any) -> str:
    data = exc.data if isinstance(exc.data, dict) else {}
    text = str(data.get("message") or exc.data or "")
    errors = data.get("errors")
    if isinstance(errors, list) and errors:
        details = [e.get("message") or e.get("code") for e in errors if isinstance(e, dict)]
        text += f" ({'; '.join(str(d) for d in details if d)})"
    return text.strip()


@functools.cache
def _retry_class() -> type:
    """GithubRetry, except that a POST answered with a 5xx is not sent again: GitHub may have
    created the PR or comment before failing, and a blind retry would duplicate it. (Rate
    limits refuse the request before it is processed, so those POSTs are retried.) The next
    run finds what was created by its marker instead. Built on first use: PyGithub is only
    imported by runs that talk to GitHub (it costs every ``casm`` start a quarter second)."""
    from github import GithubRetry

    class _Retry(GithubRetry):
        def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
            if method.upper() == "POST" and status_code >= 500:
                return False
            return super().is_retry(method, status_code, has_retry_after)

    return _Retry


class GitHubConnector:
    """One authenticated client. ``what`` in every error says which operation failed."""

    def __init__(self, settings: GitHubSettings) -> None:
        from github import Auth, Github

        self.settings = settings
        retry = _retry_class()(
            total=settings.retries,
            backoff_factor=settings.backoff_s,
            max_rate_limit_wait=settings.max_wait_s,
            status_forcelist=[*range(500, 600), 429],
            allowed_methods=frozenset({"GET", "HEAD", "POST", "PATCH", "PUT", "DELETE"}),
        )
        self._gh = Github(
            auth=Auth.Token(settings.token),
            base_url=settings.api_url,
            retry=retry,
            timeout=settings.timeout_s,
            per_page=100,
            user_agent="casm-dagster",
            seconds_between_requests=None,
            seconds_between_writes=settings.write_interval_s or None,
            lazy=True,  # a lazy repo/issue costs no request until an attribute is read
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GitHubConnector:
        return cls(GitHubSettings.from_env(environ))

    @classmethod
    def for_sensor(cls) -> GitHubConnector:
        return cls(GitHubSettings.from_env().for_sensor())

    @contextlib.contextmanager
    def _call(self, what: str, repo: str = "") -> Iterator[None]:
        import requests
        from github import GithubException
        from github.GithubException import (
            BadCredentialsException,
            RateLimitExceededException,
            UnknownObjectException,
        )

        where = f" on {repo}" if repo else ""
        try:
            yield
        except BadCredentialsException:
            raise GitHubError(
                f"{what}{where}: GitHub rejected the token (401 Bad credentials) — {TOKEN_ENV} is wrong, "
                "expired or revoked"
            ) from None
        except RateLimitExceededException as exc:
            reset = (exc.headers or {}).get("x-ratelimit-reset") or (exc.headers or {}).get("X-RateLimit-Reset")
            raise GitHubUnavailable(
                f"{what}{where}: GitHub's rate limit is exhausted"
                + (f" until epoch {reset}" if reset else "")
                + f" (waiting longer than {self.settings.max_wait_s:.0f}s was refused)"
            ) from None
        except UnknownObjectException:
            raise GitHubError(
                f"{what}{where}: not found (404) — check the name, and that the token can see the repository "
                "(private repositories need the `repo` scope, or a fine-grained token granted that repository)"
            ) from None
        except GithubException as exc:
            message = self._redact(_message(exc))
            if exc.status == 403:
                headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
                needed = headers.get("x-accepted-oauth-scopes") or headers.get("x-accepted-github-permissions")
                held = headers.get("x-oauth-scopes")
                hint = f"; the operation needs: {needed}" if needed else ""
                hint += f"; the token has: {held}" if held is not None else ""
                raise GitHubError(
                    f"{what}{where}: forbidden (403: {message}) — the token lacks the scope or repository access "
                    f"for this{hint}"
                ) from None
            if exc.status >= 500:
                raise GitHubUnavailable(
                    f"{what}{where}: GitHub failed ({exc.status}: {message}) after retries"
                ) from None
            raise GitHubError(f"{what}{where}: GitHub answered {exc.status}: {message}") from None
        except requests.exceptions.RetryError as exc:
            raise GitHubUnavailable(
                f"{what}{where}: GitHub kept failing after {self.settings.retries} retries "
                f"({self._redact(str(exc))[:200]})"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise GitHubUnavailable(
                f"{what}{where}: cannot reach GitHub at {self.settings.api_url} ({type(exc).__name__})"
            ) from None

    def _redact(self, text: str) -> str:
        return redact(text, [self.settings.token])

    # -- reads --------------------------------------------------------------------------

    def repo(self, full_name: str) -> RepoMeta:
        with self._call("reading the repository", full_name):
            repo = self._gh.get_repo(full_name)
            return RepoMeta(
                full_name=repo.full_name,
                default_branch=repo.default_branch,
                clone_url=repo.clone_url,
                html_url=repo.html_url,
                private=bool(repo.private),
            )

    def pull(self, full_name: str, number: int) -> PullRequest:
        with self._call(f"reading PR #{number}", full_name):
            return _pull(self._gh.get_repo(full_name).get_pull(number))

    def open_pulls(self, full_name: str, etag: str | None = None) -> tuple[str | None, list[PullRequest] | None]:
        """Open PRs, polled with ``If-None-Match``: ``(etag, None)`` when nothing changed (a 304,
        which costs no rate limit), else ``(new etag, PRs)``."""
        url = f"/repos/{full_name}/pulls"
        # Most recently updated first: a push to any PR changes page 1 (and its ETag), so a 304
        # on page 1 means no open PR changed, however many pages there are.
        params: dict[str, Any] | None = {"state": "open", "per_page": 100, "sort": "updated", "direction": "desc"}
        headers = {"If-None-Match": etag} if etag else {}
        pulls: list[PullRequest] = []
        first_etag: str | None = None
        with self._call("listing open PRs", full_name):
            while url:
                response_headers, data = self._gh.requester.requestJsonAndCheck("GET", url, params, headers)
                lower = {k.lower(): v for k, v in response_headers.items()}
                if data is None and headers:
                    return etag, None
                if first_etag is None:
                    first_etag = lower.get("etag")
                pulls.extend(pull_from_json(item) for item in data or [])
                url, params, headers = _next_link(lower.get("link", "")), None, {}
        return first_etag, pulls

    def pull_files(self, full_name: str, number: int) -> list[PrFile]:
        with self._call(f"reading the files of PR #{number}", full_name):
            return [
                PrFile(f.filename, f.status, f.additions, f.deletions, f.previous_filename)
                for f in self._gh.get_repo(full_name).get_pull(number).get_files()
            ]

    def find_pull(self, full_name: str, head_branch: str, state: str = "open") -> PullRequest | None:
        """The PR (``state``: open, closed or all) whose head is ``head_branch`` of this repository."""
        owner = full_name.split("/", 1)[0]
        with self._call(f"looking up the PR of {head_branch}", full_name):
            for pr in self._gh.get_repo(full_name).get_pulls(state=state, head=f"{owner}:{head_branch}"):
                return _pull(pr)
        return None

    def comments(self, full_name: str, number: int) -> list[Comment]:
        with self._call(f"reading the comments of #{number}", full_name):
            issue = self._gh.get_repo(full_name).get_issue(number)
            return [
                Comment(
                    c.id,
                    c.user.login if c.user else "",
                    c.body or "",
                    _iso(c.created_at),
                    bool(c.user and c.user.type == "Bot"),
                )
                for c in issue.get_comments()
            ]

    def labels(self, full_name: str, number: int) -> list[str]:
        with self._call(f"reading the labels of #{number}", full_name):
            return [label.name for label in self._gh.get_repo(full_name).get_issue(number).get_labels()]

    def label_events(self, full_name: str, number: int) -> list[LabelEvent]:
        """Who added which label when (the ``labeled`` issue events): approval by label needs the actor."""
        with self._call(f"reading the label events of #{number}", full_name):
            issue = self._gh.get_repo(full_name).get_issue(number)
            return [
                LabelEvent(e.label.name, e.actor.login if e.actor else "", _iso(e.created_at))
                for e in issue.get_events()
                if e.event == "labeled" and e.label is not None
            ]

    def user_orgs(self, login: str) -> list[str]:
        with self._call(f"reading the organisations of {login}"):
            return [org.login for org in self._gh.get_user(login).get_orgs()]

    # -- writes (idempotent: found by head branch or hidden marker, then updated) ---------

    def open_or_update_pull(
        self, full_name: str, head_branch: str, base: str, title: str, body: str
    ) -> tuple[PullRequest, bool]:
        """The open PR for ``head_branch``: opened once; later runs update its title and body
        (a closed or merged one is left alone and a new PR is opened)."""
        existing = self.find_pull(full_name, head_branch)
        with self._call(f"opening the PR for {head_branch}", full_name):
            repo = self._gh.get_repo(full_name)
            if existing is not None:
                pr = repo.get_pull(existing.number)
                if (pr.body or "") != body or pr.title != title:
                    pr.edit(title=title, body=body)
                return _pull(pr), False
            return _pull(repo.create_pull(title=title, body=body, head=head_branch, base=base)), True

    def upsert_comment(self, full_name: str, number: int, marker: str, body: str) -> tuple[Comment, str]:
        """One comment per ``marker`` (a hidden HTML comment in its body): created the first
        time, edited in place afterwards. Returns the comment and created|updated|unchanged.
        Only CASM's own comments (by the token's user, or a bot when that is unknown) are
        considered, so nobody can hijack the sticky comment by pasting the marker."""
        me = self.whoami()
        with self._call(f"commenting on #{number}", full_name):
            issue = self._gh.get_repo(full_name).get_issue(number)
            for c in issue.get_comments():
                if marker in (c.body or "") and self.is_mine(c.user.login if c.user else "", c.user):
                    author = c.user.login if c.user else ""
                    if (c.body or "") == body:
                        return Comment(c.id, author, body, _iso(c.created_at)), "unchanged"
                    c.edit(body)
                    return Comment(c.id, author, body, _iso(c.created_at)), "updated"
            c = issue.create_comment(body)
            return Comment(c.id, c.user.login if c.user else (me or ""), body, _iso(c.created_at)), "created"

    def is_mine(self, login: str, user: Any = None, is_bot: bool | None = None) -> bool:
        me = self.whoami()
        if me:
            return login == me
        bot = is_bot if is_bot is not None else bool(user is not None and user.type == "Bot")
        return bot

    def add_labels(self, full_name: str, number: int, *labels: str) -> None:
        with self._call(f"labelling #{number}", full_name):
            self._gh.get_repo(full_name).get_issue(number).add_to_labels(*labels)

    def whoami(self) -> str | None:
        """The token's login (``CASM_GITHUB_LOGIN``, else ``GET /user``); None for an
        installation token, which may not read /user (its comments are by a bot)."""
        if not hasattr(self, "_login"):
            self._login = self.settings.login
            if self._login is None:
                try:
                    with self._call("reading the token's user"):
                        self._login = self._gh.get_user().login
                except GitHubError:
                    self._login = None
        return self._login


_LINK_NEXT = re.compile(r'<([^>]+)>;\s*rel="next"')


def _next_link(link: str) -> str:
    match = _LINK_NEXT.search(link or "")
    return match.group(1) if match else ""
