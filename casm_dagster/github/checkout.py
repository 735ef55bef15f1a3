"""What a GitHub-mode run audits: the repo's default branch (repo-auditor) or a pull
request's head (pr-sentinel), fetched into the local mirror and pinned by commit."""

from __future__ import annotations

from pathlib import Path

from casm_dagster.contracts.run import GitHubCheckout
from casm_dagster.github.connector import GitHubConnector, PullRequest
from casm_dagster.github.mirror import fetch, mirror_path
from casm_dagster.stores.repos import partition_key_for


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
