"""Human in the loop end to end: the real ``casm`` console script on real git repos and a
real Dagster SQLite instance — gate, approve/deny, resume, the hash binding, the
allowlist, expiry, and a blocked run that must not leak the secret it found.

Every ``casm run`` costs seconds, so the module starts all the audits it needs at once
(separate processes, each scenario with its own repo, working directory and
DAGSTER_HOME) and each test then owns exactly one scenario: no test touches another's
state.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import secrets
import string
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
from helpers import (
    APP_PY,
    CASM,
    GATED_FILES,
    LOGIN_PY,
    ROOT,
    RUFF_TOML,
    git,
    isolated_env,
    last_json,
    make_repo,
)

from casm_dagster.policy import hitl
from casm_dagster.policy.keyed_hash import load_or_create_key
from casm_dagster.stores.approvals import APPROVED, ApprovalRecord, ApprovalStore
from casm_dagster.stores.db import engine_for

pytestmark = pytest.mark.slow

MANIFEST = (ROOT / "templates" / "repo-auditor" / "manifest.yaml").read_text()
PATCH = "patches/01-ruff-F401.patch"
# Built at run time so the token is in no file of this repository.
ME = pwd.getpwuid(os.geteuid()).pw_name
TOKEN = "ghp_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(36))


def blob(repo: Path, rev: str, path: str) -> str:
    """A file's exact content at ``rev`` (``helpers.git`` strips its output)."""
    return subprocess.run(
        ["git", "-C", str(repo), "show", f"{rev}:{path}"], capture_output=True, text=True, check=True
    ).stdout


def raw_diff(repo: Path, base: str, head: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "diff", "--no-color", "--no-ext-diff", base, head],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def json_line(stdout: str) -> dict:
    """The (last) JSON object printed on stdout, wherever it is."""
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise AssertionError(f"no JSON object on stdout:\n{stdout}")


@dataclass
class Scenario:
    name: str
    base: Path
    repo: Path
    workdir: Path
    env: dict[str, str]
    template: str
    run: subprocess.CompletedProcess[str] | None = None
    commands: list[subprocess.CompletedProcess[str]] = field(default_factory=list)

    @property
    def out(self) -> dict:
        assert self.run is not None
        return json_line(self.run.stdout)

    @property
    def run_id(self) -> str:
        return self.out["run_id"]

    @property
    def run_dir(self) -> Path:
        return Path(self.out["run_dir"])

    @property
    def branch(self) -> str:
        return f"casm/repo-auditor/{self.run_id}"

    @property
    def home(self) -> Path:
        return Path(self.env["DAGSTER_HOME"])

    def casm(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*CASM, *args], cwd=self.workdir, env={**self.env, **(env or {})}, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        self.commands.append(proc)
        return proc

    def state(self) -> dict:
        return json.loads((self.run_dir / "state.json").read_text())

    def events(self) -> list[dict]:
        return [json.loads(line) for line in (self.run_dir / "events.jsonl").read_text().splitlines() if line]

    def store(self) -> ApprovalStore:
        # The instance's own database, where `casm` keeps its tables (instance.instance_db_url),
        # and the scenario's installation key (its `casm` processes sign and verify with it).
        key = load_or_create_key(Path(self.env["CASM_POLICY_KEY_FILE"]))
        return ApprovalStore(engine_for(f"sqlite:///{self.home / 'casm.db'}"), key=key)

    def request(self) -> ApprovalRecord:
        return hitl.require_request(self.store(), self.run_id)

    def casm_branches(self) -> str:
        return git(self.repo, "branch", "--list", "casm/*")

    def approve_in_process(self, reason: str = "reviewed") -> None:
        """What `casm approve` records, without paying for another process."""
        store = self.store()
        hitl.decide(store, hitl.require_request(store, self.run_id), APPROVED, "carol", reason, via="local")


def _template(base: Path, manifest: str, ruleset: bool = False) -> str:
    folder = base / "template"
    folder.mkdir()
    if ruleset:
        (folder / "ruleset.yaml").write_text((ROOT / "rules" / "default.devtools.yaml").read_text())
    (folder / "manifest.yaml").write_text(manifest)
    return str(folder / "manifest.yaml")


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


