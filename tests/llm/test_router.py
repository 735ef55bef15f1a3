"""The router over the real SDKs against the local wire-format server: exact telemetry,
retry-after honoured, fallbacks on timeout and 5xx, invalid output, budgets under
concurrency. The fake server is the only stand-in (it is the network edge)."""

from __future__ import annotations

import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest

from casm_dagster.cost.budget import BudgetLedger
from casm_dagster.cost.prices import load_prices
from casm_dagster.cost.usage import Usage, llm_cost
from casm_dagster.llm.catalog import load_catalog
from casm_dagster.llm.providers import Clients, Prompt
from casm_dagster.llm.router import InvalidOutput, ModelTask, Router, RoutingSettings
from llm.fakes import Error, FakeModelServer, Hang, Reply, anthropic_usage, openai_usage

PRICES = load_prices()
OPENAI_KEY = "sk-proj-" + "A1b2C3d4" * 5
ANTHROPIC_KEY = "sk-ant-api03-" + "Z9y8X7w6" * 5


class Recorder:
    def __init__(self) -> None:
        self.routes: list[Any] = []
        self.calls: list[Any] = []
        self.drops: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def route(self, choice) -> None:
        with self._lock:
            self.routes.append(choice)

    def call(self, record, text, error) -> None:
        with self._lock:
            self.calls.append((record, text, error))

    def dropped(self, task, reason) -> None:
        with self._lock:
            self.drops.append((task.task_id, reason))


@pytest.fixture
def server():
    with FakeModelServer() as s:
        yield s


