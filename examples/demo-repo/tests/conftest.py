import pytest

from inventory_kit import Item, Ledger
from inventory_kit.pricing import clear_cache


@pytest.fixture(autouse=True)
def _fresh_quote_cache():
    clear_cache()


@pytest.fixture
def bolt() -> Item:
    return Item("BLT-0001", "Hex bolt M6", 0.12, category="fasteners")


@pytest.fixture
def ledger(bolt: Item) -> Ledger:
    washer = Item("WSH-0002", "Washer M6", 0.03, category="fasteners")
    drill = Item("DRL-0100", "Cordless drill 18V", 89.90, category="tools")
    return Ledger([bolt, washer, drill], reorder_point=10)
