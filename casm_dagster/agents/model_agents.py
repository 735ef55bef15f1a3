"""The model agents at work: each runs the tasks the forecast stage planned for it, through
the router (SPEC §5: models are reached only through the router).

Reviews run concurrently (``routing.max_parallel``); fixes and docs run one file at a time
in the fixer's scratch checkout, each checked with ``git apply --check`` before it becomes
a patch group, so every group applies on top of the ones before it."""

from __future__ import annotations

import ast
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from casm_dagster.agents import answers, prompts
from casm_dagster.agents.fixer import record_group
from casm_dagster.contracts.findings import SEVERITY_ORDER, Finding
from casm_dagster.contracts.plan import PatchGroup
from casm_dagster.cost.forecast import PlannedTask
from casm_dagster.errors import RepoError
from casm_dagster.llm.providers import Prompt
from casm_dagster.llm.router import InvalidOutput, ModelTask, Router, TaskResult
from casm_dagster.policy.diff import DiffError, apply_hunks, parse_diff
from casm_dagster.policy.engine import SemanticScore
from casm_dagster.safety import gitops
from casm_dagster.safety.repo_scan import SourceFile

MAX_FIX_FINDINGS = 10  # per file, most severe first


@dataclass
class Tally:
    """What the model work of a stage came to (the report and the journal say so)."""

    done: int = 0
    dropped: int = 0
    failed_calls: int = 0
    notes: list[str] = field(default_factory=list)

    def add(self, result: TaskResult[Any]) -> None:
        if result.status == "done":
            self.done += 1
        else:
            self.dropped += 1
            self.notes.append(f"{result.task.task_type} {result.task.target}: {result.reason}")
        self.failed_calls += sum(c.outcome != "pass" for c in result.calls)


def task_of(t: PlannedTask, prompt: Prompt) -> ModelTask:
    return ModelTask(t.task_id, t.task_type, t.stage, t.profile, t.target, prompt, t.output_p50, t.risk_high)  # type: ignore[arg-type]


def review(
    router: Router, planned: list[PlannedTask], files: dict[str, SourceFile], parallel: int
) -> tuple[list[Finding], Tally]:
    tally = Tally()
    jobs: list[tuple[ModelTask, Callable[[str], list[Finding]]]] = []
    for t in planned:
        f = files.get(t.target)
        if f is None:
            continue
        jobs.append((task_of(t, prompts.review_prompt(f.path, f.text, f.language)), _review_parser(f)))
    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="casm-review") as pool:
        results = list(pool.map(lambda job: router.run(*job), jobs))
    findings: list[Finding] = []
    for result in results:  # in plan order, whatever order they finished in
        tally.add(result)
        findings += result.value or []
    return findings, tally


def _review_parser(f: SourceFile) -> Callable[[str], list[Finding]]:
    return lambda answer: answers.parse_review(answer, f.path, f.text)


def _diff_parser(tree: Path, path: str, additions_only: bool) -> Callable[[str], bytes | None]:
    def parse(answer: str) -> bytes | None:
        patch = answers.parse_file_diff(answer, path, additions_only)
        if patch is None:
            return None
        try:
            gitops.git(tree, "apply", "--check", "--whitespace=nowarn", "-", input_bytes=patch)
        except RepoError as exc:
            raise InvalidOutput(f"the diff does not apply: {exc}") from None
        if additions_only and path.endswith((".py", ".pyi")):
            old = (tree / path).read_text(encoding="utf-8", errors="replace")
            try:
                new = apply_hunks(old, parse_diff(patch)[0].hunks)
            except DiffError as exc:
                raise InvalidOutput(f"the diff does not apply: {exc}") from None
            answers.check_docs_only(old, new)
        return patch

    return parse


