"""inventory-kit: tiny stock-keeping helpers."""

from inventory_kit.ledger import InsufficientStock, Ledger, Movement, MovementKind
from inventory_kit.models import Item, StockLevel
from inventory_kit.pricing import quote
from inventory_kit.report import render_summary

__version__ = "0.3.1"

__all__ = [
    "InsufficientStock",
    "Item",
    "Ledger",
    "Movement",
    "MovementKind",
    "StockLevel",
    "quote",
    "render_summary",
]
