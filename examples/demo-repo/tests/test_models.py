import pytest

from inventory_kit.models import Item, StockLevel


def test_item_rejects_malformed_sku():
    with pytest.raises(ValueError, match="invalid SKU"):
        Item("bolt-1", "Hex bolt", 0.12)


def test_item_rejects_negative_price():
    with pytest.raises(ValueError, match="non-negative"):
        Item("BLT-0001", "Hex bolt", -1.0)


def test_stock_level_value_and_reorder(bolt):
    level = StockLevel(bolt, on_hand=250, reorder_point=100)
    assert level.value == 30.0
    assert not level.needs_reorder
    assert StockLevel(bolt, on_hand=100, reorder_point=100).needs_reorder
