"""What a GitHub-mode run audits: the repo's default branch (repo-auditor) or a pull
request's head (pr-sentinel), fetched into the local mirror and pinned by commit."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from casm_dagster.github.connector import GitHubConnector, PullRequest
from casm_dagster.github.mirror import fetch, mirror_path
from casm_dagster.stores.repos import partition_key_for


@dataclass(frozen=True)
class GitHubCheckout:
    repo: str  # owner/name
    api_url: str
    html_url: str
    clone_url: str
    default_branch: str
    default_commit: str  # where .casm.yaml is read from (never the PR head)
    mirror: str  # the local bare mirror's path
    head_commit: str  # what is audited
    head_ref: str
    pr: int | None = None
    pr_url: str | None = None
    pr_author: str | None = None
    base_ref: str | None = None
    base_commit: str | None = None

    def as_config(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_config(cls, data: dict[str, Any]) -> GitHubCheckout:
        return cls(**data)


def checkout(connector: GitHubConnector, name: str, state_dir: Path, pr: int | None = None) -> GitHubCheckout:
    meta = connector.repo(name)
    path = mirror_path(state_dir, partition_key_for("github", name))
    default = f"refs/heads/{meta.default_branch}"
    refs = {default: f"refs/remotes/origin/{meta.default_branch}"}
    pull: PullRequest | None = None
    if pr is not None:
        pull = connector.pull(name, pr)
        refs[f"refs/pull/{pr}/head"] = f"refs/remotes/origin/pull/{pr}"
        refs[f"refs/heads/{pull.base_ref}"] = f"refs/remotes/origin/{pull.base_ref}"
    shas = fetch(path, meta.clone_url, connector.settings.token, refs)
    common = dict(
        repo=meta.full_name,
        api_url=connector.settings.api_url,
        html_url=meta.html_url,
        clone_url=meta.clone_url,
        default_branch=meta.default_branch,
        default_commit=shas[default],
        mirror=str(path),
    )
    if pull is None:
        return GitHubCheckout(**common, head_commit=shas[default], head_ref=meta.default_branch)
    # The head as fetched: a push between the API read and the fetch is reviewed as fetched.
    return GitHubCheckout(
        **common,
        head_commit=shas[f"refs/pull/{pr}/head"],
        head_ref=pull.head_ref,
        pr=pull.number,
        pr_url=pull.html_url,
        pr_author=pull.author,
        base_ref=pull.base_ref,
        base_commit=shas[f"refs/heads/{pull.base_ref}"],
    )
