"""SARIF 2.1.0 output: every file CASM writes validates against the official schema
(shipped in casm_dagster/schemas, never fetched), holds no secret or code, and keeps its
rule ids and fingerprints when lines move, so code scanning de-duplicates across runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import git, make_repo, run_casm, validate_sarif

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYz" + "Q9a8Xk3Lm"
KEY = "AKIA" + "J7QX2M4RVB9TLW3K"


def _staged(repo: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", *files)


def _check(repo: Path, env: dict[str, str], sarif: Path) -> dict:
    proc = run_casm(["policy", "check", "--repo", str(repo), "--sarif", str(sarif)], repo, env)
    assert proc.returncode == 4, proc.stdout + proc.stderr  # a secret blocks
    text = sarif.read_text()
    assert AWS_SECRET not in text and KEY not in text
    log = json.loads(text)
    validate_sarif(log)
    return log


def test_policy_check_writes_valid_sarif_with_stable_fingerprints(tmp_path: Path, casm_env: dict[str, str]) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "# app\n"})
    secret = f'aws_access_key_id = "{KEY}"\naws_secret_access_key = "{AWS_SECRET}"\n'
    _staged(repo, {"app/settings.py": secret})
    first = _check(repo, casm_env, tmp_path / "first.sarif")
    (run,) = first["runs"]
    assert run["automationDetails"]["id"] == "casm/policy-check/"
    assert run["properties"]["policy"]["status"] == "block"
    secrets = [r for r in run["results"] if r["ruleId"].startswith("policy/secret_like/")]
    assert secrets and all(r["level"] == "error" for r in secrets)
    rule = run["tool"]["driver"]["rules"][secrets[0]["ruleIndex"]]
    assert rule["properties"]["security-severity"] == "8.0" and "security" in rule["properties"]["tags"]
    located = secrets[0]["locations"][0]["physicalLocation"]
    assert located["artifactLocation"]["uri"] == "app/settings.py" and located["region"]["startLine"] >= 1

    # Two lines added above: the same alerts, the same fingerprints (lines are not identity).
    _staged(repo, {"app/settings.py": "# settings\n\n" + secret})
    second = _check(repo, casm_env, tmp_path / "second.sarif")

    def keys(log: dict) -> set[tuple[str, str]]:
        return {(r["ruleId"], r["partialFingerprints"]["casmResultHash/v1"]) for r in log["runs"][0]["results"]}

    assert keys(first) == keys(second)
    lines = {r["locations"][0]["physicalLocation"]["region"]["startLine"] for r in second["runs"][0]["results"]}
    assert min(lines) >= 3


def test_a_clean_change_gives_an_empty_but_valid_log(tmp_path: Path, casm_env: dict[str, str]) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "# app\n"})
    _staged(repo, {"docs/usage.md": "Run it.\n"})
    sarif = tmp_path / "out.sarif"
    proc = run_casm(["policy", "check", "--repo", str(repo), "--sarif", str(sarif)], repo, casm_env)
    assert proc.returncode == 0, proc.stderr
    log = json.loads(sarif.read_text())
    validate_sarif(log)
    assert log["runs"][0]["results"] == []


@pytest.mark.parametrize("where", ["missing-dir/out.sarif", "."])
def test_a_bad_sarif_path_is_one_line_and_writes_nothing(tmp_path: Path, casm_env: dict[str, str], where: str) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "# app\n"})
    proc = run_casm(["policy", "check", "--repo", str(repo), "--sarif", where], tmp_path, casm_env)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "missing-dir").exists()
