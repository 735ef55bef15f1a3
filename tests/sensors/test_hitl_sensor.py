"""``hitl_approval_sensor`` and ``hitl_continuation_job`` on a real Dagster instance.

Gated runs are launched in-process (``launcher.launch_audit``, the code path ``casm run``
takes) on real git repos; ticks are evaluated with the resources the code server would
bind; the requested continuation is executed for real (no daemon in tests).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from helpers import ROOT, RUFF_TOML, SMOKE_TEST, git, make_repo

from casm_dagster.cli.launch import LaunchResult, launch_audit, prepare
from casm_dagster.cli.stores import approvals
from casm_dagster.contracts.run import RunState
from casm_dagster.definitions import defs
from casm_dagster.policy import hitl
from casm_dagster.run.templates import load_template
from casm_dagster.stores.approvals import APPROVED, DENIED, EXPIRED, PENDING, ApprovalRecord, ApprovalStore
from casm_dagster.stores.db import approvals_table

GATED_FILES = {
    "ruff.toml": RUFF_TOML,
    "tests/test_smoke.py": SMOKE_TEST,
    "auth/login.py": "import os\n\n\ndef login(user):\n    return user\n",
    "app.py": "import sys\n\n\ndef main():\n    return 1\n",
}
SENSOR = defs.resolve_sensor_def("hitl_approval_sensor")
JOB = defs.resolve_job_def("hitl_continuation_job")


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def tick(instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    """One full tick, with the top-level resources bound the way the code server binds them."""
    resources = defs.get_repository_def().get_top_level_resources()
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs, resources=resources)
    return SENSOR.evaluate_tick(context)


class Gated:
    def __init__(self, instance: dg.DagsterInstance, base: Path, template_ref: str = "repo-auditor") -> None:
        self.repo = make_repo(base / "repo", GATED_FILES)
        self.base_commit = git(self.repo, "rev-parse", "HEAD")
        template = load_template(template_ref)
        prepared = prepare(
            instance, template, template_ref, str(self.repo), self.repo, base / "state", base / "artifacts", 0,
            progress=False, options=None, github=None,
        )  # fmt: skip
        self.launch: LaunchResult = launch_audit(instance, prepared, str(self.repo), base / "state")
        assert self.launch.state is not None and self.launch.state.status == "awaiting_approval", self.launch.state
        self.store: ApprovalStore = approvals(instance)
        self.record: ApprovalRecord = hitl.require_request(self.store, self.launch.run_id)

    @property
    def branch(self) -> str:
        return f"casm/repo-auditor/{self.launch.run_id}"

    def state(self) -> RunState:
        return RunState.model_validate_json((self.launch.run_dir / "state.json").read_text())

    def fresh(self) -> ApprovalRecord:
        return self.store.require(self.record.request_id)


@pytest.fixture
def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.DagsterInstance]:
    monkeypatch.chdir(tmp_path)  # CasmResource's default state_dir (.casm) must not land in the repo
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def gated(instance: dg.DagsterInstance, tmp_path: Path) -> Gated:
    return Gated(instance, tmp_path)


def synthetic_request(store: ApprovalStore, n: int, tmp_path: Path, created: datetime, expires: datetime) -> str:
    """A request whose run dir does not exist (enough for the sensor, which reads only the store)."""
    request_id = f"SYN{n:023d}"
    store.create(
        request_id=request_id,
        run_id=f"RUN{n:023d}",
        repo="/nowhere",
        partition_key="local__nowhere__00000000",
        template_id="repo-auditor",
        state_dir=str(tmp_path / "no-state"),
        mode="local",
        approvers=[],
        plan_sha256="a" * 64,
        ruleset_id="default.devtools",
        ruleset_sha256="b" * 64,
        packet={"status": "gate", "scope": {"allow_files": []}},
        created_at=iso(created),
        expires_at=iso(expires),
    )
    return request_id


def test_an_approval_is_requested_once(instance: dg.DagsterInstance, gated: Gated) -> None:
    pending = tick(instance, None)
    assert pending.run_requests == []
    assert gated.fresh().status == PENDING

    hitl.decide(gated.store, gated.record, APPROVED, "alice", "reviewed the packet", via="local")
    first = tick(instance, pending.cursor)
    assert len(first.run_requests) == 1
    request = first.run_requests[0]
    assert request.run_key == f"approval:{gated.record.request_id}"
    assert request.tags["casm/run_id"] == gated.launch.run_id
    assert request.tags["casm/hitl_request"] == gated.record.request_id
    assert request.tags["casm/partition"] == gated.record.partition_key
    assert request.run_config["ops"] == {"continue_approved_run": {"config": {"request_id": gated.record.request_id}}}
    assert int(first.cursor) > int(pending.cursor or 0)

    again = tick(instance, first.cursor)
    assert again.run_requests == [] and again.cursor == first.cursor
    # Nothing was applied by the sensor itself: it only requests the run.
    assert gated.fresh().consumed_at is None
    assert git(gated.repo, "branch", "--list", gated.branch) == ""


def test_the_requested_continuation_applies_the_plan_once(instance: dg.DagsterInstance, gated: Gated) -> None:
    hitl.decide(gated.store, gated.record, APPROVED, "alice", "reviewed the packet", via="local")
    result = tick(instance, None)
    (request,) = result.run_requests

    first = JOB.execute_in_process(run_config=request.run_config, instance=instance, tags=request.tags)
    assert first.success
    record = gated.fresh()
    assert record.consumed_at is not None
    assert record.continuation_run_id == first.run_id
    assert record.outcome == f"applied: delivered, branch {gated.branch}"
    tip = git(gated.repo, "rev-parse", "--verify", gated.branch)
    assert git(gated.repo, "rev-list", "--count", f"{gated.base_commit}..{gated.branch}") == "1"
    assert git(gated.repo, "diff", "--name-only", gated.base_commit, gated.branch) == "app.py"  # packet scope
    assert gated.state().status == "succeeded" and gated.state().branch == gated.branch
    assert instance.get_run_by_id(first.run_id).tags["casm/hitl"] == "applied"

    partition = gated.record.partition_key
    for key in ("applied_patches", "validation_result", "audit_report"):
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(key), asset_partitions=[partition]), limit=10
        ).records
        from_continuation = [r for r in records if r.run_id == first.run_id]
        assert len(from_continuation) == 1, key
        metadata = from_continuation[0].asset_materialization.metadata
        assert metadata["hitl_request_id"].value == gated.record.request_id
        assert metadata["casm_run_id"].value == gated.launch.run_id
    report = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("audit_report"), asset_partitions=[partition]), limit=10
    ).records
    assert [r for r in report if r.run_id == first.run_id][0].asset_materialization.metadata[
        "branch"
    ].value == gated.branch

    # The same run request executed again (a duplicate launch) applies nothing.
    second = JOB.execute_in_process(run_config=request.run_config, instance=instance, tags=request.tags)
    assert second.success
    messages = [e.user_message for e in instance.all_logs(second.run_id)]
    assert any("already consumed" in m for m in messages), messages
    assert git(gated.repo, "rev-parse", gated.branch) == tip
    assert git(gated.repo, "rev-list", "--count", f"{gated.base_commit}..{gated.branch}") == "1"
    assert gated.fresh().continuation_run_id == first.run_id
    assert not any(
        r.run_id == second.run_id
        for r in instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("applied_patches"), asset_partitions=[partition]), limit=10
        ).records
    )
    assert "casm/hitl" not in instance.get_run_by_id(second.run_id).tags

    # A reset cursor finds the approval again, but it is consumed: no new request.
    assert tick(instance, None).run_requests == []

    # The user's working tree was never touched.
    assert git(gated.repo, "status", "--porcelain") == ""
    assert git(gated.repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert git(gated.repo, "rev-parse", "HEAD") == gated.base_commit


def test_a_denied_request_is_never_requested(instance: dg.DagsterInstance, tmp_path: Path) -> None:
    store = approvals(instance)
    now = datetime.now(UTC)
    request_id = synthetic_request(store, 1, tmp_path, now, now + timedelta(hours=72))
    hitl.decide(store, store.require(request_id), DENIED, "alice", "not this one", via="local")
    assert tick(instance, None).run_requests == []
    assert store.require(request_id).status == DENIED


def test_an_overdue_request_is_expired_by_the_tick(
    instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = (ROOT / "templates" / "repo-auditor" / "manifest.yaml").read_text()
    assert "    mode: local\n" in manifest
    template_dir = tmp_path / "template"
    template_dir.mkdir()
    (template_dir / "manifest.yaml").write_text(
        manifest.replace("    mode: local\n", "    mode: local\n    expires_after_hours: 0.0001\n")
    )
    gated = Gated(instance, tmp_path, str(template_dir / "manifest.yaml"))
    # 0.0001 h is 0.36 s: wait for the deadline itself, not for another process.
    deadline = datetime.fromisoformat(gated.record.expires_at.replace("Z", "+00:00"))
    while datetime.now(UTC) <= deadline:
        time.sleep(0.05)

    result = tick(instance, None)
    assert result.run_requests == []
    record = gated.fresh()
    assert record.status == EXPIRED and record.approver == "casm"
    assert gated.state().status == "expired"
    # Expired once: the next tick has nothing to do, and the request cannot be approved now.
    assert tick(instance, result.cursor).run_requests == []
    with pytest.raises(hitl.ApprovalError, match="already expired"):
        hitl.decide(gated.store, record, APPROVED, "alice", "too late", via="local")


def test_a_missed_approval_is_swept_up_until_a_continuation_run_exists(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    store = approvals(instance)
    now = datetime.now(UTC)
    request_id = synthetic_request(store, 2, tmp_path, now - timedelta(hours=1), now + timedelta(hours=72))
    hitl.decide(
        store, store.require(request_id), APPROVED, "alice", "ok", via="local", now=iso(now - timedelta(minutes=20))
    )
    # A cursor past the approval (e.g. a commit that landed behind it): the sweep still finds it.
    with store.engine.connect() as conn:
        top = conn.execute(sa.select(sa.func.max(approvals_table.c.id))).scalar_one()
    beyond = str(10_000 + top)
    (request,) = tick(instance, beyond).run_requests
    assert request.run_key == f"approval:{request_id}"

    # Once a continuation run carries the request's tag, the sweep leaves it alone.
    JOB.execute_in_process(run_config=request.run_config, instance=instance, tags=request.tags, raise_on_error=False)
    assert tick(instance, beyond).run_requests == []


def test_an_approved_run_ends_with_telemetry_and_reconciles_its_cost(
    instance: dg.DagsterInstance, gated: Gated
) -> None:
    """The continuation runs apply → validate → report → telemetry: the approved run's
    run_cost is materialized and its summary reconciles with the recorded calls."""
    from casm_dagster.cost.run_cost import SUMMARY_FILE
    from casm_dagster.llm.telemetry import calls_for_run

    hitl.decide(gated.store, gated.record, APPROVED, "alice", "reviewed the packet", via="local")
    (request,) = tick(instance, None).run_requests
    run = JOB.execute_in_process(run_config=request.run_config, instance=instance, tags=request.tags)
    assert run.success
    state = gated.state()
    assert state.status == "succeeded"
    assert state.stages["telemetry"] == "completed", state.stages
    events = [e for e in (gated.launch.run_dir / "events.jsonl").read_text().splitlines() if '"telemetry"' in e]
    assert any('"stage_completed"' in e for e in events), events

    (record,) = [
        r
        for r in instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("run_cost"), asset_partitions=[gated.record.partition_key]),
            limit=10,
        ).records
        if r.run_id == run.run_id
    ]
    metadata = record.asset_materialization.metadata
    assert metadata["casm_run_id"].value == gated.launch.run_id
    summary = __import__("json").loads((gated.launch.run_dir / SUMMARY_FILE).read_text())
    calls = calls_for_run(gated.store.engine, gated.launch.run_id)
    assert metadata["calls"].value == summary["calls"]["count"] == len(calls)
    assert metadata["run_cost_usd"].value == float(summary["totals"]["run_cost_usd"])
