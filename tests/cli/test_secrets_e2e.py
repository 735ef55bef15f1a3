"""A secret already committed in the audited repo (not in any diff) reaches no output and
no prompt: not the report, issues.json, review.json, the run's events, the artifacts, the
Dagster storage, stdout/stderr, nor the text a model would be sent."""

from __future__ import annotations

from pathlib import Path

from helpers import make_repo, run_casm

from casm_dagster.agents.prompts import fix_prompt, review_prompt
from casm_dagster.safety.redact import redact

SECRETS = {
    "password": "Tr0ub4dor-and-3-horses",
    "aws": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzQ9bKwLmPq",
    "url": "S3cretPassw0rdXYZ",
    "kwarg": "hunter2-is-my-pw",
    "yaml": "Zq8-rT5vLm2pXw9k",
    "github": "ghp_" + "Q7w8E9r0T1y2" * 3,
}
APP = f'''import subprocess

DB_PASSWORD = "{SECRETS["password"]}"
AWS_SECRET_ACCESS_KEY = "{SECRETS["aws"]}"
DATABASE_URL = "postgresql://admin:{SECRETS["url"]}@db.internal:5432/app"
GH = "{SECRETS["github"]}"


def connect(password="{SECRETS["kwarg"]}"):
    return subprocess.call("ls", shell=True)
'''
CONFIG = f'service:\n  api_key: "{SECRETS["yaml"]}"\n'


def _leaks(text: str) -> list[str]:
    return [name for name, value in SECRETS.items() if value in text]


def test_committed_secrets_reach_no_output_of_an_audit(tmp_path: Path, casm_env: dict[str, str]) -> None:
    repo = make_repo(tmp_path / "repo", {"app.py": APP, "config.yaml": CONFIG})
    work = tmp_path / "work"
    work.mkdir()
    env = {**casm_env, "CASM_STATE_DIR": str(tmp_path / "state")}
    proc = run_casm(["run", "--template", "repo-auditor", "--repo", str(repo), "--json",
                     "--artifacts-dir", str(tmp_path / "artifacts")], work, env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert _leaks(proc.stdout + proc.stderr) == []
    report = (tmp_path / "artifacts" / "report.md").read_text()
    assert "hardcoded password" in report.lower()  # the finding is there, its value is not
    written = [p for root in (tmp_path / "state", tmp_path / "artifacts", tmp_path / "dagster_home", work)
               for p in root.rglob("*") if p.is_file()]  # fmt: skip
    assert len(written) > 10
    leaked = {str(p.relative_to(tmp_path)): _leaks(p.read_bytes().decode("utf-8", "replace")) for p in written}
    assert {p: names for p, names in leaked.items() if names} == {}


def test_prompts_carry_no_secret_values() -> None:
    for prompt in (review_prompt("app.py", APP, "python"), fix_prompt("app.py", APP, []),
                   review_prompt("config.yaml", CONFIG, "yaml")):  # fmt: skip
        assert _leaks(str(prompt)) == []


def test_ordinary_assignments_are_not_redacted() -> None:
    code = 'token_type = "bearer"\npassword_field = "password"\nsecret_name = "db-main"\nPWD = "/home/u/x1"\n'
    assert redact(code) == code
