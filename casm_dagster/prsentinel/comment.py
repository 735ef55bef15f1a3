"""The one sticky PR comment: risk and reason codes, the HITL request when gated, the
findings (noise-controlled), the audit's cost forecast, and a coverage footer.

Its hidden marker carries the last reviewed head and the findings, so the next push is
reviewed incrementally and earlier findings on untouched files are carried over.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field

from casm_dagster.contracts.findings import SEVERITY_ORDER, Finding
from casm_dagster.github import markers
from casm_dagster.prsentinel.policy import PrPolicy
from casm_dagster.prsentinel.scope import Scope
from casm_dagster.safety.markdown import CONTROL, inert, inert_path
from casm_dagster.safety.redact import redact

MARKER = "pr-sentinel"
NITPICKS = ("low", "info")  # folded into one collapsed list
MAX_COMMENT_CHARS = 65_000  # GitHub refuses comments over 65,536 characters (marker included)
MAX_STATE_CHARS = 20_000  # the hidden marker's share
MAX_COVERAGE_LINES = 40
HITL_START, HITL_END = "<!-- casm:hitl -->", "<!-- /casm:hitl -->"  # rewritten once approved
_FIX_HINTS = {
    "ruff": "`ruff check --fix` (or let repo-auditor patch it)",
    "ruff-format": "`ruff format`",
}


@dataclass(frozen=True)
class CommentData:
    run_id: str
    head: str
    start: str  # the merge base the PR is diffed from
    policy: PrPolicy
    findings: list[Finding]  # every finding in scope (new and carried)
    carried_ids: set[str]
    scope: Scope
    changed: int
    severity_threshold: str
    max_findings: int
    forecast_p50_usd: float
    forecast_p90_usd: float
    model_mode: str
    settings_note: str  # where the settings came from, or what is wrong with them
    settings_error: bool = False
    approvers: tuple[str, ...] = ()
    extra_notes: list[str] = field(default_factory=list)


def _fix(f: Finding) -> str:
    if f.auto_fixable:
        return _FIX_HINTS.get(f.analyser, "auto-fixable")
    return "—"


def _row(f: Finding, carried: set[str]) -> str:
    where = inert_path(f"{f.file}:{f.line}" if f.line else f.file)
    new = "" if f.id in carried else " 🆕"
    return f"| {f.severity}{new} | {where} | {inert_path(f.rule)} | {inert(f.message)} | {_fix(f)} |"


def visible(findings: list[Finding], threshold: str) -> list[Finding]:
    limit = SEVERITY_ORDER[threshold]
    return sorted(
        (f for f in findings if SEVERITY_ORDER[f.severity] <= limit),
        key=lambda f: (SEVERITY_ORDER[f.severity], f.file, f.line, f.rule),
    )


def _hitl(d: CommentData) -> list[str]:
    p = d.policy
    if p.status != "gate":
        return []
    who = ", ".join(f"`{a}`" for a in p.hitl.approvers) or "a maintainer"
    if p.hitl.mode == "github_label":
        how = f"an allowed approver ({who}) adds the label `{p.hitl.required_label}`"
    elif p.hitl.mode == "github_comment":
        how = f"an allowed approver ({who}) comments matching `{p.hitl.approval_comment_regex}`"
    else:
        how = f'run `casm approve --run-id {d.run_id} --reason "..."`'
    lines = [
        "",
        HITL_START,
        f"**⏸ Held for human approval** (request `{p.request_id}`, expires {p.expires_at}): {how}.",
        "Only approvals given after this review count; a new push needs a new approval.",
    ]
    if p.scope_notes:
        lines.append(f"Suggested safe scope: {p.scope_notes}")
    return [*lines, HITL_END]


def render(d: CommentData) -> str:
    p = d.policy
    icon = {"pass": "✅", "warn": "⚠️", "gate": "⏸", "block": "⛔"}.get(p.status, "")
    codes = ", ".join(f"`{c}`" for c in p.reason_codes) or "none"
    lines = [
        f"## CASM pr-sentinel — risk {p.score:.2f} {icon} {p.status.upper()}",
        "",
        f"Reason codes: {codes}. {p.summary}",
    ]
    if p.status == "block":
        lines += ["", "**⛔ Blocked:** this change cannot be approved as is (e.g. a secret in the diff)."]
    lines += _hitl(d)
    shown = visible(d.findings, d.severity_threshold)
    hidden_below = len(d.findings) - len(shown)
    major = [f for f in shown if f.severity not in NITPICKS]
    nits = [f for f in shown if f.severity in NITPICKS]
    budget = d.max_findings
    major_shown, nits_shown = major[:budget], nits[: max(0, budget - len(major))]
    omitted = len(major) - len(major_shown) + len(nits) - len(nits_shown)
    lines += ["", f"### Findings ({len(shown)} at or above `{d.severity_threshold}`)"]
    header = ["| severity | where | rule | finding | suggested fix |", "|---|---|---|---|---|"]
    if major_shown:
        lines += header + [_row(f, d.carried_ids) for f in major_shown]
    elif not nits_shown:
        lines.append("No findings in the reviewed files.")
    if nits_shown:
        lines += ["", f"<details><summary>{len(nits_shown)} nitpicks (low/info)</summary>", ""]
        lines += header + [_row(f, d.carried_ids) for f in nits_shown] + ["", "</details>"]
    notes = []
    if omitted:
        notes.append(f"{omitted} more not shown (max_findings: {d.max_findings})")
    if hidden_below:
        notes.append(f"{hidden_below} below the severity threshold")
    if notes:
        lines += ["", f"_{'; '.join(notes)}._"]
    lines += [
        "",
        "### Cost",
        f"Forecast of this audit: **${d.forecast_p50_usd:.4f}** (P90 ${d.forecast_p90_usd:.4f}); "
        f"models: {d.model_mode}.",
    ]
    lines += ["", "### Coverage", _coverage(d)]
    skipped = sorted(d.scope.not_reviewed.items())
    for path, why in skipped[:MAX_COVERAGE_LINES]:
        lines.append(f"- {inert_path(path)} — {inert(why)}")
    if len(skipped) > MAX_COVERAGE_LINES:
        lines.append(f"- … and {len(skipped) - MAX_COVERAGE_LINES} more (the run's scope.json lists them all)")
    note = html.escape(CONTROL.sub(" ", d.settings_note), quote=False)  # CASM's own words
    settings = f"⚠️ {note}" if d.settings_error else note
    footer = [f"<sub>{settings} · run `{d.run_id}` · head `{d.head[:12]}`</sub>"]
    footer += [f"<sub>{html.escape(n, quote=False)}</sub>" for n in d.extra_notes]
    marker = markers.render(MARKER, _state(d))
    room = MAX_COMMENT_CHARS - len(marker) - sum(len(x) + 1 for x in footer) - 200
    body = redact("\n".join(lines))
    if len(body) > room:  # the footer (settings, run id) always survives
        body = body[:room] + "\n\n_(truncated: the full review is in the run's report)_"
    return "\n".join([marker, body, "", *footer]) + "\n"


def _coverage(d: CommentData) -> str:
    s = d.scope
    text = f"Reviewed {len(s.reviewed)} of {d.changed} changed files (~{s.tokens} tokens)"
    if s.incremental_from:
        text += (
            f"; incremental since `{s.incremental_from[:12]}`: {len(s.carried)} unchanged files kept their "
            "earlier findings"
        )
    return text + (". Not reviewed:" if s.not_reviewed else ".")


def _state(d: CommentData) -> dict:
    """What the next push's review needs: the head, the files this review covered (reviewed
    or carried), and the findings to carry over — most severe first, within a size cap."""
    findings: list[dict] = []
    size = 0
    for f in sorted(d.findings, key=lambda f: (SEVERITY_ORDER[f.severity], f.file, f.line)):
        item = {
            "id": f.id,
            "analyser": f.analyser,
            "rule": f.rule,
            "file": f.file,
            "line": f.line,
            "severity": f.severity,
            "message": redact(f.message)[:200],
            "auto_fixable": f.auto_fixable,
        }
        size += len(json.dumps(item))
        if size > MAX_STATE_CHARS:
            break
        findings.append(item)
    covered = sorted({*d.scope.reviewed, *d.scope.carried})
    if len(json.dumps(covered)) > MAX_STATE_CHARS:
        covered = []  # too many to carry: the next push is reviewed in full
    return {"v": 1, "head": d.head, "run_id": d.run_id, "covered": covered, "findings": findings}


def carried_findings(state: dict | None, paths: list[str]) -> list[Finding]:
    """The earlier review's findings on ``paths`` (files untouched since it), revalidated."""
    keep = set(paths)
    out = []
    for item in (state or {}).get("findings", []):
        try:
            finding = Finding(**item)
        except (TypeError, ValueError):
            continue  # a garbled marker loses its carry-over, never the review
        if finding.file in keep:
            out.append(finding)
    return out
