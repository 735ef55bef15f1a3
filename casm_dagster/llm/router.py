"""The cost-aware router (SPEC §8): pick a model for each task, call it through its
provider with retries and fallbacks, and record every choice and every call.

Selection: the task's profile (raised one step when the change is high-risk) gives ranked
candidates; each is estimated (tokens of the actual prompt × registry prices, catalog
quality and latency), rejected with reasons where it cannot serve, and the strategy picks
among the rest. Execution: the worst-case cost is reserved in the budget ledger before a
call and settled after; 429/5xx/connection errors are retried with backoff honouring
``retry-after``; a timeout, exhausted retries, an over-budget reservation or invalid
output trigger the template's fallback (downgrade_model, switch_provider, reduce_scope,
stop).
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Generic, Literal, Protocol, TypeVar

from casm_dagster.cost.budget import BudgetLedger, OverBudget
from casm_dagster.cost.prices import PriceRegistry, UnknownModelError
from casm_dagster.cost.usage import Usage, llm_cost, usd
from casm_dagster.llm.catalog import (
    OFFLINE_MODEL,
    OFFLINE_PROVIDER,
    PROFILES,
    Candidate,
    Catalog,
    higher_profile,
    lower_profile,
)
from casm_dagster.llm.providers import Clients, Prompt, ProviderError, Reply, prompt_sha256
from casm_dagster.llm.tokens import estimate_tokens, max_tokens
from casm_dagster.run.ids import new_ulid

ROUTER_VERSION = "1.0"
STRATEGIES = ("cost_aware_quality_floor", "quality_first", "budget_first", "latency_first")
TaskType = Literal["review", "fix", "docgen", "benchmark", "redteam", "cost_audit", "other"]
Trigger = Literal["timeout", "over_budget", "low_quality", "provider_error"]
# What happens when the template names no action for a trigger.
DEFAULT_FALLBACKS: dict[str, str] = {
    "timeout": "downgrade_model",
    "provider_error": "switch_provider",
    "over_budget": "reduce_scope",
    "low_quality": "reduce_scope",
}
T = TypeVar("T")
NO_USAGE = Usage()  # a request that got no answer


class InvalidOutput(ValueError):
    """The model answered, but not in the shape the task asked for."""


@dataclass(frozen=True)
class ModelTask:
    task_id: str
    task_type: TaskType
    stage: str
    profile: str
    target: str  # what the task is about: a file path, "plan"
    prompt: Prompt
    expected_output_tokens: int  # the forecast's P50 guess; the prompt's cap is the worst case
    risk_high: bool = False  # the policy marks the target high-sensitivity: use a stronger profile
    input_tokens: int | None = None  # a forecast's projected prompt size (None: count the prompt)


@dataclass(frozen=True)
class RoutingSettings:
    strategy: str = "cost_aware_quality_floor"
    quality_floor: float = 0.7
    latency_slo_ms: int = 120_000
    max_usd_per_task: Decimal | None = None
    fallbacks: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_FALLBACKS))
    available: frozenset[str] = frozenset()  # providers with a key; empty → offline
    offline_reason: str = "offline_no_provider_key"
    max_retries: int = 2
    timeout_s: float = 120.0
    max_wait_s: float = 60.0  # a longer retry-after is treated as the provider being down
    backoff_base_s: float = 0.5
    seed: int = 0
    # The diurnal optimization's routing policy, as the run recorded it (``routing_view``):
    # per task type a chosen model, models measured below target, measured qualities.
    policy: Mapping[str, Any] | None = None

    @property
    def offline(self) -> bool:
        return not self.available

    def fallback(self, trigger: str) -> str:
        return self.fallbacks.get(trigger) or DEFAULT_FALLBACKS[trigger]


@dataclass(frozen=True)
class Scored:
    candidate: Candidate
    score: float
    est_cost: Decimal | None
    reject_reasons: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        c = self.candidate
        out: dict[str, Any] = {
            "provider": c.provider,
            "model": c.model,
            "profile": c.profile,
            "score": round(self.score, 6),
            "estimated_latency_ms": c.latency_ms,
            "estimated_quality": c.quality,
        }
        if self.est_cost is not None:
            out["estimated_cost_usd"] = usd(self.est_cost)
        if self.reject_reasons:
            out["reject_reasons"] = list(self.reject_reasons)
        return out


@dataclass(frozen=True)
class RouteChoice:
    task: ModelTask
    profile: str
    selected: Candidate | None
    candidates: tuple[Scored, ...]
    reason_codes: tuple[str, ...]
    constraints: dict[str, bool]
    est_input: int
    est_output: int
    est_cost: Decimal
    fallback: tuple[str, str] | None = None  # (trigger, action) that caused this re-route

    def as_json(self, fallbacks: Mapping[str, str]) -> dict[str, Any]:
        """One entry of routing_decisions.json's ``tasks`` (schema v0.1)."""
        sel = self.selected
        provider = sel.provider if sel else OFFLINE_PROVIDER
        return {
            "task_id": self.task.task_id,
            "task_type": self.task.task_type,
            "stage": self.task.stage,
            "selected": {
                "provider": provider if provider in ("openai", "anthropic", "kimi", "hf") else "other",
                "model": sel.model if sel else "none",
                "profile": self.profile,
                "estimated_input_tokens": self.est_input,
                "estimated_output_tokens": self.est_output,
                "estimated_cost_usd": usd(self.est_cost),
                "estimated_latency_ms": sel.latency_ms if sel else 0,
            },
            "candidates": [s.as_json() for s in self.candidates],
            "decision": {
                "reason_codes": list(self.reason_codes),
                "constraints_applied": dict(self.constraints),
                "fallbacks": [{"on": on, "action": action} for on, action in sorted(fallbacks.items())],
            },
        }


