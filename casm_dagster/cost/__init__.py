"""The cost engine (SPEC §8): prices, normalized token usage, per-call and per-run cost,
and the budget ledger. Plain Python (no Dagster); money is ``Decimal`` USD throughout so
totals reconcile with the per-call sum to the cent."""
