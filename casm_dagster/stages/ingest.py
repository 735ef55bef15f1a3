"""The ingest stage: fix the commit being audited and record the run's spec."""

from __future__ import annotations

from pathlib import Path

from casm_dagster.contracts.run import RunSpec, Snapshot
from casm_dagster.run.files import SNAPSHOT_FILE, SPEC_FILE, save
from casm_dagster.run.journal import Journal, stage
from casm_dagster.safety import gitops


def ingest(spec: RunSpec, journal: Journal) -> Snapshot:
    journal.emit(
        "run_started",
        f"{spec.template_id} on {spec.repo}",
        template=spec.template_id,
        repo=spec.repo,
        partition_key=spec.partition_key,
        seed=spec.seed,
    )
    with stage(journal, "ingest", "reading the repository"):
        run = spec.effective_config.run
        pinned = run.head
        if run.github:  # the bare mirror has no HEAD to read: the fetched commit is pinned
            info = gitops.RepoInfo(Path(spec.repo_path), pinned, run.github.head_ref, False)
        else:
            info = gitops.inspect_repo(Path(spec.repo_path))
        if pinned and not run.github:  # --head: audit that commit, whatever HEAD is now
            info = gitops.RepoInfo(info.root, pinned, f"pinned {pinned[:12]}", False)
        journal.state.head_commit = info.head_commit
        if info.dirty:
            journal.decision(
                "ingest",
                "audit_head",
                f"working tree has uncommitted changes; auditing HEAD {info.head_commit[:12]} "
                "(uncommitted changes are not part of the audit)",
            )
        journal.emit(
            "stage_completed",
            f"HEAD {info.head_commit[:12]} on {info.head_ref}",
            stage="ingest",
            head_commit=info.head_commit,
            dirty=info.dirty,
        )
    snap = Snapshot(spec=spec, head_commit=info.head_commit, head_ref=info.head_ref, dirty=info.dirty)
    save(journal.run_dir, SPEC_FILE, spec)
    save(journal.run_dir, SNAPSHOT_FILE, snap)
    return snap
