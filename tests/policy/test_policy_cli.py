"""``casm policy check``: what it scans, what it prints, and its exit codes (0/3/4/2)."""

from __future__ import annotations

import json
import random
import string
import subprocess
from pathlib import Path

import jsonschema
import pytest
from helpers import CASM, ROOT, git, make_repo, run_casm

SCHEMA = json.loads((ROOT / "casm_dagster" / "schemas" / "policy_decisions.schema.json").read_text())


def _token() -> str:
    rng = random.Random(7)
    return "ghp_" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(36))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"app.py": "x = 1\n", "README.md": "# demo\n"})


def _stage(repo: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", "--all")


def test_staged_changes_pass_with_exit_0(repo: Path, casm_env: dict[str, str]) -> None:
    _stage(repo, {"README.md": "# demo\n\nMore words.\n"})
    proc = run_casm(["policy", "check"], cwd=repo, env=casm_env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("policy: PASS")


def test_spec_worked_example_gates_with_exit_3_and_the_scope_reduction(repo: Path, casm_env: dict[str, str]) -> None:
    _stage(
        repo,
        {
            ".github/workflows/ci.yml": "name: ci\non: push\njobs: {}\n",
            "package.json": '{"name": "demo", "dependencies": {"left-pad": "^1.3.0"}}\n',
        },
    )
    proc = run_casm(["policy", "check", "--json"], cwd=repo, env=casm_env)
    assert proc.returncode == 3, proc.stderr
    doc = json.loads(proc.stdout)
    jsonschema.validate(doc, SCHEMA)
    assert doc["summary"]["status"] == "gate"
    assert {"PATH_SENSITIVE_HIGH", "DEP_NEW"} <= set(doc["summary"]["reason_codes"])
    assert doc["risk"]["score"] >= doc["risk"]["thresholds"]["gate"]
    (scope,) = [d["scope_reduction"] for d in doc["decisions"] if d["action"] == "scope_reduce"]
    assert scope["allow_files"] == []
    assert scope["deny_files"] == [".github/workflows/ci.yml", "package.json"]
    assert "only comment" in scope["notes"] and "do not modify the workflow" in scope["notes"]
    assert "do not change dependency versions" in scope["notes"]


def test_secret_blocks_with_exit_4_and_is_never_printed(repo: Path, casm_env: dict[str, str]) -> None:
    token = _token()
    _stage(repo, {"settings.py": f'GITHUB_TOKEN = "{token}"\n'})
    for args in (["policy", "check"], ["policy", "check", "--json"]):
        proc = run_casm(args, cwd=repo, env=casm_env)
        assert proc.returncode == 4, proc.stderr
        assert token not in proc.stdout + proc.stderr
        assert token[4:20] not in proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["summary"]["status"] == "block" and "SECRET_LIKE" in doc["summary"]["reason_codes"]
    (signal,) = [s for s in doc["signals"] if s["type"] == "secret_like"]
    assert signal["file"] == "settings.py" and signal["line_start"] == 1
    assert signal["evidence"]["pattern_id"] == "github-token-classic"
    assert len(signal["evidence"]["diff_hunk_sha256"]) == 64


def test_range_and_stdin_diff_give_the_same_decision(repo: Path, casm_env: dict[str, str]) -> None:
    base = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "--quiet", "-b", "feature")
    _stage(repo, {"scripts/deploy.sh": "#!/bin/sh\ncurl -fsSL https://get.example.org | sh\n"})
    git(repo, "commit", "--quiet", "-m", "deploy script")
    ranged = run_casm(["policy", "check", "--base", base, "--head", "feature", "--json"], cwd=repo, env=casm_env)
    assert ranged.returncode == 3, ranged.stderr
    diff = git(repo, "diff", base, "feature") + "\n"
    piped = subprocess.run(
        [*CASM, "policy", "check", "--diff", "-", "--json"], input=diff, cwd=repo, env=casm_env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert piped.returncode == 3, piped.stderr
    a, b = json.loads(ranged.stdout), json.loads(piped.stdout)
    assert a["summary"]["reason_codes"] == b["summary"]["reason_codes"]
    assert "COMMAND_EXEC" in a["summary"]["reason_codes"]
    assert a["run"]["commit"] == {"base": base, "head": git(repo, "rev-parse", "feature")}
    hashes = [[s["evidence"].get("diff_hunk_sha256") for s in d["signals"]] for d in (a, b)]
    assert hashes[0] == hashes[1], "the same hunk hashes the same on one installation"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--head", "HEAD"], "--head needs --base"),
        (["--base", "no-such-rev"], "--base 'no-such-rev': no such commit"),
        (["--ruleset", "nope"], "unknown ruleset 'nope'"),
        (["--diff", "-", "--head", "HEAD"], "--head cannot be combined with --diff"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(
    repo: Path, casm_env: dict[str, str], args: list[str], message: str
) -> None:
    proc = subprocess.run(
        [*CASM, "policy", "check", *args], input="", cwd=repo, env=casm_env, capture_output=True, text=True
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_malformed_diff_and_ruleset_exit_2(repo: Path, tmp_path: Path, casm_env: dict[str, str]) -> None:
    garbage = tmp_path / "x.diff"
    garbage.write_text("this is not a diff\n")
    proc = run_casm(["policy", "check", "--diff", str(garbage)], cwd=repo, env=casm_env)
    assert proc.returncode == 2 and "not a unified diff" in proc.stderr
    ruleset = tmp_path / "r.yaml"
    ruleset.write_text('version: "0.2"\nruleset: broken\n')
    proc = run_casm(["policy", "check", "--ruleset", str(ruleset)], cwd=repo, env=casm_env)
    assert proc.returncode == 2 and "risk_thresholds: required key is missing" in proc.stderr


def test_outside_a_repository_a_diff_file_still_works(tmp_path: Path, casm_env: dict[str, str]) -> None:
    outside = tmp_path / "plain"
    outside.mkdir()
    patch = outside / "change.diff"
    patch.write_text(
        "diff --git a/src/auth/session.py b/src/auth/session.py\n--- a/src/auth/session.py\n"
        "+++ b/src/auth/session.py\n@@ -1,2 +1,1 @@\n-@login_required\n def view(request):\n"
    )
    proc = run_casm(["policy", "check", "--diff", str(patch)], cwd=outside, env=casm_env)
    assert proc.returncode == 3, proc.stderr
    assert "AUTH_CHECK_REMOVED" in proc.stdout and "PATH_SENSITIVE_HIGH" in proc.stdout
