"""Turn what the user asked for (template, repo, overrides) into a fixed ``RunSpec``.

All input validation happens here, before anything is written: a bad path, a non-git
directory, an unknown template or a malformed manifest fails with a ``CasmError``.
"""

from __future__ import annotations

from pathlib import Path

from casm_dagster import gitops
from casm_dagster.contracts.run import RunSpec
from casm_dagster.errors import RepoError, TemplateError
from casm_dagster.ids import new_ulid
from casm_dagster.stores.repos import is_github_name, partition_key_for
from casm_dagster.templates import Template

DEFAULT_SEED = 0


def resolve_local_repo(repo: str) -> gitops.RepoInfo:
    if is_github_name(repo):
        raise RepoError(
            f"{repo!r} looks like a GitHub owner/name; GitHub mode is not available "
            f"in this version — pass a local path (e.g. ./{repo.split('/')[-1]})"
        )
    return gitops.inspect_repo(Path(repo).expanduser())


def build_spec(
    template: Template,
    repo: str,
    repo_info: gitops.RepoInfo,
    state_dir: Path,
    artifacts_dir: Path,
    seed: int = DEFAULT_SEED,
    run_id: str | None = None,
) -> RunSpec:
    location = str(repo_info.root)
    manifest = template.manifest
    if manifest.policy.hitl.mode != "local":
        raise TemplateError(
            f"{template.path}: policy.hitl.mode {manifest.policy.hitl.mode} approves on a GitHub pull request; "
            "this run audits a local repository, where nobody could approve it — use mode: local"
        )
    effective = {
        "template": manifest.model_dump(mode="json"),
        "artifact_names": manifest.artifact_names(),
        "run": {
            "artifacts_dir": str(artifacts_dir.resolve()),
            "seed": seed,
            "audited": "HEAD (uncommitted changes are never audited)",
            "model_provider": "offline",
        },
    }
    return RunSpec(
        run_id=run_id or new_ulid(),
        template_id=template.id,
        manifest_path=str(template.path),
        workflow=manifest.entrypoint.workflow,
        stages=list(template.stages),
        repo=repo,
        repo_path=location,
        partition_key=partition_key_for("local", location),
        state_dir=str(state_dir.resolve()),
        artifacts_dir=str(artifacts_dir.resolve()),
        seed=seed,
        effective_config=effective,
    )
