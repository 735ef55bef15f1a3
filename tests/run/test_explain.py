"""casm_dagster.run.explain + journal: events.jsonl / state.json, and the story told from them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from casm_dagster.contracts.events import RunEvent
from casm_dagster.contracts.run import RunSpec, RunState
from casm_dagster.errors import RunNotFoundError
from casm_dagster.run.explain import explain, explain_run, run_dir_for
from casm_dagster.run.ids import is_ulid, new_ulid
from casm_dagster.run.journal import Journal, read_events
from casm_dagster.run.spec import build_spec
from casm_dagster.run.templates import load_template
from casm_dagster.safety.gitops import inspect_repo

RUN_ID = "01JDQ7ZK6Y3M8N9P0QRSTVWXYZ"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "target"
    path.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", "-C", str(path)]
    subprocess.run([*git, "init", "--quiet", "--initial-branch=main"], check=True, capture_output=True)
    (path / "app.py").write_text("x = 1\n", encoding="utf-8")
    subprocess.run([*git, "add", "app.py"], check=True, capture_output=True)
    subprocess.run([*git, "commit", "--quiet", "-m", "init"], check=True, capture_output=True)
    return path


def _spec(repo: Path, state_dir: Path, run_id: str = RUN_ID, template: str = "repo-auditor") -> RunSpec:
    info = inspect_repo(repo)
    return build_spec(load_template(template), str(repo), info, state_dir, state_dir / "artifacts", run_id=run_id)


def _successful_run(journal: Journal) -> None:
    journal.emit("run_started", "repo-auditor on target", seed=0)
    journal.emit("stage_started", "reading the repository", stage="ingest")
    journal.emit("stage_completed", "1 file at abc1234", stage="ingest")
    journal.emit("stage_started", "running analysers", stage="analyze")
    journal.decision("analyze", "skip_analyser", "bandit skipped: no Python files", analyser="bandit")
    journal.emit("stage_completed", "3 findings", stage="analyze")
    journal.emit("stage_started", "planning", stage="plan")
    journal.emit("stage_completed", "2 patch groups", stage="plan")
    journal.emit("stage_started", "applying", stage="apply")
    journal.emit("stage_completed", "2 commits", stage="apply")
    journal.emit("stage_started", "validating", stage="validate")
    journal.decision("validate", "reject_group", "ruff-F401 broke `npm test`", group="ruff-F401")
    journal.emit("stage_completed", "1 accepted, 1 rejected", stage="validate")
    journal.emit("stage_skipped", "nothing to report", stage="report")
    journal.emit("run_completed", "branch casm/repo-auditor/x")


EXPECTED = f"""run {RUN_ID}
  repo-auditor on target (seed 0)

stages:
  ingest    completed 1 file at abc1234
  analyze   completed 3 findings
  plan      completed 2 patch groups
  apply     completed 2 commits
  validate  completed 1 accepted, 1 rejected
  report    skipped   nothing to report

decisions:
  [analyze] skip_analyser: bandit skipped: no Python files
  [validate] reject_group: ruff-F401 broke `npm test`