@dataclass(frozen=True)
class CallRecord:
    call_id: str
    task_id: str
    task_type: str
    stage: str
    provider: str
    model: str
    profile: str
    attempt: int  # 1-based over the whole task (fallbacks included)
    retries: int  # retries of this model before this call
    usage: Usage
    latency_ms: int
    route_reason: str
    outcome: Literal["pass", "fail", "error"]
    quality: float
    cost: Decimal
    priced_by_default: bool
    prompt_sha256: str = ""
    error: str = ""


@dataclass
class TaskResult(Generic[T]):
    task: ModelTask
    value: T | None
    calls: list[CallRecord]
    status: Literal["done", "dropped", "stopped"]
    reason: str = ""


class Recorder(Protocol):
    def route(self, choice: RouteChoice) -> None: ...
    def call(self, record: CallRecord, reply_text: str | None, error: ProviderError | None) -> None: ...
    def dropped(self, task: ModelTask, reason: str) -> None: ...


class Router:
    def __init__(
        self,
        catalog: Catalog,
        prices: PriceRegistry,
        settings: RoutingSettings,
        clients: Clients,
        ledger: BudgetLedger,
        recorder: Recorder,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.catalog = catalog
        self.prices = prices
        self.settings = settings
        self.clients = clients
        self.ledger = ledger
        self.recorder = recorder
        self._sleep = sleep
        self._rng = random.Random(settings.seed)
        self._lock = threading.Lock()
        self.stopped: str | None = None  # set by a ``stop`` fallback: no further calls
        # SPEC §1's in-run control: a model measured over the latency SLO in this run is not
        # routed to again (the stage's other tasks switch model).
        self.slow: set[str] = set()

    # -- selection ---------------------------------------------------------------------

    def _pool(self, profile: str) -> list[Candidate]:
        if self.settings.strategy == "budget_first":  # may go down to cheaper profiles
            upto = PROFILES.index(profile)
            return [c for p in PROFILES[: upto + 1] for c in self.catalog.candidates(p)]
        return self.catalog.candidates(profile)

    def _with_policy(
        self, task_type: str, profile: str, use_choice: bool = True
    ) -> tuple[list[Candidate], str | None, set[str]]:
        """The profile's pool with measured qualities in place of the catalog's assumptions,
        plus the policy's chosen model for this task type (added if the profile lacks it)."""
        pool = self._pool(profile)
        policy = self.settings.policy
        if not policy:
            return pool, None, set()
        measured = policy.get("measured", {}).get(task_type, {})
        pool = [dataclasses.replace(c, quality=measured[c.key]) if c.key in measured else c for c in pool]
        choice = policy.get("choices", {}).get(task_type) if use_choice else None
        key = f"{choice['provider']}/{choice['model']}" if choice else None
        if key and key not in {c.key for c in pool}:
            known = self.catalog.model.models.get(key)
            pool.append(
                Candidate(
                    choice["provider"],  # type: ignore[index]
                    choice["model"],  # type: ignore[index]
                    profile,
                    len(pool),
                    measured.get(key, known.quality if known else 0.0),
                    known.latency_ms if known else 0,
                )
            )
        return pool, key, set(policy.get("avoid", {}).get(task_type, []))

    def _estimate(self, c: Candidate, est_in: int, est_out: int) -> Decimal | None:
        try:
            rates = self.prices.rates(c.provider, c.model)
        except UnknownModelError:
            return None
        return llm_cost(Usage(input=est_in, output=est_out), rates)

    def route(
        self,
        task: ModelTask,
        profile: str | None = None,
        excluded: frozenset[str] = frozenset(),
        cost_ceiling: Decimal | None = None,
        fallback: tuple[str, str] | None = None,
        control: str | None = None,
    ) -> RouteChoice:
        """``control``: why an in-run control rule re-routes the task (recorded as a code)."""
        s = self.settings
        codes: list[str] = [f"strategy:{s.strategy}"]
        if control:
            codes.append(f"control:{control}")
        if profile is None:
            profile = task.profile
            if task.risk_high and s.strategy != "budget_first":
                profile = higher_profile(profile)
                codes.append("profile_raised_for_risk")
        if fallback:
            codes.append(f"fallback:{fallback[0]}->{fallback[1]}")
        est_in = task.input_tokens if task.input_tokens is not None else estimate_tokens(task.prompt.text)
        est_out = task.expected_output_tokens
        applied = {"budget": False, "latency": False, "quality": False}
        scored: list[tuple[Candidate, Decimal | None, list[str]]] = []
        # The policy's choice is for ordinary routing; a risk raise, a fallback or a control
        # re-run asks for something else (measured qualities and the avoid list still apply).
        own = profile == task.profile and fallback is None and control is None
        pool, choice_key, avoid = self._with_policy(task.task_type, profile, own)
        for c in pool:
            cost = self._estimate(c, est_in, est_out)
            reasons = []
            if c.key in avoid:
                reasons.append("below_measured_quality")
                applied["quality"] = True
            if c.key in self.slow:
                reasons.append("over_latency_slo_measured")
                applied["latency"] = True
            if c.provider not in s.available:
                reasons.append("provider_unavailable")
            if cost is None:
                reasons.append("unknown_price")
            if c.key in excluded:
                reasons.append("failed_earlier_in_task")
            if c.quality < s.quality_floor:
                reasons.append("below_quality_floor")
                applied["quality"] = True
            if c.latency_ms > s.latency_slo_ms:
                reasons.append("over_latency_slo")
                applied["latency"] = True
            if cost is not None and s.max_usd_per_task is not None and cost > s.max_usd_per_task:
                reasons.append("over_task_budget")
                applied["budget"] = True
            if cost is not None and cost_ceiling is not None and cost > cost_ceiling:
                reasons.append("not_cheaper_than_failed_model")
            scored.append((c, cost, reasons))
        eligible = [(c, cost) for c, cost, r in scored if not r]
        selected: Candidate | None = None
        if s.offline:
            codes.append(s.offline_reason)
        elif eligible:
            chosen = [c for c, _ in eligible if c.key == choice_key]
            follows = s.strategy in ("cost_aware_quality_floor", "budget_first")
            if chosen and follows:
                selected = chosen[0]
                codes += [f"routing_policy:{s.policy['version']}", "routing_policy_choice"]  # type: ignore[index]
            else:
                selected = self._pick(eligible, codes)
                if choice_key and follows:
                    codes.append(f"routing_policy:{s.policy['version']}:choice_not_eligible")  # type: ignore[index]
        else:
            codes.append("no_eligible_candidate")
        scores = self._scores(scored)
        ranked = sorted(scored, key=lambda x: (bool(x[2]), -scores[x[0].key], x[0].rank))
        candidates = tuple(Scored(c, scores[c.key], cost, tuple(r)) for c, cost, r in ranked)
        est_cost = Decimal(0)
        if selected is not None:
            est_cost = self._estimate(selected, est_in, est_out) or Decimal(0)
        elif s.offline:
            selected = Candidate(OFFLINE_PROVIDER, OFFLINE_MODEL, profile, 0, 1.0, 0)
        choice = RouteChoice(
            task, profile, selected, candidates, tuple(codes), applied, est_in, est_out, est_cost, fallback
        )
        self.recorder.route(choice)
        return choice

    def _pick(self, eligible: list[tuple[Candidate, Decimal | None]], codes: list[str]) -> Candidate:
        strategy = self.settings.strategy
        if strategy == "quality_first":
            codes.append("highest_quality")
            return min(eligible, key=lambda x: (-x[0].quality, x[0].rank))[0]
        if strategy == "latency_first":
            codes.append("lowest_latency")
            return min(eligible, key=lambda x: (x[0].latency_ms, x[1], x[0].rank))[0]
        codes.append("cheapest_meeting_quality_floor")
        return min(eligible, key=lambda x: (x[1], PROFILES.index(x[0].profile) * -1, x[0].rank))[0]

    def _scores(self, scored: list[tuple[Candidate, Decimal | None, list[str]]]) -> dict[str, float]:
        """The strategy's score in [0, 1] for every candidate (1 = the strategy's ideal)."""
        strategy = self.settings.strategy
        out: dict[str, float] = {}
        if strategy == "quality_first":
            return {c.key: c.quality for c, _, _ in scored}
        if strategy == "latency_first":
            worst = max((c.latency_ms for c, _, _ in scored), default=0) or 1
            return {c.key: 1 - c.latency_ms / worst for c, _, _ in scored}
        worst_cost = max((cost for _, cost, _ in scored if cost is not None), default=Decimal(0))
        for c, cost, _ in scored:
            if cost is None:
                out[c.key] = 0.0
            elif worst_cost == 0:
                out[c.key] = 1.0
            else:
                out[c.key] = float(1 - cost / worst_cost)
        return out

    # -- execution ---------------------------------------------------------------------

    def run(self, task: ModelTask, parse: Callable[[str], T]) -> TaskResult[T]:
        """Route, call, validate with ``parse`` (raise ``InvalidOutput`` to reject), fall back."""
        calls: list[CallRecord] = []
        excluded: set[str] = set()
        ceiling: Decimal | None = None
        profile: str | None = None
        fallback: tuple[str, str] | None = None
        control: str | None = None
        while True:
            if self.stopped:
                self.recorder.dropped(task, f"stopped: {self.stopped}")
                return TaskResult(task, None, calls, "stopped", self.stopped)
            choice = self.route(task, profile, frozenset(excluded), ceiling, fallback, control)
            if choice.selected is None:
                reason = "no model left to try" if fallback else "no eligible model"
                self.recorder.dropped(task, reason)
                return TaskResult(task, None, calls, "dropped", reason)
            value, trigger, detail = self._attempt(task, choice, parse, calls)
            if trigger is None:
                return TaskResult(task, value, calls, "done")
            stronger = higher_profile(choice.profile)
            if trigger == "low_quality" and control is None and stronger != choice.profile:
                # Quality under target: re-run once on a stronger profile before any fallback.
                control = f"quality_below_target:rerun_on_{stronger}"
                excluded.add(choice.selected.key)
                profile, fallback, ceiling = stronger, None, None
                continue
            action = self.settings.fallback(trigger)
            failed = choice.selected
            fallback = (trigger, action)
            if action == "stop":
                with self._lock:
                    self.stopped = self.stopped or f"{trigger} on task {task.task_id} ({detail})"
                continue
            if action == "reduce_scope" or choice.selected.provider == OFFLINE_PROVIDER:
                reason = f"{trigger}: {detail}; scope reduced (task dropped)"
                self.recorder.dropped(task, reason)
                return TaskResult(task, None, calls, "dropped", reason)
            excluded.add(failed.key)
            profile = choice.profile
            if action == "switch_provider":
                excluded |= {
                    c.key for p in PROFILES for c in self.catalog.candidates(p) if c.provider == failed.provider
                }
                ceiling = None
            else:  # downgrade_model: a cheaper model, from a weaker profile if this one has none
                ceiling = choice.est_cost
                cheaper = [
                    c
                    for c in self.catalog.candidates(profile)
                    if c.key not in excluded
                    and (self._estimate(c, choice.est_input, choice.est_output) or ceiling) < ceiling
                    and c.provider in self.settings.available
                ]
                if not cheaper and lower_profile(profile):
                    profile = lower_profile(profile)

    def _attempt(
        self, task: ModelTask, choice: RouteChoice, parse: Callable[[str], T], calls: list[CallRecord]
    ) -> tuple[T | None, Trigger | None, str]:
        """One model: calls with retries, one re-ask on invalid output. Returns the value,
        or the trigger that ends this model's turn."""
        c = choice.selected
        assert c is not None
        rates = self.prices.rates(c.provider, c.model)
        prompt = task.prompt
        retries = 0
        reasked = False

        def record(
            outcome: str, latency: int, usage: Usage = NO_USAGE, cost: Decimal = Decimal(0), **more: Any
        ) -> None:
            call = CallRecord(
                call_id=new_ulid(),
                task_id=task.task_id,
                task_type=task.task_type,
                stage=task.stage,
                provider=c.provider,
                model=c.model,
                profile=choice.profile,
                attempt=len(calls) + 1,
                retries=retries,
                usage=usage,
                latency_ms=latency,
                route_reason=",".join(choice.reason_codes),
                outcome=outcome,  # type: ignore[arg-type]
                quality=more.get("quality", 0.0),
                cost=cost,
                priced_by_default=rates.by_default,
                prompt_sha256=prompt_sha256(prompt),
                error=more.get("error", ""),
            )
            self.recorder.call(call, more.get("text"), more.get("err"))
            calls.append(call)

        while True:
            worst = llm_cost(Usage(input=max_tokens(prompt.text), output=prompt.max_output_tokens), rates)
            try:
                reservation = self.ledger.reserve(worst, f"{task.task_id} {c.key}")
            except OverBudget as exc:
                return None, "over_budget", str(exc)
            started = time.monotonic()
            try:
                reply: Reply = self.clients.get(c.provider).complete(c.model, prompt, self.settings.timeout_s)
            except ProviderError as err:
                self.ledger.release(reservation)  # a failed request is not billed
                record("error", int((time.monotonic() - started) * 1000), err=err, error=str(err))
                if err.retryable and retries < self.settings.max_retries:
                    wait = self._backoff(retries, err.retry_after)
                    if wait is not None:
                        retries += 1
                        self._sleep(wait)
                        continue
                return None, ("timeout" if err.kind == "timeout" else "provider_error"), str(err)
            latency = int((time.monotonic() - started) * 1000)
            cost = llm_cost(reply.usage, rates)
            self.ledger.settle(reservation, cost)
            try:
                value = parse(reply.text)
            except InvalidOutput as bad:
                record("fail", latency, reply.usage, cost, text=reply.text, error=f"invalid output: {bad}")
                if reasked:
                    return None, "low_quality", f"invalid output twice: {bad}"
                reasked = True
                prompt = Prompt(
                    task.prompt.system,
                    f"{task.prompt.user}\n\nYour previous answer was rejected: {bad}. Answer again, exactly in the "
                    "required format.",
                    task.prompt.max_output_tokens,
                    task.prompt.json_output,
                    task.prompt.offline_answer,
                )
                continue
            record("pass", latency, reply.usage, cost, text=reply.text, quality=0.5 if reasked else 1.0)
            if latency > self.settings.latency_slo_ms:
                with self._lock:  # over the SLO: the run's next tasks switch model
                    self.slow.add(c.key)
            return value, None, ""

    def _backoff(self, retries: int, retry_after: float | None) -> float | None:
        """Seconds to wait before retry ``retries + 1``: the server's ``retry-after`` when it
        gave one, else exponential backoff with jitter; None when the wait is too long."""
        if retry_after is not None:
            return retry_after if retry_after <= self.settings.max_wait_s else None
        with self._lock:
            jitter = self._rng.uniform(0, self.settings.backoff_base_s)
        return min(self.settings.max_wait_s, self.settings.backoff_base_s * 2**retries + jitter)
