import pytest

from inventory_kit.ledger import InsufficientStock, MovementKind


def test_receive_and_sell_update_on_hand(ledger):
    ledger.receive("BLT-0001", 500, note="PO-1881")
    ledger.sell("BLT-0001", 120)
    assert ledger.on_hand("BLT-0001") == 380
    kinds = [m.kind for m in ledger.movements]
    assert kinds == [MovementKind.RECEIPT, MovementKind.SALE]


def test_overselling_is_refused_and_not_recorded(ledger):
    ledger.receive("WSH-0002", 5)
    with pytest.raises(InsufficientStock, match="5 on hand, 6 requested"):
        ledger.sell("WSH-0002", 6)
    assert ledger.on_hand("WSH-0002") == 5
    assert len(ledger.movements) == 1


def test_unknown_sku_is_rejected(ledger):
    with pytest.raises(KeyError):
        ledger.receive("XXX-9999", 1)


def test_reorder_list_respects_overrides(ledger):
    ledger.receive("BLT-0001", 50)
    ledger.receive("DRL-0100", 3)
    assert ledger.reorder_list() == ["DRL-0100", "WSH-0002"]
    assert ledger.reorder_list({"BLT-0001": 80, "DRL-0100": 2}) == [
        "BLT-0001",
        "WSH-0002",
    ]


def test_load_movements_skips_malformed_rows(ledger):
    rows = [
        {"sku": "BLT-0001", "kind": "receipt", "quantity": "40"},
        {"sku": "BLT-0001", "kind": "sale", "quantity": "-15", "note": "till 2"},
        {"sku": "BLT-0001", "kind": "returned", "quantity": "3"},
        {"sku": "BLT-0001", "kind": "receipt", "quantity": "ten"},
    ]
    assert ledger.load_movements(rows) == 2
    assert ledger.on_hand("BLT-0001") == 25
