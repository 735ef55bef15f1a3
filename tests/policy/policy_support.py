"""Helpers shared by the policy tests (conftest.py puts this folder on sys.path)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from helpers import GIT_ID

from casm_dagster.policy.engine import PolicyResult

KEY = b"k" * 32
# Pin what a user's git config could change in `git diff` output.
_DIFF_CONFIG = [
    "-c", "core.quotepath=true", "-c", "color.ui=false", "-c", "diff.noprefix=false",
    "-c", "diff.mnemonicPrefix=false", "-c", "diff.renames=true", "-c", "core.autocrlf=false",
]  # fmt: skip
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "casm_dagster" / "schemas" / "policy_decisions.schema.json"


def git_bytes(repo: Path, *args: str) -> bytes:
    """Raw stdout of a git command (diffs must keep every byte, trailing whitespace included)."""
    return subprocess.run(
        ["git", *GIT_ID, *_DIFF_CONFIG, "-C", str(repo), *args], capture_output=True, check=True
    ).stdout


def new_file_diff(path: str, lines: list[str]) -> bytes:
    """What ``git diff`` prints for a new file holding ``lines``."""
    body = "".join(f"+{line}\n" for line in lines)
    return (
        f"diff --git a/{path} b/{path}\n"
        "new file mode 100644\n"
        "index 0000000..1111111\n"
        f"--- /dev/null\n+++ b/{path}\n"
        f"@@ -0,0 +1,{len(lines)} @@\n{body}"
    ).encode()


def deleted_file_diff(path: str, lines: list[str]) -> bytes:
    body = "".join(f"-{line}\n" for line in lines)
    return (
        f"diff --git a/{path} b/{path}\n"
        "deleted file mode 100644\n"
        "index 1111111..0000000\n"
        f"--- a/{path}\n+++ /dev/null\n"
        f"@@ -1,{len(lines)} +0,0 @@\n{body}"
    ).encode()


def codes(result: PolicyResult) -> set[str]:
    return {s.reason_code for s in result.signals}
