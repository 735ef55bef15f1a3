"""What became of a run's delivery: merged, still open, closed unmerged, or reverted.

GitHub mode asks GitHub for the PR of the run's branch; local mode reads the repo: the
branch's tip reachable from the audited branch is merged (reverted when a later commit
says "This reverts commit <one of the branch's commits>"), a deleted branch closed
unmerged, otherwise open.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from casm_dagster.github.connector import GITHUB_FAILURES, GitHubConnector
from casm_dagster.github.mirror import fetch, mirror_path
from casm_dagster.safety import gitops
from casm_dagster.stores.repos import is_github_name, partition_key_for

_REVERTS = re.compile(r"This reverts commit ([0-9a-f]{7,40})")


def local_outcome(repo: Path, branch: str, target: str, base: str) -> str:
    """``base``: the audited commit the branch's commits were made on."""
    tip = gitops.git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}", check=False)
    if tip.returncode != 0:
        return "closed_unmerged"
    sha = tip.stdout.decode().strip()
    if gitops.git(repo, "merge-base", "--is-ancestor", sha, target, check=False).returncode != 0:
        return "open"
    ours = set(gitops.git_text(repo, "rev-list", f"{base}..{sha}").split()) | {sha}
    log = gitops.git(repo, "log", "--format=%B", f"{sha}..{target}", check=False).stdout.decode("utf-8", "replace")
    for match in _REVERTS.finditer(log):
        if any(commit.startswith(match.group(1)) for commit in ours):
            return "reverted"
    return "merged"


def outcome_reader(connector: GitHubConnector | None, state_dir: Path | None = None):
    """``outcome_of(run)`` for ``kpis.load_runs``; GitHub answers are cached per branch.
    ``state_dir``: where the GitHub mirrors live (a merged PR's revert is looked up there)."""
    cache: dict[tuple[str, str], str] = {}

    def outcome_of(run: dict[str, Any]) -> str:
        branch = run.get("branch")
        if not branch:
            return "no_pr"
        if is_github_name(run["repo"]):
            key = (run["repo"], branch)
            if key not in cache:
                cache[key] = _github(connector, run["repo"], branch, state_dir)
            return cache[key]
        spec = json.loads((Path(run["run_dir"]) / "spec.json").read_text(encoding="utf-8"))
        snapshot_file = Path(run["run_dir"]) / "snapshot.json"
        if not snapshot_file.exists():
            return "unknown"
        snapshot = json.loads(snapshot_file.read_text(encoding="utf-8"))
        head_ref = snapshot["head_ref"]
        target = head_ref if head_ref and head_ref != "HEAD" and not head_ref.startswith("pinned") else "HEAD"
        try:
            return local_outcome(Path(spec["repo_path"]), branch, target, snapshot["head_commit"])
        except gitops.RepoError:
            return "unknown"

    return outcome_of


def _github(connector: GitHubConnector | None, repo: str, branch: str, state_dir: Path | None) -> str:
    if connector is None:
        return "unknown"
    try:
        pr = connector.find_pull(repo, branch, state="all")
    except GITHUB_FAILURES:
        return "unknown"
    if pr is None:
        return "no_pr"
    if pr.merged:
        if state_dir is not None and pr.merge_commit_sha and _reverted(connector, repo, pr.merge_commit_sha, state_dir):
            return "reverted"
        return "merged"
    return "open" if pr.state == "open" else "closed_unmerged"


def _reverted(connector: GitHubConnector, repo: str, merge_sha: str, state_dir: Path) -> bool:
    """GitHub's Revert button (and ``git revert``) write "This reverts commit <merge sha>" on
    the default branch: fetch it into the mirror and look."""
    try:
        meta = connector.repo(repo)
        path = mirror_path(state_dir, partition_key_for("github", repo))
        ref = f"refs/remotes/origin/{meta.default_branch}"
        fetch(path, meta.clone_url, connector.settings.token, {f"refs/heads/{meta.default_branch}": ref})
        log = gitops.git(path, "log", "--format=%B", f"{merge_sha}..{ref}", check=False).stdout
    except (*GITHUB_FAILURES, gitops.RepoError):
        return False
    return f"This reverts commit {merge_sha}" in log.decode("utf-8", "replace")
