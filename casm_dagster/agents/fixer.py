"""The fixer: safe, deterministic fixes as an ordered set of patch groups.

Each group (one ruff rule's safe autofixes; a JS/TS tool's own fixer — xo, eslint, biome —
from the repo's environment; then the formatters) is made in a scratch checkout and
committed there, so every patch applies on top of the ones before it.
One patch file per group; the plan hash binds later stages to exactly these bytes.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

from casm_dagster.agents import js_tools, public_names, python_tools
from casm_dagster.contracts.findings import Finding
from casm_dagster.contracts.plan import PatchGroup, PatchPlan
from casm_dagster.environments import build
from casm_dagster.safety import gitops
from casm_dagster.safety.sandbox import Sandbox


def count_lines(patch: bytes) -> tuple[int, int]:
    added = removed = 0
    for line in patch.splitlines():
        if line.startswith(b"+") and not line.startswith(b"+++"):
            added += 1
        elif line.startswith(b"-") and not line.startswith(b"---"):
            removed += 1
    return added, removed


def _changed_files(worktree: Path) -> list[str]:
    raw = gitops.git(worktree, "diff", "--cached", "--name-only", "-z").stdout
    return sorted(p.decode("utf-8", "surrogateescape") for p in raw.split(b"\0") if p)


def plan_sha256(base_commit: str, groups: list[PatchGroup]) -> str:
    digest = hashlib.sha256(base_commit.encode())
    for group in groups:
        digest.update(f"\n{group.group_id}:{group.patch_sha256}".encode())
    return digest.hexdigest()


FORMAT_GROUP = "ruff-format"
FOLLOWUP_GROUP = "ruff-followup"


def _rule_priority(group: str) -> tuple[int, str]:
    """Modernizations first (they change imports), import sorting last among the rules."""
    rule = group.removeprefix("ruff-")
    return (0 if rule.startswith("UP") else 2 if rule.startswith("I") else 1, rule)


def record_group(
    worktree: Path,
    patch: bytes,
    ordinal: int,
    name: str,
    title: str,
    tool: str,
    rules: list[str],
    members: list[Finding],
    patch_dir: Path,
) -> PatchGroup:
    """Keep the worktree's staged change as the next patch group and commit it there, so
    the next group is made on top of it."""
    group_id = f"{ordinal:02d}-{name}"
    patch_file = patch_dir / f"{group_id}.patch"
    patch_dir.mkdir(parents=True, exist_ok=True)
    patch_file.write_bytes(patch)
    added, removed = count_lines(patch)
    group = PatchGroup(
        group_id=group_id,
        title=title,
        tool=tool,
        rules=rules,
        files=_changed_files(worktree),
        finding_ids=sorted(f.id for f in members),
        patch_file=f"patches/{patch_file.name}",
        patch_sha256=hashlib.sha256(patch).hexdigest(),
        lines_added=added,
        lines_removed=removed,
    )
    gitops.commit_staged(worktree, group_id)
    return group


def keep_public_names(worktree: Path) -> list[str]:
    """Undo the staged change to any file where it deletes a public name (a re-export other
    code imports); one note per file undone."""
    notes = []
    raw = gitops.git(worktree, "ls-files", "-z", "--", "*.py", "*.pyi").stdout
    files = [p.decode("utf-8", "surrogateescape") for p in raw.split(b"\0") if p]
    for path in _changed_files(worktree):
        if not path.endswith((".py", ".pyi")):
            continue
        before = gitops.git(worktree, "show", f"HEAD:{path}", check=False).stdout
        after = (worktree / path).read_bytes() if (worktree / path).is_file() else b""
        names, why = public_names.removed_public_names(worktree, files, path, before, after)
        if names:
            gitops.git(worktree, "checkout", "HEAD", "--", path)
            notes.append(f"left {path} unchanged: the fix would delete public name(s) {', '.join(names)} ({why})")
    return notes


def keep_only(worktree: Path, files: set[str]) -> list[str]:
    """Undo the staged change to every file outside ``files`` (a JS tool's fixer runs over
    the whole tree; its group fixes only what the findings name)."""
    undone = [p for p in _changed_files(worktree) if p not in files]
    if undone:
        gitops.git(worktree, "checkout", "HEAD", "--", *undone)
    return undone


def _js_group(box: Sandbox | None, worktree: Path, name: str, members: list[Finding]) -> tuple[str, str, str]:
    """Run the group's JS tool fixer; (tool, rule, title)."""
    tool = js_tools.tool_of_group(name)
    assert tool is not None
    if box is None or box.environment is None:
        raise js_tools.ToolFailed("the repo's environment is not ready")
    with build.checking(box, worktree):
        js_tools.fix(box, tool, worktree)
    gitops.diff_head(worktree)  # stage what the tool changed, so the scope can be narrowed
    keep_only(worktree, {f.file for f in members})
    if tool.formatter:
        return tool.name, "format", f"Format JS/TS files with {tool.name}"
    return tool.name, "fix", f"Apply {tool.name}'s own fixes"