outcome: succeeded (branch casm/repo-auditor/x)
events: 15
"""


def test_spec_is_built_from_template_and_repo(repo: Path, tmp_path: Path) -> None:
    spec = _spec(repo, tmp_path / "state")
    assert spec.run_id == RUN_ID
    assert spec.template_id == "repo-auditor"
    assert spec.workflow == "repo_auditor_v1"
    assert spec.stages == [
        "ingest",
        "forecast",
        "analyze",
        "plan",
        "policy",
        "apply",
        "validate",
        "report",
        "telemetry",
    ]
    assert spec.repo_path == str(repo.resolve())
    assert spec.run_dir == (tmp_path / "state").resolve() / "runs" / RUN_ID
    assert spec.partition_key.startswith("local__target__")
    assert spec.effective_config.run.seed == 0


def test_explain_twice_is_byte_identical_and_tells_the_story(repo: Path, tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    _successful_run(Journal(_spec(repo, state_dir)))
    first = explain_run(state_dir, RUN_ID)
    second = explain_run(state_dir, RUN_ID)
    assert first.encode() == second.encode()
    assert first == EXPECTED


def test_explain_does_not_depend_on_timestamps(repo: Path, tmp_path: Path) -> None:
    _successful_run(Journal(_spec(repo, tmp_path / "one")))
    events = read_events(_spec(repo, tmp_path / "one").run_dir)
    shifted = [e.model_copy(update={"ts": "2000-01-01T00:00:00.000Z"}) for e in events]
    assert explain(shifted) == explain(events) == EXPECTED


def test_events_file_is_gap_free_jsonl(repo: Path, tmp_path: Path) -> None:
    spec = _spec(repo, tmp_path / "state")
    seen: list[RunEvent] = []
    journal = Journal(spec, listener=seen.append)
    _successful_run(journal)
    lines = (spec.run_dir / "events.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 15
    records = [json.loads(line) for line in lines]
    assert [r["seq"] for r in records] == list(range(1, 16))
    assert {r["run_id"] for r in records} == {RUN_ID}
    assert all(r["ts"].endswith("Z") for r in records)
    assert records[4]["type"] == "decision"
    assert records[4]["data"] == {"decision": "skip_analyser", "analyser": "bandit"}
    assert [e.seq for e in seen] == list(range(1, 16))  # the listener saw every event


def test_state_json_reflects_a_successful_run(repo: Path, tmp_path: Path) -> None:
    spec = _spec(repo, tmp_path / "state")
    journal = Journal(spec)
    journal.emit("run_started", "go", seed=0)
    state = json.loads((spec.run_dir / "state.json").read_text(encoding="utf-8"))
    assert state["status"] == "running"
    assert state["stages"] == {s: "pending" for s in spec.stages}
    journal.emit("stage_started", "reading", stage="ingest")
    state = json.loads((spec.run_dir / "state.json").read_text(encoding="utf-8"))
    assert state["stages"]["ingest"] == "running"
    _successful_run(journal)
    state = RunState.model_validate_json((spec.run_dir / "state.json").read_text(encoding="utf-8"))
    assert state.status == "succeeded"
    assert state.stages == {
        "ingest": "completed",
        "forecast": "pending",
        "analyze": "completed",
        "plan": "completed",
        "policy": "pending",
        "apply": "completed",
        "validate": "completed",
        "report": "skipped",
        "telemetry": "pending",
    }
    assert state.error is None
    assert state.finished_at is not None and state.finished_at.endswith("Z")
    assert state.template_id == "repo-auditor"
    assert state.partition_key == spec.partition_key
    assert not list(spec.run_dir.glob(".*.tmp"))  # atomic writes leave no temp files


def test_state_json_and_explain_for_a_failed_run(repo: Path, tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    spec = _spec(repo, state_dir, template="noop")
    journal = Journal(spec)
    journal.emit("run_started", "noop on target", seed=7)
    journal.emit("stage_started", "reading", stage="ingest")
    journal.emit("stage_failed", "git ls-tree failed", stage="ingest")
    journal.emit("run_failed", "stage ingest failed")
    state = json.loads((spec.run_dir / "state.json").read_text(encoding="utf-8"))
    assert state["status"] == "failed"
    assert state["stages"] == {"ingest": "failed", "report": "pending"}
    assert state["error"] == "git ls-tree failed"  # the first cause, not the run-level summary
    assert state["finished_at"]
    assert explain_run(state_dir, RUN_ID) == (
        f"run {RUN_ID}\n"
        "  noop on target (seed 7)\n"
        "\n"
        "stages:\n"
        "  ingest    failed    git ls-tree failed\n"
        "\n"
        "decisions: none\n"
        "\n"
        "outcome: failed (stage ingest failed)\n"
        "events: 4\n"
    )


def test_unfinished_run_is_called_unfinished(repo: Path, tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    journal = Journal(_spec(repo, state_dir))
    journal.emit("run_started", "go", seed=0)
    journal.emit("stage_started", "reading", stage="ingest")
    text = explain_run(state_dir, RUN_ID)
    assert "  ingest    started   reading\n" in text
    assert "outcome: unfinished (no run_completed or run_failed event" in text
    state = json.loads((journal.state_path).read_text(encoding="utf-8"))
    assert state["status"] == "running"
    assert state["finished_at"] is None


def test_reopened_journal_continues_numbering_and_state(repo: Path, tmp_path: Path) -> None:
    spec = _spec(repo, tmp_path / "state")
    first = Journal(spec)
    first.emit("run_started", "go", seed=0)
    first.emit("stage_completed", "done", stage="ingest")
    second = Journal(spec)
    assert second.state.stages["ingest"] == "completed"
    event = second.emit("stage_completed", "done", stage="analyze")
    assert event.seq == 3
    assert [e.seq for e in read_events(spec.run_dir)] == [1, 2, 3]


def test_corrupted_events_line_names_the_line(repo: Path, tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    spec = _spec(repo, state_dir)
    _successful_run(Journal(spec))
    path = spec.run_dir / "events.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[6] = lines[6][: len(lines[6]) // 2]  # a torn write on line 7
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(RunNotFoundError) as info:
        explain_run(state_dir, RUN_ID)
    assert str(info.value).startswith(f"{path}:7: corrupt event line")


def test_event_line_violating_the_contract_is_corrupt(repo: Path, tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    spec = _spec(repo, state_dir)
    Journal(spec).emit("run_started", "go", seed=0)
    path = spec.run_dir / "events.jsonl"
    bad = {"seq": 2, "run_id": RUN_ID, "ts": "x", "type": "decision", "message": "no stage"}
    with path.open("a", encoding="utf-8") as handle:
        handle.write("\n" + json.dumps(bad) + "\n")  # a blank line is tolerated, the event is not
    with pytest.raises(RunNotFoundError) as info:
        explain_run(state_dir, RUN_ID)
    assert f"{path}:3: corrupt event line" in str(info.value)
    assert "needs a stage" in str(info.value)


def test_unknown_run_id(tmp_path: Path) -> None:
    other = new_ulid()
    assert is_ulid(other)
    with pytest.raises(RunNotFoundError) as info:
        explain_run(tmp_path, other)
    assert str(info.value) == f"no run {other} under {tmp_path / 'runs'}"


@pytest.mark.parametrize("bad", ["last", "123", RUN_ID.lower(), RUN_ID + "0", "01JDQ7ZK6Y3M8N9P0QRSTVWXYU", "../runs"])
def test_non_ulid_run_id(tmp_path: Path, bad: str) -> None:
    with pytest.raises(RunNotFoundError) as info:
        run_dir_for(tmp_path, bad)
    assert str(info.value) == f"not a CASM run id (expected a 26-character ULID): {bad!r}"


def test_run_id_with_trailing_newline_is_not_a_ulid(tmp_path: Path) -> None:
    # `$` in a Python regex also matches before a final newline: a 27-character id must not pass.
    assert is_ulid(RUN_ID + "\n") is False
    with pytest.raises(RunNotFoundError) as info:
        run_dir_for(tmp_path, RUN_ID + "\n")
    assert str(info.value).startswith("not a CASM run id")


def test_run_dir_without_events(tmp_path: Path) -> None:
    (tmp_path / "runs" / RUN_ID).mkdir(parents=True)
    with pytest.raises(RunNotFoundError, match="no events for this run"):
        explain_run(tmp_path, RUN_ID)


def test_explain_of_no_events() -> None:
    assert explain([]) == "no events recorded\n"
