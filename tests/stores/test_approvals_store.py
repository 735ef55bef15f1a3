"""ApprovalStore and the HITL rules, on SQLite and on the real PostgreSQL server.

Every state change of an approval is one guarded UPDATE: these tests race real threads
against real databases to check that exactly one of them wins.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from casm_dagster.contracts.manifest import DEFAULT_APPROVAL_COMMENT
from casm_dagster.policy import hitl
from casm_dagster.stores.approvals import APPROVED, DENIED, EXPIRED, PENDING, ApprovalRecord, ApprovalStore
from casm_dagster.stores.db import engine_for

T0 = "2026-01-01T00:00:00.000Z"
T1 = "2026-01-01T01:00:00.000Z"
T2 = "2026-01-01T02:00:00.000Z"
T3 = "2026-01-01T03:00:00.000Z"
LATER = "2026-01-04T00:00:00.000Z"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ApprovalStore]:
    if request.param == "sqlite":
        engine = engine_for(f"sqlite:///{tmp_path / 'casm.db'}")
    else:
        db = request.getfixturevalue("pg_database")
        engine = engine_for(f"postgresql+psycopg2://{db['user']}@{db['host']}:{db['port']}/{db['db']}")
    yield ApprovalStore(engine)
    engine.dispose()


@pytest.fixture
def make(store: ApprovalStore, tmp_path: Path) -> Callable[..., ApprovalRecord]:
    """Creates pending requests; their state_dir holds no run, so no journal is written."""
    counter = iter(range(1, 1000))

    def _make(expires_at: str = LATER, approvers: list[str] | None = None, mode: str = "local") -> ApprovalRecord:
        n = next(counter)
        return store.create(
            request_id=f"REQ{n:023d}",
            run_id=f"RUN{n:023d}",
            repo="/srv/repo",
            partition_key="local__repo__0123abcd",
            template_id="repo-auditor",
            state_dir=str(tmp_path / "no-state"),
            mode=mode,
            approvers=approvers or [],
            plan_sha256="a" * 64,
            ruleset_id="default.devtools",
            ruleset_sha256="b" * 64,
            packet={"status": "gate", "reason_codes": ["PATH_SENSITIVE_HIGH"], "scope": {"allow_files": ["app.py"]}},
            created_at=T0,
            expires_at=expires_at,
        )

    return _make


def _race(n: int, fn: Callable[[int], bool]) -> list[bool]:
    """Run ``fn(i)`` in ``n`` threads released at the same moment; their results in order."""
    barrier = threading.Barrier(n)
    results: list[bool | BaseException | None] = [None] * n

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(i)
        except BaseException as exc:  # surfaced below, with the thread's index
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for i, result in enumerate(results):
        assert isinstance(result, bool), f"thread {i}: {result!r}"
    return results  # type: ignore[return-value]


# --- the store ---------------------------------------------------------------------------


def test_create_stores_a_pending_request_and_logs_it(store: ApprovalStore, make) -> None:
    record = make(approvers=["USER:alice"])
    assert record.status == PENDING and record.approver is None and record.consumed_at is None
    assert record.approvers == ["USER:alice"]
    assert record.packet["scope"] == {"allow_files": ["app.py"]}
    assert store.latest_for_run(record.run_id) == record
    assert [(e.action, e.actor) for e in store.log_entries(record.request_id)] == [("requested", "casm")]
    assert store.list(PENDING) == [record] and store.list(APPROVED) == []


def test_a_request_is_decided_once(store: ApprovalStore, make) -> None:
    record = make()
    assert store.decide(record.request_id, APPROVED, "alice", "looks right", "packet", T1) is True
    assert store.decide(record.request_id, DENIED, "bob", "no", None, T2) is False
    assert store.decide(record.request_id, APPROVED, "bob", "again", "full", T2) is False
    fresh = store.require(record.request_id)
    assert (fresh.status, fresh.approver, fresh.reason, fresh.scope, fresh.decided_at) == (
        APPROVED,
        "alice",
        "looks right",
        "packet",
        T1,
    )
    assert [e.action for e in store.log_entries(record.request_id)] == ["requested", APPROVED]


def test_claim_succeeds_once(store: ApprovalStore, make) -> None:
    record = make()
    assert store.claim(record.request_id, "dagster-run-1", T1) is False  # pending: nothing to claim
    store.decide(record.request_id, APPROVED, "alice", "ok", "packet", T1)
    assert store.claim(record.request_id, "dagster-run-1", T2) is True
    assert store.claim(record.request_id, "dagster-run-2", T3) is False
    fresh = store.require(record.request_id)
    assert (fresh.consumed_at, fresh.continuation_run_id) == (T2, "dagster-run-1")
    assert [e.action for e in store.log_entries(record.request_id)].count("consumed") == 1


def test_a_denied_request_cannot_be_claimed(store: ApprovalStore, make) -> None:
    record = make()
    store.decide(record.request_id, DENIED, "alice", "too risky", None, T1)
    assert store.claim(record.request_id, "dagster-run-1", T2) is False
    assert store.require(record.request_id).consumed_at is None


def test_racing_claims_have_exactly_one_winner(store: ApprovalStore, make) -> None:
    for _ in range(5):
        record = make()
        store.decide(record.request_id, APPROVED, "alice", "ok", "packet", T1)
        results = _race(4, lambda i, rid=record.request_id: store.claim(rid, f"run-{i}", T2))
        assert results.count(True) == 1, results
        winner = results.index(True)
        assert store.require(record.request_id).continuation_run_id == f"run-{winner}"
        assert [e.action for e in store.log_entries(record.request_id)].count("consumed") == 1


def test_racing_decisions_have_exactly_one_winner(store: ApprovalStore, make) -> None:
    record = make()
    outcomes = [APPROVED, DENIED, APPROVED, DENIED]
    results = _race(4, lambda i: store.decide(record.request_id, outcomes[i], f"user{i}", "why", None, T1))
    assert results.count(True) == 1, results
    winner = results.index(True)
    fresh = store.require(record.request_id)
    assert (fresh.status, fresh.approver) == (outcomes[winner], f"user{winner}")
    assert len(store.log_entries(record.request_id)) == 2  # requested + the one decision


def test_expire_due_marks_only_overdue_pending_requests(store: ApprovalStore, make) -> None:
    overdue = make(expires_at=T1)
    on_time = make(expires_at=T3)
    approved_then_overdue = make(expires_at=T1)
    store.decide(approved_then_overdue.request_id, APPROVED, "alice", "ok", "packet", T0)
    denied_then_overdue = make(expires_at=T1)
    store.decide(denied_then_overdue.request_id, DENIED, "alice", "no", None, T0)

    assert [r.request_id for r in store.due_for_expiry(T2)] == [overdue.request_id]
    expired = hitl.expire_due(store, now=T2)
    assert [r.request_id for r in expired] == [overdue.request_id]
    statuses = {r.request_id: r.status for r in store.list()}
    assert statuses == {
        overdue.request_id: EXPIRED,
        on_time.request_id: PENDING,
        approved_then_overdue.request_id: APPROVED,
        denied_then_overdue.request_id: DENIED,
    }
    assert store.require(overdue.request_id).approver == "casm"
    assert hitl.expire_due(store, now=T2) == []  # once


def test_approvals_after_follows_the_log_in_order(store: ApprovalStore, make) -> None:
    first, second, third, fourth = make(), make(), make(), make()
    store.decide(third.request_id, APPROVED, "alice", "ok", "packet", T1)
    store.decide(second.request_id, DENIED, "alice", "no", None, T1)
    store.decide(first.request_id, APPROVED, "bob", "ok", "full", T2)
    store.log(fourth.request_id, T2, "mallory", "refused", "not on the allowlist")

    found = store.approvals_after(0)
    assert [r.request_id for _, r in found] == [third.request_id, first.request_id]  # decision order
    log_ids = [log_id for log_id, _ in found]
    assert log_ids == sorted(log_ids) and len(set(log_ids)) == 2
    assert all(r.status == APPROVED for _, r in found)
    assert found[1][1].scope == "full"

    assert [r.request_id for _, r in store.approvals_after(log_ids[0])] == [first.request_id]
    assert store.approvals_after(log_ids[1]) == []
    assert [r.request_id for _, r in store.approvals_after(0, limit=1)] == [third.request_id]

    store.decide(fourth.request_id, APPROVED, "carol", "ok", "packet", T3)
    later = store.approvals_after(log_ids[1])
    assert [r.request_id for _, r in later] == [fourth.request_id] and later[0][0] > log_ids[1]


def test_unconsumed_approvals_older_than_the_cutoff(store: ApprovalStore, make) -> None:
    early, late, consumed = make(), make(), make()
    store.decide(early.request_id, APPROVED, "alice", "ok", "packet", T1)
    store.decide(late.request_id, APPROVED, "alice", "ok", "packet", T3)
    store.decide(consumed.request_id, APPROVED, "alice", "ok", "packet", T1)
    store.claim(consumed.request_id, "run-1", T1)
    assert [r.request_id for r in store.unconsumed_approvals(decided_before=T2)] == [early.request_id]


def test_finish_records_the_outcome_without_consuming(store: ApprovalStore, make) -> None:
    record = make()
    store.decide(record.request_id, APPROVED, "alice", "ok", "packet", T1)
    store.finish(record.request_id, "applied: delivered", T2)
    fresh = store.require(record.request_id)
    assert fresh.outcome == "applied: delivered" and fresh.consumed_at is None
    store.finish(record.request_id, "void", T3, consume=True)
    assert store.require(record.request_id).consumed_at == T3


def test_tables_live_beside_each_other_in_one_database(store: ApprovalStore) -> None:
    names = set(sa.inspect(store.engine).get_table_names())
    assert {"casm_hitl_requests", "casm_hitl_log"} <= names


# --- the HITL rules on top of the store --------------------------------------------------


def test_decide_requires_a_reason_and_records_nothing_without_one(store: ApprovalStore, make) -> None:
    record = make()
    for reason in ("", "   "):
        with pytest.raises(hitl.ApprovalError, match="reason is required"):
            hitl.decide(store, record, APPROVED, "alice", reason, via="local", now=T1)
    assert store.require(record.request_id).status == PENDING
    assert [e.action for e in store.log_entries(record.request_id)] == ["requested"]


def test_decide_refuses_and_logs_an_approver_outside_the_allowlist(store: ApprovalStore, make) -> None:
    record = make(approvers=["USER:alice"])
    with pytest.raises(hitl.ApproverRefused, match="bob"):
        hitl.decide(store, record, APPROVED, "bob", "I think it is fine", via="local", now=T1)
    assert store.require(record.request_id).status == PENDING
    refusal = store.log_entries(record.request_id)[-1]
    assert (refusal.action, refusal.actor) == ("refused", "bob")
    assert "I think it is fine" in refusal.detail and "USER:alice" in refusal.detail
    decided = hitl.decide(store, record, APPROVED, "ALICE", "reviewed", via="local", now=T2)
    assert (decided.status, decided.approver, decided.scope) == (APPROVED, "ALICE", "packet")


def test_decide_twice_names_the_first_decision(store: ApprovalStore, make) -> None:
    record = make()
    hitl.decide(store, record, DENIED, "alice", "too risky", via="local", now=T1)
    with pytest.raises(hitl.ApprovalError, match="already denied by alice"):
        hitl.decide(store, store.require(record.request_id), APPROVED, "bob", "ok", via="local", now=T2)
    # A stale record (read before the first decision) loses at the guarded UPDATE.
    with pytest.raises(hitl.ApprovalError, match="decided meanwhile"):
        hitl.decide(store, record, APPROVED, "bob", "ok", via="local", now=T2)
    assert store.require(record.request_id).status == DENIED


def test_decide_after_expiry_expires_the_request(store: ApprovalStore, make) -> None:
    record = make(expires_at=T1)
    with pytest.raises(hitl.ApprovalError, match="expired"):
        hitl.decide(store, record, APPROVED, "alice", "ok", via="local", now=T2)
    assert store.require(record.request_id).status == EXPIRED


def test_decide_through_the_wrong_mode_is_refused(store: ApprovalStore, make) -> None:
    record = make(approvers=["USER:alice"], mode="github_label")
    with pytest.raises(hitl.ApprovalError, match="github_label"):
        hitl.decide(store, record, APPROVED, "alice", "ok", via="local", now=T1)
    assert store.require(record.request_id).status == PENDING


def test_decide_rejects_an_unknown_scope(store: ApprovalStore, make) -> None:
    record = make()
    with pytest.raises(hitl.ApprovalError, match="scope"):
        hitl.decide(store, record, APPROVED, "alice", "ok", via="local", scope="everything", now=T1)
    assert store.require(record.request_id).status == PENDING


def test_scope_is_recorded_for_approvals_only(store: ApprovalStore, make) -> None:
    approved, denied = make(), make()
    assert hitl.decide(store, approved, APPROVED, "a", "ok", via="local", scope="full", now=T1).scope == "full"
    assert hitl.decide(store, denied, DENIED, "a", "no", via="local", scope="full", now=T1).scope is None


@pytest.mark.parametrize(
    ("approver", "orgs", "patterns", "allowed"),
    [
        ("alice", [], ["USER:alice"], True),
        ("Alice", [], ["USER:ALICE"], True),
        ("alice", [], ["USER:bob"], False),
        ("alicex", [], ["USER:alice"], False),
        ("ali", [], ["USER:alice"], False),
        ("carol", ["Acme"], ["ORG:acme"], True),
        ("carol", ["acme-labs"], ["ORG:acme"], False),
        ("carol", [], ["ORG:acme"], False),
        ("acme", [], ["ORG:acme"], False),  # a user named like the org is not a member
        ("bob", ["other"], ["USER:alice", "ORG:OTHER"], True),
        ("alice", [], [], False),
    ],
)
def test_approver_allowed(approver: str, orgs: list[str], patterns: list[str], allowed: bool) -> None:
    assert hitl.approver_allowed(approver, orgs, patterns) is allowed


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("/casm approve looks good", "looks good"),
        ("/casm approve    looks good  ", "looks good"),
        ("Thanks for the fix.\n/casm approve reviewed the auth change", "reviewed the auth change"),
        ("/casm approve", None),
        ("/casm approve   ", None),
        ("LGTM", None),
        ("please /casm approve this", None),
        ("/casm approved it", None),
    ],
)
def test_comment_reason_with_the_default_regex(body: str, reason: str | None) -> None:
    assert hitl.comment_reason(body, DEFAULT_APPROVAL_COMMENT) == reason


def test_a_decision_carries_a_mac_and_a_forged_or_edited_row_does_not_verify(store, make) -> None:
    import sqlalchemy as sa

    from casm_dagster.stores.db import approvals_table

    signed = make()
    store.decide(signed.request_id, APPROVED, "alice", "looks right", "packet", T1)
    assert store.verifies(store.require(signed.request_id))
    # Anything with database access but not the key: approve a pending row directly...
    forged = make()
    with store.engine.begin() as conn:
        conn.execute(
            sa.update(approvals_table)
            .where(approvals_table.c.request_id == forged.request_id)
            .values(status=APPROVED, approver="USER:sandboxed-test", reason="pwned", scope="full", decided_at=T1)
        )
    assert not store.verifies(store.require(forged.request_id))
    # ...or widen a real approval's scope after the fact.
    with store.engine.begin() as conn:
        conn.execute(
            sa.update(approvals_table).where(approvals_table.c.request_id == signed.request_id).values(scope="full")
        )
    assert not store.verifies(store.require(signed.request_id))
    # Another installation's key does not verify this one's decisions either.
    other = ApprovalStore(store.engine, key=b"k" * 32)
    assert not other.verifies(store.require(signed.request_id))
    # The continuation refuses both, says why, and logs it; nothing is applied.
    from casm_dagster.policy.hitl import ApprovalError
    from casm_dagster.stages.resume import resume

    for record in (forged, signed):
        with pytest.raises(ApprovalError, match="does not verify"):
            resume(store, record.request_id, "dagster-run-1")
        assert store.log_entries(record.request_id)[-1].action == "refused"
        assert store.require(record.request_id).consumed_at is None


def test_an_old_database_gains_the_mac_column(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from casm_dagster.stores.db import engine_for

    url = f"sqlite:///{tmp_path / 'old.db'}"
    raw = sa.create_engine(url)
    with raw.begin() as conn:  # casm_hitl_requests as the previous version made it
        conn.execute(sa.text("CREATE TABLE casm_hitl_requests (id INTEGER PRIMARY KEY, request_id VARCHAR(32))"))
    engine_for(url)
    columns = {c["name"] for c in sa.inspect(raw).get_columns("casm_hitl_requests")}
    assert "mac" in columns