def fix(
    router: Router,
    planned: list[PlannedTask],
    tree: Path,
    findings: list[Finding],
    patch_dir: Path,
    groups: list[PatchGroup],
) -> Tally:
    """Model-written fixes for files with findings no deterministic fix covers."""
    tally = Tally()
    open_findings: dict[str, list[Finding]] = {}
    for f in findings:
        if not f.auto_fixable and f.severity != "info" and f.line > 0:
            open_findings.setdefault(f.file, []).append(f)
    for t in planned:
        mine = sorted(open_findings.get(t.target, []), key=lambda f: (SEVERITY_ORDER[f.severity], f.line))
        if not mine or not (tree / t.target).is_file():
            continue
        mine = mine[:MAX_FIX_FINDINGS]
        text = (tree / t.target).read_text(encoding="utf-8", errors="replace")
        result = router.run(task_of(t, prompts.fix_prompt(t.target, text, mine)), _diff_parser(tree, t.target, False))
        tally.add(result)
        if result.value:
            title = f"Fix {len(mine)} finding(s) in {t.target} (model-written)"
            _keep(tree, result.value, groups, ("model-fix", t.target, title), mine, patch_dir)
    return tally


def _keep(
    tree: Path,
    patch: bytes,
    groups: list[PatchGroup],
    what: tuple[str, str, str],
    members: list[Finding],
    patch_dir: Path,
) -> None:
    """A checked model patch becomes the next patch group (applied and committed in ``tree``)."""
    rule, target, title = what
    gitops.apply_patch(tree, patch)
    staged = gitops.diff_head(tree)
    name = f"{rule}-{_slug(target)}"
    groups.append(record_group(tree, staged, len(groups) + 1, name, title, "model", [rule], members, patch_dir))


def undocumented(text: str) -> list[str]:
    """Public top-level functions and classes (and public methods) without a docstring."""
    try:
        module = ast.parse(text)
    except (SyntaxError, ValueError):
        return []
    names = []
    for node in module.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and not node.name.startswith("_"):
            if ast.get_docstring(node) is None:
                names.append(node.name)
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if (
                        isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                        and not item.name.startswith("_")
                        and ast.get_docstring(item) is None
                    ):
                        names.append(f"{node.name}.{item.name}")
    return names


def document(
    router: Router, planned: list[PlannedTask], tree: Path, touched: set[str], patch_dir: Path, groups: list[PatchGroup]
) -> Tally:
    """Docstrings for the public APIs of the Python files the patch set touches."""
    tally = Tally()
    for t in planned:
        if t.target not in touched or not (tree / t.target).is_file():
            continue
        text = (tree / t.target).read_text(encoding="utf-8", errors="replace")
        names = undocumented(text)
        if not names:
            continue
        result = router.run(
            task_of(t, prompts.docgen_prompt(t.target, text, names)), _diff_parser(tree, t.target, True)
        )
        tally.add(result)
        if result.value:
            title = f"Document public APIs in {t.target} (model-written)"
            _keep(tree, result.value, groups, ("docgen", t.target, title), [], patch_dir)
    return tally


def redteam(
    router: Router, planned: list[PlannedTask], diff_text: str
) -> tuple[SemanticScore | None, Tally, list[dict[str, str]]]:
    """The planned patch reviewed for security regressions; the verdict becomes the policy's
    semantic score. Offline, or when the task is dropped, the policy keeps its heuristic."""
    tally = Tally()
    if not planned or not diff_text.strip():
        return None, tally, []
    t = planned[0]
    result = router.run(task_of(t, prompts.redteam_prompt(diff_text)), answers.parse_redteam)
    tally.add(result)
    verdict = result.value
    if verdict is None or not result.calls or result.calls[-1].provider == "offline":
        return None, tally, []
    last = result.calls[-1]
    detail = f"{verdict.verdict}: " + (
        "; ".join(f"{c['file']}: {c['reason']}" for c in verdict.concerns) or "no concerns"
    )
    return SemanticScore(verdict.score, f"model:{last.provider}/{last.model}", detail[:500]), tally, verdict.concerns


def _slug(path: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in path).strip("-")[:40]
