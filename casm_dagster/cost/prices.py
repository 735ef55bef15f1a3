"""The versioned price registry: USD per 1M tokens for each ``provider/model``.

The bundled registry is ``prices.yaml`` beside this module; a user registry (a file with
the same shape) replaces it. An unknown model is an error — never a silent $0 — unless
the registry's ``default`` prices it deliberately, and then the call is marked as priced
by the default.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from casm_dagster.contracts.yaml12 import load_config
from casm_dagster.errors import ConfigError

BUNDLED = Path(__file__).resolve().parent / "prices.yaml"
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]  # .inf would crash the forecast


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DefaultPrice(_Strict):
    price_in_per_1m: NonNegative
    price_out_per_1m: NonNegative


class ModelPrice(_Strict):
    price_in_per_1m: NonNegative
    price_out_per_1m: NonNegative
    price_cache_read_per_1m: NonNegative | None = None  # None: cached input costs the input price
    price_cache_write_per_1m: NonNegative | None = None  # None: cache writes cost the input price
    as_of: Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$")]
    source: Annotated[str, Field(min_length=1)]


class RegistryModel(_Strict):
    registry_version: Annotated[str, Field(min_length=1)]
    currency: str = "USD"
    default: DefaultPrice | None = None
    models: dict[Annotated[str, Field(pattern=r"^[a-z0-9-]+/.+$")], ModelPrice]


class UnknownModelError(ConfigError):
    """A call to a model the price registry does not list (and no default is configured)."""


@dataclass(frozen=True)
class Rates:
    """Per-token USD rates for one model, as ``Decimal``."""

    provider: str
    model: str
    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal
    by_default: bool  # priced by the registry's ``default``, not a listed price


_PER_TOKEN = Decimal(1_000_000)


def _rate(value: float) -> Decimal:
    return Decimal(str(value)) / _PER_TOKEN


@dataclass(frozen=True)
class PriceRegistry:
    model: RegistryModel
    sha256: str
    path: Path

    @property
    def version(self) -> str:
        return self.model.registry_version

    def rates(self, provider: str, model: str) -> Rates:
        key = f"{provider}/{model}"
        price = self.model.models.get(key)
        if price is not None:
            return Rates(
                provider,
                model,
                _rate(price.price_in_per_1m),
                _rate(price.price_out_per_1m),
                _rate(
                    price.price_cache_read_per_1m
                    if price.price_cache_read_per_1m is not None
                    else price.price_in_per_1m
                ),
                _rate(
                    price.price_cache_write_per_1m
                    if price.price_cache_write_per_1m is not None
                    else price.price_in_per_1m
                ),
                by_default=False,
            )
        if self.model.default is not None:
            d = self.model.default
            rate_in = _rate(d.price_in_per_1m)
            return Rates(provider, model, rate_in, _rate(d.price_out_per_1m), rate_in, rate_in, by_default=True)
        raise UnknownModelError(
            f"no price for {key} in price registry {self.version} ({self.path}); add it, or set `default` there "
            "to price unknown models deliberately"
        )

    def knows(self, provider: str, model: str) -> bool:
        return f"{provider}/{model}" in self.model.models


def load_prices(path: Path | None = None) -> PriceRegistry:
    path = path or BUNDLED
    model, raw = load_config(path, RegistryModel, "price registry")
    if model.currency != "USD":
        raise ConfigError(f"{path}: currency must be USD (got {model.currency!r})")
    return PriceRegistry(model=model, sha256=hashlib.sha256(raw).hexdigest(), path=path)