SCENARIOS = {
    # name: (files, template manifest or None for the bundled one, whether it gets its own ruleset)
    "happy": (GATED_FILES, None, False),  # left pending: tests only read it
    "approve": (GATED_FILES, None, False),
    "elsewhere": (GATED_FILES, None, False),
    "pending": (GATED_FILES, None, False),
    "full": (GATED_FILES, None, False),
    "deny": (GATED_FILES, None, False),
    "void_patch": (GATED_FILES, None, False),
    "void_plan": (GATED_FILES, None, False),
    "ruleset": (GATED_FILES, _replace(MANIFEST, "  ruleset: default.devtools\n", "  ruleset: ruleset.yaml\n"), True),
    "allowlist": (
        GATED_FILES,
        _replace(MANIFEST, "    mode: local\n", '    mode: local\n    local:\n      approvers: ["USER:alice"]\n'),
        False,
    ),
    "expiry": (
        GATED_FILES,
        _replace(MANIFEST, "    mode: local\n", "    mode: local\n    expires_after_hours: 0.0001\n"),
        False,
    ),
    # ruff's F401 fix removes `import os`; ruff format then rewrites the token line with
    # double quotes, so the plan *adds* a line holding the token.
    "blocked": ({"settings.py": f"import os\nTOKEN='{TOKEN}'\n", "ruff.toml": RUFF_TOML}, None, False),
}


