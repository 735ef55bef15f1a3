"""A run's folder, published to the instance's database so any host can read it.

With run workers on several hosts (``infra/dagster/dagster.celery.yaml``) each host writes
runs under its own ``CASM_STATE_DIR``. The run folder stays the working copy — every stage,
``explain`` and ``cost`` read files — and this store is how it travels: the host running a
stage publishes what changed at each stage boundary (``push``), and a host about to read or
continue the run first takes what another host published since it last looked (``pull``).

Versions, not timestamps: every push that changes something bumps the run's version, and a
folder remembers (``.published``) the version it last pushed or pulled, so a pull copies only
rows newer than that and never overwrites this host's own later writes with an older copy.
Only one host writes a run at a time (the per-repo run limit), so there is no merging.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path, PurePosixPath

import sqlalchemy as sa

from casm_dagster.errors import CasmError
from casm_dagster.run.files import state_dir_from_env
from casm_dagster.stores.db import run_files_table

MARKER = ".published"  # the version this folder last pushed or pulled


def _local_version(run_dir: Path) -> int:
    try:
        return int((run_dir / MARKER).read_text(encoding="ascii").strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def _set_local_version(run_dir: Path, version: int) -> None:
    tmp = run_dir / f"{MARKER}.tmp"
    tmp.write_text(f"{version}\n", encoding="ascii")
    os.replace(tmp, run_dir / MARKER)


def _files(run_dir: Path) -> dict[str, Path]:
    """The folder's files by relative path; dot files (temp files, the marker) stay local."""
    found = {}
    for path in sorted(run_dir.rglob("*")):
        rel = path.relative_to(run_dir)
        if path.is_file() and not path.is_symlink() and not any(part.startswith(".") for part in rel.parts):
            found[rel.as_posix()] = path
    return found


def _target(run_dir: Path, rel: str) -> Path:
    """Where a stored row lands; a path that would leave the run folder is refused."""
    pure = PurePosixPath(rel)
    if pure.is_absolute() or not pure.parts or any(p in ("", ".", "..") or p.startswith(".") for p in pure.parts):
        raise CasmError(f"run file store: refusing path {rel!r} (it would leave the run folder)")
    return run_dir.joinpath(*pure.parts)


class RunFileStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def version(self, run_id: str) -> int:
        with self.engine.connect() as conn:
            latest = conn.execute(
                sa.select(sa.func.max(run_files_table.c.version)).where(run_files_table.c.run_id == run_id)
            ).scalar()
        return int(latest or 0)

    def push(self, run_id: str, run_dir: Path) -> int:
        """Publish the files that differ from the stored copy; returns how many."""
        if not run_dir.is_dir():
            return 0
        local = {rel: path.read_bytes() for rel, path in _files(run_dir).items()}
        t = run_files_table
        with self.engine.begin() as conn:
            stored = dict(conn.execute(sa.select(t.c.path, t.c.sha256).where(t.c.run_id == run_id)).all())
            changed = {}
            for rel, data in local.items():
                digest = hashlib.sha256(data).hexdigest()
                if stored.get(rel) != digest:
                    changed[rel] = (digest, data)
            if not changed:
                return 0
            version = int(conn.execute(sa.select(sa.func.max(t.c.version)).where(t.c.run_id == run_id)).scalar() or 0)
            version += 1
            conn.execute(sa.delete(t).where(t.c.run_id == run_id, t.c.path.in_(list(changed))))
            conn.execute(
                sa.insert(t),
                [
                    {"run_id": run_id, "path": rel, "sha256": digest, "data": data, "version": version}
                    for rel, (digest, data) in changed.items()
                ],
            )
        _set_local_version(run_dir, version)
        return len(changed)

    def pull(self, run_id: str, run_dir: Path) -> int:
        """Take what other hosts published since this folder last pushed or pulled; returns
        how many files were written (0: this folder is current, or the run was never published)."""
        t = run_files_table
        seen = _local_version(run_dir)
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.c.path, t.c.data, t.c.version).where(t.c.run_id == run_id, t.c.version > seen)
            ).all()
        if not rows:
            return 0
        for rel, data, _ in rows:
            path = _target(run_dir, rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.pull")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        _set_local_version(run_dir, max(version for _, _, version in rows))
        return len(rows)


def publisher(store: RunFileStore, run_id: str):
    """The journal's publish hook. A database hiccup does not fail the stage that just ended
    (its files are safe on this host); the next boundary publishes them with its own."""

    def publish(run_dir: Path) -> None:
        try:
            store.push(run_id, run_dir)
        except sa.exc.SQLAlchemyError as exc:
            print(f"casm: could not publish run {run_id}'s folder yet: {type(exc).__name__}", file=sys.stderr)

    return publish


def shared_store(engine: sa.Engine) -> RunFileStore | None:
    """The store when the database is one every host reaches (PostgreSQL); none on SQLite,
    a one-host instance where every process reads the same state dir."""
    return None if engine.dialect.name == "sqlite" else RunFileStore(engine)


def local_run_dir(state_dir: str, run_id: str, shared: RunFileStore | None) -> Path:
    """A run's folder on this host, current: where the run wrote it (``state_dir``, recorded
    with the run) when that is here, else under this process's state dir; either way first
    brought up to date with what other hosts published."""
    run_dir = Path(state_dir) / "runs" / run_id
    if shared is not None:
        if not run_dir.is_dir():
            run_dir = state_dir_from_env() / "runs" / run_id
        shared.pull(run_id, run_dir)
    return run_dir
