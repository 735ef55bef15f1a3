"""Unified-diff parsing (git and plain ``diff -u``) and ``apply_hunks``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from helpers import git
from policy_support import git_bytes

from casm_dagster.errors import CasmError
from casm_dagster.policy.diff import DiffError, apply_hunks, parse_diff


def lines_of(file) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    added = [(line.text, line.number) for line in file.added_lines()]
    return added, [(line.text, line.number) for line in file.removed_lines()]


def by_path(files) -> dict:
    return {f.path: f for f in files}


def git_show(repo: Path, rev: str, path: str) -> str:
    return git_bytes(repo, "show", f"{rev}:{path}").decode("utf-8")


# ---------------------------------------------------------------- paths


def test_quoted_paths_with_spaces_quotes_tabs_and_non_ascii(two_commits):
    names = ["sp ace.py", 'we ird "q".py', "café.py", "tab\tname.py", "dir with space/naïve file.txt"]
    repo, diff = two_commits({n: "one\n" for n in names}, {n: "one\ntwo\n" for n in names})
    assert b'"a/caf\\303\\251.py"' in diff  # git's C-quoting with octal escapes
    assert b'"a/we ird \\"q\\".py"' in diff
    assert b'"a/tab\\tname.py"' in diff
    files = parse_diff(diff)

    assert sorted(f.path for f in files) == sorted(names)
    for f in files:
        assert (f.old_path, f.status) == (f.new_path, "modified")
        assert lines_of(f) == ([("two", 2)], [])


def test_unquoted_path_with_a_space_and_git_trailing_tab(two_commits):
    _, diff = two_commits({"docs/my notes.md": "a\n"}, {"docs/my notes.md": "a\nb\n"})
    assert b"--- a/docs/my notes.md\t\n" in diff
    (f,) = parse_diff(diff)
    assert (f.old_path, f.new_path) == ("docs/my notes.md", "docs/my notes.md")


def test_rename_with_changes(two_commits, tmp_path):
    body = "".join(f"line {i}\n" for i in range(20))
    repo, _ = two_commits({"src/old_name.py": body}, {})
    (repo / "lib").mkdir()
    git(repo, "mv", "src/old_name.py", "lib/new name.py")
    (repo / "lib/new name.py").write_text(body.replace("line 10\n", "line ten\n"))
    git(repo, "commit", "--quiet", "-am", "rename")
    (f,) = parse_diff(git_bytes(repo, "diff", "HEAD~1", "HEAD"))

    assert (f.old_path, f.new_path, f.status, f.path) == (
        "src/old_name.py",
        "lib/new name.py",
        "renamed",
        "lib/new name.py",
    )
    assert lines_of(f) == ([("line ten", 11)], [("line 10", 11)])


def test_pure_rename_has_no_hunks(two_commits):
    repo, _ = two_commits({"a.txt": "same\n"}, {})
    git(repo, "mv", "a.txt", "b.txt")
    git(repo, "commit", "--quiet", "-m", "mv")
    diff = git_bytes(repo, "diff", "HEAD~1", "HEAD")
    assert b"similarity index 100%" in diff
    (f,) = parse_diff(diff)
    assert (f.old_path, f.new_path, f.status, f.hunks) == ("a.txt", "b.txt", "renamed", [])


def test_rename_to_a_quoted_non_ascii_name(two_commits):
    """Only the new name needs quoting: ``diff --git a/plain.py "b/na\\303\\257ve.py"``."""
    repo, _ = two_commits({"plain.py": "x = 1\n"}, {})
    git(repo, "mv", "plain.py", "naïve.py")
    git(repo, "commit", "--quiet", "-m", "mv")
    diff = git_bytes(repo, "diff", "HEAD~1", "HEAD")
    assert b'diff --git a/plain.py "b/na\\303\\257ve.py"' in diff
    (f,) = parse_diff(diff)
    assert (f.old_path, f.new_path, f.status) == ("plain.py", "naïve.py", "renamed")


def test_rename_from_a_quoted_name_to_a_plain_one(two_commits):
    repo, _ = two_commits({"naïve.py": "x = 1\n"}, {})
    git(repo, "mv", "naïve.py", "plain.py")
    git(repo, "commit", "--quiet", "-m", "mv")
    (f,) = parse_diff(git_bytes(repo, "diff", "HEAD~1", "HEAD"))
    assert (f.old_path, f.new_path, f.status) == ("naïve.py", "plain.py", "renamed")


def test_new_and_deleted_files(two_commits):
    _, diff = two_commits({"gone.py": "a\nb\n", "keep.py": "k\n"}, {"gone.py": None, "new.py": "x\ny\nz\n"})
    files = by_path(parse_diff(diff))

    gone, new = files["gone.py"], files["new.py"]
    assert (gone.old_path, gone.new_path, gone.status, gone.old_mode) == ("gone.py", None, "deleted", "100644")
    assert lines_of(gone) == ([], [("a", 1), ("b", 2)])
    assert (new.old_path, new.new_path, new.status, new.new_mode) == (None, "new.py", "added", "100644")
    assert lines_of(new) == ([("x", 1), ("y", 2), ("z", 3)], [])
    assert (new.hunks[0].old_start, new.hunks[0].old_len, new.hunks[0].new_start, new.hunks[0].new_len) == (0, 0, 1, 3)


def test_mode_changes(two_commits):
    repo, _ = two_commits({"run.sh": "echo hi\n", "tool.sh": "echo t\n"}, {})
    git(repo, "update-index", "--chmod=+x", "run.sh")
    git(repo, "update-index", "--chmod=+x", "tool.sh")
    (repo / "tool.sh").write_text("echo t\necho u\n")
    git(repo, "add", "tool.sh")
    git(repo, "update-index", "--chmod=+x", "tool.sh")  # `add` took the mode from the disk again
    git(repo, "commit", "--quiet", "-m", "chmod")
    files = by_path(parse_diff(git_bytes(repo, "diff", "HEAD~1", "HEAD")))

    run, tool = files["run.sh"], files["tool.sh"]
    assert (run.old_mode, run.new_mode, run.status, run.hunks) == ("100644", "100755", "modified", [])
    assert (tool.old_mode, tool.new_mode) == ("100644", "100755")
    assert lines_of(tool) == ([("echo u", 2)], [])


def test_binary_files(two_commits, evaluate):
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))
    _, diff = two_commits(
        {"img/logo.png": png, "a.txt": "a\n"}, {"img/logo.png": png[::-1], "img/new.bin": b"\x00\x01\x02"}
    )
    assert b"Binary files a/img/logo.png and b/img/logo.png differ" in diff
    files = by_path(parse_diff(diff))

    assert files["img/logo.png"].binary and files["img/logo.png"].hunks == []
    assert files["img/logo.png"].status == "modified"
    assert files["img/new.bin"].binary and files["img/new.bin"].status == "added"
    result = evaluate(diff)
    assert {s.file for s in result.signals if s.reason_code == "BINARY_UNSCANNED"} == {"img/logo.png", "img/new.bin"}


def test_git_binary_patch(two_commits):
    repo, _ = two_commits({"blob.bin": b"\x00" * 10}, {"blob.bin": b"\x01" * 10})
    (f,) = parse_diff(git_bytes(repo, "diff", "--binary", "HEAD~1", "HEAD"))
    assert f.binary and f.path == "blob.bin"


def test_no_newline_at_end_of_file(two_commits):
    _, diff = two_commits({"a.txt": "one\ntwo", "b.txt": "x\n"}, {"a.txt": "one\ntwo\nthree", "b.txt": "x\ny"})
    assert diff.count(b"\\ No newline at end of file") == 3
    files = by_path(parse_diff(diff))
    assert lines_of(files["a.txt"]) == ([("two", 2), ("three", 3)], [("two", 2)])
    assert lines_of(files["b.txt"]) == ([("y", 2)], [])
    assert files["a.txt"].hunks[0].body == [(" ", "one"), ("-", "two"), ("+", "two"), ("+", "three")]


def test_plain_diff_u(tmp_path):
    for side, text in (("a", "def f():\n    return 1\n"), ("b", "def f():\n    return 2\n\n\nX = 3\n")):
        (tmp_path / side / "src").mkdir(parents=True)
        (tmp_path / side / "src" / "app.py").write_text(text)
    proc = subprocess.run(["diff", "-ru", "a", "b"], cwd=tmp_path, capture_output=True)
    assert proc.returncode == 1 and proc.stdout.startswith(b"diff -ru a/src/app.py b/src/app.py\n--- a/src/app.py\t")
    (f,) = parse_diff(proc.stdout)

    assert (f.old_path, f.new_path, f.status) == ("src/app.py", "src/app.py", "modified")
    assert lines_of(f) == ([("    return 2", 2), ("", 3), ("", 4), ("X = 3", 5)], [("    return 1", 2)])


def test_plain_diff_u_of_several_files(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for name in ("one.txt", "two.txt"):
        (tmp_path / "a" / name).write_text("old\n")
        (tmp_path / "b" / name).write_text(f"new {name}\n")
    proc = subprocess.run(["diff", "-u", "-r", "a", "b"], cwd=tmp_path, capture_output=True)
    files = parse_diff(proc.stdout)
    assert [(f.path, lines_of(f)) for f in files] == [
        ("one.txt", ([("new one.txt", 1)], [("old", 1)])),
        ("two.txt", ([("new two.txt", 1)], [("old", 1)])),
    ]


def test_crlf_file_content(tmp_path):
    repo = tmp_path / "crlf"
    repo.mkdir()
    git(repo, "init", "--quiet", "--initial-branch=main")
    git(repo, "config", "core.autocrlf", "false")
    (repo / "win.txt").write_bytes(b"alpha\r\nbeta\r\ngamma\r\n")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", "one")
    (repo / "win.txt").write_bytes(b"alpha\r\nBETA\r\ngamma\r\ndelta\r\n")
    git(repo, "commit", "--quiet", "-am", "two")
    diff = git_bytes(repo, "diff", "HEAD~1", "HEAD")
    assert b"+BETA\r\n" in diff
    (f,) = parse_diff(diff)
    assert lines_of(f) == ([("BETA", 2), ("delta", 4)], [("beta", 2)])


def test_diff_with_crlf_line_endings_throughout(two_commits):
    _, diff = two_commits({"src/a.py": "x = 1\ny = 2\n"}, {"src/a.py": "x = 1\ny = 3\n", "src/b.py": "z = 1\n"})
    crlf = diff.replace(b"\n", b"\r\n")
    lf_files, crlf_files = parse_diff(diff), parse_diff(crlf)
    assert [(f.old_path, f.new_path, f.status, lines_of(f)) for f in crlf_files] == [
        (f.old_path, f.new_path, f.status, lines_of(f)) for f in lf_files
    ]


def test_hunk_line_numbers_across_several_hunks(two_commits):
    before = "".join(f"l{i}\n" for i in range(1, 61))
    after = before.replace("l5\n", "l5\nnew-a\nnew-b\n").replace("l30\n", "").replace("l50\n", "L50\n")
    _, diff = two_commits({"f.txt": before}, {"f.txt": after})
    (f,) = parse_diff(diff)
    assert len(f.hunks) == 3
    assert lines_of(f) == ([("new-a", 6), ("new-b", 7), ("L50", 51)], [("l30", 30), ("l50", 50)])
    assert [h.raw.split(b"\n", 1)[0][:2] for h in f.hunks] == [b"@@"] * 3


# ---------------------------------------------------------------- errors


def test_diff_error_is_a_casm_error():
    assert issubclass(DiffError, CasmError)


def test_truncated_hunk_followed_by_another_file():
    diff = (
        b"diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1,4 +1,4 @@\n a\n-b\n+B\n"
        b"diff --git a/y.py b/y.py\n--- a/y.py\n+++ b/y.py\n@@ -1 +1 @@\n-y\n+Y\n"
    )
    with pytest.raises(DiffError, match="hunk ends early"):
        parse_diff(diff)


def test_truncated_hunk_at_the_end_of_the_diff(two_commits):
    before = "".join(f"l{i}\n" for i in range(1, 21))
    _, diff = two_commits({"f.txt": before}, {"f.txt": before.replace("l10\n", "L10\n")})
    lines = diff.splitlines(keepends=True)
    truncated = b"".join(lines[:-3])  # the last context lines are cut off
    with pytest.raises(DiffError, match="truncated"):
        parse_diff(truncated)


@pytest.mark.parametrize(
    "diff",
    [
        b"diff --git a/../etc/passwd b/../etc/passwd\n--- a/../etc/passwd\n+++ b/../etc/passwd\n@@ -1 +1 @@\n-x\n+y\n",
        b"diff --git a/ok.txt b/ok.txt\n--- a/ok.txt\n+++ b/src/../../outside.txt\n@@ -1 +1 @@\n-x\n+y\n",
        b"diff --git a/a.txt b/b.txt\nsimilarity index 100%\nrename from a.txt\nrename to ../b.txt\n",
        b"--- /etc/passwd\t2024-01-01\n+++ /etc/passwd\t2024-01-02\n@@ -1 +1 @@\n-x\n+y\n",
    ],
    ids=["dotdot-header", "dotdot-plus", "dotdot-rename", "absolute-plain"],
)
def test_paths_outside_the_repo_are_refused(diff):
    with pytest.raises(DiffError, match="outside the repository"):
        parse_diff(diff)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"Hello, this is not a diff.\nJust some text.\n", "not a unified diff"),
        (b"\x00\x01\x02binary garbage\xff\xfe", "not a unified diff"),
        (b"@@ this is not a hunk header\n", "malformed hunk header"),
        (b"diff --git nonsense\n", "cannot read the paths"),
    ],
)
def test_garbage_raises(text, message):
    with pytest.raises(DiffError, match=message):
        parse_diff(text)


@pytest.mark.parametrize("text", [b"", b"\n", b"  \n\n"])
def test_empty_input(text):
    assert parse_diff(text) == []


# ---------------------------------------------------------------- apply_hunks


@pytest.mark.parametrize("context", ["-U3", "-U0", "-U1"])
def test_apply_hunks_rebuilds_the_new_file_exactly(two_commits, context):
    before = "".join(f"line {i}\n" for i in range(1, 81))
    after = (
        "header\n"  # insertion at the very top
        + before.replace("line 3\n", "")
        .replace("line 20\n", "line 20\ninserted a\ninserted b\n")
        .replace("line 40\nline 41\n", "changed 40\n")
        .replace("line 80\n", "line 80\ntrailer\n")
    )
    repo, _ = two_commits({"data.txt": before}, {"data.txt": after})
    (f,) = parse_diff(git_bytes(repo, "diff", context, "HEAD~1", "HEAD"))
    assert len(f.hunks) >= 4
    assert git_show(repo, "HEAD", "data.txt") == after
    assert apply_hunks(git_show(repo, "HEAD~1", "data.txt"), f.hunks) == after


def test_apply_hunks_deleting_everything_and_from_empty(two_commits):
    repo, _ = two_commits({"a.txt": "one\ntwo\n", "b.txt": ""}, {"a.txt": "", "b.txt": "new\n"})
    files = by_path(parse_diff(git_bytes(repo, "diff", "HEAD~1", "HEAD")))
    assert apply_hunks("one\ntwo\n", files["a.txt"].hunks) == ""
    assert apply_hunks("", files["b.txt"].hunks) == "new\n"


def test_apply_hunks_refuses_a_diff_for_another_base(two_commits):
    repo, _ = two_commits({"a.txt": "one\ntwo\nthree\n"}, {"a.txt": "one\nTWO\nthree\n"})
    (f,) = parse_diff(git_bytes(repo, "diff", "HEAD~1", "HEAD"))
    with pytest.raises(DiffError, match="does not apply"):
        apply_hunks("one\nzwei\nthree\n", f.hunks)


def test_apply_hunks_keeps_a_missing_final_newline(two_commits):
    repo, _ = two_commits({"a.txt": "one\ntwo"}, {"a.txt": "one\ntwo\nthree"})
    (f,) = parse_diff(git_bytes(repo, "diff", "HEAD~1", "HEAD"))
    assert apply_hunks("one\ntwo", f.hunks) == git_show(repo, "HEAD", "a.txt") == "one\ntwo\nthree"


def test_apply_hunks_keeps_crlf_line_endings(tmp_path):
    repo = tmp_path / "crlf"
    repo.mkdir()
    git(repo, "init", "--quiet", "--initial-branch=main")
    git(repo, "config", "core.autocrlf", "false")
    (repo / "win.txt").write_bytes(b"a\r\nb\r\nc\r\n")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", "one")
    (repo / "win.txt").write_bytes(b"a\r\nB\r\nc\r\n")
    git(repo, "commit", "--quiet", "-am", "two")
    (f,) = parse_diff(git_bytes(repo, "diff", "HEAD~1", "HEAD"))
    assert apply_hunks("a\r\nb\r\nc\r\n", f.hunks) == "a\r\nB\r\nc\r\n"


@pytest.mark.parametrize(
    "odd", ["\x0c", "\x0b", "\x1c", "\x85", "\u2028"], ids=["form-feed", "vtab", "fs", "nel", "line-separator"]
)
def test_apply_hunks_splits_lines_only_at_newlines(two_commits, odd):
    """git splits lines at "\\n" only; characters str.splitlines() also breaks at are content."""
    before = f'{{\n  "description": "a{odd}b",\n  "version": "1.0.0"\n}}\n'
    after = before.replace('"1.0.0"', '"1.0.1"')
    repo, _ = two_commits({"package.json": before}, {"package.json": after})
    (f,) = parse_diff(git_bytes(repo, "diff", "HEAD~1", "HEAD"))
    assert f.hunks[0].body[1] == (" ", f'  "description": "a{odd}b",')
    assert apply_hunks(before, f.hunks) == after
