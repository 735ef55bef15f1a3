"""The budget ledger: no call starts whose worst-case cost could take spend over budget.

Before a call, its worst case (max input + max output tokens at the model's rates) is
*reserved*; after it, the reservation is *settled* at the actual cost. ``spent +
reserved ≤ budget`` holds at every moment, under a lock, so concurrent tasks cannot
overspend between them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from decimal import Decimal

from casm_dagster.run.ids import new_ulid


class OverBudget(Exception):
    """A reservation that would take spend (plus open reservations) over the budget."""

    def __init__(self, needed: Decimal, available: Decimal) -> None:
        super().__init__(f"needs up to ${needed:.6f}, ${max(available, Decimal(0)):.6f} left in the budget")
        self.needed = needed
        self.available = available


@dataclass(frozen=True)
class Reservation:
    id: str
    amount: Decimal
    label: str


class BudgetLedger:
    def __init__(self, budget_usd: Decimal | float | str | None) -> None:
        self.budget = None if budget_usd is None else Decimal(str(budget_usd))
        self._lock = threading.Lock()
        self._spent = Decimal(0)
        self._open: dict[str, Reservation] = {}

    @property
    def spent(self) -> Decimal:
        with self._lock:
            return self._spent

    @property
    def reserved(self) -> Decimal:
        with self._lock:
            return sum((r.amount for r in self._open.values()), Decimal(0))

    def available(self) -> Decimal | None:
        with self._lock:
            if self.budget is None:
                return None
            return self.budget - self._spent - sum((r.amount for r in self._open.values()), Decimal(0))

    def reserve(self, worst_case: Decimal, label: str = "") -> Reservation:
        if worst_case < 0:
            raise ValueError("a reservation cannot be negative")
        with self._lock:
            if self.budget is not None:
                left = self.budget - self._spent - sum((r.amount for r in self._open.values()), Decimal(0))
                if worst_case > left:
                    raise OverBudget(worst_case, left)
            reservation = Reservation(new_ulid(), worst_case, label)
            self._open[reservation.id] = reservation
            return reservation

    def settle(self, reservation: Reservation, actual: Decimal) -> None:
        """Replace the reservation by what the call really cost (which may exceed it only if
        the provider ignored the output cap: the overrun is recorded, never hidden)."""
        if actual < 0:
            raise ValueError("a cost cannot be negative")
        with self._lock:
            if self._open.pop(reservation.id, None) is None:
                raise KeyError(f"reservation {reservation.id} is not open (settled twice?)")
            self._spent += actual

    def release(self, reservation: Reservation) -> None:
        """The call never happened (e.g. it failed before sending): free its reservation."""
        with self._lock:
            self._open.pop(reservation.id, None)
