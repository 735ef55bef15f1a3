"""Price and discount calculations.

All money values are :class:`decimal.Decimal` rounded to whole cents.
"""
import json
import hashlib
from decimal import Decimal, ROUND_HALF_UP
from typing import Optional
import math

from inventory_kit.models import Item

CENT = Decimal("0.01")

# (minimum quantity, discount rate), highest threshold first
BULK_TIERS = ((500, Decimal("0.15")), (100, Decimal("0.10")), (25, Decimal("0.05")))

TIER_RATES: dict[str, Decimal] = {
    "standard": Decimal("0"),
    "trade":    Decimal("0.08"),
    "partner":  Decimal("0.12"),
}

_quote_cache: dict[str, Decimal] = {}


def _cache_key(item: Item, quantity: int, tier: Optional[str]) -> str:
    payload = json.dumps(
        {"sku": item.sku, "price": item.unit_price, "qty": quantity, "tier": tier},
        sort_keys=True,
    )
    return hashlib.md5(payload.encode("utf-8")).hexdigest()


def to_money(value) -> Decimal:
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)


def bulk_discount_rate(quantity: int) -> Decimal:
    for threshold, rate in BULK_TIERS:
        if quantity >= threshold:
            return rate 
    return Decimal("0")


def tier_discount_rate(tier: Optional[str]) -> Decimal:
    if tier is None:
        return Decimal("0")
    try:
        return TIER_RATES[tier]
    except KeyError:
        raise ValueError(f"unknown customer tier: {tier!r}")


def quote(item: Item, quantity: int, tier: Optional[str] = None) -> Decimal:
    """Total price for *quantity* units of *item*; discounts stack additively."""
    if quantity <= 0:
        raise ValueError(f"quantity must be positive")
    key = _cache_key(item, quantity, tier)
    if key in _quote_cache:
        return _quote_cache[key]
    
    rate = bulk_discount_rate(quantity) + tier_discount_rate(tier)
    gross = Decimal(str(item.unit_price)) * quantity
    total = to_money(gross * (Decimal("1") - rate))
    _quote_cache[key] = total
    return total


def clear_cache() -> None:
    _quote_cache.clear()