def _order(groups: set[str]) -> list[str]:
    """ruff's rule groups and their follow-up, the JS linters' fixers, then the formatters."""
    ruff_rules = sorted((g for g in groups if g.startswith("ruff-") and g != FORMAT_GROUP), key=_rule_priority)
    tools = [t for t in js_tools.TOOLS if js_tools.group_name(t.name) in groups]
    return [
        *ruff_rules,
        *([FOLLOWUP_GROUP] if ruff_rules else []),
        *(js_tools.group_name(t.name) for t in tools if not t.formatter),
        *([FORMAT_GROUP] if FORMAT_GROUP in groups else []),
        *(js_tools.group_name(t.name) for t in tools if t.formatter),
    ]


def plan_fixes(
    worktree: Path, findings: list[Finding], base_commit: str, patch_dir: Path, box: Sandbox | None = None
) -> PatchPlan:
    """Make the patches in ``worktree`` (a scratch checkout of ``base_commit``); ``box``
    (the run's sandbox in the repo's environment) runs the JS/TS tools' fixers."""
    by_group: dict[str, list[Finding]] = defaultdict(list)
    for finding in findings:
        if finding.auto_fixable and finding.fix_group:
            by_group[finding.fix_group].append(finding)
    python_files = sorted({f.file for f in findings if f.analyser in ("ruff", "ruff-format")})
    # A follow-up pass catches what the rule groups uncovered (an import left unused by a
    # modernized annotation, a block left unsorted); the formatters go last.
    order = _order(set(by_group))
    settings = python_tools.ruff_settings(worktree)
    patch_dir.mkdir(parents=True, exist_ok=True)
    groups: list[PatchGroup] = []
    notes: list[str] = []
    for name in order:
        members = by_group.get(name, [])
        files = sorted({f.file for f in members}) or python_files
        tool = "ruff"
        if js_tools.tool_of_group(name) is not None:
            try:
                tool, rule, title = _js_group(box, worktree, name, members)
            except js_tools.ToolFailed as exc:
                gitops.git(worktree, "reset", "--hard", "--quiet", "HEAD")
                notes.append(f"{name}: not made: {exc}")
                continue
        elif name == FORMAT_GROUP:
            python_tools.ruff_format(worktree, files, settings)
            rule, title = "format", "Format Python files with ruff format"
        elif name == FOLLOWUP_GROUP:
            python_tools.ruff_fix(worktree, files, None, settings)
            rule, title = "follow-up", "Apply the safe fixes the earlier groups made necessary"
        else:
            rule = name.removeprefix("ruff-")
            python_tools.ruff_fix(worktree, files, [rule], settings)
            title = f"Apply ruff's safe fixes for {rule}"
        patch = gitops.diff_head(worktree)
        kept_back = keep_public_names(worktree)
        if kept_back:
            notes.extend(f"{name}: {note}" for note in kept_back)
            patch = gitops.diff_head(worktree)
        if not patch.strip():
            if name != FOLLOWUP_GROUP:
                notes.append(f"{name}: the tool changed nothing (fixed by an earlier group)")
            continue
        groups.append(record_group(worktree, patch, len(groups) + 1, name, title, tool, [rule], members, patch_dir))
    return PatchPlan(base_commit=base_commit, groups=groups, plan_sha256=plan_sha256(base_commit, groups), notes=notes)
