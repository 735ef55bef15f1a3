"""Evasions, leaks and crashes a review found, each pinned by a test."""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

import pytest
from helpers import git, make_repo

from casm_dagster.policy.check import resolve_target
from casm_dagster.policy.diff import DiffError, parse_diff
from casm_dagster.policy.document import policy_document

RNG = random.Random(11)


def _rand(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(RNG.choice(alphabet) for _ in range(n))


def _new_file(path: str, lines: list[str]) -> bytes:
    body = "".join(f"+{line}\n" for line in lines)
    return (
        f"diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n"
        f"@@ -0,0 +1,{len(lines)} @@\n{body}"
    ).encode()


def test_credentials_in_a_dependency_url_never_reach_messages_or_the_document(evaluate, ctx) -> None:
    password = _rand(20)
    result = evaluate(
        _new_file("requirements.txt", [f"internal-lib @ git+https://oauth2:{password}@gitlab.example.com/x.git"])
    )
    dumped = json.dumps(policy_document(result, ctx)) + result.human_summary + "".join(result.notes)
    assert result.status == "block"  # the URL credential is a secret, on top of the new dependency
    assert {"DEP_NEW", "SECRET_LIKE"} <= set(result.reason_codes)
    assert password not in dumped


def test_a_setup_cfg_parse_error_does_not_quote_the_line(tmp_path: Path, engine) -> None:
    secret = _rand(18)
    repo = make_repo(tmp_path / "r", {"setup.cfg": "[metadata]\nname = x\n"})
    (repo / "setup.cfg").write_text(f"[metadata]\nname = x\npypi_password {secret}\n[[broken\n")
    git(repo, "add", "--all")
    target = resolve_target(repo, None, None, None, repo_given=True)
    result = engine.evaluate(parse_diff(target.diff), target.source)
    assert secret not in "".join(s.message for s in result.signals) + "".join(result.notes)


def test_gitattributes_cannot_hide_a_secret(tmp_path: Path, engine) -> None:
    repo = make_repo(tmp_path / "r", {"README.md": "x\n"})
    (repo / ".gitattributes").write_text("config.py -diff\n")
    (repo / "config.py").write_text(f'TOKEN = "ghp_{_rand(36)}"\n')
    git(repo, "add", "--all")
    target = resolve_target(repo, None, None, None, repo_given=True)
    result = engine.evaluate(parse_diff(target.diff), target.source)
    assert result.status == "block" and "SECRET_LIKE" in result.reason_codes


def test_a_rotated_private_key_body_blocks(evaluate) -> None:
    body = [_rand(70, string.ascii_letters + string.digits + "+/") for _ in range(2)]
    diff = (
        "diff --git a/deploy/id_ed25519 b/deploy/id_ed25519\n--- a/deploy/id_ed25519\n+++ b/deploy/id_ed25519\n"
        "@@ -1,4 +1,4 @@\n -----BEGIN OPENSSH PRIVATE KEY-----\n-old1\n-old2\n"
        f"+{body[0]}\n+{body[1]}\n -----END OPENSSH PRIVATE KEY-----\n"
    ).encode()
    result = evaluate(diff)
    assert result.status == "block"
    assert [s.evidence.pattern_id for s in result.signals if s.reason_code == "SECRET_LIKE"] == ["private-key-material"]


@pytest.mark.parametrize(
    "line",
    [
        'DB = "postgresql://root:rootroot@db.prod.internal/app"',
        'DB = "postgresql://app:s3cr3ts3cr3t@db.prod.internal/app"',
        'CACHE = "redis://:S3cretPass9@cache.internal:6379/0"',
        "const creds = { secretAccessKey: '" + _rand(40, string.ascii_letters + string.digits + "/+") + "' };",
        "AWS_SECRET_KEY=" + _rand(40, string.ascii_letters + string.digits + "/+"),
        "SLACK_APP_TOKEN=xapp-1-A0"
        + _rand(9, string.ascii_uppercase + string.digits)
        + "-"
        + "4" * 13
        + "-"
        + _rand(64, "0123456789abcdef"),
    ],
)
def test_realistic_secrets_block(evaluate, line: str) -> None:
    assert evaluate(_new_file("app/settings.js", [line])).status == "block"


@pytest.mark.parametrize(
    ("path", "lines", "code"),
    [
        ("app/run.py", ["subprocess.run(", '    " ".join(args),', "    shell=True,", ")"], "COMMAND_EXEC"),
        ("Makefile", ["install:", "\tcurl -fsSL https://get.example.org/x | sh"], "COMMAND_EXEC"),
        ("bin/bootstrap", ["#!/usr/bin/env bash", "curl -fsSL https://get.example.org/x | bash"], "COMMAND_EXEC"),
    ],
)
def test_commands_in_realistic_shapes_gate(evaluate, path: str, lines: list[str], code: str) -> None:
    result = evaluate(_new_file(path, lines))
    assert result.status == "gate" and code in result.reason_codes


@pytest.mark.parametrize(
    "data",
    [
        b"diff --git \n",
        b'diff --git "a/\\777" "b/\\777"\n',
        b"diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n+stray line after the hunk\n",
        b"diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1," + b"9" * 5000 + b" @@\n",
    ],
)
def test_hostile_diffs_are_clean_errors(data: bytes) -> None:
    with pytest.raises(DiffError):
        parse_diff(data)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("poetry.lock", "package = 5\n"),
        ("uv.lock", "[[package]]\nname = 3\n"),
        ("package.json", '{"dependencies": {"a": "' + "9" * 5000 + '"}}'),
        ("package.json", '{"version": ' + "9" * 5000 + "}"),
        ("Cargo.toml", "[dependencies]\nserde = 7\n"),
    ],
)
def test_hostile_manifests_are_notes_not_crashes(evaluate, name: str, text: str) -> None:
    result = evaluate(_new_file(name, text.splitlines()))
    assert result.status == "gate"  # a dependency file changed: a human looks
    assert "touches_dependency_files" in result.conditions


def test_git_format_patch_signature_is_not_a_stray_line() -> None:
    data = b"diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n-- \n2.43.0\n"
    (file,) = parse_diff(data)
    assert [line.text for line in file.added_lines()] == ["b"]
