"""What a killed CASM process leaves behind, found and cleared at the next start.

Every temp dir CASM makes carries its owner in its name (``casm-wt-<pid>-<start>-…``: the
pid and the process's start time in clock ticks, so a reused pid is not mistaken for the
owner). A dir whose owner is gone is a leftover of a killed run; one whose owner still runs
belongs to a live run and is never touched. A run whose ``state.json`` still says
``running`` after its process died is marked failed with the reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from casm_dagster.contracts.run import RunState
from casm_dagster.safety import gitops

PREFIXES = ("casm-wt-", "casm-home-", "casm-setup-")
_OWNED = re.compile(r"^(?P<prefix>casm-[a-z]+-)(?P<pid>\d+)-(?P<start>\d+)-")


def _start_ticks(pid: int) -> int | None:
    """The process's start time (field 22 of /proc/<pid>/stat), or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text.rpartition(")")[2].split()[19])  # the command may hold spaces and parens


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    start: int

    @property
    def tag(self) -> str:
        return f"{self.host}:{self.pid}-{self.start}"

    def alive(self) -> bool:
        """Only decidable on the owner's own host; elsewhere the owner is presumed alive."""
        return self.host != socket.gethostname() or _start_ticks(self.pid) == self.start

    @classmethod
    def parse(cls, tag: str) -> Owner | None:
        host, _, rest = tag.rpartition(":")
        pid, _, start = rest.partition("-")
        return cls(host, int(pid), int(start)) if host and pid.isdigit() and start.isdigit() else None


def me() -> Owner:
    return Owner(socket.gethostname(), os.getpid(), _start_ticks(os.getpid()) or 0)


def owned_prefix(prefix: str) -> str:
    """A temp-dir prefix that names this process as the owner."""
    owner = me()
    return f"{prefix}{owner.pid}-{owner.start}-"


def _force_remove(function, path, _exc) -> None:  # noqa: ANN001 - shutil.rmtree's onerror
    """Read-only dirs (uv's cache, a sandboxed tree) do not stop the cleanup."""
    parent = Path(path).parent
    try:
        parent.chmod(parent.stat().st_mode | stat.S_IWUSR | stat.S_IXUSR)
        function(path)
    except OSError:
        pass


def stale_temp_dirs(tmp: Path | None = None) -> list[Path]:
    """CASM temp dirs on this host whose owning process is gone."""
    root = tmp or Path(tempfile.gettempdir())
    found = []
    host = socket.gethostname()
    try:
        entries = list(root.iterdir())
    except OSError:
        return []
    for entry in entries:
        match = _OWNED.match(entry.name)
        if match and match["prefix"] in PREFIXES and entry.is_dir() and not entry.is_symlink():
            if not Owner(host, int(match["pid"]), int(match["start"])).alive():
                found.append(entry)
    return sorted(found)


def reap_temp_dirs(tmp: Path | None = None, dry_run: bool = False) -> list[Path]:
    stale = stale_temp_dirs(tmp)
    if not dry_run:
        for path in stale:
            shutil.rmtree(path, onerror=_force_remove)
    return stale


def dead_runs(state_dir: Path) -> list[tuple[Path, RunState]]:
    """Runs under ``state_dir`` that still say ``running`` but whose process is gone."""
    out = []
    for state_path in sorted((state_dir / "runs").glob("*/state.json")):
        try:
            state = RunState.model_validate_json(state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        owner = Owner.parse(state.owner) if state.status == "running" and state.owner else None
        if owner and not owner.alive():
            out.append((state_path.parent, state))
    return out


def undelivered_branch(run_dir: Path, state: RunState) -> tuple[Path, str] | None:
    """The local branch of a run killed after the telemetry stage created it but before the
    run finished: (repo, branch) when the ref still points at the run's validated commit.
    A branch must always have a finished run behind it, so recovery deletes this one."""
    if not (state.branch and state.branch_commit):
        return None
    try:  # spec.json (run.files names it, but imports the journal, which imports this module)
        spec = json.loads((run_dir / "spec.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if spec.get("github"):  # the mirror is CASM's own; the next audit moves its branch and PR
        return None
    repo = Path(spec["repo_path"])
    if not repo.is_dir():  # the repo was moved or removed since: nothing of ours is left in it
        return None
    probe = gitops.git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{state.branch}", check=False)
    if probe.returncode != 0 or probe.stdout.decode().strip() != state.branch_commit:
        return None
    head = gitops.git(repo, "symbolic-ref", "--quiet", "HEAD", check=False).stdout.decode().strip()
    if head == f"refs/heads/{state.branch}":  # the user checked it out: theirs now
        return None
    return repo, state.branch


def delete_branch(repo: Path, branch: str, commit: str) -> None:
    """Delete ``branch`` only if it still points at ``commit`` (git checks, atomically)."""
    gitops.git(repo, "update-ref", "-d", f"refs/heads/{branch}", commit)
