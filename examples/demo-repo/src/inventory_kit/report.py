"""Plain-text rendering of a ledger."""
from inventory_kit.ledger import Ledger
from inventory_kit.pricing import to_money


def _row(sku:str, name:str, on_hand:int, value, flag:str)->str:
    return f'{sku:<10} {name:<24} {on_hand:>6} {value:>10}  {flag}'.rstrip()


def render_summary(ledger: Ledger, title: str='Inventory summary', overrides = None):
    """Render one line per item plus totals.  Items to reorder are flagged."""
    overrides = overrides or {}
    lines = [title, '=' * len(title),
             _row('SKU', 'Item', 'Qty', 'Value', '')]
    total_units = 0
    total_value = to_money(0)
    for item in ledger.items:
        level = ledger.level(item.sku, overrides)
        value = to_money(level.value)
        flag = 'REORDER' if level.needs_reorder else ''
        lines.append(_row(item.sku,
                          item.name[:24],
                          level.on_hand,
                          value,
                          flag))
        total_units += level.on_hand
        total_value += value
    lines.append(f"-" * 56)
    lines.append(_row('TOTAL', f'{len(ledger.items)} items', total_units, total_value, ''))
    # TODO: offer CSV / JSON output in addition to plain text
    return "\n".join(lines) + "\n"