class Scenarios:
    """Each scenario's gated run, started the first time a test asks for it (a test worker
    runs only the scenarios of the tests it gets, once each)."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp = tmp_path_factory
        self._done: dict[str, Scenario] = {}

    def __getitem__(self, name: str) -> Scenario:
        if name not in self._done:
            files, manifest, own_ruleset = SCENARIOS[name]
            base = self._tmp.mktemp(f"hitl-{name}")
            workdir = base / "work"
            workdir.mkdir()
            template = _template(base, manifest, own_ruleset) if manifest else "repo-auditor"
            repo, env = make_repo(base / "repo", files), isolated_env(base / "dh")
            scenario = Scenario(name, base, repo, workdir, env, template)
            scenario.run = subprocess.run(
                [*CASM, "run", "--template", template, "--repo", str(scenario.repo), "--json"],
                cwd=workdir, env=scenario.env, capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            scenario.commands.append(scenario.run)
            self._done[name] = scenario
        return self._done[name]


@pytest.fixture(scope="session")
def scenarios(tmp_path_factory: pytest.TempPathFactory) -> Scenarios:
    return Scenarios(tmp_path_factory)


def gated(scenarios: Scenarios, name: str) -> Scenario:
    scenario = scenarios[name]
    assert scenario.run is not None
    assert scenario.run.returncode == 3, scenario.run.stderr
    assert scenario.out["status"] == "awaiting_approval"
    return scenario


def assert_nothing_delivered(s: Scenario) -> None:
    assert s.casm_branches() == ""
    assert git(s.repo, "status", "--porcelain") == ""
    assert git(s.repo, "rev-list", "--count", "HEAD") == "1"


# --- casm run -------------------------------------------------------------------------------


def test_run_exit_codes_match_the_json_status(scenarios: Scenarios) -> None:
    s = gated(scenarios, "happy")
    assert s.out["branch"] is None and s.out["patches"] == 0
    assert "awaiting_approval" in s.run.stdout.splitlines()[0]
    blocked = scenarios["blocked"]
    assert blocked.run.returncode == 4, blocked.run.stderr
    assert blocked.out["status"] == "blocked" and blocked.out["branch"] is None


def test_run_json_is_the_last_stdout_line_when_gated(scenarios: Scenarios) -> None:
    """`--json` promises one JSON object on the last stdout line, whatever the status."""
    s = gated(scenarios, "happy")
    assert last_json(s.run.stdout)["status"] == "awaiting_approval"


def test_gated_run_holds_a_pending_request(scenarios: Scenarios) -> None:
    s = gated(scenarios, "happy")
    state = s.state()
    assert state["status"] == "awaiting_approval" and state["policy_status"] == "gate"
    assert {state["stages"][x] for x in ("apply", "validate", "report")} == {"skipped"}
    record = s.request()
    assert record.status == "pending" and state["hitl_request_id"] == record.request_id
    assert record.packet["scope"]["allow_files"] == ["app.py"]
    assert record.packet["scope"]["deny_files"] == ["auth/login.py"]
    assert "PATH_SENSITIVE_HIGH" in record.packet["reason_codes"]
    assert_nothing_delivered(s)


# --- approve → resume -----------------------------------------------------------------------


def test_approve_then_resume_delivers_exactly_the_packet_scope(scenarios: Scenarios) -> None:
    s = gated(scenarios, "approve")
    base_commit = git(s.repo, "rev-parse", "HEAD")

    # A reason is required; without one nothing is recorded.
    no_reason = s.casm("approve", "--run-id", s.run_id, "--reason", "")
    assert no_reason.returncode == 2, no_reason.stderr
    assert "reason is required" in no_reason.stderr
    listed = s.casm("hitl", "list")
    assert listed.returncode == 0, listed.stderr
    (row,) = [line.split("\t") for line in listed.stdout.splitlines() if s.run_id in line]
    assert row[:3] == [s.request().request_id, s.run_id, "pending"]
    assert [e.action for e in s.store().log_entries(s.request().request_id)] == ["requested"]

    reason = "app.py only; the auth change goes through its own review"
    approved = s.casm("approve", "--run-id", s.run_id, "--reason", reason)
    assert approved.returncode == 0, approved.stderr
    assert f"approved by {ME}" in approved.stdout  # the OS account, not a name anyone can type

    resumed = s.casm("resume", "--run-id", s.run_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    out = last_json(resumed.stdout)
    assert out["status"] == "succeeded" and out["branch"] == s.branch
    assert out["request_id"] == s.request().request_id

    # The branch holds the approved plan cut to the packet: app.py's hunk, byte for byte.
    assert git(s.repo, "diff", "--name-only", base_commit, s.branch) == "app.py"
    patch = (s.run_dir / PATCH).read_text()
    app_section = patch[: patch.index("diff --git a/auth/login.py")]
    assert app_section.startswith("diff --git a/app.py b/app.py\n")
    assert raw_diff(s.repo, base_commit, s.branch) == app_section
    assert blob(s.repo, s.branch, "auth/login.py") == LOGIN_PY
    assert blob(s.repo, s.branch, "app.py") == APP_PY.removeprefix("import sys\n")
    assert git(s.repo, "rev-list", "--count", f"{base_commit}..{s.branch}") == "1"

    # The user's working tree, branch and HEAD are untouched; no scratch worktree is left.
    assert git(s.repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert git(s.repo, "rev-parse", "HEAD") == base_commit
    assert git(s.repo, "status", "--porcelain") == ""
    assert (s.repo / "app.py").read_text() == APP_PY and (s.repo / "auth/login.py").read_text() == LOGIN_PY
    assert len(git(s.repo, "worktree", "list").splitlines()) == 1

    state = s.state()
    assert state["status"] == "succeeded" and state["branch"] == s.branch
    record = s.request()
    assert record.consumed_at and record.continuation_run_id == out["dagster_run_id"]
    assert record.outcome == f"applied: delivered, branch {s.branch}"

    # An approval is used once.
    again = s.casm("resume", "--run-id", s.run_id, "--json")
    assert again.returncode == 2, again.stderr
    assert "already continued" in again.stderr
    assert git(s.repo, "rev-list", "--count", f"{base_commit}..{s.branch}") == "1"

    # The story, twice, byte for byte.
    first = s.casm("explain", "--run-id", s.run_id)
    second = s.casm("explain", "--run-id", s.run_id)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    text = first.stdout
    assert "\npolicy:\n" in text and "reason codes: PATH_SENSITIVE_HIGH" in text
    assert "decision packet:\n    allow: app.py\n    deny:  auth/login.py\n" in text
    assert f"approved by {ME} (scope: packet): {reason}" in text
    assert f"resumed: continuing after approval by {ME} (packet scope: 1 of 2 files)" in text
    assert "scope_reduced: 01-ruff-F401 trimmed to the approved scope: app.py" in text
    assert "outcome: succeeded" in text

    # Both Dagster runs carry the HITL story in their tags.
    with dg.DagsterInstance.from_config(str(s.home)) as instance:
        gated_run = instance.get_run_by_id(s.out["dagster_run_id"])
        assert gated_run.tags["casm/hitl"] == "approved" and gated_run.tags["casm/status"] == "approved"
        assert gated_run.tags["casm/hitl_request"] == record.request_id
        continuation = instance.get_run_by_id(out["dagster_run_id"])
        assert continuation.job_name == "hitl_continuation_job"
        assert continuation.status == dg.DagsterRunStatus.SUCCESS
        assert continuation.tags["casm/hitl"] == "applied" and continuation.tags["casm/status"] == "succeeded"
        assert continuation.tags["dagster/run_key"] == f"approval:{record.request_id}"


def test_full_scope_applies_every_file_of_the_plan(scenarios: Scenarios) -> None:
    s = gated(scenarios, "full")
    base_commit = git(s.repo, "rev-parse", "HEAD")
    approved = s.casm("approve", "--run-id", s.run_id, "--reason", "auth import is dead too", "--scope", "full")
    assert approved.returncode == 0, approved.stderr
    resumed = s.casm("resume", "--run-id", s.run_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert last_json(resumed.stdout)["status"] == "succeeded"
    assert git(s.repo, "diff", "--name-only", base_commit, s.branch).splitlines() == ["app.py", "auth/login.py"]
    assert raw_diff(s.repo, base_commit, s.branch) == (s.run_dir / PATCH).read_text()
    assert blob(s.repo, s.branch, "auth/login.py") == LOGIN_PY.removeprefix("import os\n")
    assert s.request().scope == "full"
    assert git(s.repo, "status", "--porcelain") == "" and git(s.repo, "rev-parse", "HEAD") == base_commit


def test_resume_before_approval_is_refused(scenarios: Scenarios) -> None:
    s = gated(scenarios, "pending")
    proc = s.casm("resume", "--run-id", s.run_id)
    assert s.request().status == "pending" and s.request().consumed_at is None
    assert s.state()["status"] == "awaiting_approval"
    assert_nothing_delivered(s)
    assert proc.returncode == 2, proc.stderr
    # One line, like every user error, saying why.
    assert proc.stderr.startswith("casm: error:") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "pending" in proc.stderr


def test_resume_where_the_repo_is_not_is_refused_and_the_approval_kept(scenarios: Scenarios) -> None:
    """`casm resume` on a host without the held run's checkout says so before it claims the
    approval: the continuation on the right host can still use it."""
    s = gated(scenarios, "elsewhere")
    s.approve_in_process()
    away = s.repo.with_name("repo-elsewhere")
    s.repo.rename(away)
    try:
        proc = s.casm("resume", "--run-id", s.run_id)
    finally:
        away.rename(s.repo)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("casm: error:") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "this host has no such directory" in proc.stderr and str(s.repo) in proc.stderr
    assert s.request().status == "approved" and s.request().consumed_at is None
    assert s.state()["status"] == "awaiting_approval"
    resumed = s.casm("resume", "--run-id", s.run_id)  # where the repo is, it continues
    assert resumed.returncode == 0, resumed.stderr
    assert s.state()["status"] == "succeeded" and s.casm_branches().strip()


# --- deny -----------------------------------------------------------------------------------


def test_deny_ends_the_run_and_cannot_be_overturned(scenarios: Scenarios) -> None:
    s = gated(scenarios, "deny")
    denied = s.casm("deny", "--run-id", s.run_id, "--reason", "auth changes need a security review")
    assert denied.returncode == 0, denied.stderr
    assert "denied by" in denied.stdout
    assert s.state()["status"] == "denied"

    late = s.casm("approve", "--run-id", s.run_id, "--reason", "changed my mind")
    assert late.returncode == 2, late.stderr
    assert "already denied" in late.stderr
    record = s.request()
    assert record.status == "denied" and record.reason == "auth changes need a security review"
    assert s.state()["status"] == "denied"
    assert_nothing_delivered(s)
    explained = s.casm("explain", "--run-id", s.run_id)
    assert "outcome: denied" in explained.stdout
    cost = s.casm("cost", "--run-id", s.run_id, "--json")
    assert cost.stdout.splitlines()[0].endswith(": denied") and last_json(cost.stdout)["status"] == "denied"
    with dg.DagsterInstance.from_config(str(s.home)) as instance:  # the runs list tells the truth too
        tags = instance.get_run_by_id(s.out["dagster_run_id"]).tags
        assert tags["casm/status"] == "denied" and tags["casm/hitl"] == "denied"


# --- bound by hash --------------------------------------------------------------------------


def _assert_void(s: Scenario, proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """The resume failed because the approval is void: nothing applied, the run failed, explained."""
    assert proc.returncode == 1, proc.stderr
    assert "approval void" in proc.stderr
    assert_nothing_delivered(s)
    assert s.state()["status"] == "failed"
    record = s.request()
    assert record.outcome and record.outcome.startswith("approval void")
    explained = s.casm("explain", "--run-id", s.run_id)
    assert explained.returncode == 0, explained.stderr
    assert "approval void" in explained.stdout
    assert "outcome: failed" in explained.stdout
    # The one-line error says why, not only that a Dagster op failed.
    (error,) = [line for line in proc.stderr.splitlines() if line.startswith("casm: error:")]
    assert "approval void" in error, error
    for fragment in fragments:
        assert fragment in error, (fragment, error)


def test_a_patch_edited_after_approval_voids_it(scenarios: Scenarios) -> None:
    s = gated(scenarios, "void_patch")
    s.approve_in_process()
    with (s.run_dir / PATCH).open("a") as handle:
        handle.write("+import subprocess\n")
    proc = s.casm("resume", "--run-id", s.run_id)
    # A void approval is spent: resuming again is refused, still nothing applied.
    again = s.casm("resume", "--run-id", s.run_id)
    assert again.returncode == 2 and "already continued" in again.stderr
    _assert_void(s, proc, f"patch {PATCH} changed since approval")


def test_a_plan_hash_edited_after_approval_voids_it(scenarios: Scenarios) -> None:
    s = gated(scenarios, "void_plan")
    s.approve_in_process()
    plan_path = s.run_dir / "plan.json"
    plan = json.loads(plan_path.read_text())
    plan["plan_sha256"] = "0" * 64
    plan_path.write_text(json.dumps(plan, indent=2))
    proc = s.casm("resume", "--run-id", s.run_id)
    _assert_void(s, proc, "the plan changed since approval")


def test_a_ruleset_edited_after_approval_refuses_the_resume(scenarios: Scenarios) -> None:
    s = gated(scenarios, "ruleset")
    ruleset = Path(s.template).parent / "ruleset.yaml"
    assert s.request().ruleset_sha256 == hashlib.sha256(ruleset.read_bytes()).hexdigest()
    s.approve_in_process()
    text = ruleset.read_text()
    ruleset.write_text(_replace(text, 'description: "', 'description: "Loosened after approval. '))
    proc = s.casm("resume", "--run-id", s.run_id)
    _assert_void(s, proc, "ruleset", "changed since approval")


# --- who may approve, and until when -------------------------------------------------------


def test_an_approver_outside_the_allowlist_is_refused_and_logged(scenarios: Scenarios) -> None:
    s = gated(scenarios, "allowlist")
    assert s.request().approvers == ["USER:alice"]
    # The approver is this process's OS account (here not alice), whatever USER says.
    refused = s.casm("approve", "--run-id", s.run_id, "--reason", "looks fine to me", env={"USER": "alice"})
    assert refused.returncode == 2, refused.stderr
    assert f"{ME} may not decide" in refused.stderr
    assert s.request().status == "pending"
    log = s.store().log_entries(s.request().request_id)
    assert [(e.action, e.actor) for e in log] == [("requested", "casm"), ("refused", ME)]
    assert "looks fine to me" in log[-1].detail
    explained = s.casm("explain", "--run-id", s.run_id)
    assert f"refused: {ME} is not an allowed approver" in explained.stdout

    # alice herself gets through (the same rule the CLI applies, with her identity).
    decided = hitl.decide(s.store(), s.request(), "approved", "alice", "reviewed", via="local")
    assert decided.status == "approved" and decided.approver == "alice"


def test_an_expired_request_cannot_be_approved(scenarios: Scenarios) -> None:
    s = gated(scenarios, "expiry")
    deadline = datetime.fromisoformat(s.request().expires_at.replace("Z", "+00:00"))
    while datetime.now(UTC) <= deadline:  # 0.0001 h = 0.36 s after the request; usually long past
        time.sleep(0.05)
    proc = s.casm("approve", "--run-id", s.run_id, "--reason", "too late")
    assert proc.returncode == 2, proc.stderr
    assert "expired" in proc.stderr
    assert s.request().status == "expired"
    assert s.state()["status"] == "expired"
    assert_nothing_delivered(s)
    assert [r.run_id for r in s.store().list("expired")] == [s.run_id]


# --- blocked --------------------------------------------------------------------------------


def _blocked(scenarios: Scenarios) -> Scenario:
    s = scenarios["blocked"]
    assert s.run.returncode == 4, s.run.stderr
    assert s.out["status"] == "blocked"
    return s


def _files_holding(roots: list[Path], needle: bytes) -> list[str]:
    hits = []
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file() and needle in path.read_bytes():
                hits.append(str(path))
    return hits


def test_blocked_run_applies_nothing_and_cannot_be_approved(scenarios: Scenarios) -> None:
    s = _blocked(scenarios)
    state = s.state()
    assert state["status"] == "blocked" and state["policy_status"] == "block"
    assert state["hitl_request_id"] is None
    alerts = [e for e in s.events() if e["type"] == "security_alert"]
    assert len(alerts) == 1
    assert "SECRET_LIKE" in alerts[0]["data"]["reason_codes"]
    assert alerts[0]["data"]["files"] == ["settings.py"]
    assert_nothing_delivered(s)
    assert s.store().list() == []
    report = (s.run_dir / "report.md").read_text()
    assert "blocked by policy: nothing applied" in report


def test_blocked_secret_is_not_in_logs_state_reports_or_the_database(scenarios: Scenarios) -> None:
    """Everything but the patch files (the plan itself, see the next test)."""
    s = _blocked(scenarios)
    explained = s.casm("explain", "--run-id", s.run_id)
    assert "SECURITY ALERT" in explained.stdout and "outcome: blocked" in explained.stdout
    approve = s.casm("approve", "--run-id", s.run_id, "--reason", "it is a test token")
    assert approve.returncode == 2 and "no approval request" in approve.stderr
    token = TOKEN.encode()
    assert token in (s.repo / "settings.py").read_bytes()  # the needle is real
    hits = [h for h in _files_holding([s.workdir / ".casm", s.home], token) if "/patches/" not in h]
    assert hits == []
    for proc in s.commands:
        assert TOKEN not in proc.stdout and TOKEN not in proc.stderr, proc.args


def test_blocked_secret_is_stored_nowhere_under_casm(scenarios: Scenarios) -> None:
    """docs/policy.md: "No raw secret or code snippet is ever stored or printed." """
    s = _blocked(scenarios)
    token = TOKEN.encode()
    assert (s.workdir / ".casm").is_dir() and (s.home / "casm.db").is_file()
    assert _files_holding([s.workdir / ".casm", s.home], token) == []