def _router(server, monkeypatch, budget="10", providers=("openai", "anthropic"), sleeps=None, **settings):
    env = {
        "OPENAI_API_KEY": OPENAI_KEY,
        "OPENAI_BASE_URL": server.openai_base,
        "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
        "ANTHROPIC_BASE_URL": server.anthropic_base,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    recorder = Recorder()
    router = Router(
        load_catalog(),
        PRICES,
        RoutingSettings(available=frozenset(providers), timeout_s=settings.pop("timeout_s", 5.0), **settings),
        Clients(load_catalog()),
        BudgetLedger(Decimal(budget)),
        recorder,
        sleep=(sleeps.append if sleeps is not None else (lambda s: None)),
    )
    return router, recorder


def _task(n=1, profile="cheap", user="review this", max_out=200) -> ModelTask:
    return ModelTask(f"T{n}", "review", "analyze", profile, f"f{n}.py", Prompt("sys", user, max_out, True, "{}"), 50)


def _json(text: str) -> dict:
    import json

    try:
        return json.loads(text)
    except ValueError:
        raise InvalidOutput("not JSON") from None


def test_a_call_is_routed_costed_and_recorded_exactly(server, monkeypatch):
    router, rec = _router(server, monkeypatch)
    server.script(Reply('{"ok": 1}', usage=openai_usage(1000, 200, cached=400)))
    result = router.run(_task(), _json)
    assert result.status == "done" and result.value == {"ok": 1}
    ((record, text, error),) = rec.calls
    # cheap profile, cost-aware: gpt-4o-mini is the cheapest available meeting the floor
    assert (record.provider, record.model, record.profile) == ("openai", "gpt-4o-mini", "cheap")
    assert record.usage == Usage(input=600, output=200, cache_read=400)
    assert record.cost == llm_cost(record.usage, PRICES.rates("openai", "gpt-4o-mini"))
    assert (
        record.cost
        == Decimal("600") * Decimal("0.15") / 10**6
        + Decimal(400) * Decimal("0.075") / 10**6
        + Decimal(200) * Decimal("0.60") / 10**6
    )
    assert record.outcome == "pass" and record.quality == 1.0 and error is None
    assert router.ledger.spent == record.cost and router.ledger.reserved == 0
    assert server.requests[0].body["model"] == "gpt-4o-mini"
    choice = rec.routes[0]
    rejected = {c.candidate.key: c.reject_reasons for c in choice.candidates}
    assert rejected["hf/Qwen/Qwen2.5-Coder-32B-Instruct"] == ("provider_unavailable",)
    assert "cheapest_meeting_quality_floor" in choice.reason_codes


def test_anthropic_usage_is_not_double_counted(server, monkeypatch):
    router, rec = _router(server, monkeypatch, providers=("anthropic",))
    server.script(Reply('{"ok": 1}', usage=anthropic_usage(300, 50, cache_read=1000, cache_write=200)))
    router.run(_task(), _json)
    record = rec.calls[0][0]
    assert record.provider == "anthropic" and record.usage == Usage(
        input=300, output=50, cache_read=1000, cache_write=200
    )
    r = PRICES.rates("anthropic", record.model)
    assert record.cost == 300 * r.input + 50 * r.output + 1000 * r.cache_read + 200 * r.cache_write


def test_retry_after_is_honoured_then_the_call_succeeds(server, monkeypatch):
    sleeps: list[float] = []
    router, rec = _router(server, monkeypatch, sleeps=sleeps)
    server.script(Error(429, retry_after="7"), Error(503), Reply('{"ok": 1}', usage=openai_usage(10, 5)))
    result = router.run(_task(), _json)
    assert result.status == "done"
    assert sleeps[0] == 7.0  # the server's retry-after, exactly
    assert 0.5 <= sleeps[1] <= 1.5  # then exponential backoff (base 0.5 · 2 + jitter)
    outcomes = [(r.outcome, r.retries) for r, _, _ in rec.calls]
    assert outcomes == [("error", 0), ("error", 1), ("pass", 2)]
    assert all(r.cost == 0 for r, _, _ in rec.calls[:2])  # failed requests are not billed
    assert len(server.requests) == 3


def test_a_retry_after_longer_than_the_cap_falls_back_instead_of_waiting(server, monkeypatch):
    sleeps: list[float] = []
    router, rec = _router(server, monkeypatch, sleeps=sleeps, max_wait_s=30)
    server.script(Error(429, retry_after="3600"), Reply('{"ok": 1}', usage=anthropic_usage(10, 5)))
    result = router.run(_task(), _json)
    assert result.status == "done" and sleeps == []
    assert [r.provider for r, _, _ in rec.calls] == ["openai", "anthropic"]  # provider_error → switch_provider


def test_5xx_after_retries_switches_provider(server, monkeypatch):
    router, rec = _router(server, monkeypatch)
    server.script(Error(500), Error(502), Error(503), Reply('{"ok": 1}', usage=anthropic_usage(10, 5)))
    result = router.run(_task(), _json)
    assert result.status == "done"
    assert [(r.provider, r.outcome) for r, _, _ in rec.calls] == [
        ("openai", "error"),
        ("openai", "error"),
        ("openai", "error"),
        ("anthropic", "pass"),
    ]
    reroute = rec.routes[-1]
    assert "fallback:provider_error->switch_provider" in reroute.reason_codes
    assert all(c.candidate.provider != "openai" for c in reroute.candidates if not c.reject_reasons)


def test_timeout_downgrades_to_a_cheaper_model(server, monkeypatch):
    router, rec = _router(server, monkeypatch, timeout_s=0.5)
    server.script(Hang(3), Reply('{"ok": 1}', usage=openai_usage(10, 5)))
    result = router.run(_task(profile="code_mid"), _json)
    assert result.status == "done"
    first, second = rec.calls[0][0], rec.calls[1][0]
    assert first.outcome == "error" and "timed out" in first.error
    assert (first.provider, first.model) == ("openai", "gpt-4.1-mini")
    assert llm_cost(Usage(input=100, output=50), PRICES.rates(second.provider, second.model)) < llm_cost(
        Usage(input=100, output=50), PRICES.rates(first.provider, first.model)
    )
    assert second.profile == "cheap"  # code_mid had nothing cheaper: one profile down
    assert "fallback:timeout->downgrade_model" in rec.routes[-1].reason_codes


def test_invalid_output_is_reasked_then_rerun_stronger_then_dropped_as_a_failure(server, monkeypatch):
    router, rec = _router(server, monkeypatch)
    bad = [Reply(f"not json {i}", usage=openai_usage(10 + i, 5)) for i in range(4)]
    server.script(*bad)
    result = router.run(_task(), _json)
    assert result.status == "dropped" and result.value is None
    assert [r.outcome for r, _, _ in rec.calls] == ["fail", "fail", "fail", "fail"]
    assert "rejected" in server.requests[1].body["messages"][1]["content"]  # the re-ask says why
    # Quality under target (SPEC §1): one re-run on a stronger profile before the fallback.
    first, stronger = rec.calls[0][0], rec.calls[2][0]
    assert (first.profile, stronger.profile) == ("cheap", "code_mid")
    assert "control:quality_below_target:rerun_on_code_mid" in rec.routes[1].reason_codes
    assert rec.drops and "low_quality" in rec.drops[0][1]
    assert router.ledger.spent == sum(r.cost for r, _, _ in rec.calls)  # failed answers are still paid


def test_a_model_over_the_latency_slo_is_not_routed_to_again(server, monkeypatch):
    router, rec = _router(server, monkeypatch)
    # Assume fast models (10 ms), then measure one at 300 ms against a 150 ms SLO.
    models = {k: v.model_copy(update={"latency_ms": 10}) for k, v in router.catalog.model.models.items()}
    router.catalog = dataclasses.replace(
        router.catalog, model=router.catalog.model.model_copy(update={"models": models})
    )
    router.settings = dataclasses.replace(router.settings, latency_slo_ms=150)
    server.script(Hang(0.3, Reply("{}", usage=openai_usage(10, 5))), Reply("{}", usage=openai_usage(10, 5)))
    first = router.run(_task(1), _json)
    second = router.run(_task(2), _json)
    assert first.status == second.status == "done"
    slow = f"{rec.calls[0][0].provider}/{rec.calls[0][0].model}"
    assert router.slow == {slow}
    assert f"{rec.calls[1][0].provider}/{rec.calls[1][0].model}" != slow
    rejected = {c.candidate.key: c.reject_reasons for c in rec.routes[1].candidates}
    assert "over_latency_slo_measured" in rejected[slow]


def test_stop_fallback_stops_every_later_task(server, monkeypatch):
    router, rec = _router(server, monkeypatch, fallbacks={"provider_error": "stop"}, max_retries=0)
    server.script(Error(500))
    first = router.run(_task(1), _json)
    second = router.run(_task(2), _json)
    assert first.status == "stopped" and second.status == "stopped"
    assert len(server.requests) == 1


def test_no_call_starts_that_could_overspend_the_budget_even_concurrently(server, monkeypatch):
    # Each call's worst case: max_tokens(prompt) input + 200 output at gpt-4o-mini rates.
    r = PRICES.rates("openai", "gpt-4o-mini")
    task = _task(user="x" * 400, max_out=200)
    from casm_dagster.llm.tokens import max_tokens

    worst = max_tokens(task.prompt.text) * r.input + 200 * r.output
    budget = worst * 5 + worst / 2  # room for five calls at once, not six
    router, rec = _router(server, monkeypatch, budget=str(budget), fallbacks={"over_budget": "reduce_scope"})
    server.responder = lambda api, body: Hang(0.3, then=Reply('{"ok": 1}', usage=openai_usage(200, 200)))
    tasks = [_task(n, user="x" * 400, max_out=200) for n in range(16)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda t: router.run(t, _json), tasks))
    done = [x for x in results if x.status == "done"]
    assert done and len(done) < 16
    assert router.ledger.spent <= budget and router.ledger.reserved == 0
    assert sum(r.cost for r, _, _ in rec.calls) == router.ledger.spent
    assert all("over_budget" in reason for _, reason in rec.drops)


