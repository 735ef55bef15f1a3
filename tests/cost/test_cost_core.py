"""Prices, usage normalization, the formulas and the budget ledger (SPEC §8)."""

from __future__ import annotations

import threading
from decimal import Decimal
from pathlib import Path

import pytest

from casm_dagster.cost import formulas
from casm_dagster.cost.budget import BudgetLedger, OverBudget
from casm_dagster.cost.prices import BUNDLED, UnknownModelError, load_prices
from casm_dagster.cost.usage import Usage, from_anthropic, from_openai, llm_cost, usd
from casm_dagster.errors import ConfigError


@pytest.fixture(scope="module")
def prices():
    return load_prices()


def test_bundled_registry_is_versioned_and_every_price_has_a_date_and_source(prices) -> None:
    assert prices.version == "2026-11-23" and len(prices.sha256) == 64
    for key, price in prices.model.models.items():
        assert price.as_of and price.source, key
    assert prices.model.default is None  # unknown models are an error out of the box


def test_unknown_model_is_an_error_never_zero(prices) -> None:
    with pytest.raises(UnknownModelError, match="no price for openai/gpt-9"):
        prices.rates("openai", "gpt-9")


def test_a_configured_default_prices_unknown_models_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(
        'registry_version: "mine-1"\ndefault: {price_in_per_1m: 5, price_out_per_1m: 15}\nmodels:\n'
        '  openai/gpt-4o-mini: {price_in_per_1m: 0.15, price_out_per_1m: 0.6, as_of: "2025-06-01", source: "x"}\n'
    )
    registry = load_prices(path)
    rates = registry.rates("openai", "gpt-9")
    assert rates.by_default and rates.input == Decimal("0.000005")
    assert not registry.rates("openai", "gpt-4o-mini").by_default


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('registry_version: "x"\nmodels:\n  gpt: {price_in_per_1m: 1, price_out_per_1m: 1, as_of: "2025-01-01", '
         'source: "s"}\n', "models.gpt"),
        ('registry_version: "x"\nmodels:\n  openai/a: {price_in_per_1m: -1, price_out_per_1m: 1, as_of: "2025-01-01", '
         'source: "s"}\n', "price_in_per_1m"),
        ('registry_version: "x"\nmodels:\n  openai/a: {price_in_per_1m: 1, price_out_per_1m: 1}\n', "as_of"),
        ('registry_version: "x"\ncurrency: EUR\nmodels: {}\n', "currency must be USD"),
        ("models: [\n", "not valid YAML \\(line 2"),
    ],
)  # fmt: skip
def test_malformed_registries_are_precise_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_prices(path)


def test_openai_prompt_tokens_include_cached_ones_and_are_not_double_counted(prices) -> None:
    usage = from_openai(
        {
            "prompt_tokens": 1200,
            "completion_tokens": 300,
            "prompt_tokens_details": {"cached_tokens": 1000},
            "completion_tokens_details": {"reasoning_tokens": 100},
        }
    )
    assert usage == Usage(input=200, output=300, cache_read=1000, reasoning=100)
    assert usage.total_input == 1200
    # 200 × 0.15 + 1000 × 0.075 + 300 × 0.60, per million
    assert llm_cost(usage, prices.rates("openai", "gpt-4o-mini")) == Decimal("0.000285")


def test_anthropic_input_tokens_exclude_cache_reads_and_writes(prices) -> None:
    usage = from_anthropic(
        {"input_tokens": 200, "output_tokens": 300, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 400}
    )
    assert usage == Usage(input=200, output=300, cache_read=1000, cache_write=400)
    assert usage.total_input == 1600
    # 200 × 3 + 1000 × 0.30 + 400 × 3.75 + 300 × 15, per million
    assert llm_cost(usage, prices.rates("anthropic", "claude-sonnet-4-0")) == Decimal("0.0069")


def test_missing_or_odd_usage_fields_count_as_zero_not_as_errors() -> None:
    assert from_openai({"prompt_tokens": 10}) == Usage(input=10)
    assert from_openai(None) == Usage()
    assert from_anthropic({"input_tokens": -5, "output_tokens": "7"}) == Usage()


def test_costs_sum_exactly_and_round_half_up_only_for_display(prices) -> None:
    rates = prices.rates("openai", "gpt-4o-mini")
    calls = [llm_cost(Usage(input=i, output=3 * i), rates) for i in range(1, 200)]
    assert sum(calls, Decimal(0)) == llm_cost(Usage(input=sum(range(1, 200)), output=3 * sum(range(1, 200))), rates)
    assert usd(Decimal("0.0000005")) == 0.000001


def test_forecast_applies_retry_factor_and_safety_margin() -> None:
    assert formulas.forecast_llm([Decimal("1.00"), Decimal("1.00")]) == Decimal("2.3100")
    rates = formulas.CostRates(ci_minute=Decimal("0.008"), infra_second=Decimal("0.0001"), human_minute=Decimal("2"))
    run = formulas.run_cost(
        Decimal("0.50"), formulas.tool_cost(Decimal(10), rates), formulas.infra_cost(Decimal(60), rates)
    )
    assert run == Decimal("0.5860")
    outcome = formulas.outcome_cost([run], Decimal(5), rates)
    assert outcome == Decimal("10.5860")
    assert formulas.gross_margin(outcome, Decimal(20)) == Decimal("0.4707")
    assert formulas.gross_margin(outcome, Decimal(0)) is None
    assert formulas.per_unit(Decimal(3), 0) is None and formulas.per_unit(Decimal(3), 4) == Decimal("0.75")


def test_the_ledger_refuses_a_reservation_that_could_overspend() -> None:
    ledger = BudgetLedger("1.00")
    first = ledger.reserve(Decimal("0.60"), "review")
    with pytest.raises(OverBudget):
        ledger.reserve(Decimal("0.50"), "fix")
    ledger.settle(first, Decimal("0.10"))  # the call cost less than its worst case
    second = ledger.reserve(Decimal("0.50"), "fix")
    assert ledger.spent == Decimal("0.10") and ledger.reserved == Decimal("0.50")
    ledger.release(second)
    assert ledger.available() == Decimal("0.90")
    with pytest.raises(KeyError):
        ledger.settle(first, Decimal("0.10"))


def test_concurrent_tasks_never_overspend() -> None:
    ledger = BudgetLedger("1.00")
    barrier = threading.Barrier(16)
    granted: list[int] = []

    def task(i: int) -> None:
        barrier.wait()
        try:
            reservation = ledger.reserve(Decimal("0.10"), f"t{i}")
        except OverBudget:
            return
        granted.append(i)
        ledger.settle(reservation, Decimal("0.10"))

    threads = [threading.Thread(target=task, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 10
    assert ledger.spent == Decimal("1.00") and ledger.spent <= ledger.budget


def test_an_infinite_price_is_a_load_error_not_a_forecast_crash(tmp_path) -> None:
    text = BUNDLED.read_text().replace("price_in_per_1m: 0.15", "price_in_per_1m: .inf", 1)
    assert ".inf" in text
    (tmp_path / "prices.yaml").write_text(text)
    with pytest.raises(ConfigError, match="finite"):
        load_prices(tmp_path / "prices.yaml")
