"""Turn what the user asked for (template, repo, overrides) into a fixed ``RunSpec``.

All input validation happens here, before anything is written: a bad path, a non-git
directory, an unknown template or a malformed manifest fails with a ``CasmError``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from casm_dagster.contracts.run import EffectiveConfig, GitHubCheckout, RulesetPin, RunSettings, RunSpec
from casm_dagster.errors import ConfigError, RepoError, RunNotFoundError, TemplateError
from casm_dagster.llm.router import STRATEGIES
from casm_dagster.llm.session import model_settings
from casm_dagster.run.files import ARTIFACT_DEFAULTS, RUN_FILES
from casm_dagster.run.ids import new_ulid
from casm_dagster.run.templates import PR_WORKFLOW, Template
from casm_dagster.safety import gitops
from casm_dagster.stores.repos import is_github_name, partition_key_for

if TYPE_CHECKING:
    from casm_dagster.github.connector import GitHubConnector

DEFAULT_SEED = 0


@dataclass(frozen=True)
class RunOptions:
    """What the user may pin or override for one run (the replay flags of SPEC §3)."""

    budget_usd: float | None = None
    proof_mode: bool | None = None
    routing: str | None = None  # routing strategy
    prices: str | None = None  # a price registry file
    replay_of: str | None = None  # a run id: serve its recorded model answers
    base: str | None = None
    head: str | None = None  # the commit to audit (default: HEAD)
    ruleset: str | None = None
    ruleset_hash: str | None = None
    pr: int | None = None  # GitHub mode: the pull request pr-sentinel reviews

    def as_config(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def _commit(repo: Path, ref: str, flag: str) -> str:
    probe = gitops.git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
    if probe.returncode != 0:
        raise RepoError(f"{flag} {ref!r} is not a commit of {repo}")
    return probe.stdout.decode().strip()


def _replayed(state_dir: Path, run_id: str) -> dict[str, Any]:
    run_dir = state_dir / "runs" / run_id
    spec_file = run_dir / "spec.json"
    if not spec_file.exists():
        raise RunNotFoundError(f"--replay-of {run_id}: no such run in {state_dir / 'runs'} (set CASM_STATE_DIR?)")
    original = json.loads(spec_file.read_text(encoding="utf-8"))
    models = original["effective_config"]["run"].get("models")
    if models is None or not (run_dir / "model_plan.json").exists():
        raise RunNotFoundError(f"--replay-of {run_id}: that run recorded no model plan (it predates replays)")
    return {
        "run_id": run_id,
        "run_dir": str(run_dir),
        "available_providers": models["available_providers"],
        "offline_reason": models["offline_reason"],
        "routing_policy": models.get("routing_policy"),
    }


def resolve_local_repo(repo: str) -> gitops.RepoInfo:
    if is_github_name(repo):
        raise RepoError(
            f"{repo!r} is a GitHub owner/name; this command needs a local path (e.g. ./{repo.split('/')[-1]})"
        )
    return gitops.inspect_repo(Path(repo).expanduser())


def resolve_repo(
    repo: str, state_dir: Path, pr: int | None = None, connect: Callable[[], GitHubConnector] | None = None
) -> tuple[gitops.RepoInfo, GitHubCheckout | None]:
    """A local path, or ``owner/name`` on GitHub (fetched into the local mirror, pinned).
    ``connect``: makes the GitHub client (the ``github`` resource's ``get_client``)."""
    if is_github_name(repo):
        from casm_dagster.github.checkout import checkout
        from casm_dagster.github.connector import TOKEN_ENV, GitHubError

        if connect is None:
            raise GitHubError(f"{repo} is a GitHub repo: GitHub mode needs credentials (set {TOKEN_ENV})")
        co = checkout(connect(), repo, state_dir.resolve(), pr)
        return gitops.RepoInfo(Path(co.mirror), co.head_commit, co.head_ref, False), co
    if pr is not None:
        raise ConfigError(f"--pr {pr}: a pull request needs a GitHub repo (--repo owner/name), not a local path")
    return resolve_local_repo(repo), None


def _check_branch_room(root: Path, template_id: str) -> None:
    """CASM's branches live under ``casm/<template>/``: a branch named ``casm`` or
    ``casm/<template>`` leaves git no room for them, which would fail only at delivery."""
    for name in ("casm", f"casm/{template_id}"):
        if gitops.git(root, "rev-parse", "--verify", "--quiet", f"refs/heads/{name}", check=False).returncode == 0:
            raise ConfigError(
                f"the repo has a branch named {name!r}, so git cannot create CASM's branches "
                f"(casm/{template_id}/…) beside it: rename that branch"
            )


def _check_artifact_names(names: dict[str, str]) -> None:
    """Artifact names are plain, distinct file names that no file of the run already has:
    ``report_md: events.jsonl`` would overwrite the run's own journal."""
    seen: dict[str, str] = {}
    for key, name in names.items():
        if name in ("", ".", ".."):
            raise ConfigError(f"outputs.artifacts: {key}: the path names no file (end it in one, e.g. {key}.txt)")
        if name in RUN_FILES and name != ARTIFACT_DEFAULTS.get(key):
            raise ConfigError(f"outputs.artifacts: {key}: {name!r} is a file the run itself writes")
        if name in seen:
            raise ConfigError(f"outputs.artifacts: {key} and {seen[name]} are both named {name!r}")
        seen[name] = key


def build_spec(
    template: Template,
    repo: str,
    repo_info: gitops.RepoInfo,
    state_dir: Path,
    artifacts_dir: Path,
    seed: int = DEFAULT_SEED,
    run_id: str | None = None,
    options: RunOptions | None = None,
    github: GitHubCheckout | None = None,
    routing_policy: dict[str, Any] | None = None,
    providers: Mapping[str, str] | None = None,
) -> RunSpec:
    """``providers``: which model providers have keys, the price registry and catalog
    overrides, by their variable names (the ``models`` resource); None: the process environment."""
    location = str(repo_info.root)
    manifest = template.manifest
    options = options or RunOptions()
    if options.routing is not None and options.routing not in STRATEGIES:
        raise ConfigError(f"--routing {options.routing!r}: unknown strategy (one of: {', '.join(STRATEGIES)})")
    if options.budget_usd is not None and not (math.isfinite(options.budget_usd) and options.budget_usd >= 0):
        raise ConfigError(f"--budget-usd {options.budget_usd}: expected a finite amount of USD, 0 or more")
    _check_artifact_names(manifest.artifact_names())
    _check_branch_room(repo_info.root, template.id)
    head = _commit(repo_info.root, options.head, "--head") if options.head else None
    base = _commit(repo_info.root, options.base, "--base") if options.base else None
    reviews_pr = manifest.entrypoint.workflow == PR_WORKFLOW
    if reviews_pr and github is None and not base:
        raise ConfigError(
            f"{template.id} reviews a range: pass --base REV (and --head REV, default HEAD) for a local repo"
        )
    if base and base != (head or repo_info.head_commit) and not reviews_pr:
        raise ConfigError(
            f"--base {options.base} differs from the audited commit: {template.id} audits one commit "
            "(its patches are made against it), so --base must equal --head"
        )
    from casm_dagster.policy.ruleset import load_ruleset

    # Loaded here, before any stage, so a missing or malformed ruleset is an error up front.
    ref = options.ruleset or manifest.policy.ruleset
    loaded = load_ruleset(
        ref,
        source="override" if options.ruleset and options.ruleset != manifest.policy.ruleset else "template",
        base_dir=template.path.parent,
    )
    ruleset = None
    if options.ruleset or options.ruleset_hash:
        if options.ruleset_hash and loaded.sha256 != options.ruleset_hash:
            raise ConfigError(
                f"--ruleset-hash: ruleset {ref} has sha256 {loaded.sha256}, not {options.ruleset_hash} "
                "(the ruleset changed since the run being replayed)"
            )
        overridden = bool(options.ruleset) and options.ruleset != manifest.policy.ruleset
        ruleset = RulesetPin(ref=str(ref), sha256=loaded.sha256, overridden=overridden)
    replay = _replayed(state_dir.resolve(), options.replay_of) if options.replay_of else None
    models = model_settings(
        manifest,
        strategy=options.routing,
        budget_usd=options.budget_usd,
        prices_path=options.prices,
        proof_mode=options.proof_mode,
        replay_of=replay,
        routing_policy=routing_policy,
        env=providers,
    )
    if manifest.policy.hitl.mode != "local" and not reviews_pr:
        raise TemplateError(
            f"{template.path}: policy.hitl.mode {manifest.policy.hitl.mode} approves on a pull request, and "
            f"{template.id} holds its changes before any PR exists — use mode: local (casm approve)"
        )
    if options.pr is not None and not reviews_pr:  # e.g. a fork's code pushed as a branch of the base repo
        raise ConfigError(f"--pr: {template.id} audits the default branch; only pr-sentinel reviews a pull request")
    if github and github.pr is None and reviews_pr:
        raise ConfigError(f"{template.id} reviews a pull request: pass --pr NUMBER with --repo {repo}")
    run = RunSettings(
        artifacts_dir=str(artifacts_dir.resolve()),
        seed=seed,
        audited="HEAD (uncommitted changes are never audited)",
        model_provider=", ".join(models.available_providers) or "offline",
        head=head,
        base=base or head,
        ruleset=ruleset,
        models=models,
        github=github,
    )
    if github:  # the fetched commit is pinned: the mirror's refs move with every fetch
        pinned = head or github.head_commit
        run = run.model_copy(
            update={
                "head": pinned,
                "base": base or github.base_commit or pinned,
                "audited": f"{github.repo}@{github.head_commit[:12]} ({github.head_ref})",
            }
        )
    effective = EffectiveConfig(template=manifest, artifact_names=manifest.artifact_names(), run=run)
    return RunSpec(
        run_id=run_id or new_ulid(),
        template_id=template.id,
        manifest_path=str(template.path),
        workflow=manifest.entrypoint.workflow,
        stages=list(template.stages),
        repo=repo,
        repo_path=location,
        partition_key=partition_key_for("github", github.repo) if github else partition_key_for("local", location),
        state_dir=str(state_dir.resolve()),
        artifacts_dir=str(artifacts_dir.resolve()),
        seed=seed,
        effective_config=effective,
    )
