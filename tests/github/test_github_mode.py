"""GitHub mode end to end against the local GitHub server: repo-auditor opens a PR with the
report and posts the cost report; pr-sentinel comments on a PR and updates that one comment
on a push (incrementally); a gated PR waits for the label of an allowlisted approver; the
PR sensor launches one run per new head; no token in any log or artifact."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml
from github_fake.fake_github import FakeGitHub
from helpers import ROOT, git, isolated_env, last_json, make_repo, run_casm, validate_sarif

from casm_dagster.github import markers

pytestmark = pytest.mark.slow

TOKEN = "ghp_" + "E2eT0ken" * 5
REPO = "acme/widgets"


def _env(tmp_path: Path, gh: FakeGitHub) -> dict[str, str]:
    env = isolated_env(tmp_path / "dagster_home")
    env.update(
        GITHUB_TOKEN=TOKEN,
        GITHUB_API_URL=gh.api_url,
        CASM_GITHUB_WRITE_INTERVAL="0",
        CASM_STATE_DIR=str(tmp_path / "state"),
    )
    return env


def _no_token_anywhere(tmp_path: Path, *outputs: str) -> None:
    for text in outputs:
        assert TOKEN not in text
    for path in tmp_path.rglob("*"):
        if path.is_file() and "fake-github" not in str(path):
            assert TOKEN.encode() not in path.read_bytes(), f"token leaked into {path}"


def _our_comments(gh: FakeGitHub, number: int, kind: str) -> list[dict]:
    return [c for c in gh.comments(REPO, number) if markers.marker_tag(kind) in c["body"]]


@pytest.fixture
def gh():
    with FakeGitHub(token=TOKEN) as server:
        yield server
        server.assert_clean()


def test_repo_auditor_opens_a_pr_with_report_and_cost_comment(tmp_path: Path, gh: FakeGitHub, demo_repo: Path) -> None:
    gh.create_repo(REPO, demo_repo, default_branch=git(demo_repo, "rev-parse", "--abbrev-ref", "HEAD"))
    env = _env(tmp_path, gh)
    work = tmp_path / "work"
    work.mkdir()
    proc = run_casm(["run", "--template", "repo-auditor", "--repo", REPO, "--json"], work, env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = last_json(proc.stdout)
    assert out["repo"] == REPO and out["patches"] > 0
    (pr,) = gh.pulls(REPO)
    assert out["pull_request"].endswith(f"/{REPO}/pull/{pr['number']}")
    default = gh.repos[REPO].default_branch
    branch = f"casm/repo-auditor/{default}"  # one branch, and so one open PR, per base branch
    assert pr["head"] == branch and pr["base"] == default
    assert markers.read(pr["body"], "repo-auditor") == {"run_id": out["run_id"]}
    assert "## " in pr["body"] and "Findings" in pr["body"]
    # The pushed branch is the validated tip: one commit per accepted patch group.
    commits = git(gh.repo_path(REPO), "rev-list", f"refs/heads/{default}..refs/heads/{branch}").split()
    assert len(commits) == out["patches"]
    (cost,) = _our_comments(gh, pr["number"], "cost-report")
    assert "cost" in cost["body"].lower()
    # Pushed only once the report and the reconciled cost are on disk (the telemetry stage):
    # a run killed before that opens no PR.
    events = [json.loads(line) for line in Path(out["run_dir"], "events.jsonl").read_text().splitlines()]
    order = [(e["type"], e.get("stage"), (e.get("data") or {}).get("decision")) for e in events]
    telemetry = order.index(("stage_started", "telemetry", None))
    pushed = order.index(("decision", "report", "branch_pushed"))
    assert telemetry < pushed < order.index(("decision", "report", "pr_opened"))
    # The next audit (the next heartbeat window, a retry) updates that PR and its comment.
    again = run_casm(["run", "--template", "repo-auditor", "--repo", REPO, "--json"], work, env, timeout=600)
    assert again.returncode == 0, again.stderr
    second = last_json(again.stdout)
    assert second["run_id"] != out["run_id"] and second["pull_request"] == out["pull_request"]
    (pr,) = gh.pulls(REPO)
    assert markers.read(pr["body"], "repo-auditor") == {"run_id": second["run_id"]}
    (updated,) = _our_comments(gh, pr["number"], "cost-report")
    assert updated["id"] == cost["id"] and second["run_id"] in updated["body"]
    # The token went only to GitHub, in headers: never in a git URL, never on disk or in output.
    for request in gh.requests:
        assert TOKEN not in request.path and TOKEN not in json.dumps(request.query)
    _no_token_anywhere(tmp_path, proc.stdout, proc.stderr, again.stdout, again.stderr)


def _pr_repo(tmp_path: Path) -> Path:
    return make_repo(
        tmp_path / "src",
        {
            "app/core.py": "def add(a, b):\n    return a + b\n",
            "app/util.py": "def one():\n    return 1\n",
            ".casm.yaml": "severity_threshold: info\nmax_findings: 10\nignore: ['docs/**']\n",
        },
    )


def _commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD")


def _github_pr(
    tmp_path: Path, gh: FakeGitHub, branch: str, *commits: dict[str, str], settings: str | None = None
) -> tuple[Path, int, Path]:
    """The PR repo on the fake GitHub (``settings``: the default branch's .casm.yaml), a PR
    from ``branch`` with one commit per dict of files, and an empty work dir for ``casm``."""
    source = _pr_repo(tmp_path)
    if settings is not None:
        (source / ".casm.yaml").write_text(settings)
        git(source, "commit", "-qam", "repo settings")
    gh.create_repo(REPO, source)
    git(source, "checkout", "-q", "-b", branch)
    for i, files in enumerate(commits):
        _commit(source, files, f"change {i}")
    number = gh.open_pr(REPO, branch, commits=source, author="alice")
    work = tmp_path / "work"
    work.mkdir()
    return source, number, work


def _pr_template(tmp_path: Path, approvers: str = '["USER:maint"]') -> Path:
    text = (ROOT / "templates" / "pr-sentinel" / "manifest.yaml").read_text()
    path = tmp_path / "pr-sentinel.yaml"
    path.write_text(text.replace('["USER:octo-maintainer"]', approvers))
    return path


def test_pr_sentinel_comments_once_and_updates_incrementally_on_push(tmp_path: Path, gh: FakeGitHub) -> None:
    source, number, work = _github_pr(
        tmp_path,
        gh,
        "feature",
        {"app/core.py": "import os\ndef add(a, b):\n    return a + b\n", "docs/x.py": "import sys\n"},
        # The PR author tries to silence the review through .casm.yaml on the PR head: ignored.
        {".casm.yaml": "ignore: ['**']\n"},
    )
    env = _env(tmp_path, gh)
    template = str(_pr_template(tmp_path))
    args = ["run", "--template", template, "--repo", REPO, "--pr", str(number), "--json"]
    first = run_casm(args, work, env)
    assert first.returncode == 0, first.stderr
    (posted,) = _our_comments(gh, number, "pr-sentinel")
    assert posted["user"] == gh.login
    body = posted["body"]
    assert "risk" in body and "Reason codes" in body
    assert (
        "<code>app/core.py:1</code>" in body and "F401" in body
    )  # the unused import, from the default branch's settings
    assert "Forecast of this audit" in body and "### Coverage" in body
    assert "<code>docs/x.py</code> — ignored by .casm.yaml" in body
    state = markers.read(body, "pr-sentinel")
    assert state["head"] == gh.pulls(REPO)[0]["head_sha"]
    # A new push touching another file: the same comment is updated; app/core.py is not
    # re-reviewed but its finding is carried over.
    _commit(source, {"app/util.py": "import json\ndef one():\n    return 1\n"}, "b")
    gh.push_branch(REPO, "feature", source)
    new_head = gh.update_pr_head(REPO, number)
    second = run_casm(args, work, env)
    assert second.returncode == 0, second.stderr
    (updated,) = _our_comments(gh, number, "pr-sentinel")
    assert updated["id"] == posted["id"]
    assert markers.read(updated["body"], "pr-sentinel")["head"] == new_head
    assert f"incremental since `{state['head'][:12]}`" in updated["body"]
    assert "<code>app/util.py:1</code>" in updated["body"] and "<code>app/core.py:1</code>" in updated["body"]
    assert len(gh.comments(REPO, number)) == 1
    _no_token_anywhere(tmp_path, first.stdout, first.stderr, second.stdout, second.stderr)


def _instance(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dg.DagsterInstance:
    for key in ("DAGSTER_HOME", "GITHUB_TOKEN", "GITHUB_API_URL", "CASM_GITHUB_WRITE_INTERVAL", "CASM_STATE_DIR"):
        monkeypatch.setenv(key, env[key])
    return dg.DagsterInstance.get()


def test_gated_pr_waits_for_the_label_of_an_allowlisted_approver(
    tmp_path: Path, gh: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from casm_dagster.cli.launch import launch_continuation
    from casm_dagster.resources import CasmResource, GitHubResource
    from casm_dagster.sensors.hitl import hitl_approval_sensor

    _, number, work = _github_pr(tmp_path, gh, "ci", {".github/workflows/ci.yml": "on: push\njobs: {}\n"})
    env = _env(tmp_path, gh)
    template = str(_pr_template(tmp_path, '["USER:maint", "USER:alice"]'))
    proc = run_casm(["run", "--template", template, "--repo", REPO, "--pr", str(number), "--json"], work, env)
    assert proc.returncode == 3, proc.stderr  # held for approval
    run_id = last_json(proc.stdout)["run_id"]
    (posted,) = _our_comments(gh, number, "pr-sentinel")
    assert "Held for human approval" in posted["body"] and "`casm-approved`" in posted["body"]
    assert "<code>USER:maint</code>" in posted["body"] or "`USER:maint`" in posted["body"]

    instance = _instance(env, monkeypatch)
    resources = {
        "casm": CasmResource(state_dir=env["CASM_STATE_DIR"]),
        "github": GitHubResource(token=env["GITHUB_TOKEN"], api_url=env["GITHUB_API_URL"]),
    }

    def tick(cursor: str | None):
        with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
            return hitl_approval_sensor(context)

    # Someone not on the allowlist adds the label: refused, logged once, nothing launched.
    gh.add_label(REPO, number, "casm-approved", actor="mallory")
    result = tick(None)
    assert result.run_requests == []
    result = tick(result.cursor)
    assert result.run_requests == []
    from casm_dagster.cli.stores import approvals

    store = approvals(instance)
    record = store.latest_for_run(run_id)
    assert record.status == "pending"
    # The PR's author is on the allowlist, but may not approve their own change.
    gh.remove_label(REPO, number, "casm-approved", actor="alice")
    gh.add_label(REPO, number, "casm-approved", actor="alice")
    result = tick(result.cursor)
    assert result.run_requests == [] and store.require(record.request_id).status == "pending"
    refusals = [e for e in store.log_entries(record.request_id) if e.action == "refused"]
    assert [e.actor for e in refusals] == ["mallory", "alice"]
    # The allowlisted maintainer labels it (removing mallory's first, as GitHub records no
    # event for a label already there): approved, and the continuation updates the comment.
    gh.remove_label(REPO, number, "casm-approved", actor="maint")
    gh.add_label(REPO, number, "casm-approved", actor="maint")
    result = tick(result.cursor)
    (request,) = result.run_requests
    assert request.run_key == f"approval:{record.request_id}"
    record = store.require(record.request_id)
    assert (record.status, record.approver) == ("approved", "maint")
    launch_continuation(instance, record.request_id, Path(env["CASM_STATE_DIR"]), progress=False)
    (updated,) = _our_comments(gh, number, "pr-sentinel")
    assert "APPROVED" in updated["body"] and "Approved** by `maint`" in updated["body"]
    assert "Held for human approval" not in updated["body"]
    _no_token_anywhere(tmp_path, proc.stdout, proc.stderr)


def test_pr_sensor_launches_one_run_per_new_head(
    tmp_path: Path, gh: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from casm_dagster.resources import CasmResource, GitHubResource
    from casm_dagster.sensors.sentinel import pr_sensor

    source, first_pr, work = _github_pr(tmp_path, gh, "feature", {"app/core.py": "x = 1\n"})
    env = _env(tmp_path, gh)
    reg = run_casm(["sentinel", "--repo", REPO, "--schedule", "hourly"], work, env)
    assert reg.returncode == 0, reg.stderr
    assert "registered as partition acme__widgets" in reg.stdout
    listed = run_casm(["sentinel", "list", "--json"], work, env)
    (entry,) = json.loads(listed.stdout)
    assert (entry["repo"], entry["schedule"], entry["template"], entry["pr_template"]) == (
        REPO,
        "hourly",
        "repo-auditor",
        "pr-sentinel",
    )
    instance = _instance(env, monkeypatch)
    assert instance.has_dynamic_partition("repos", "acme__widgets")
    resources = {
        "casm": CasmResource(state_dir=env["CASM_STATE_DIR"]),
        "github": GitHubResource(token=env["GITHUB_TOKEN"], api_url=env["GITHUB_API_URL"]),
    }

    def tick(cursor: str | None):
        with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
            return pr_sensor(context)

    result = tick(None)
    (request,) = result.run_requests
    head = gh.pulls(REPO)[0]["head_sha"]
    assert request.run_key == f"pr:acme__widgets:{first_pr}:{head}" and request.partition_key == "acme__widgets"
    assert request.tags["casm/repo"] == REPO
    # Repeated evaluations with the persisted cursor: nothing new, and the polls are free (304).
    used = gh.rate_limit_used
    for _ in range(3):
        result = tick(result.cursor)
        assert result.run_requests == []
    assert gh.rate_limit_used == used
    # A push → exactly one new request for the new head; then quiet again.
    _commit(source, {"app/core.py": "x = 2\n"}, "b")
    gh.push_branch(REPO, "feature", source)
    new_head = gh.update_pr_head(REPO, first_pr)
    result = tick(result.cursor)
    assert [r.run_key for r in result.run_requests] == [f"pr:acme__widgets:{first_pr}:{new_head}"]
    assert tick(result.cursor).run_requests == []
    # A webhook for that same head derives the same run key (Dagster dedupes by it).
    payload = {
        "action": "synchronize",
        "pull_request": {"number": first_pr, "draft": False, "head": {"sha": new_head}},
        "repository": {"full_name": REPO},
        "sender": {"login": "alice"},
    }
    (tmp_path / "hook.json").write_text(json.dumps(payload))
    hook = run_casm(
        ["webhook", "--event", "pull_request", "--payload", str(tmp_path / "hook.json"), "--delivery-id", "d-1"],
        work,
        env,
    )
    assert hook.returncode == 0, hook.stderr
    (derived,) = json.loads(hook.stdout)
    assert derived["run_key"] == f"pr:acme__widgets:{first_pr}:{new_head}" and derived["queued"] is True
    webhook_result = tick(result.cursor)
    assert [r.run_key for r in webhook_result.run_requests] == [derived["run_key"]]
    assert webhook_result.run_requests[0].tags["casm/trigger"] == "webhook:pull_request"
    # A closed PR needs nothing; a malformed payload is a clear error.
    (tmp_path / "closed.json").write_text(json.dumps({**payload, "action": "closed"}))
    closed = run_casm(["webhook", "--event", "pull_request", "--payload", str(tmp_path / "closed.json")], work, env)
    assert closed.returncode == 0 and json.loads(closed.stdout) == []
    (tmp_path / "bad.json").write_text(json.dumps({"action": "opened"}))
    bad = run_casm(["webhook", "--event", "pull_request", "--payload", str(tmp_path / "bad.json")], work, env)
    assert bad.returncode == 2 and "missing 'repository.full_name'" in bad.stderr


def test_comment_approval_from_a_webhook_is_confirmed_on_github(tmp_path: Path, gh: FakeGitHub) -> None:
    # The default branch's .casm.yaml switches this repo to approval by comment.
    _, number, work = _github_pr(
        tmp_path,
        gh,
        "deps",
        {"package.json": '{"dependencies": {"left-pad": "1.3.0"}}\n'},
        settings="hitl:\n  mode: github_comment\n",
    )
    env = _env(tmp_path, gh)
    template = str(_pr_template(tmp_path))
    held = run_casm(["run", "--template", template, "--repo", REPO, "--pr", str(number), "--json"], work, env)
    assert held.returncode == 3, held.stderr
    (posted,) = _our_comments(gh, number, "pr-sentinel")
    assert "comments matching" in posted["body"]

    def deliver(author: str, body: str) -> dict:
        comment_id = gh.add_comment(REPO, number, body, author=author)
        (created,) = [c for c in gh.comments(REPO, number) if c["id"] == comment_id]
        payload = {
            "action": "created",
            "issue": {"number": number, "pull_request": {"url": "x"}},
            "comment": {
                "id": comment_id,
                "body": body,
                "user": {"login": author},
                "created_at": created["created_at"].isoformat().replace("+00:00", "Z"),
            },
            "repository": {"full_name": REPO},
        }
        path = tmp_path / f"comment-{comment_id}.json"
        path.write_text(json.dumps(payload))
        proc = run_casm(["webhook", "--event", "issue_comment", "--payload", str(path)], work, env)
        assert proc.returncode == 0, proc.stderr
        (record,) = json.loads(proc.stdout)
        return record

    # A forged payload (the comment does not exist on GitHub as claimed) approves nothing.
    forged = {
        "action": "created",
        "issue": {"number": number, "pull_request": {"url": "x"}},
        "comment": {"body": "/casm approve trust me", "user": {"login": "maint"}, "created_at": "2099-01-01T00:00:00Z"},
        "repository": {"full_name": REPO},
    }
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    proc = run_casm(["webhook", "--event", "issue_comment", "--payload", str(tmp_path / "forged.json")], work, env)
    assert json.loads(proc.stdout)[0]["requests"][0]["outcome"] != "approved"
    assert deliver("maint", "looks fine")["requests"][0]["outcome"] == "not_an_approval"  # no /casm approve
    record = deliver("maint", "/casm approve reviewed the dependency")
    assert record["requests"][0]["outcome"] == "approved", record
    assert "reviewed the dependency" in record["requests"][0]["detail"]


# ---------------------------------------------------------------- the GitHub Action (action.yml)


def _action(tmp_path: Path, gh: FakeGitHub, event: str, payload: dict, **inputs: str) -> tuple[int, dict, str]:
    """The action's run step as GitHub Actions runs it: its environment, its outputs file."""
    runner = tmp_path / "runner-temp"
    runner.mkdir(exist_ok=True)
    (runner / "event.json").write_text(json.dumps(payload))
    outputs = runner / "outputs"
    env = _env(tmp_path, gh) | {
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_EVENT_NAME": event,
        "GITHUB_EVENT_PATH": str(runner / "event.json"),
        "GITHUB_OUTPUT": str(outputs),
        "RUNNER_TEMP": str(runner),
        **{f"INPUT_{k.upper()}": v for k, v in inputs.items()},
    }
    work = tmp_path / "workspace"
    work.mkdir(exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "casm_dagster.github.action"], cwd=work, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    written = dict(line.split("=", 1) for line in outputs.read_text().splitlines()) if outputs.exists() else {}
    _no_token_anywhere(tmp_path, proc.stdout, proc.stderr)
    return proc.returncode, written, proc.stderr


def test_the_action_reviews_a_pull_request_and_writes_sarif(tmp_path: Path, gh: FakeGitHub) -> None:
    _, number, _ = _github_pr(tmp_path, gh, "feature", {"app/core.py": "import os\ndef add(a, b):\n    return a + b\n"})
    code, outputs, stderr = _action(
        tmp_path, gh, "pull_request", {"pull_request": {"number": number}}, approvers="USER:maint", budget_usd="1"
    )
    assert code == 0, stderr
    assert outputs["mode"] == "review" and outputs["status"] == "succeeded" and outputs["run-id"]
    (comment,) = _our_comments(gh, number, "pr-sentinel")
    assert "F401" in comment["body"]
    log = json.loads(Path(outputs["sarif-file"]).read_text())
    validate_sarif(log)
    (run,) = log["runs"]
    assert run["automationDetails"]["id"].startswith("casm/pr-sentinel")
    assert any(r["ruleId"] == "ruff/F401" for r in run["results"])
    template = (tmp_path / "runner-temp" / "pr-sentinel.action.yaml").read_text()
    assert "USER:maint" in template  # the approvers input reached the template the run used


def test_the_action_audits_on_other_events_with_its_inputs(tmp_path: Path) -> None:
    """Audit mode's invocation (the audit itself through GitHub mode is the first test of this
    module): repo-auditor on the repository, no PR, the inputs passed as flags."""
    from casm_dagster.github.action import plan

    env = {"GITHUB_REPOSITORY": REPO, "GITHUB_EVENT_NAME": "schedule", "INPUT_BUDGET_USD": "2.00"}
    invocation = plan(env | {"INPUT_PROOF_MODE": "true"}, tmp_path)
    assert invocation.mode == "audit" and invocation.template_file is None
    args = invocation.args
    assert args[args.index("--template") + 1] == "repo-auditor" and "--pr" not in args
    assert args[args.index("--repo") + 1] == REPO and args[args.index("--sarif") + 1] == str(tmp_path / "casm.sarif")
    assert args[args.index("--budget-usd") + 1] == "2.00" and args[args.index("--proof-mode") + 1] == "true"
    assert args[args.index("--artifacts-dir") + 1] == str(tmp_path / "casm-artifacts")


@pytest.mark.parametrize(
    ("event", "payload", "inputs", "message"),
    [
        ("push", {}, {"mode": "review"}, "mode review needs a pull_request event"),
        ("pull_request", {"pull_request": {"number": 1}}, {"approvers": "maint"}, "'maint' is not USER:<login>"),
        ("schedule", {}, {"template": "pr-sentinel"}, "does not fit mode audit"),
        ("schedule", {}, {"mode": "sometimes"}, "'sometimes' is not auto, audit or review"),
    ],
)
def test_the_action_refuses_bad_inputs_in_one_line(
    tmp_path: Path, gh: FakeGitHub, event: str, payload: dict, inputs: dict, message: str
) -> None:
    code, outputs, stderr = _action(tmp_path, gh, event, payload, **inputs)
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert gh.requests == [] and outputs == {}


def test_action_yml_runs_the_step_these_tests_run() -> None:
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    steps = {s.get("id") or s.get("name"): s for s in action["runs"]["steps"]}
    assert steps["casm"]["run"] == "python -m casm_dagster.github.action"
    mapped = {
        k.removeprefix("INPUT_").lower().replace("_", "-") for k in steps["casm"]["env"] if k.startswith("INPUT_")
    }
    assert mapped == {"mode", "template", "budget-usd", "proof-mode", "approvers"} <= set(action["inputs"])
    for workflow in (ROOT / "infra" / "github" / "workflows").glob("*.yml"):
        uses = [
            s.get("uses", "") for job in yaml.safe_load(workflow.read_text())["jobs"].values() for s in job["steps"]
        ]
        assert any(u.endswith("/casm@v1") or u == "./" for u in uses), workflow.name  # the examples use the action
