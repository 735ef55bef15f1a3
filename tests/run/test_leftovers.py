"""Leftovers of killed runs: only a dir whose owning process is gone is removed; a live
owner's (this test's own, or a pid reused by another process) is never touched."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from casm_dagster.run import leftovers


def _dead_owner() -> tuple[int, int]:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    start = leftovers._start_ticks(proc.pid)
    proc.wait()
    return proc.pid, start or 1


def test_only_dirs_of_dead_owners_are_reaped(tmp_path: Path) -> None:
    pid, start = _dead_owner()
    dead = tmp_path / f"casm-wt-{pid}-{start}-abc"
    (dead / "checkout").mkdir(parents=True)
    (dead / "checkout" / "f").write_text("x")
    (dead / "checkout").chmod(0o500)  # a read-only tree does not stop the cleanup
    mine = tmp_path / f"{leftovers.owned_prefix('casm-home-')}xyz"
    mine.mkdir()
    reused = tmp_path / f"casm-setup-{leftovers.me().pid}-{leftovers.me().start + 1}-q"  # same pid, other process
    reused.mkdir()
    foreign = tmp_path / "casm-wt-abc"  # not CASM's naming: never touched
    foreign.mkdir()

    assert leftovers.reap_temp_dirs(tmp_path, dry_run=True) == sorted([dead, reused])
    assert dead.exists()
    assert leftovers.reap_temp_dirs(tmp_path) == sorted([dead, reused])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, foreign.name])


def test_owner_tags_round_trip_and_other_hosts_are_presumed_alive() -> None:
    me = leftovers.me()
    assert leftovers.Owner.parse(me.tag) == me and me.alive()
    assert leftovers.Owner("another-host", 1, 1).alive()
    assert leftovers.Owner.parse("garbage") is None
