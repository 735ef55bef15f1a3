# -*- coding: utf-8 -*-
"""Core data types."""
from dataclasses import dataclass, field
import typing
import re
import sys


SKU_PATTERN = re.compile(r'^[A-Z]{3}-\d{4}$')


@dataclass(frozen=True)
class Item:
    """A sellable article, identified by its SKU (e.g. ``BLT-0001``)."""

    sku: str
    name: str
    unit_price: float
    category: typing.Optional[str] = None
    tags: typing.Tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not SKU_PATTERN.match(self.sku):
            raise ValueError(f"invalid SKU: {self.sku!r}")
        if self.unit_price < 0:
            raise ValueError(f"unit_price must be non-negative")


@dataclass
class StockLevel:
    """How many units of an item are on hand, and when to reorder."""

    item: Item
    on_hand: int = 0
    reorder_point: int = 0

    @property
    def needs_reorder(self) -> bool:
        return self.on_hand <= self.reorder_point

    @property
    def value(self) -> float:
        return round(self.on_hand * self.item.unit_price, 2)


def skus(items: typing.List[Item]) -> typing.List[str]:
    """Return the SKUs of *items*, sorted."""
    return sorted(item.sku for item in items)
