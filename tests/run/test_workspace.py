"""Scratch checkouts are private clones: nothing in them points back at the user's repo,
the commits made in them reach the user's object store, and a tree the target's code has
rewritten cannot make CASM's own git run anything."""

from __future__ import annotations

from pathlib import Path

from helpers import git, make_repo

from casm_dagster.run.workspace import scratch_checkout
from casm_dagster.safety import gitops


def test_a_scratch_checkout_is_a_clone_that_does_not_point_home(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    head = git(repo, "rev-parse", "HEAD")
    with scratch_checkout(repo, head) as tree:
        pointer = (tree / ".git").read_text()
        git_dir = Path(pointer.split(":", 1)[1].strip())
        assert not git_dir.is_relative_to(tree) and not git_dir.is_relative_to(repo)
        assert str(repo) not in (git_dir / "config").read_text()
        assert not (git_dir / "objects" / "info" / "alternates").exists()
        assert gitops.git_text(tree, "rev-parse", "HEAD") == head
        assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert not tree.parent.exists()
    assert git(repo, "status", "--porcelain") == "" and git(repo, "branch", "--list") == "* main"


def test_commits_made_in_the_scratch_reach_the_users_object_store(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    head = git(repo, "rev-parse", "HEAD")
    with scratch_checkout(repo, head) as tree:
        (tree / "a.py").write_text("x = 2\n")
        gitops.git(tree, "add", "a.py")
        made = gitops.commit_staged(tree, "change")
    assert git(repo, "cat-file", "-t", made) == "commit"
    assert git(repo, "for-each-ref").count("refs/") == 1  # only main: no ref was added
    with scratch_checkout(repo, made) as tree:
        assert (tree / "a.py").read_text() == "x = 2\n"


def test_a_rewritten_dot_git_cannot_make_casm_run_a_filter(tmp_path: Path) -> None:
    """The code under test can write its tree, so also its ``.git`` file: pointed at a
    git dir of its own making with a clean filter, `git add` would run that filter outside
    the sandbox. CASM's git names the scratch's real git dir and ignores the file."""
    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    pwned = tmp_path / "PWNED"
    with scratch_checkout(repo, git(repo, "rev-parse", "HEAD")) as tree:
        evil = tree / "evil-git"
        git(tmp_path, "init", "--quiet", "--bare", str(evil))
        with open(evil / "config", "a") as config:
            config.write(f'[filter "x"]\n\tclean = touch {pwned}\n')
        (tree / ".git").write_text(f"gitdir: {evil}\n")
        (tree / ".gitattributes").write_text("* filter=x\n")
        (tree / "a.py").write_text("x = 2\n")
        patch = gitops.diff_head(tree)
    assert b"x = 2" in patch
    assert not pwned.exists()
