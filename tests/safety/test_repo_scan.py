"""casm_dagster.safety.repo_scan: only safe, regular, UTF-8, small files of the commit are read."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from casm_dagster.safety.repo_scan import MAX_FILE_BYTES, scan

SENTINEL = "SENTINEL-outside-the-repo-7f3a9c"
WEIRD = "we ird $(touch pwned); name.py"


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout


@pytest.fixture
def hostile_repo(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(f"{SENTINEL}\n", encoding="utf-8")
    (outside / "dir").mkdir()
    (outside / "dir" / "inner.py").write_text(f"x = '{SENTINEL}'\n", encoding="utf-8")

    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "--quiet", "--initial-branch=main")
    (repo / "src").mkdir()
    (repo / "src" / "app.py").write_text("def f():\n    return 1\n\n\n# done\n", encoding="utf-8")
    (repo / "README.md").write_text("# hello\n", encoding="utf-8")
    (repo / "link_out.py").symlink_to(outside / "secret.txt")
    (repo / "link_dir").symlink_to(outside / "dir")
    (repo / "link_in.py").symlink_to("src/app.py")  # even an inside symlink is not followed
    (repo / "image.bin").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (repo / "latin1.py").write_bytes("nom = 'Müller café'\n".encode("latin-1"))
    (repo / "big.py").write_bytes(b"x = 1\n" * (MAX_FILE_BYTES // 6 + 10))
    (repo / "exact.txt").write_bytes(b"a" * MAX_FILE_BYTES)  # exactly the limit: still read
    (repo / WEIRD).write_text("print('weird')\n", encoding="utf-8")
    (repo / "untracked.py").write_text("never committed\n", encoding="utf-8")
    _git(repo, "add", "--", ".", ":!untracked.py")
    _git(repo, "commit", "--quiet", "-m", "hostile")
    return repo


EXPECTED_READ = ["README.md", "exact.txt", "src/app.py", WEIRD]
EXPECTED_SKIPPED = [
    ("big.py", "too_large"),
    ("image.bin", "binary"),
    ("latin1.py", "not_utf8"),
    ("link_dir", "symlink"),
    ("link_in.py", "symlink"),
    ("link_out.py", "symlink"),
]


def _check(inventory, tmp_path: Path) -> None:
    assert [f.path for f in inventory.files] == EXPECTED_READ
    assert [(s.path, s.reason) for s in inventory.skipped] == EXPECTED_SKIPPED
    for source in inventory.files:
        assert SENTINEL not in source.text
    by_path = {f.path: f for f in inventory.files}
    assert by_path["src/app.py"].language == "python"
    assert by_path["src/app.py"].text == "def f():\n    return 1\n\n\n# done\n"
    assert by_path["src/app.py"].loc == 3
    assert by_path[WEIRD].language == "python"
    assert by_path[WEIRD].text == "print('weird')\n"
    assert by_path["README.md"].language is None
    assert len(by_path["exact.txt"].text) == MAX_FILE_BYTES
    assert inventory.languages == ["python"]
    assert [f.path for f in inventory.by_language("python")] == ["src/app.py", WEIRD]
    # The weird name was never handed to a shell.
    assert not any(p.name == "pwned" for p in tmp_path.rglob("*"))
    assert not (Path.cwd() / "pwned").exists()


def test_scan_repo_itself(hostile_repo: Path, tmp_path: Path) -> None:
    inventory = scan(hostile_repo)
    _check(inventory, tmp_path)
    assert "untracked.py" not in [f.path for f in inventory.files]


def test_scan_detached_worktree(hostile_repo: Path, tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    _git(hostile_repo, "worktree", "add", "--quiet", "--detach", str(checkout), "HEAD")
    assert (checkout / "link_out.py").is_symlink()
    assert (checkout / WEIRD).is_file()
    _check(scan(checkout), tmp_path)


def test_scan_reads_the_commit_not_working_tree_state(hostile_repo: Path, tmp_path: Path) -> None:
    # A tracked regular file replaced by a symlink after the commit is not followed.
    target = hostile_repo / "src" / "app.py"
    target.unlink()
    target.symlink_to(tmp_path / "outside" / "secret.txt")
    inventory = scan(hostile_repo)
    assert ("src/app.py", "unsafe_path") in [(s.path, s.reason) for s in inventory.skipped]
    assert all(SENTINEL not in f.text for f in inventory.files)


def test_parent_directory_swapped_for_symlink_is_unsafe(hostile_repo: Path, tmp_path: Path) -> None:
    src = hostile_repo / "src"
    (src / "app.py").unlink()
    src.rmdir()
    outside = tmp_path / "outside2"
    outside.mkdir()
    (outside / "app.py").write_text(f"'{SENTINEL}'\n", encoding="utf-8")
    os.symlink(outside, src)
    inventory = scan(hostile_repo)
    assert ("src/app.py", "unsafe_path") in [(s.path, s.reason) for s in inventory.skipped]
    assert all(SENTINEL not in f.text for f in inventory.files)


def test_deleted_tracked_file_is_unsafe_path_not_a_crash(hostile_repo: Path) -> None:
    (hostile_repo / "README.md").unlink()
    inventory = scan(hostile_repo)
    assert ("README.md", "unsafe_path") in [(s.path, s.reason) for s in inventory.skipped]


def test_submodule_is_skipped(tmp_path: Path) -> None:
    repo = tmp_path / "withsub"
    repo.mkdir()
    _git(repo, "init", "--quiet", "--initial-branch=main")
    (repo / "a.py").write_text("a = 1\n", encoding="utf-8")
    _git(repo, "add", "a.py")
    # A gitlink entry (mode 160000) without needing a real submodule clone.
    _git(repo, "update-index", "--add", "--cacheinfo", "160000," + "1" * 40 + ",vendor/lib")
    _git(repo, "commit", "--quiet", "-m", "sub")
    inventory = scan(repo)
    assert [f.path for f in inventory.files] == ["a.py"]
    assert [(s.path, s.reason) for s in inventory.skipped] == [("vendor/lib", "submodule")]


def test_non_utf8_file_name_yields_serializable_paths(tmp_path: Path) -> None:
    # A hostile repo can commit a file name that is not UTF-8. Every path the inventory hands on
    # ends up in issues.json / the report, so it must be encodable as UTF-8 JSON.
    repo = tmp_path / "names"
    repo.mkdir()
    _git(repo, "init", "--quiet")
    (repo / os.fsdecode(b"caf\xe9.py")).write_text("x = 1  # TODO: later\n", encoding="utf-8")
    (repo / "ok.py").write_text("y = 2\n", encoding="utf-8")
    _git(repo, "add", "--all")
    _git(repo, "commit", "--quiet", "-m", "latin-1 name")
    inventory = scan(repo)
    paths = [f.path for f in inventory.files] + [s.path for s in inventory.skipped]
    assert len(paths) == 2  # both entries are accounted for, nothing silently dropped
    assert "ok.py" in [f.path for f in inventory.files]
    for path in paths:
        path.encode("utf-8")  # raises UnicodeEncodeError for a surrogate-escaped name
    for skipped in inventory.skipped:
        skipped.model_dump_json()
