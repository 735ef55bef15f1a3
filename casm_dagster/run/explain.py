"""``casm explain``: a run's story told from its persisted events only.

Same events in, same bytes out: nothing here reads the clock, the repo or the instance.
"""

from __future__ import annotations

from pathlib import Path

from casm_dagster.contracts.events import RunEvent
from casm_dagster.errors import RunNotFoundError
from casm_dagster.run.ids import is_ulid
from casm_dagster.run.journal import read_events


def run_dir_for(state_dir: Path, run_id: str) -> Path:
    if not is_ulid(run_id):
        raise RunNotFoundError(f"not a CASM run id (expected a 26-character ULID): {run_id!r}")
    run_dir = state_dir / "runs" / run_id
    if not run_dir.is_dir():
        raise RunNotFoundError(f"no run {run_id} under {state_dir / 'runs'}")
    return run_dir


def _policy_lines(data: dict) -> list[str]:
    ruleset = data.get("ruleset") or {}
    lines = [
        f"  status: {data.get('status')}  risk {data.get('score')}  "
        f"ruleset {ruleset.get('id')} ({ruleset.get('source')}, sha256 {str(ruleset.get('hash', ''))[:12]})",
        f"  reason codes: {', '.join(data.get('reason_codes') or []) or 'none'}",
        f"  conditions: {', '.join(data.get('conditions') or []) or 'none'}",
        "  components:",
    ]
    for c in data.get("components") or []:
        lines.append(
            f"    {c['name']:<24} {c['contribution']:.4f} of weight {c['weight']:.2f} ({c['evidence_count']} evidence)"
        )
    semantic = data.get("semantic") or {}
    if semantic:
        lines.append(f"  semantic score from: {semantic.get('source')}")
    signals = data.get("signals") or []
    total = data.get("signals_total", len(signals))
    lines.append(f"  signals ({total}; evidence is hashed, never the raw text):" if signals else "  signals: none")
    for sig in signals:
        where = sig["file"] + (f":{sig['line_start']}" if sig.get("line_start") else "")
        evidence = sig.get("evidence") or {}
        digest = evidence.get("diff_hunk_sha256")
        extra = f" pattern={evidence['pattern_id']}" if evidence.get("pattern_id") else ""
        extra += f" hunk_hmac={digest[:16]}" if digest else ""
        lines.append(f"    [{sig['severity']}] {sig['type']} {where} — {sig['message']}{extra}")
    if total > len(signals):
        lines.append(f"    …and {total - len(signals)} more in policy_decisions.json")
    scope = data.get("scope")
    if scope:
        lines.append("  decision packet:")
        lines.append(f"    allow: {', '.join(scope['allow_files']) or 'none'}")
        lines.append(f"    deny:  {', '.join(scope['deny_files']) or 'none'}")
        lines.append(f"    scope: {scope['notes']}")
    return lines


_OUTCOMES = {
    "run_completed": "succeeded ({})",
    "run_failed": "failed ({})",
    "run_held": "awaiting approval ({})",
    "run_blocked": "blocked ({})",
}


def explain(events: list[RunEvent]) -> str:
    if not events:
        return "no events recorded\n"
    first = events[0]
    lines = [f"run {first.run_id}"]
    if first.type == "run_started":
        lines.append(f"  {first.message} (seed {first.data.get('seed')})")
    stage_rows: dict[str, tuple[str, str]] = {}
    decisions: list[str] = []
    policy: list[str] = []
    hitl: list[str] = []
    outcome = "unfinished (no run_completed or run_failed event: the process may have been killed)"
    for event in events:
        if event.type in ("stage_completed", "stage_skipped", "stage_failed") and event.stage:
            status = event.type.removeprefix("stage_")
            stage_rows[event.stage] = (status, event.message)
        elif event.type == "stage_started" and event.stage and stage_rows.get(event.stage, ("",))[0] != "started":
            stage_rows[event.stage] = ("started", event.message)
        elif event.type == "decision" and event.stage:
            decisions.append(f"  [{event.stage}] {event.data.get('decision', '?')}: {event.message}")
            if str(event.data.get("decision", "")).startswith("policy_"):
                policy = _policy_lines(event.data)
        elif event.type == "security_alert":
            hitl.append(f"  {event.ts} SECURITY ALERT: {event.message}")
        elif event.type == "run_held":
            hitl.append(f"  {event.ts} held: {event.message}")
        elif event.type == "hitl_decision":
            hitl.append(f"  {event.ts} {event.message}")
            if event.data.get("outcome") in ("denied", "expired"):
                outcome = f"{event.data['outcome']} ({event.message})"
        elif event.type == "run_resumed":
            hitl.append(f"  {event.ts} resumed: {event.message}")
        if event.type in _OUTCOMES:
            outcome = _OUTCOMES[event.type].format(event.message)
    lines.append("")
    lines.append("stages:")
    for stage, (status, message) in stage_rows.items():
        lines.append(f"  {stage:<9} {status:<9} {message}")
    if policy:
        lines += ["", "policy:", *policy]
    if hitl:
        lines += ["", "human in the loop:", *hitl]
    lines.append("")
    lines.append("decisions:" if decisions else "decisions: none")
    lines.extend(decisions)
    lines.append("")
    lines.append(f"outcome: {outcome}")
    lines.append(f"events: {len(events)}")
    return "\n".join(lines) + "\n"


def explain_run(state_dir: Path, run_id: str) -> str:
    return explain(read_events(run_dir_for(state_dir, run_id)))