def test_offline_answers_without_any_request(server, monkeypatch):
    router, rec = _router(server, monkeypatch, providers=())
    result = router.run(_task(), _json)
    assert result.value == {} and server.requests == []
    record = rec.calls[0][0]
    assert (record.provider, record.model, record.cost) == ("offline", "deterministic", Decimal(0))
    assert "offline_no_provider_key" in rec.routes[0].reason_codes


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("cost_aware_quality_floor", "openai/o4-mini"),
        ("quality_first", "anthropic/claude-sonnet-4-5"),
        ("latency_first", "openai/gpt-4.1"),
        ("budget_first", "openai/gpt-4o-mini"),
    ],
)
def test_each_strategy_picks_by_its_own_criterion(server, monkeypatch, strategy, expected):
    router, rec = _router(server, monkeypatch, strategy=strategy)
    choice = router.route(_task(profile="reasoning_low"))
    assert choice.selected.key == expected


def test_high_risk_raises_the_profile(server, monkeypatch):
    router, _ = _router(server, monkeypatch)
    task = ModelTask("T1", "fix", "plan", "code_mid", ".github/workflows/ci.yml", Prompt("s", "u", 100), 50, True)
    choice = router.route(task)
    assert choice.profile == "reasoning_low" and "profile_raised_for_risk" in choice.reason_codes
