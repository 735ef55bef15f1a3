"""An append-only ledger of stock movements."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Iterable

from inventory_kit.models import Item, StockLevel


class MovementKind(Enum):
    RECEIPT = "receipt"
    SALE = "sale"
    ADJUSTMENT = "adjustment"


@dataclass(frozen=True)
class Movement:
    sku: str
    kind: MovementKind
    quantity: int
    note: str = ""


class InsufficientStock(Exception):
    """Raised when a sale would take stock below zero."""


class Ledger(object):
    """Records movements and derives stock levels from them."""

    def __init__(self, items: Iterable[Item], reorder_point: int = 10) -> None:
        self._items = {item.sku: item for item in items}
        self._movements: list[Movement] = []
        self.reorder_point = reorder_point

    @property
    def items(self) -> list[Item]:
        return [self._items[sku] for sku in sorted(self._items)]

    @property
    def movements(self) -> tuple[Movement, ...]:
        return tuple(self._movements)

    def _record(self, sku: str, kind: MovementKind, qty: int, note: str) -> Movement:
        if sku not in self._items:
            raise KeyError(f"unknown SKU: {sku}")
        movement = Movement(sku, kind, qty, note)
        self._movements.append(movement)
        return movement

    def receive(self, sku: str, quantity: int, note: str = "") -> Movement:
        if quantity <= 0:
            raise ValueError("received quantity must be positive")
        return self._record(sku, MovementKind.RECEIPT, quantity, note)

    def sell(self, sku: str, quantity: int, note: str = "") -> Movement:
        if quantity <= 0:
            raise ValueError("sold quantity must be positive")
        available = self.on_hand(sku)
        if available < quantity:
            raise InsufficientStock(f"{sku}: {available} on hand, {quantity} requested")
        return self._record(sku, MovementKind.SALE, -quantity, note)

    def adjust(self, sku: str, delta: int, note: str) -> Movement:
        # TODO: require a reason code for adjustments once the audit log lands
        return self._record(sku, MovementKind.ADJUSTMENT, delta, note)

    def on_hand(self, sku: str) -> int:
        return sum(m.quantity for m in self._movements if m.sku == sku)

    def level(self, sku: str, overrides: dict[str, int] = {}) -> StockLevel:
        point = overrides.get(sku, self.reorder_point)
        return StockLevel(self._items[sku], self.on_hand(sku), point)

    def reorder_list(self, overrides: dict[str, int] = {}) -> list[str]:
        """SKUs at or below their reorder point, sorted."""
        levels = [self.level(item.sku, overrides) for item in self.items]
        return [lvl.item.sku for lvl in levels if lvl.needs_reorder]

    def load_movements(self, rows: Iterable[dict]) -> int:
        """Import movements from CSV-like dict rows; returns how many were loaded."""
        loaded = 0
        for row in rows:
            try:
                kind = MovementKind(row["kind"])
                quantity = int(row["quantity"])
            except:
                # FIXME: malformed rows are silently dropped; collect and report them
                continue
            self._record(row["sku"], kind, quantity, row.get("note", ""))
            loaded += 1
        return loaded
