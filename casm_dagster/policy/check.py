"""``casm policy check``: what to scan (staged changes, a git range, or a patch file),
scored by the engine, as a ``policy_decisions.json`` document."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from casm_dagster.errors import ConfigError, RepoError
from casm_dagster.policy.diff import parse_diff
from casm_dagster.policy.document import RunContext, policy_document
from casm_dagster.policy.engine import PolicyEngine, PolicyResult
from casm_dagster.policy.keyed_hash import KeyedHasher, load_or_create_key
from casm_dagster.policy.ruleset import Ruleset, load_ruleset
from casm_dagster.policy.sources import FileSource, GitRange, PatchOnly
from casm_dagster.run.ids import new_ulid
from casm_dagster.run.journal import utc_now
from casm_dagster.safety import gitops

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
# --text: a repo's .gitattributes (`-diff`, `binary`) must not hide a file's content from
# the scan; every change is diffed as text.
DIFF_ARGS = (
    "diff", "--text", "--no-color", "--no-ext-diff", "--no-textconv", "--src-prefix=a/", "--dst-prefix=b/", "-M"
)  # fmt: skip
EXIT_CODES = {"pass": 0, "warn": 0, "gate": 3, "block": 4}


@dataclass(frozen=True)
class Target:
    diff: bytes
    source: FileSource
    repo: Path | None
    base: str
    head: str


def repo_root(path: Path) -> Path:
    if not path.is_dir():
        raise RepoError(f"repository path is not a directory: {path}")
    probe = gitops.git(path, "rev-parse", "--show-toplevel", check=False)
    if probe.returncode != 0:
        raise RepoError(f"not a git repository: {path}")
    return Path(probe.stdout.decode().strip()).resolve()


def _commit(repo: Path, rev: str, flag: str) -> str:
    probe = gitops.git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
    if probe.returncode != 0:
        raise ConfigError(f"{flag} {rev!r}: no such commit in {repo}")
    return probe.stdout.decode().strip()


def _head_or_empty(repo: Path) -> str:
    probe = gitops.git(repo, "rev-parse", "--verify", "--quiet", "HEAD^{commit}", check=False)
    return probe.stdout.decode().strip() if probe.returncode == 0 else EMPTY_TREE


def resolve_target(
    repo: Path | None, base: str | None, head: str | None, diff_bytes: bytes | None, repo_given: bool
) -> Target:
    """Pick what to scan: ``--diff`` > ``--base``/``--head`` range > the staged changes."""
    if diff_bytes is not None:
        if head is not None:
            raise ConfigError("--head cannot be combined with --diff (the diff is the head side)")
        root = None
        if repo is not None:
            try:
                root = repo_root(repo)
            except RepoError:
                if repo_given:
                    raise
        base_commit = (_commit(root, base, "--base") if base else _head_or_empty(root)) if root else (base or "")
        source = PatchOnly(root, base_commit if root and base_commit != EMPTY_TREE else None)
        return Target(diff_bytes, source, root, base_commit or "unknown", "patch")
    if repo is None:
        raise ConfigError("no repository: pass --repo PATH or --diff FILE")
    root = repo_root(repo)
    if head is not None and base is None:
        raise ConfigError("--head needs --base (the range is base...head)")
    if base is not None:
        head_commit = _commit(root, head or "HEAD", "--head")
        base_commit = _commit(root, base, "--base")
        merge_base = gitops.git(root, "merge-base", base_commit, head_commit, check=False)
        start = merge_base.stdout.decode().strip() if merge_base.returncode == 0 else base_commit
        data = gitops.git(root, *DIFF_ARGS, start, head_commit).stdout
        return Target(data, GitRange(root, start, head_commit), root, start, head_commit)
    start = _head_or_empty(root)
    data = gitops.git(root, *DIFF_ARGS, "--cached", start).stdout
    return Target(data, GitRange(root, start, ":"), root, start, "staged")


def engine_for(ruleset: Ruleset) -> PolicyEngine:
    return PolicyEngine(ruleset, KeyedHasher(load_or_create_key()))


def check(target: Target, ruleset_ref: str) -> tuple[PolicyResult, dict[str, Any]]:
    ruleset = load_ruleset(ruleset_ref)
    result = engine_for(ruleset).evaluate(parse_diff(target.diff), target.source)
    ctx = RunContext(
        run_id=new_ulid(),
        template_id="policy-check",
        repo_type="local",
        repo_id=str(target.repo) if target.repo else "-",
        started_at=utc_now(),
        base=target.base,
        head=target.head,
        stage="policy",
    )
    return result, policy_document(result, ctx)


def render(result: PolicyResult) -> str:
    """Human output: status, score, components, signals (hashed), the scope reduction."""
    ruleset = f"{result.ruleset.id} {result.ruleset.sha256[:12]}"
    lines = [f"policy: {result.status.upper()}  risk {result.score:.2f}  ({ruleset})"]
    lines.append(f"  {result.human_summary}")
    active = [c for c in result.components if c.contribution > 0]
    if active:
        lines.append("  components:")
        for c in active:
            lines.append(f"    {c.name:<24} {c.contribution:.3f} of {c.weight:.2f} ({c.evidence_count} evidence)")
    if result.signals:
        lines.append("  signals:")
        for s in result.signals:
            where = f"{s.file}:{s.line_start}" if s.line_start else s.file
            lines.append(f"    [{s.severity}] {s.reason_code:<28} {where} — {s.message}")
    if result.scope:
        lines.append("  scope reduction:")
        lines.append(f"    allow: {', '.join(result.scope.allow_files) or 'none'}")
        lines.append(f"    deny:  {', '.join(result.scope.deny_files) or 'none'}")
        lines.append(f"    {result.scope.notes}")
    lines += [f"  note: {n}" for n in result.notes]
    return "\n".join(lines) + "\n"
