"""Which of a PR's files get reviewed, and why the others do not.

Order of the cuts: deleted → ignored (``.casm.yaml`` and the generated/vendored defaults)
→ unreadable (binary, too large, symlink...) → unchanged since the last reviewed SHA
(incremental: their earlier findings are carried over) → over the token budget. The
coverage footer of the comment lists every file that was not reviewed, with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from casm_dagster.llm.tokens import estimate_tokens
from casm_dagster.policy.globs import GlobSet
from casm_dagster.prsentinel.settings import DEFAULT_IGNORE, RepoSettings
from casm_dagster.run.journal import write_json_atomic
from casm_dagster.safety import gitops
from casm_dagster.safety.repo_scan import Inventory

SCOPE_FILE = "scope.json"


@dataclass(frozen=True)
class Scope:
    reviewed: list[str]
    not_reviewed: dict[str, str]  # path → why
    carried: list[str] = field(default_factory=list)  # unchanged since the last review
    incremental_from: str | None = None  # the last reviewed head, when reviewing only what is new
    tokens: int = 0  # the reviewed files' estimated input tokens

    def as_json(self) -> dict[str, Any]:
        return {
            "reviewed": self.reviewed,
            "not_reviewed": self.not_reviewed,
            "carried": self.carried,
            "incremental_from": self.incremental_from,
            "tokens": self.tokens,
        }


def changed_files(repo: Path, start: str, head: str) -> dict[str, str]:
    """``{path: status letter}`` of ``start..head`` (renames count as their new path)."""
    raw = gitops.git(repo, "diff", "--name-status", "-z", "--no-renames", start, head).stdout
    parts = [p.decode("utf-8", "backslashreplace") for p in raw.split(b"\0") if p]
    return {parts[i + 1]: parts[i][0] for i in range(0, len(parts) - 1, 2)}


def is_ancestor(repo: Path, older: str, newer: str) -> bool:
    return gitops.git(repo, "merge-base", "--is-ancestor", older, newer, check=False).returncode == 0


def select(
    changed: dict[str, str],
    inventory: Inventory,
    settings: RepoSettings,
    since: set[str] | None = None,
    incremental_from: str | None = None,
    covered: set[str] | None = None,
) -> Scope:
    """``since``: the files changed since the last reviewed head (None: review everything);
    ``covered``: the files that review reviewed or carried — only those can be carried again
    (a file it skipped, e.g. over the token budget, is still owed a review)."""
    ignored = GlobSet(settings.ignore)
    generated = GlobSet([] if settings.review_generated else DEFAULT_IGNORE)
    readable = {f.path: f for f in inventory.files}
    unreadable = {s.path: s.reason for s in inventory.skipped}
    reviewed: list[str] = []
    carried: list[str] = []
    skipped: dict[str, str] = {}
    tokens = 0
    for path in sorted(changed):
        if changed[path] == "D":
            skipped[path] = "deleted"
        elif ignored.match(path):
            skipped[path] = "ignored by .casm.yaml"
        elif generated.match(path):
            skipped[path] = "generated or vendored (set review_generated: true in .casm.yaml to include)"
        elif path in unreadable:
            skipped[path] = unreadable[path].replace("_", " ")
        elif path not in readable:
            skipped[path] = "not a regular text file"
        elif since is not None and path not in since and path in (covered or set()):
            carried.append(path)
        else:
            cost = estimate_tokens(readable[path].text)
            if tokens + cost > settings.token_budget:
                skipped[path] = f"over the token budget ({settings.token_budget} tokens; this file ~{cost})"
                continue
            tokens += cost
            reviewed.append(path)
    return Scope(reviewed, skipped, carried, incremental_from, tokens)


def save_scope(run_dir: Path, scope: Scope) -> None:
    write_json_atomic(run_dir / SCOPE_FILE, scope.as_json())


def restrict(inventory: Inventory, run_dir: Path) -> Inventory:
    """The inventory cut to the run's review scope, when the run has one (pr-sentinel)."""
    import json

    path = run_dir / SCOPE_FILE
    if not path.exists():
        return inventory
    keep = set(json.loads(path.read_text(encoding="utf-8"))["reviewed"])
    return Inventory(files=[f for f in inventory.files if f.path in keep], skipped=[])
