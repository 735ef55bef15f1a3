"""Diurnal optimization: retune routing from measured outcomes (SPEC §1, §8).

From the model-call telemetry of the last window, per (task type, model): the success rate
with a Wilson lower confidence bound, the mean and P90 cost, the P95 latency and drift
signals (repeated failures of one kind) — each call weighted by its age (exponential decay
with a half-life, so yesterday morning counts less than last night). For each task type the
policy names the cheapest model whose lower bound meets the quality target, with the
evidence; models measured below the target are listed to avoid. A choice changes only on
enough evidence (a minimum effective sample), and a model without a price is never chosen.

Plain pandas; the Dagster asset (``assets/economics.py``) only calls ``compute``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd

POLICY_SCHEMA = "casm.routing_policy/1"


@dataclass(frozen=True)
class PolicySettings:
    window_hours: float = 24.0
    half_life_hours: float = 12.0
    min_samples: float = 10.0  # effective (decayed) calls before a model's numbers count
    quality_target: float = 0.80  # the success lower bound a chosen model must reach
    z: float = 1.96  # 95% two-sided confidence for the Wilson bound
    drift_failures: int = 3  # this many failures of one kind in the window is drift


def wilson_lower(successes: float, n: float, z: float) -> float:
    if n <= 0:
        return 0.0
    p = successes / n
    denom = 1 + z * z / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - margin) / denom)


def _failure_kind(error: str, outcome: str) -> str:
    """What kind of quality failure a call was (drift groups them)."""
    if outcome == "pass":
        return ""
    text = (error or "").strip().lower()
    if not text or text.startswith(("invalid output", "invalid_output")):
        return "invalid_output"
    words = text.split(":", 1)[-1].split()
    return words[0] if words else "failed"


def model_stats(calls: pd.DataFrame, now: datetime, settings: PolicySettings) -> pd.DataFrame:
    """One row per (task_type, provider, model) over the window; ``calls`` has the columns of
    ``casm_model_calls`` (ts ISO strings, cost_usd decimal strings). Offline calls are not
    measurements of any model and are left out."""
    columns = [
        "task_type", "provider", "model", "calls", "effective_n", "successes", "success_rate", "success_lower",
        "mean_cost_usd", "p90_cost_usd", "p95_latency_ms", "drift", "drift_kind",
    ]  # fmt: skip
    if calls.empty:
        return pd.DataFrame(columns=columns)
    # Quality is what a model answered: a valid answer passes, an invalid one fails. Provider
    # errors (429, 5xx, timeouts) say nothing about quality and are left out.
    df = calls[(calls["provider"] != "offline") & calls["outcome"].isin(["pass", "fail"])].copy()
    df["at"] = pd.to_datetime(df["ts"], utc=True, format="ISO8601")
    start = pd.Timestamp(now - timedelta(hours=settings.window_hours))
    df = df[(df["at"] > start) & (df["at"] <= pd.Timestamp(now))]
    if df.empty:
        return pd.DataFrame(columns=columns)
    age_h = (pd.Timestamp(now) - df["at"]).dt.total_seconds() / 3600
    df["w"] = 0.5 ** (age_h / settings.half_life_hours)
    df["ok"] = (df["outcome"] == "pass").astype(float)
    df["cost"] = df["cost_usd"].map(lambda v: float(Decimal(v)))
    df["kind"] = [_failure_kind(e, o) for e, o in zip(df["error"], df["outcome"], strict=True)]
    rows = []
    for (task_type, provider, model), g in df.groupby(["task_type", "provider", "model"], sort=True):
        n = float(g["w"].sum())
        s = float((g["w"] * g["ok"]).sum())
        failures = g[g["kind"] != ""]["kind"].value_counts()
        kind, count = (failures.index[0], int(failures.iloc[0])) if len(failures) else ("", 0)
        rows.append(
            {
                "task_type": task_type,
                "provider": provider,
                "model": model,
                "calls": len(g),
                "effective_n": round(n, 3),
                "successes": round(s, 3),
                "success_rate": round(s / n, 4) if n else 0.0,
                "success_lower": round(wilson_lower(s, n, settings.z), 4),
                "mean_cost_usd": round(float((g["w"] * g["cost"]).sum() / n), 8) if n else 0.0,
                "p90_cost_usd": round(float(g["cost"].quantile(0.9)), 8),
                "p95_latency_ms": int(g["latency_ms"].quantile(0.95)),
                "drift": count >= settings.drift_failures,
                "drift_kind": kind if count >= settings.drift_failures else "",
            }
        )
    return pd.DataFrame(rows, columns=columns)


@dataclass(frozen=True)
class Choice:
    task_type: str
    provider: str
    model: str
    why: str
    evidence: dict[str, Any]


def compute(
    calls: pd.DataFrame,
    now: datetime,
    priced: Callable[[str, str], bool],
    settings: PolicySettings = PolicySettings(),
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The routing policy document. ``priced(provider, model)``: does the price registry know it."""
    stats = model_stats(calls, now, settings)
    before = (previous or {}).get("choices", {})
    choices: dict[str, dict[str, Any]] = {}
    avoid: dict[str, list[str]] = {}
    notes: list[str] = []
    for task_type in sorted(set(stats["task_type"]) | set(before)):
        rows = stats[stats["task_type"] == task_type]
        sampled = rows[rows["effective_n"] >= settings.min_samples]
        failing = sampled[sampled["success_lower"] < settings.quality_target]
        if len(failing):
            avoid[task_type] = [f"{r.provider}/{r.model}" for r in failing.itertuples()]
        meeting = [r for r in sampled.itertuples() if r.success_lower >= settings.quality_target]
        unpriced = [r for r in meeting if not priced(r.provider, r.model)]
        for r in unpriced:
            notes.append(f"{task_type}: {r.provider}/{r.model} meets the target but has no price: never chosen")
        meeting = [r for r in meeting if priced(r.provider, r.model)]
        if meeting:
            best = min(meeting, key=lambda r: (r.mean_cost_usd, r.provider, r.model))
            choices[task_type] = {
                "provider": best.provider,
                "model": best.model,
                "why": (
                    f"cheapest model meeting the quality target: success ≥ {best.success_lower:.2f} "
                    f"(95% lower bound, n≈{best.effective_n:.0f}) vs target {settings.quality_target:.2f}, "
                    f"mean ${best.mean_cost_usd:.6f} per call"
                ),
                "evidence": {k: _plain(v) for k, v in best._asdict().items() if k != "Index"},
            }
        elif task_type in before:
            kept = before[task_type]
            if f"{kept['provider']}/{kept['model']}" in avoid.get(task_type, []):
                notes.append(f"{task_type}: the previous choice {kept['model']} fails the target; none meets it")
            elif not priced(kept["provider"], kept["model"]):
                notes.append(f"{task_type}: the previous choice {kept['model']} has no price any more: dropped")
            else:
                original = kept["why"].removeprefix("kept: too little new evidence (").removesuffix(")")
                choices[task_type] = {**kept, "why": f"kept: too little new evidence ({original})"}
        else:
            notes.append(f"{task_type}: no model has {settings.min_samples:g} calls meeting the target yet")
    changes = []
    for task_type in sorted(set(before) | set(choices)):
        old, new = before.get(task_type), choices.get(task_type)
        old_key = f"{old['provider']}/{old['model']}" if old else None
        new_key = f"{new['provider']}/{new['model']}" if new else None
        if old_key != new_key:
            changes.append({"task_type": task_type, "before": old_key, "after": new_key,
                            "why": new["why"] if new else "no model meets the target any more"})  # fmt: skip
    body = {
        "schema": POLICY_SCHEMA,
        "created_at": now.isoformat().replace("+00:00", "Z"),
        "settings": asdict(settings),
        "previous_version": (previous or {}).get("version"),
        "choices": choices,
        "avoid": avoid,
        "changes": changes,
        "notes": notes,
        "stats": [{k: _plain(v) for k, v in row.items()} for row in stats.to_dict(orient="records")],
    }
    digest = hashlib.sha256(json.dumps({"choices": choices, "avoid": avoid}, sort_keys=True).encode()).hexdigest()
    body["version"] = f"{now.strftime('%Y%m%d')}-{digest[:8]}"
    return body


def _plain(value: Any) -> Any:
    """numpy scalars → Python (for JSON and Dagster metadata)."""
    if hasattr(value, "item"):
        return value.item()
    return value
