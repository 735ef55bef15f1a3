"""Git, always through argv (never a shell), hardened against the target repo's config.

The target repo's hooks and fsmonitor would run commands CASM has not allowlisted, so
every call disables them; commits use CASM's own identity.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from casm_dagster.errors import RepoError

_SETTINGS = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.quotepath=false",
    "commit.gpgsign=false",
    "user.name=CASM",
    "user.email=casm@localhost",
)
_HARDENING = [arg for setting in _SETTINGS for arg in ("-c", setting)]


def _git_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    env.update(extra or {})
    return env


# Scratch clones made by ``run.workspace``: tree -> its git dir, which lives outside the
# tree. Git on a scratch tree always names that dir: the tree's own ``.git`` file is
# writable by the code under test, and a git dir it points to could carry filters or
# hooks that would run here, outside the sandbox.
_SCRATCH_GIT_DIRS: dict[str, Path] = {}


def scratch_git_dir(tree: Path) -> Path | None:
    return _SCRATCH_GIT_DIRS.get(str(tree))


def _location(repo: Path) -> list[str]:
    git_dir = _SCRATCH_GIT_DIRS.get(str(repo))
    if git_dir is None:
        return ["-C", str(repo)]
    return ["-C", str(repo), f"--git-dir={git_dir}", f"--work-tree={repo}"]


def git(
    repo: Path,
    *args: str,
    check: bool = True,
    input_bytes: bytes | None = None,
    env: dict[str, str] | None = None,
    secrets: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[bytes]:
    """``env`` adds variables (e.g. ``GIT_CONFIG_*`` carrying a credential: the environment
    is private to the process, unlike argv); ``secrets`` are scrubbed from error messages."""
    proc = subprocess.run(
        ["git", *_HARDENING, *_location(repo), *args],
        input=input_bytes,
        capture_output=True,
        env=_git_env(env),
        timeout=600,
    )
    if check and proc.returncode != 0:
        from casm_dagster.safety.redact import redact

        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        last = redact(detail[-1], list(secrets)) if detail else proc.returncode
        raise RepoError(f"git {args[0]} failed in {repo}: {last}")
    return proc


def git_text(repo: Path, *args: str) -> str:
    return git(repo, *args).stdout.decode("utf-8", "replace").strip()


@dataclass(frozen=True)
class RepoInfo:
    root: Path
    head_commit: str
    head_ref: str  # branch name, or "HEAD" when detached
    dirty: bool


def inspect_repo(path: Path) -> RepoInfo:
    """Resolve ``path`` to a git repository with at least one commit, or say why not."""
    if not path.exists():
        raise RepoError(f"repository path does not exist: {path}")
    if not path.is_dir():
        raise RepoError(f"repository path is not a directory: {path}")
    probe = git(path, "rev-parse", "--show-toplevel", check=False)
    if probe.returncode != 0:
        raise RepoError(f"not a git repository: {path}")
    root = Path(probe.stdout.decode().strip()).resolve()
    if root != path.resolve():
        raise RepoError(f"{path} is inside the git repository {root}; pass the repository root")
    head = git(root, "rev-parse", "--verify", "--quiet", "HEAD^{commit}", check=False)
    if head.returncode != 0:
        raise RepoError(f"git repository has no commits yet: {root}")
    head_ref = git_text(root, "rev-parse", "--abbrev-ref", "HEAD")
    status = git(root, "status", "--porcelain", "--untracked-files=no").stdout
    return RepoInfo(
        root=root,
        head_commit=head.stdout.decode().strip(),
        head_ref=head_ref,
        dirty=bool(status.strip()),
    )


def clone_scratch(repo: Path, where: Path, git_dir: Path, commit: str) -> None:
    """A detached checkout of ``commit`` in a clone of ``repo`` that does not point back:
    its git dir (``git_dir``, outside ``where``) has no remote, the objects are copied (or
    hardlinked) rather than shared, and the user's working tree and branch stay untouched."""
    where.parent.mkdir(parents=True, exist_ok=True)
    args = ["clone", "--quiet", "--local", "--no-checkout", f"--separate-git-dir={git_dir}", str(repo), str(where)]
    git(where.parent, *args)
    _SCRATCH_GIT_DIRS[str(where)] = git_dir
    git(where, "remote", "remove", "origin", check=False)
    git(where, "checkout", "--quiet", "--detach", "--force", commit)


def return_commits(repo: Path, where: Path, base: str) -> None:
    """Copy the commits made on the scratch clone ``where`` (its HEAD, if it moved from
    ``base``) into ``repo``'s object store, without a ref: later stages and delivery find
    them by id. Nothing is copied from a tree whose HEAD did not move."""
    head = git_text(where, "rev-parse", "HEAD")
    if head != base:
        git(repo, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", str(_SCRATCH_GIT_DIRS[str(where)]), head)


def forget_scratch(where: Path) -> None:
    _SCRATCH_GIT_DIRS.pop(str(where), None)


def commit_staged(worktree: Path, message: str) -> str:
    git(worktree, "commit", "--quiet", "--no-verify", "-m", message)
    return git_text(worktree, "rev-parse", "HEAD")


def diff_head(worktree: Path) -> bytes:
    """Changes to tracked files against HEAD, staged, as a patch git can apply.

    Only tracked files: caches a tool or test run leaves behind never enter a patch.
    """
    git(worktree, "add", "--update")
    return git(worktree, "diff", "--cached", "--binary", "--no-color", "--no-ext-diff").stdout


def apply_patch(worktree: Path, patch: bytes) -> None:
    """Apply and stage a patch, or raise without touching anything if it does not apply."""
    git(worktree, "apply", "--check", "--index", "--whitespace=nowarn", "-", input_bytes=patch)
    git(worktree, "apply", "--index", "--whitespace=nowarn", "-", input_bytes=patch)


def create_branch(repo: Path, branch: str, commit: str) -> None:
    """Point a new branch at ``commit`` in one step; refuses to move an existing branch."""
    git(repo, "update-ref", f"refs/heads/{branch}", commit, "0" * 40)
