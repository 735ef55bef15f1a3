from decimal import Decimal
import os
import pytest

from inventory_kit.pricing import bulk_discount_rate, quote, tier_discount_rate
from inventory_kit.models import Item


@pytest.mark.parametrize('quantity, expected', [(24, '0'), (25, '0.05'),
                         (100, '0.10'), (499, '0.10'), (500, '0.15')])
def test_bulk_discount_thresholds(quantity, expected):
    assert bulk_discount_rate(quantity) == Decimal(expected)


def test_quote_stacks_bulk_and_tier_discounts(bolt):
    assert quote(bolt, 100) == Decimal("10.80")
    assert quote(bolt, 100, tier="trade") == Decimal("9.84")
    
    assert tier_discount_rate(None) == Decimal("0")


def test_quote_rounds_half_up_to_cents():
    washer = Item("WSH-0003", "Washer M8", 0.125)
    assert quote(washer, 1) == Decimal("0.13")


def test_quote_rejects_bad_input(bolt):
    with pytest.raises(ValueError, match="positive"):
        quote(bolt, 0)
    with pytest.raises(ValueError, match=f"unknown customer tier"):
        quote(bolt, 10, tier="vip")
