"""Token usage normalized across providers, and what it costs.

Canonical form: ``input`` is uncached input tokens only; ``cache_read`` and
``cache_write`` are counted apart; ``output`` includes reasoning tokens (which are billed
as output), with ``reasoning`` kept for reporting. OpenAI's ``prompt_tokens`` *include*
cached tokens, Anthropic's ``input_tokens`` *exclude* them: each is converted here, so no
token is counted twice or lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from casm_dagster.cost.prices import Rates

CENT = Decimal("0.01")
MICRO = Decimal("0.000001")


@dataclass(frozen=True)
class Usage:
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0  # part of ``output``

    def __post_init__(self) -> None:
        for name in ("input", "output", "cache_read", "cache_write", "reasoning"):
            if getattr(self, name) < 0:
                raise ValueError(f"usage.{name} must not be negative")
        if self.reasoning > self.output:
            raise ValueError("reasoning tokens are part of output tokens")

    @property
    def total_input(self) -> int:
        return self.input + self.cache_read + self.cache_write

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input + other.input,
            self.output + other.output,
            self.cache_read + other.cache_read,
            self.cache_write + other.cache_write,
            self.reasoning + other.reasoning,
        )


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int) and value > 0 else 0


def from_openai(usage: Any) -> Usage:
    """Chat Completions ``usage`` (also Kimi and Hugging Face, which speak the same format)."""
    prompt = _int(_get(usage, "prompt_tokens"))
    # OpenAI nests cached tokens in prompt_tokens_details; Moonshot (Kimi) reports them top-level.
    cached = _int(_get(_get(usage, "prompt_tokens_details"), "cached_tokens")) or _int(_get(usage, "cached_tokens"))
    cached = min(cached, prompt)
    completion = _int(_get(usage, "completion_tokens"))
    reasoning = min(_int(_get(_get(usage, "completion_tokens_details"), "reasoning_tokens")), completion)
    return Usage(input=prompt - cached, output=completion, cache_read=cached, reasoning=reasoning)


def from_anthropic(usage: Any) -> Usage:
    """Messages API ``usage``: input_tokens already excludes cache reads and writes."""
    return Usage(
        input=_int(_get(usage, "input_tokens")),
        output=_int(_get(usage, "output_tokens")),
        cache_read=_int(_get(usage, "cache_read_input_tokens")),
        cache_write=_int(_get(usage, "cache_creation_input_tokens")),
    )


def llm_cost(usage: Usage, rates: Rates) -> Decimal:
    """SPEC §8: Tin/1e6·Pin + Tout/1e6·Pout, with cache reads and writes at their own rates
    (exact; round only for display, with ``usd``)."""
    return (
        usage.input * rates.input
        + usage.cache_read * rates.cache_read
        + usage.cache_write * rates.cache_write
        + usage.output * rates.output
    )


def usd(amount: Decimal, places: Decimal = MICRO) -> float:
    """A Decimal amount as a JSON number, rounded half-up (to the micro-dollar by default)."""
    return float(amount.quantize(places, rounding=ROUND_HALF_UP))
