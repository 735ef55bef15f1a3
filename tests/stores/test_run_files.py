"""The run file store: a run folder published by one host and read or continued on another."""

from pathlib import Path

import pytest
import sqlalchemy as sa

from casm_dagster.errors import CasmError
from casm_dagster.stores.db import engine_for, run_files_table
from casm_dagster.stores.run_files import RunFileStore, publisher

RUN = "01JBE3Q7ZK8V6Y2W4X5N9M0P1R"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path: Path) -> RunFileStore:
    if request.param == "sqlite":
        return RunFileStore(engine_for(f"sqlite:///{tmp_path / 'casm.db'}"))
    db = request.getfixturevalue("pg_database")
    return RunFileStore(engine_for(f"postgresql+psycopg2://{db['user']}@{db['host']}:{db['port']}/{db['db']}"))


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }


def test_a_folder_pushed_on_one_host_is_pulled_whole_on_another(store: RunFileStore, tmp_path: Path) -> None:
    worker = tmp_path / "worker" / RUN
    (worker / "patches").mkdir(parents=True)
    (worker / "events.jsonl").write_text('{"seq": 1}\n')
    (worker / "state.json").write_text('{"status": "running"}')
    (worker / "patches" / "g1.patch").write_bytes(b"--- a\n+++ b\n\x00binary")
    (worker / ".state.json.tmp").write_text("half-written")  # a temp file stays on its host
    assert store.push(RUN, worker) == 3
    assert store.push(RUN, worker) == 0  # nothing changed: nothing written, no new version
    assert store.version(RUN) == 1

    control = tmp_path / "control" / RUN
    assert store.pull(RUN, control) == 3
    assert _tree(control) == _tree(worker)
    assert not (control / ".state.json.tmp").exists()
    assert store.pull(RUN, control) == 0  # current: nothing to copy


def test_a_pull_takes_only_what_changed_since_and_never_rolls_back_own_writes(
    store: RunFileStore, tmp_path: Path
) -> None:
    a, b = tmp_path / "a" / RUN, tmp_path / "b" / RUN
    a.mkdir(parents=True)
    (a / "events.jsonl").write_text("1\n")
    (a / "spec.json").write_text("{}")
    store.push(RUN, a)
    store.pull(RUN, b)
    # b continues the run (a HITL continuation, a retry): appends and publishes
    with (b / "events.jsonl").open("a") as f:
        f.write("2\n")
    (b / "validation.json").write_text("[]")
    assert store.push(RUN, b) == 2
    # a catches up with exactly b's two files
    assert store.pull(RUN, a) == 2
    assert (a / "events.jsonl").read_text() == "1\n2\n"
    # a writes after its pull; a later pull (nothing newer published) keeps a's write
    (a / "events.jsonl").write_text("1\n2\n3\n")
    assert store.pull(RUN, a) == 0
    assert (a / "events.jsonl").read_text() == "1\n2\n3\n"


def test_a_stored_path_that_would_leave_the_run_folder_is_refused(store: RunFileStore, tmp_path: Path) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            sa.insert(run_files_table).values(run_id=RUN, path="../../evil", sha256="0" * 64, data=b"x", version=1)
        )
    with pytest.raises(CasmError, match="would leave the run folder"):
        store.pull(RUN, tmp_path / "runs" / RUN)
    assert not (tmp_path / "evil").exists()


def test_a_database_outage_at_a_boundary_does_not_fail_the_stage(tmp_path: Path, capsys) -> None:
    broken = RunFileStore(sa.create_engine("postgresql+psycopg2://nobody@127.0.0.1:1/none", poolclass=sa.pool.NullPool))
    run_dir = tmp_path / RUN
    run_dir.mkdir()
    (run_dir / "state.json").write_text("{}")
    publisher(broken, RUN)(run_dir)
    assert f"could not publish run {RUN}'s folder yet: OperationalError" in capsys.readouterr().err
