"""Where the router's choices and calls go: the instance database (``casm_model_calls``),
the run's events, ``routing.jsonl`` (the entries of routing_decisions.json) and
``replies.jsonl`` (what each call answered, redacted, so a replay can serve it again)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from casm_dagster.cost.usage import Usage, usd
from casm_dagster.llm.providers import ProviderError
from casm_dagster.llm.router import CallRecord, ModelTask, RouteChoice
from casm_dagster.run.journal import Journal, utc_now
from casm_dagster.safety.redact import redact
from casm_dagster.stores.db import model_calls_table

ROUTING_FILE = "routing.jsonl"
REPLIES_FILE = "replies.jsonl"


def _append(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(payload, sort_keys=True) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class RunTelemetry:
    """The router's ``Recorder`` for one run (thread-safe: review tasks run concurrently)."""

    def __init__(self, journal: Journal, engine: sa.Engine, price_registry: str, fallbacks: dict[str, str]) -> None:
        self.journal = journal
        self.engine = engine
        self.price_registry = price_registry
        self.fallbacks = fallbacks
        self._lock = threading.Lock()

    def route(self, choice: RouteChoice) -> None:
        entry = choice.as_json(self.fallbacks)
        with self._lock:
            _append(self.journal.run_dir / ROUTING_FILE, entry)
        sel = entry["selected"]
        self.journal.decision(
            choice.task.stage,  # type: ignore[arg-type]
            "model_routed",
            f"{choice.task.task_type} {choice.task.target}: {sel['provider']}/{sel['model']} ({choice.profile}); "
            + ", ".join(choice.reason_codes),
            task_id=choice.task.task_id,
            reason_codes=list(choice.reason_codes),
        )

    def call(self, record: CallRecord, reply_text: str | None, error: ProviderError | None) -> None:
        spec = self.journal.spec
        row = {
            "call_id": record.call_id,
            "run_id": spec.run_id,
            "task_id": record.task_id,
            "task_type": record.task_type,
            "stage": record.stage,
            "repo": spec.repo,
            "template_id": spec.template_id,
            "provider": record.provider,
            "model": record.model,
            "profile": record.profile,
            "attempt": record.attempt,
            "retries": record.retries,
            "input_tokens": record.usage.input,
            "output_tokens": record.usage.output,
            "cache_read_tokens": record.usage.cache_read,
            "cache_write_tokens": record.usage.cache_write,
            "reasoning_tokens": record.usage.reasoning,
            "latency_ms": record.latency_ms,
            "route_reason": record.route_reason,
            "outcome": record.outcome,
            "quality": record.quality,
            "cost_usd": str(record.cost),
            "priced_by_default": record.priced_by_default,
            "price_registry": self.price_registry,
            "error": redact(record.error),
            "ts": utc_now(),
        }
        with self.engine.begin() as conn:
            conn.execute(model_calls_table.insert().values(**row))
        replay = {
            "task_id": record.task_id,
            "prompt_sha256": record.prompt_sha256,
            "attempt": record.attempt,
            "provider": record.provider,
            "model": record.model,
            "latency_ms": record.latency_ms,
            "usage": record.usage.__dict__,
            "text": redact(reply_text) if reply_text is not None else None,
            "error": (
                {"kind": error.kind, "status": error.status, "retry_after": error.retry_after, "message": str(error)}
                if error
                else None
            ),
        }
        with self._lock:
            _append(self.journal.run_dir / REPLIES_FILE, replay)
        event = {k: v for k, v in row.items() if k not in ("run_id", "repo", "template_id", "ts", "stage")}
        self.journal.emit(
            "model_call",
            f"{record.task_type} via {record.provider}/{record.model}: {record.outcome}, "
            f"{record.usage.total_input}+{record.usage.output} tokens, ${usd(record.cost)}",
            stage=record.stage,  # type: ignore[arg-type]
            **event,
        )

    def dropped(self, task: ModelTask, reason: str) -> None:
        self.journal.decision(
            task.stage,  # type: ignore[arg-type]
            "task_dropped",
            f"{task.task_type} {task.target}: {reason}",
            task_id=task.task_id,
        )


@dataclass(frozen=True)
class StoredCall:
    call_id: str
    run_id: str
    task_id: str
    task_type: str
    stage: str
    provider: str
    model: str
    profile: str
    attempt: int
    retries: int
    usage: Usage
    latency_ms: int
    outcome: str
    quality: float
    cost: Decimal
    priced_by_default: bool
    price_registry: str
    route_reason: str
    error: str
    ts: str


def calls_for_run(engine: sa.Engine, run_id: str) -> list[StoredCall]:
    t = model_calls_table
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t).where(t.c.run_id == run_id).order_by(t.c.ts, t.c.call_id)).all()
    out = []
    for row in rows:
        m = dict(row._mapping)
        out.append(
            StoredCall(
                call_id=m["call_id"],
                run_id=m["run_id"],
                task_id=m["task_id"],
                task_type=m["task_type"],
                stage=m["stage"],
                provider=m["provider"],
                model=m["model"],
                profile=m["profile"],
                attempt=m["attempt"],
                retries=m["retries"],
                usage=Usage(
                    m["input_tokens"],
                    m["output_tokens"],
                    m["cache_read_tokens"],
                    m["cache_write_tokens"],
                    m["reasoning_tokens"],
                ),
                latency_ms=m["latency_ms"],
                outcome=m["outcome"],
                quality=m["quality"],
                cost=Decimal(m["cost_usd"]),
                priced_by_default=bool(m["priced_by_default"]),
                price_registry=m["price_registry"],
                route_reason=m["route_reason"],
                error=m["error"],
                ts=m["ts"],
            )
        )
    return out


def spent(engine: sa.Engine, run_id: str) -> Decimal:
    return sum((c.cost for c in calls_for_run(engine, run_id)), Decimal(0))
