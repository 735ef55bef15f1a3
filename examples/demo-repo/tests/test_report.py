from inventory_kit.report import render_summary


def test_summary_lists_items_totals_and_reorder_flags(ledger):
    ledger.receive("BLT-0001", 500)
    ledger.sell("BLT-0001", 120)
    ledger.receive("DRL-0100", 4)
    text = render_summary(ledger, title="Workshop stock")
    lines = text.splitlines()
    assert lines[0] == "Workshop stock"
    assert lines[1] == "=" * len("Workshop stock")
    rows = {line.split()[0]: line for line in lines[3:-1]}
    assert rows["BLT-0001"].endswith("45.60")
    assert rows["DRL-0100"].endswith("REORDER")
    assert "359.60" in rows["DRL-0100"]
    assert rows["WSH-0002"].endswith("REORDER")
    assert lines[-1].split() == ["TOTAL", "3", "items", "384", "405.20"]
